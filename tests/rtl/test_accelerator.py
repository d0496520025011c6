"""The systolic accelerator's Verilog runs whole conv2d, depthwise, pointwise and FC layers from AXI DRAM
bit-exactly (cocotb).

Registers through cocotbext-axi's AxiLiteMaster, DRAM in its AxiRam with a read latency
of 1 to 50 cycles per burst and random pauses on every AXI channel; channel counts that
are not multiples of the array; kernels 1-5, strides 1-2, paddings and dilations; layers
larger than the accumulator (M tiles); outputs against :func:`mensa.core.golden.run_layer`.
"""

import json
import random
import re

import pytest

import numpy as np

from mensa.contract.header import header
from mensa.contract.compiler import compile_layer
from mensa.contract.numeric import TABLE_ENTRIES
from mensa.core.errors import CompileError
from mensa.hw.accelerator import Accelerator
from mensa.contract.regs import register_map
from mensa.core import golden
from mensa.sim.runner import run, simulators
from mensa.sim.tb_accelerator import accelerator_config, make_layer

from tests.contract.test_gemm_program_conv import random_conv_spec


def random_layers(count, seed, *, max_m, max_c):
    """Small random FC and pointwise layers; channel counts mostly not multiples of 4 or 8."""
    r = random.Random(seed)
    layers = []
    for i in range(count):
        op = ("fc", "pointwise")[i % 2]
        cin, cout = r.randint(1, max_c), r.randint(1, max_c)
        if op == "fc":
            shape = [r.randint(1, max_m), cin]
        else:
            h, w = r.randint(1, 3), r.randint(1, 4)
            shape = [r.randint(1, max(1, max_m // (h * w))), h, w, cin]
        layers.append({"op": op, "in_shape": shape, "out_channels": cout,
                       "activation": r.choice(["none", "relu", "relu6"]),
                       "zp_in": r.randint(-128, 127), "zp_out": r.randint(-20, 20),
                       "in_scale": r.uniform(0.02, 0.1), "out_scale": r.uniform(0.05, 0.5) * cin ** 0.5})
    return layers


def simulate(cfg, layers, tmp_path, *, sim=None, pause=0.2, latency=(1, 50)):
    """Run ``layers`` on the accelerator built from ``cfg``; the testbench's per-layer results."""
    result = tmp_path / "cycles.json"
    params = {"config": cfg, "layers": layers, "pause": pause, "latency": list(latency), "result": str(result)}
    acc = accelerator_config(cfg)
    run(Accelerator(acc), name="accelerator", key=("accelerator", acc), sim=sim or simulators()[-1],
        test_module="mensa.sim.tb_accelerator", test_name="acc-" + "-".join(tmp_path.parts[-2:]),
        extra_env={"MENSA_TB": json.dumps(params)})
    measured = json.loads(result.read_text())
    assert [r["layer"] for r in measured] == [f"layer{i}" for i in range(len(layers))]
    return measured


def compiled(cfg, specs):
    """The programs of ``specs`` on ``cfg`` (zero weights and inputs: the layout depends on the shapes only)."""
    acc = accelerator_config(cfg)
    progs = []
    for i, spec in enumerate(specs):
        lay = make_layer(spec, i)
        weights = np.zeros(golden.weight_shape(lay), np.int8)
        x = np.zeros(lay.in_shape, np.int8)
        progs.append(compile_layer(acc, lay, golden.layer_params(lay, weights=weights), x))
    return progs


def dram_read_bytes(prog):
    """What the accelerator must read for ``prog``: every M tile's input window once, per M tile
    each N tile's quantisation record, the weights per M tile, or once if they stay on chip, and a
    table activation's table once."""
    g, regs = prog.geometry, prog.registers
    k, n, taps = regs["IN_C"], regs["OUT_C"], regs["KERNEL_H"] * regs["KERNEL_W"]
    nt = -(-n // g.cols)
    weights = sum(taps * len(g.channel_tiles(k, t, depthwise=regs["OP"] == 1)) * g.rows * g.weight_bytes
                  for t in range(nt))
    tiles = list(prog.m_tiles())
    passes = 1 if regs["WEIGHTS_RESIDENT"] else len(tiles)
    table = TABLE_ENTRIES if regs["ACT_TABLE"] else 0
    return sum(t[4] for t in tiles) * g.act_bytes + passes * weights + len(tiles) * nt * g.quant_bytes + table


def smallest_act_kib(cfg, specs):
    """The smallest activation scratchpad (KiB, a power of two) that runs every layer of ``specs``:
    one output pixel's input window must fit a half. Small scratchpads make the compiler cut the
    M tiles to parts of rows, windows the loader reads row by row."""
    kib = 1
    while True:
        try:
            compiled({**cfg, "act_kib": kib}, specs)
            return kib
        except CompileError as e:
            assert "activation scratchpad holds" in str(e), e
            kib *= 2


# (rows, cols, data_bits, acc_kib, layers, seed, max_hw, max_c); 1 KiB of accumulator on
# 4x4 is 64 pixels, so most layers take several M tiles. The first two cases run on the
# smallest scratchpad their layers fit (windows of whole rows and of parts of rows), the
# others on the default 32 KiB.
CONV_CASES = [
    (4, 4, 64, 1, 3, 11, 6, 11),        # 5x4 and 5x2 kernels, strides 1-2, dilation 2; 110 pixels: 2 M tiles
    (8, 8, 64, 1, 3, 13, 6, 11),        # a 3x4 depthwise, stride (2, 1), dilation 2; 40 pixels: 2 M tiles
    (3, 5, 32, 1, 4, 12, 6, 9),
    (8, 8, 64, 2, 8, 14, 10, 20),
    (4, 4, 32, 1, 8, 15, 9, 13),
]
# (rows, cols, data_bits, acc_kib, layers, seed, max_m, max_c); one build per config. The
# 32-bit bus cases have vectors of several words (6 rows: activations of 2 words).
CASES = [
    (4, 4, 64, 1, 6, 1, 12, 21),
    (6, 4, 32, 1, 4, 5, 10, 15),
    (8, 8, 64, 2, 4, 2, 40, 40),
    (3, 5, 64, 1, 4, 3, 16, 17),
    (12, 10, 32, 1, 4, 4, 10, 30),
]
# The goal for a compute-bound layer at DRAM latency 20.
UTILISATION_FLOOR = 0.8
DEFAULT = 2         # the first cases run in the default suite, on the last simulator (Icarus if present)
RUNS = [pytest.param(*case, sim, id=f"{case[0]}x{case[1]}-d{case[2]}-{sim}",
                     marks=[] if i < DEFAULT and sim == simulators()[-1] else [pytest.mark.slow])
        for i, case in enumerate(CASES) for sim in simulators()]


DEFAULT_CONV = 1       # the 8x8 case (2 minutes) runs in the slow suite: the default one's windows are its kind
CONV_RUNS = [pytest.param(*case, id=f"{case[0]}x{case[1]}-d{case[2]}-s{case[5]}",
                          marks=[] if i < DEFAULT_CONV else [pytest.mark.slow])
             for i, case in enumerate(CONV_CASES)]


@pytest.mark.parametrize("rows,cols,data_bits,acc_kib,count,seed,max_hw,max_c", CONV_RUNS)
def test_random_conv_layers_bit_exact_through_axi(rows, cols, data_bits, acc_kib, count, seed, max_hw, max_c,
                                                  tmp_path):
    r = random.Random(seed)
    layers = [random_conv_spec(r, max_hw=max_hw, max_c=max_c) for _ in range(count)]
    cfg = {"rows": rows, "cols": cols, "data_bits": data_bits, "acc_kib": acc_kib}
    if seed in (11, 13):
        cfg["act_kib"] = smallest_act_kib(cfg, layers)
    measured = simulate(cfg, layers, tmp_path)
    for got, prog in zip(measured, compiled(cfg, layers)):
        assert got["dram_read_bytes"] == dram_read_bytes(prog), got
        assert got["dram_write_bytes"] == prog.output_bytes, got


def _spec(op, in_shape, out_channels, **kw):
    return {"op": op, "in_shape": in_shape, "out_channels": out_channels, "activation": "none", "zp_in": -7,
            "zp_out": 3, "in_scale": 0.05, "out_scale": 1.5, **kw}


# 4x4, 1 KiB of accumulator (64 pixels), of scratchpad (128 vectors of 4 channels per half) and of
# weight buffer (256 vectors of 4 lanes)
EDGE_CONFIG = {"rows": 4, "cols": 4, "data_bits": 64, "acc_kib": 1, "act_kib": 1, "weight_kib": 1}
EDGE_WINDOWS = [
    # 16 channels: tiles of 32 pixels whose windows fill the half exactly
    _spec("fc", [70, 16], 6),
    # a padding wider than the 1x1 kernel: the first and last tiles' windows are empty
    _spec("conv2d", [1, 3, 30, 5], 4, kernel=[1, 1], padding=[2, 2, 2, 2]),
    # a 5x5 window of 20 channels (125 vectors) per pixel: tiles of one pixel
    _spec("conv2d", [1, 6, 6, 20], 3, kernel=[5, 5], padding="same"),
    # stride 2 and dilation 2 on parts of rows
    _spec("depthwise", [1, 9, 21, 6], 6, kernel=[3, 3], stride=[2, 2], dilation=[2, 2], padding=[1, 2, 2, 1]),
]


@pytest.mark.slow          # a minute on its own build; the default suite's random conv case walks windows too
def test_window_edge_cases_bit_exact(tmp_path):
    """Windows that fill the scratchpad's half exactly, are wholly padding, hold one pixel, or
    are parts of stride-2 dilated rows; weights that stay in the weight buffer and weights too
    large for it: bit-exact, each window read once, the weights once or per M tile."""
    progs = compiled(EDGE_CONFIG, EDGE_WINDOWS)
    tiles = [list(p.m_tiles()) for p in progs]
    assert max(t[4] for t in tiles[0]) == progs[0].geometry.act_depth
    assert tiles[1][0][4] == 0 and tiles[1][-1][4] == 0
    assert progs[2].registers["TILE_COLS"] == 1
    assert 1 < progs[3].registers["TILE_COLS"] < progs[3].registers["OUT_W"]
    assert [p.registers["WEIGHTS_RESIDENT"] for p in progs] == [1, 1, 0, 1]
    measured = simulate(EDGE_CONFIG, EDGE_WINDOWS, tmp_path)
    for got, prog in zip(measured, progs):
        assert got["dram_read_bytes"] == dram_read_bytes(prog), got


@pytest.mark.parametrize("rows,cols,data_bits,acc_kib,count,seed,max_m,max_c,sim", RUNS)
def test_random_gemm_layers_bit_exact_through_axi(rows, cols, data_bits, acc_kib, count, seed, max_m, max_c,
                                                  sim, tmp_path):
    cfg = {"rows": rows, "cols": cols, "data_bits": data_bits, "acc_kib": acc_kib}
    result = tmp_path / "cycles.json"
    params = {"config": cfg, "layers": random_layers(count, seed, max_m=max_m, max_c=max_c),
              "pause": 0.2, "latency": [1, 50], "result": str(result)}
    acc = accelerator_config(cfg)
    run(Accelerator(acc), name="accelerator", key=("accelerator", acc), sim=sim,
        test_module="mensa.sim.tb_accelerator", test_name=f"acc-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    measured = json.loads(result.read_text())
    assert [r["layer"] for r in measured] == [f"layer{i}" for i in range(count)]


@pytest.mark.slow
def test_loads_overlap_compute_on_a_large_gemm(tmp_path):
    """8x8 array, DRAM latency 20 cycles, no backpressure: a 256 x 64 x 64 GEMM keeps the array busy.

    The accumulator holds 64 pixels, so the GEMM runs as four M tiles. Only the first tile's
    input window (64 pixels x 8 channel tiles, 512 words) is read before the array starts;
    each later window loads into the scratchpad's other half while the array computes, and
    a K tile's 8 weight words hide behind its 64 activation vectors from the scratchpad.
    Every input word crosses the bus once: 2,048 words of input for 16,384 MAC cycles.
    """
    sim = simulators()[-1]
    cfg = {"rows": 8, "cols": 8, "data_bits": 64, "acc_kib": 2}
    spec = {"op": "fc", "in_shape": [256, 64], "out_channels": 64, "activation": "relu", "zp_in": 5, "zp_out": -3,
            "in_scale": 0.05, "out_scale": 2.0}
    result = tmp_path / "cycles.json"
    params = {"config": cfg, "layers": [spec], "pause": 0.0, "latency": [20, 20], "result": str(result)}
    acc = accelerator_config(cfg)
    run(Accelerator(acc), name="accelerator", key=("accelerator", acc), sim=sim,
        test_module="mensa.sim.tb_accelerator", test_name=f"acc-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    (r,) = json.loads(result.read_text())
    assert r["utilisation"] >= UTILISATION_FLOOR, r
    # the input and the weights (which stay in the weight buffer) once, and per M tile 8
    # quantisation records of 72 bytes
    assert r["dram_read_bytes"] == 256 * 64 + 64 * 64 + 4 * 8 * 72, r


@pytest.mark.slow
def test_loads_overlap_compute_on_a_3x3_conv(tmp_path):
    """The pascal-fpga sizes (8x8 WS, 64-bit bus, 16 KiB accumulator), DRAM latency 20 cycles, no
    backpressure: a 3x3 conv, 64 -> 64 channels on 28x28 with padding 1, keeps the array >= 80% busy.

    The M tiles are whole output rows: as many as fit the 32 KiB scratchpad's half (2,048
    vectors: 9 input rows x 28 pixels x 8 channel tiles, so 7 output rows). Each tile's input
    window crosses the bus once, the next one loading while the array computes; zero-point
    vectors for the padded border cost no bus cycles.
    """
    spec = {"op": "conv2d", "in_shape": [1, 28, 28, 64], "out_channels": 64, "kernel": [3, 3], "stride": [1, 1],
            "padding": [1, 1, 1, 1], "activation": "relu", "zp_in": -3, "zp_out": 4, "in_scale": 0.05,
            "out_scale": 4.0}
    # (half a million cycles: Verilator, Icarus would take hours)
    (r,) = simulate({"rows": 8, "cols": 8, "data_bits": 64, "acc_kib": 16}, [spec], tmp_path, pause=0.0,
                    latency=(20, 20), sim=simulators()[0])
    assert r["macs"] == 28 * 28 * 64 * 9 * 64
    assert r["utilisation"] >= UTILISATION_FLOOR, r


def test_header_compiler_and_rtl_follow_the_array_size(tmp_path):
    """One layer, two array sizes in the config: the header's ROWS/COLS, the compiler's layout and the
    RTL (its ROWS/COLS registers, the bytes it writes, bit-exact output) all change with it."""
    spec = {"op": "conv2d", "in_shape": [1, 5, 5, 6], "out_channels": 10, "kernel": [3, 3], "stride": [1, 1],
            "padding": "same", "activation": "none", "zp_in": 9, "zp_out": -2, "in_scale": 0.05, "out_scale": 1.0}
    layer = make_layer(spec, 0)
    rng = np.random.default_rng(0)
    params = golden.layer_params(layer, weights=rng.integers(-128, 128, golden.weight_shape(layer)).astype(np.int8))
    x = rng.integers(-128, 128, layer.in_shape).astype(np.int8)
    written = {}
    for size in (4, 8):
        cfg = {"rows": size, "cols": size, "data_bits": 64, "acc_kib": 1}
        acc = accelerator_config(cfg)
        text = header(register_map(acc), prefix="mensa")
        assert re.search(rf"MENSA_ROWS_VALUE +0x{size:x}u", text) and re.search(rf"MENSA_COLS_VALUE +0x{size:x}u", text)
        prog = compile_layer(acc, layer, params, x)
        assert (prog.geometry.rows, prog.geometry.cols) == (size, size)
        # weights: per N tile, 9 taps x ceil(6 / size) channel tiles of `size` vectors of one word
        assert prog.registers["QUANT_ADDR"] - prog.registers["WEIGHT_ADDR"] >= -(-10 // size) * 9 * size * 8
        (tmp_path / f"{size}").mkdir()
        (r,) = simulate(cfg, [spec], tmp_path / f"{size}")
        assert (r["rows"], r["cols"]) == (size, size)
        assert r["dram_write_bytes"] == prog.output_bytes == -(-10 // size) * 25 * 8
        written[size] = r["dram_write_bytes"]
    assert written == {4: 3 * 25 * 8, 8: 2 * 25 * 8}


@pytest.mark.slow
def test_the_largest_accepted_k_is_exact_on_the_rtl(tmp_path):
    """The largest K the compiler accepts at the testbench's worst case (x - zero point = -255,
    w = -128, bias 19,999): a 2x2x16448 conv, K = 65,792, whose accumulator reaches
    2,147,470,879 (int32 ends at 2,147,483,647); the other channels step down from there, and
    the output scale keeps every output inside the int8 range (no clamp hides a wrong sum). The
    output equals the golden model's, and one more channel is refused naming K and the bound."""
    cfg = {"rows": 8, "cols": 8, "data_bits": 64, "acc_kib": 2, "act_kib": 256}
    spec = {"op": "conv2d", "in_shape": [1, 2, 2, 16448], "out_channels": 8, "kernel": [2, 2],
            "activation": "none", "zp_in": 127, "zp_out": -128, "in_scale": 0.05, "out_scale": 8000.0,
            "extreme": True}
    (r,) = simulate(cfg, [spec], tmp_path, pause=0.1, latency=(1, 20))
    assert r["macs"] == 65792 * 8, r
    wider = dict(spec, in_shape=[1, 2, 2, 16449], name="wider")
    layer = make_layer(wider, 0)
    params = golden.layer_params(layer, weights=np.full(golden.weight_shape(layer), -128, np.int8),
                                 bias=np.full(8, 19999, np.int32))
    with pytest.raises(CompileError, match=r"K = 65,796 .* so K <= 65,792"):
        compile_layer(accelerator_config(cfg), layer, params, np.full(layer.in_shape, -128, np.int8))
