"""Testbenches of the self-test top (:class:`mensa.gen.selftest.SelfTest`).

The top needs nothing but a clock, so a testbench only watches its LEDs: it runs the
top from power-up until ``done``, optionally presses *rerun* and waits for the next
``done``, and reports what the LEDs showed. The tests compare that with what the stored
image must give: *pass* for the image the golden model's output was computed from, *fail*
for the one with a corrupted weight.

:func:`run_selftest` runs the Amaranth design in amaranth.sim; the cocotb test
``selftest_leds`` runs its Verilog (the memories initialised as the Verilog writes them,
as the FPGA flow reads them), with ``MENSA_TB`` (JSON) giving ``expect`` ("pass" or
"fail") and ``max_cycles``.
"""

import cocotb
from amaranth.sim import Simulator
from cocotb.triggers import RisingEdge

from mensa.sim.testbench import TB

__all__ = ["run_selftest"]


def run_selftest(top, *, runs=1, max_cycles=20_000):
    """Simulate ``top`` for ``runs`` runs (the first from power-up, then one per rerun press).

    Returns a list with one dict per run: ``passed``, ``failed`` (the LEDs at ``done``),
    ``cycles`` (from power-up or the press to ``done``) and ``busy`` (whether ``busy``
    was high and ``done`` low while it ran). Raises AssertionError if a run does not reach
    ``done`` within ``max_cycles``, or the LEDs change while ``done`` is held.
    """
    results = []
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        for run in range(runs):
            if run:
                ctx.set(top.rerun, 1)
                await ctx.tick()
                ctx.set(top.rerun, 0)
            busy_seen, cycles = False, 0
            while not ctx.get(top.done):
                busy_seen |= bool(ctx.get(top.busy))
                assert not (ctx.get(top.passed) or ctx.get(top.failed)), "pass or fail lit before done"
                await ctx.tick()
                cycles += 1
                assert cycles < max_cycles, f"run {run}: no done within {max_cycles} cycles"
            shown = (ctx.get(top.passed), ctx.get(top.failed))
            for _ in range(8):              # the result holds
                await ctx.tick()
                assert (ctx.get(top.passed), ctx.get(top.failed)) == shown and ctx.get(top.done), \
                    "the LEDs changed after done"
            results.append({"passed": bool(shown[0]), "failed": bool(shown[1]), "cycles": cycles,
                            "busy": busy_seen})

    sim.add_testbench(testbench)
    sim.run()
    return results


@cocotb.test()
async def selftest_leds(dut):
    """From reset, the top reaches done with the expected LED lit, and holds it."""
    tb = TB(dut)
    p = tb.params
    dut.rerun.value = 0
    await tb.reset()
    for cycle in range(p["max_cycles"]):
        await RisingEdge(dut.clk)
        if int(dut.done.value):
            break
        assert not (int(dut.passed.value) or int(dut.failed.value)), "pass or fail lit before done"
    else:
        raise AssertionError(f"no done within {p['max_cycles']} cycles")
    await tb.cycles(4)
    shown = {"pass": int(dut.passed.value), "fail": int(dut.failed.value)}
    assert shown == {"pass": p["expect"] == "pass", "fail": p["expect"] == "fail"}, f"{shown} after {cycle} cycles"
    tb.log.info(f"{p['expect']} shown after {cycle} cycles")
