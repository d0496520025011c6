"""RunControl: START and DONE bracket a run; the counters count exactly its cycles."""

import random

import pytest
from amaranth.sim import Simulator

from mensa.hw.regs import RunControl


@pytest.mark.parametrize("seed", range(3))
def test_counters_count_the_cycles_between_start_and_done(seed):
    rnd = random.Random(seed)
    dut = RunControl()
    seen = []

    async def tb(ctx):
        for run in range(3):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            length = rnd.randint(1, 40)
            busy = stall = 0
            for cycle in range(length):
                b, s = rnd.random() < 0.6, rnd.random() < 0.3
                ctx.set(dut.busy, b)
                ctx.set(dut.mem_stall, s)
                ctx.set(dut.start, rnd.random() < 0.2)       # ignored while running
                last = cycle == length - 1
                ctx.set(dut.done, last)
                assert ctx.get(dut.running) and ctx.get(dut.status) == 0b01
                assert ctx.get(dut.irq_event) == last
                busy, stall = busy + b, stall + s
                await ctx.tick()
            ctx.set(dut.done, 0)
            ctx.set(dut.busy, 1)        # outside a run nothing counts
            ctx.set(dut.start, 0)
            for _ in range(rnd.randint(1, 5)):
                await ctx.tick()
            seen.append(((ctx.get(dut.cycles_total), ctx.get(dut.cycles_busy), ctx.get(dut.cycles_stall)),
                         (length, busy, stall), ctx.get(dut.status)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for got, expect, status in seen:
        assert got == expect
        assert status == 0b10                   # DONE, not BUSY


def test_irq_is_a_pending_enabled_interrupt():
    dut = RunControl()
    seen = []

    async def tb(ctx):
        for enable in (0, 1):
            for pending in (0, 1):
                ctx.set(dut.irq_enable, enable)
                ctx.set(dut.irq_pending, pending)
                seen.append(ctx.get(dut.irq))

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [0, 0, 0, 1]
