"""The on-board self-test top in RTL simulation (amaranth.sim, and its Verilog under cocotb): the pass
LED lights on the correct image, the fail LED when a stored weight is corrupted, and a rerun
repeats the verdict.

The stored layer's golden output comes from :func:`mensa.core.golden.run_layer`; the
accelerator, its DMA, the AXI4 RAM and the checker are the RTL that goes into the bitstream.
"""

import json

import numpy as np
import pytest

from mensa.core.config import AcceleratorConfig, ArrayConfig, BufferConfig, CoreKind, MemoryConfig, NearMemConfig, load
from mensa.gen.selftest import MAX_IMAGE_BYTES, SelfTest, SelfTestError, selftest_case
from mensa.sim.runner import run, simulators
from mensa.sim.tb_selftest import run_selftest

PASCAL_FPGA = load("pascal-fpga")["pascal"]


def small(rows, cols, data_bits):
    return AcceleratorConfig(name="t", array=ArrayConfig(rows=rows, cols=cols),
                             buffers=BufferConfig(weight_kib=1, act_kib=1, acc_kib=1),
                             memory=MemoryConfig(data_bits=data_bits))


# (config, seed): narrow and wide buses, square and non-square arrays, FC and pointwise layers.
CASES = [
    pytest.param(small(2, 2, 32), 1, id="2x2-32b-fc"),
    pytest.param(small(4, 3, 128), 6, id="4x3-128b-pointwise"),
    pytest.param(PASCAL_FPGA, 0, id="pascal-fpga"),
]


@pytest.mark.parametrize("config, seed", CASES)
def test_pass_led_on_the_correct_image_and_again_on_rerun(config, seed):
    top = SelfTest(config, seed=seed, watchdog_bits=16)
    first, again = run_selftest(top, runs=2)
    for run in (first, again):
        assert run["passed"] and not run["failed"] and run["busy"], run
    # The rerun clears the output region first, so it passes only by running the layer again.
    assert abs(again["cycles"] - first["cycles"]) <= 2, (first, again)


@pytest.mark.parametrize("config, seed", [CASES[0], pytest.param(*CASES[2].values, marks=pytest.mark.slow, id="pascal-fpga")])
def test_fail_led_when_a_stored_weight_is_corrupted(config, seed):
    top = SelfTest(config, seed=seed, corrupt_weight=True, watchdog_bits=16)
    (run,) = run_selftest(top)
    assert run["failed"] and not run["passed"], run


@pytest.mark.parametrize("corrupt", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["correct", "corrupted"])
def test_the_verilog_lights_the_same_led(corrupt):
    """The Verilog the FPGA flow reads (memories initialised in it) gives the verdict amaranth.sim gives."""
    config = small(2, 2, 32)
    top = SelfTest(config, seed=1, corrupt_weight=corrupt, watchdog_bits=16)
    sim = simulators()[-1]
    run(top, name="selftest", key=("selftest", config, 1, corrupt), sim=sim, test_module="mensa.sim.tb_selftest",
        test_name=f"selftest-{corrupt}", extra_env={"MENSA_TB": json.dumps({"expect": "fail" if corrupt else "pass",
                                                                              "max_cycles": 20_000})})


def test_fail_led_when_the_accelerator_never_answers():
    """The watchdog: a run cut short of its interrupt shows fail, not busy forever."""
    top = SelfTest(small(4, 4, 64), seed=3, watchdog_bits=4)      # 16 cycles: shorter than any layer
    (run,) = run_selftest(top)
    assert run["failed"] and not run["passed"], run


def test_the_corrupted_image_differs_in_one_weight_byte_that_the_golden_model_sees():
    case = selftest_case(PASCAL_FPGA, seed=0)
    prog = case.program
    weight_lo = prog.registers.get("WEIGHT_ADDR", prog.registers.get("WEIGHT_ADDR_LO")) - prog.base
    quant_lo = prog.registers.get("QUANT_ADDR", prog.registers.get("QUANT_ADDR_LO")) - prog.base
    diff = np.flatnonzero(case.corrupt_image != prog.image)
    assert diff.tolist() == [case.corrupt_at] and weight_lo <= case.corrupt_at < quant_lo
    assert np.array_equal(prog.output(case.region), case.expected)
    # The region and mask describe the golden output; the accelerator may leave anything in masked-out bytes.
    assert sum(case.mask) == case.expected.size


def test_layers_differ_by_seed_and_are_reproducible():
    a, b, c = (selftest_case(PASCAL_FPGA, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.program.image, b.program.image)
    assert a.program.image.size != c.program.image.size or not np.array_equal(a.program.image, c.program.image)


def test_a_config_the_self_test_cannot_host_is_one_line_error():
    nearmem = AcceleratorConfig(name="nm", kind=CoreKind.NEARMEM, nearmem=NearMemConfig())
    with pytest.raises(SelfTestError, match="allowed: systolic"):
        selftest_case(nearmem)
    huge = AcceleratorConfig(name="big", array=ArrayConfig(rows=256, cols=256), memory=MemoryConfig(data_bits=1024))
    with pytest.raises(SelfTestError, match=f"at most {MAX_IMAGE_BYTES}") as e:
        selftest_case(huge)
    assert "\n" not in str(e.value)
