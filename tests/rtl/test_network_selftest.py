"""The network self-test top in RTL simulation: the system runs a whole network from block RAM, the
hardware replayer issuing its command list, and the top reports over its UART.

The testbench (:mod:`mensa.sim.tb_network_selftest`) listens with cocotbext-uart's receiver and checks
the report line byte for byte, with the cycle count the top measured, and the LEDs: PASS on the
image the golden outputs were computed from, FAIL with one weight byte changed.
"""

import json
import os
import random

import numpy as np
import pytest

from mensa.core.builder import NetworkBuilder
from mensa.core.config import load
from mensa.gen.network_selftest import (MAX_RAM_BYTES, NetworkSelfTest, NetworkSelfTestError, network_selftest_case,
                                        output_region, report_line)
from mensa.sim.runner import build_root, run, simulators
from tests.rtl.test_network import HYBRID, tiny_captioner

DIVISOR = 4         # cycles per UART bit: a short report in simulation


def _selftest(case, *, corrupt, sim, clock_mhz=100.0):
    top = NetworkSelfTest(case, clock_mhz=clock_mhz, divisor=DIVISOR, corrupt_weight=corrupt)
    result = build_root() / f"network-selftest-{os.getpid()}-{random.randrange(1 << 30)}.json"
    params = {"expect": "fail" if corrupt else "pass", "divisor": DIVISOR, "result": str(result),
              "line": report_line(case, passed=not corrupt, cycles="{cycles}", clock_mhz=clock_mhz),
              "max_cycles": int(20 * case.predicted_cycles + 50_000)}
    key = ("network-selftest", case.network.name, case.system.name, case.image.tobytes(), corrupt)
    run(top, name="network_selftest", key=key, sim=sim, test_module="mensa.sim.tb_network_selftest",
        test_name=f"{case.network.name}-{'corrupt' if corrupt else 'correct'}", extra_env={"MENSA_TB": json.dumps(params)})
    out = json.loads(result.read_text())
    result.unlink()
    print(out["line"].strip())
    return out


@pytest.fixture
def hybrid_case(tmp_path):
    seed = int(os.environ.get("MENSA_SEED", random.randrange(1 << 16)))
    print(f"seed {seed}")
    path = tmp_path / "hybrid.toml"
    path.write_text(HYBRID)
    return network_selftest_case(tiny_captioner(), load(path), seed=seed)


@pytest.mark.parametrize("corrupt", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["correct", "corrupted"])
def test_a_network_on_a_near_memory_and_a_systolic_accelerator_reports_its_verdict(hybrid_case, corrupt):
    case = hybrid_case
    assert {c.accelerator for c in case.program.commands} == {"pascal4", "pavlov2"}
    out = _selftest(case, corrupt=corrupt, sim=simulators()[-1])
    # a measured run: near the cost model's cycles of the layers one after another (the two accelerators
    # overlap; the replayer's register writes add a few hundred cycles a layer)
    assert 0.5 * case.predicted_cycles < out["cycles"] < 2 * case.predicted_cycles, out


def test_the_output_region_s_mask_keeps_the_bytes_the_layout_reads():
    system = load("pascal-fpga")
    case = network_selftest_case("ds_cnn", system, seed=1)
    (name, addr, region, mask), = case.outputs
    cmd = next(c for c in case.program.commands if c.layer == name)
    keep = np.frombuffer(mask, np.uint8)
    assert 0 < keep.sum() == cmd.program.output(region).size < keep.size       # 12 classes in a wider tile
    region2, mask2 = output_region(cmd.program, cmd.program.output(region))
    assert (region2, mask2) == (region, mask)


def test_the_corrupted_image_differs_in_one_weight_byte():
    case = network_selftest_case("ds_cnn", load("mensa-g-fpga"), seed=2)
    kind, *where = case.corrupt_at
    if kind == "dram":
        assert np.flatnonzero(case.corrupt_image != case.program.image).tolist() == where
    else:
        unit, v, byte = where
        assert np.flatnonzero(case.corrupt_vaults[unit][v] != case.program.vaults[unit][v]).tolist() == [byte]


def test_a_network_beyond_the_block_ram_is_refused_in_one_line():
    b = NetworkBuilder("wide_fc", (1, 1024))
    b.fc(b.input, 512, name="fc")           # 512 KiB of weights
    with pytest.raises(NetworkSelfTestError, match=f"allowed: at most {MAX_RAM_BYTES:,}"):
        network_selftest_case(b.build(), load("pascal-fpga"), seed=0)


@pytest.mark.slow
def test_ds_cnn_on_mensa_g_fpga_reports_pass_over_the_uart():
    case = network_selftest_case("ds_cnn", load("mensa-g-fpga"), seed=0)
    out = _selftest(case, corrupt=False, sim="verilator", clock_mhz=62.5)
    assert 0.5 * case.predicted_cycles < out["cycles"] < 2 * case.predicted_cycles, out


@pytest.mark.slow
def test_on_the_board_the_report_leaves_on_the_usb_serial_pin_and_the_pll_clocks_it(hybrid_case):
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from mensa.hw.pll import ecp5_pll
    from mensa.hw.uart import uart_divisor
    top = NetworkSelfTest(hybrid_case, clock_mhz=40, divisor=uart_divisor(40e6, 115_200), pll=ecp5_pll(25, 40))
    plan = ULX3S_85F_Platform().prepare(top, name="top")
    lpf = plan.files["top.lpf"]
    assert 'LOCATE COMP "uart_0__tx__io" SITE "L4";' in lpf          # the FTDI's receive line
    assert 'FREQUENCY NET "pll.clk_out" 40000000.0 HZ;' in lpf
    il = plan.files["top.il"]
    assert il.count("cell \\EHXPLLL") == 1 and "parameter \\CLKOP_DIV 15\n" in il
