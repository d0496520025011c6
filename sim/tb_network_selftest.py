"""Testbench of the network self-test top (:class:`mensa.gen.network_selftest.NetworkSelfTest`).

The top needs nothing but a clock: the testbench resets it, listens to its UART with cocotbext-uart's
:class:`~cocotbext.uart.UartSink` (the baud rate the top's divisor gives at the testbench's clock) and
waits for ``done`` (an edge trigger: no Python runs per cycle). It then checks the LEDs and the report
line against ``MENSA_TB`` (JSON): ``expect`` ("pass" or "fail"), ``line`` (the report with the cycle
count as ``{cycles}``), ``divisor`` and ``max_cycles``; the number in the line must be the count the
top measured (its ``cycles`` port). The line and the figures go to the ``result`` parameter's file.
"""

import cocotb
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.uart import UartSink

from mensa.sim.testbench import TB


@cocotb.test()
async def network_selftest_report(dut):
    """From reset, the top replays the network, reports over the UART and lights the verdict's LED."""
    tb = TB(dut)
    p = tb.params
    dut.rerun.value = 0
    uart = UartSink(dut.tx, baud=1e9 / (tb.period_ns * p["divisor"]), bits=8, stop_bits=1)
    await tb.reset()
    done = RisingEdge(dut.done)
    result = await First(done, Timer(p["max_cycles"] * tb.period_ns, unit="ns"))
    assert result is done, f"no done within {p['max_cycles']} cycles"
    await ClockCycles(dut.clk, 4 * p["divisor"])        # the stop bit of the last byte
    line = bytes(uart.read_nowait()).decode("ascii", "replace")
    cycles = int(dut.cycles.value)
    shown = {"pass": int(dut.passed.value), "fail": int(dut.failed.value)}
    tb.log.info(f"report: {line!r}; LEDs {shown}; {cycles} cycles")
    tb.write_result({"line": line, "cycles": cycles, "leds": shown})
    assert shown == {"pass": p["expect"] == "pass", "fail": p["expect"] == "fail"}, shown
    assert line == p["line"].format(cycles=cycles), f"report {line!r}, expected {p['line'].format(cycles=cycles)!r}"
