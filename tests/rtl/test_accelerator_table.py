"""The systolic array's output through a table activation: conv2d, pointwise, depthwise and FC layers with
hard-swish, hard-sigmoid, sigmoid and tanh run from AXI DRAM bit-exactly (cocotb, through the top).

The compiler requantises to the table's input (the pre-activation's scale and zero point, full range)
and the array's outputs are looked up in the 256-entry table, which the loader reads at the layer's
start; DRAM latency 1 to 50 cycles per burst, random pauses on every AXI channel; outputs against
:func:`mensa.core.golden.run_layer`, the table read once, every window once. A layer without a table
after one with it passes its outputs through (ACT_TABLE is written for every layer).
"""

import random

import pytest

from mensa.sim.runner import simulators

from tests.contract.test_gemm_program_conv import random_conv_spec
from tests.rtl.test_accelerator import compiled, dram_read_bytes, simulate

KINDS = ("conv2d", "pointwise", "depthwise", "fc")
TABLES = ("hard_swish", "hard_sigmoid", "sigmoid", "tanh")
#: each table activation's output quantisation (scale, zero point), as TFLite's int8 kernels fix them
#: (hard-swish: the pre-activation's)
OUTPUT = {"sigmoid": (1 / 256, -128), "hard_sigmoid": (1 / 256, -128), "tanh": (1 / 128, 0)}


def table_spec(r, kind, activation, *, max_hw=6, max_c=13):
    """A random ``kind`` layer with ``activation``: its pre-activation scale sized to its fan-in, so the
    requantised values spread over int8 and the table's entries over the function's range."""
    if kind in ("conv2d", "depthwise"):
        spec = random_conv_spec(r, max_hw=max_hw, max_c=max_c)
        while spec["op"] != kind:
            spec = random_conv_spec(r, max_hw=max_hw, max_c=max_c)
    else:
        cin = r.randint(1, 2 * max_c)
        shape = [r.randint(1, 20), cin] if kind == "fc" else [1, r.randint(1, max_hw), r.randint(1, max_hw), cin]
        spec = {"op": "fc" if kind == "fc" else "conv2d", "in_shape": shape, "out_channels": r.randint(1, 2 * max_c),
                "zp_in": r.randint(-128, 127), "in_scale": r.uniform(0.02, 0.1)}
    taps = spec["kernel"][0] * spec["kernel"][1] if "kernel" in spec else 1
    fan_in = taps * (1 if spec["op"] == "depthwise" else spec["in_shape"][-1])
    # the pre-activation's spread is about in_scale * 60 * sqrt(fan_in) (uniform int8 inputs and weights,
    # the testbench's weight scales): some 40 steps of the int8 range
    pre = r.uniform(0.5, 1.5) * 1.5 * spec["in_scale"] * fan_in ** 0.5
    zp_pre = r.randint(-20, 20)
    scale, zp = OUTPUT.get(activation, (pre, zp_pre))
    return dict(spec, activation=activation, pre_scale=pre, zp_pre=zp_pre, out_scale=scale, zp_out=zp)


def table_specs(seed, rounds):
    """``rounds`` of the four kinds, the activations shifted by one each round (four rounds: every
    kind with every activation), then a layer without one."""
    r = random.Random(seed)
    specs = [table_spec(r, kind, TABLES[(i + j) % 4]) for j in range(rounds) for i, kind in enumerate(KINDS)]
    plain = table_spec(r, "conv2d", "tanh")
    return specs + [dict(plain, activation="relu", out_scale=plain["pre_scale"], zp_out=plain["zp_pre"])]


# (rows, cols, data_bits, acc_kib, rounds, seed); the first shares its build with test_accelerator's first case
CASES = [
    (4, 4, 64, 1, 1, 21),
    (4, 4, 64, 1, 4, 22),
    (6, 4, 32, 1, 4, 23),           # vectors of two words, a table of 64 words
]
RUNS = [pytest.param(*case, id=f"{case[0]}x{case[1]}-d{case[2]}-r{case[4]}",
                     marks=[] if i == 0 else [pytest.mark.slow]) for i, case in enumerate(CASES)]


@pytest.mark.parametrize("rows,cols,data_bits,acc_kib,rounds,seed", RUNS)
def test_table_activations_on_the_array_bit_exact_through_axi(rows, cols, data_bits, acc_kib, rounds, seed,
                                                              tmp_path):
    print(f"seed {seed}")
    cfg = {"rows": rows, "cols": cols, "data_bits": data_bits, "acc_kib": acc_kib}
    specs = table_specs(seed, rounds)
    measured = simulate(cfg, specs, tmp_path, sim=simulators()[-1] if rounds == 1 else simulators()[0])
    for got, prog, spec in zip(measured, compiled(cfg, specs), specs):
        assert got["engine"] == "array", got
        assert prog.registers["ACT_TABLE"] == (spec["activation"] in TABLES), spec
        assert got["dram_read_bytes"] == dram_read_bytes(prog), (spec, got)
        assert got["dram_write_bytes"] == prog.output_bytes, (spec, got)
