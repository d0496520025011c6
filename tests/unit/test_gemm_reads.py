"""The read arbiter gives each master exactly its own bursts' words, in order."""

import random

import pytest

from mensa.hw.gemm_reads import ReadArbiter
from mensa.sim.sim_streams import stream_get, stream_put
from tests.unit.gemm_parts import run


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("depth", [1, 3, 16])
def test_each_master_gets_its_bursts_under_random_gaps(seed, depth):
    rng = random.Random(seed)
    print(f"seed {seed}")
    dut = ReadArbiter(addr_bits=32, data_bits=32, depth=depth)
    # a burst's words are its address plus the beat: whose burst a word is shows in it
    cmds = {name: [(rng.randrange(1 << 20) << 8, rng.randrange(5)) for _ in range(25)] for name in ("walk", "load")}
    issued, got = [], {"walk": [], "load": []}
    in_flight = []

    def master(name):
        async def bench(ctx):
            for addr, count in cmds[name]:
                await stream_put(ctx, getattr(dut, f"{name}_cmd"), {"addr": addr, "count": count}, rng=rng, gap=0.5)
        return bench

    async def dma_commands(ctx):
        for _ in range(50):
            cmd = await stream_get(ctx, dut.rd_cmd, rng=rng, gap=0.3)
            issued.append((cmd.addr, cmd.count))
            in_flight.append((cmd.addr, cmd.count))
            assert len(in_flight) <= depth + 1

    async def dma_data(ctx):
        for _ in range(50):
            while not in_flight:
                await ctx.tick()
            addr, count = in_flight[0]
            for i in range(count + 1):
                await stream_put(ctx, dut.rd_data, {"data": addr + i, "last": i == count}, rng=rng, gap=0.3)
            in_flight.pop(0)

    def receiver(name):
        async def bench(ctx):
            for _ in range(sum(c + 1 for _, c in cmds[name])):
                word = await stream_get(ctx, getattr(dut, f"{name}_data"), rng=rng, gap=0.3)
                got[name].append((word.data, word.last))
        return bench

    run(dut, [master("walk"), master("load"), dma_commands, dma_data, receiver("walk"), receiver("load")])
    assert sorted(issued) == sorted(cmds["walk"] + cmds["load"])
    for name in ("walk", "load"):
        assert [c for c in issued if c in cmds[name]] == cmds[name]
        assert got[name] == [(a + i, i == c) for a, c in cmds[name] for i in range(c + 1)]


def test_the_walk_goes_first():
    dut = ReadArbiter(addr_bits=32, data_bits=32, depth=4)
    order = []

    async def bench(ctx):
        ctx.set(dut.walk_cmd.valid, 1)
        ctx.set(dut.walk_cmd.payload, {"addr": 0x100, "count": 0})
        ctx.set(dut.load_cmd.valid, 1)
        ctx.set(dut.load_cmd.payload, {"addr": 0x200, "count": 0})
        ctx.set(dut.rd_cmd.ready, 1)
        for _ in range(2):
            _, _, payload, walk_ready, load_ready = await ctx.tick().sample(
                dut.rd_cmd.payload, dut.walk_cmd.ready, dut.load_cmd.ready)
            order.append((payload.addr, walk_ready, load_ready))
            ctx.set(dut.walk_cmd.valid, 0)

    run(dut, [bench])
    assert order == [(0x100, 1, 0), (0x200, 1, 1)]


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        ReadArbiter(addr_bits=32, data_bits=32, depth=0)
    with pytest.raises(ValueError, match="data_bits must be a power of two of at least 8, not 24"):
        ReadArbiter(addr_bits=32, data_bits=24, depth=4)
