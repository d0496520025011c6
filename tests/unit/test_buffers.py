"""Fast amaranth.sim checks of the ping-pong Scratchpad: tiles pass intact, loads overlap reads."""

import random

import pytest
from amaranth.sim import Simulator

from mensa.hw.buffers import Scratchpad


def _simulate(dut, *testbenches, deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline * 1e-8)


@pytest.mark.parametrize("seed", range(6))
def test_tiles_pass_intact_while_the_next_one_loads(seed):
    rnd = random.Random(seed)
    width, depth, banks = rnd.choice([8, 32, 64]), rnd.choice([1, 4, 16]), rnd.randint(1, 4)
    ntiles = 6
    dut = Scratchpad(width=width, depth=depth, banks=banks, tag_shape=8)
    tiles = [[[rnd.getrandbits(width) for _ in range(depth)] for _ in range(banks)] for _ in range(ntiles)]
    writes, reads, got = set(), set(), []

    async def loader(ctx):
        cycle = 0
        for t, tile in enumerate(tiles):
            while not ctx.get(dut.commit.ready):
                await ctx.tick()
                cycle += 1
            pending = [rnd.sample(range(depth), depth) for _ in range(banks)]
            while any(pending):
                for b in range(banks):
                    go = bool(pending[b]) and rnd.random() < 0.7
                    if go:
                        a = pending[b].pop()
                        ctx.set(dut.write[b].addr, a)
                        ctx.set(dut.write[b].data, tile[b][a])
                        writes.add(cycle)
                    ctx.set(dut.write[b].en, go)
                await ctx.tick()
                cycle += 1
            for b in range(banks):
                ctx.set(dut.write[b].en, 0)
            ctx.set(dut.commit.payload, t)
            ctx.set(dut.commit.valid, 1)
            await ctx.tick()
            cycle += 1
            ctx.set(dut.commit.valid, 0)

    async def compute(ctx):
        cycle = 0
        for t in range(ntiles):
            while not ctx.get(dut.tile.valid):
                await ctx.tick()
                cycle += 1
            tag = ctx.get(dut.tile.payload)
            pending = [rnd.sample(range(depth), depth) for _ in range(banks)]
            words = [[None] * depth for _ in range(banks)]
            issued = [None] * banks
            while any(pending) or any(i is not None for i in issued):
                for b in range(banks):
                    go = bool(pending[b]) and rnd.random() < 0.7
                    issued[b] = pending[b].pop() if go else None
                    if go:
                        ctx.set(dut.read[b].addr, issued[b])
                        reads.add(cycle)
                    ctx.set(dut.read[b].en, go)
                await ctx.tick()
                cycle += 1
                for b in range(banks):
                    if issued[b] is not None:
                        words[b][issued[b]] = ctx.get(dut.read[b].data)
                if not any(pending):
                    for b in range(banks):
                        ctx.set(dut.read[b].en, 0)
                    if not any(i is not None for i in issued):
                        break
                    issued = [None] * banks
            got.append((tag, words))
            for _ in range(rnd.randint(0, 3)):
                await ctx.tick()
                cycle += 1
            ctx.set(dut.tile.ready, 1)
            await ctx.tick()
            cycle += 1
            ctx.set(dut.tile.ready, 0)

    _simulate(dut, loader, compute)
    assert got == list(enumerate(tiles))
    # ping-pong: the loader wrote the next tile in cycles where the compute side read this one
    assert writes & reads


def test_loader_cannot_overwrite_a_half_the_compute_side_holds():
    dut = Scratchpad(width=8, depth=2, banks=1)
    seen = {}

    async def tb(ctx):
        assert ctx.get(dut.commit.ready) and not ctx.get(dut.tile.valid)
        for value in (11, 22):                          # fill and commit both halves
            ctx.set(dut.write[0].addr, 0)
            ctx.set(dut.write[0].data, value)
            ctx.set(dut.write[0].en, 1)
            await ctx.tick()
            ctx.set(dut.write[0].en, 0)
            ctx.set(dut.commit.valid, 1)
            await ctx.tick()
            ctx.set(dut.commit.valid, 0)
        seen["ready_when_both_full"] = ctx.get(dut.commit.ready)
        ctx.set(dut.write[0].data, 99)                  # dropped: half 0 is the compute side's
        ctx.set(dut.write[0].en, 1)
        await ctx.tick()
        ctx.set(dut.write[0].en, 0)
        for _ in range(2):
            ctx.set(dut.read[0].addr, 0)
            ctx.set(dut.read[0].en, 1)
            await ctx.tick()
            seen.setdefault("words", []).append(ctx.get(dut.read[0].data))
            ctx.set(dut.tile.ready, 1)
            await ctx.tick()
            ctx.set(dut.tile.ready, 0)
        seen["valid_after_both_released"] = ctx.get(dut.tile.valid)
        seen["ready_after_both_released"] = ctx.get(dut.commit.ready)

    _simulate(dut, tb)
    assert seen == {"ready_when_both_full": 0, "words": [11, 22],
                    "valid_after_both_released": 0, "ready_after_both_released": 1}


def test_read_in_the_cycle_of_a_write_returns_the_old_word():
    dut = Scratchpad(width=16, depth=4, banks=2)
    seen = []

    async def tb(ctx):
        for value in (0x1234, 0xBEEF):
            ctx.set(dut.write[1].addr, 3)
            ctx.set(dut.write[1].data, value)
            ctx.set(dut.write[1].en, 1)
            ctx.set(dut.read[1].addr, 3)
            ctx.set(dut.read[1].en, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.read[1].data))
        ctx.set(dut.write[1].en, 0)
        await ctx.tick()
        seen.append(ctx.get(dut.read[1].data))
        ctx.set(dut.read[1].en, 0)
        ctx.set(dut.read[1].addr, 0)
        await ctx.tick()
        seen.append(ctx.get(dut.read[1].data))          # held while en is low

    _simulate(dut, tb)
    assert seen == [0, 0x1234, 0xBEEF, 0xBEEF]


def test_bad_parameters_name_the_parameter():
    with pytest.raises(ValueError, match="depth must be a power of two"):
        Scratchpad(width=8, depth=3)
    with pytest.raises(ValueError, match="banks"):
        Scratchpad(width=8, depth=4, banks=0)
    with pytest.raises(TypeError, match="width"):
        Scratchpad(width=8.0, depth=4)
