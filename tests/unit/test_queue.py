"""The stream queue passes every beat once, in order, under random valid/ready gaps."""

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from mensa.hw.queue import Queue
from mensa.sim.sim_streams import stream_get, stream_put

LAYOUT = data.StructLayout({"addr": 12, "count": 7, "last": 1})


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("depth", [1, 2, 5, 16])
def test_queue_keeps_order_and_loses_nothing_under_random_gaps(seed, depth):
    rng = random.Random(seed)
    print(f"seed {seed}")
    beats = [{"addr": rng.randrange(4096), "count": rng.randrange(128), "last": rng.randrange(2)}
             for _ in range(60)]
    dut = Queue(LAYOUT, depth=depth)
    got, most = [], []

    async def producer(ctx):
        for beat in beats:
            await stream_put(ctx, dut.w, beat, rng=rng, gap=0.4)

    async def consumer(ctx):
        for _ in beats:
            view = await stream_get(ctx, dut.r, rng=rng, gap=0.4)
            got.append({"addr": view.addr, "count": view.count, "last": view.last})

    async def level(ctx):
        async for _clk, _rst, level in ctx.tick().sample(dut.level):
            most.append(level)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(level)
    sim.run()
    assert got == beats
    assert max(most) <= depth


def test_queue_refuses_a_depth_below_one():
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        Queue(8, depth=0)
