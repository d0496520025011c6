"""The M tile walker steps through LayerWalk.m_tiles, with each tile's LayerWalk.window once valid."""

import random

import pytest

from mensa.hw.gemm_layer import MTileWalker
from tests.unit.gemm_parts import ADDR_BITS, descriptor, random_tile, random_walk, run


@pytest.mark.parametrize("seed", range(8))
def test_tiles_and_windows_follow_the_layer_walk_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    walk = random_walk(rng, k=3, max_hw=9)
    tile = random_tile(rng, walk)
    expected = [(t, walk.window(*t)) for t in walk.m_tiles(*tile)]
    dut = MTileWalker(addr_bits=ADDR_BITS)
    got = []

    async def bench(ctx):
        ctx.set(dut.layer, descriptor(walk, tile))
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        for _ in range(2):                  # and again after a restart
            for i in range(len(expected)):
                while rng.random() < 0.3:
                    await ctx.tick()
                while not ctx.get(dut.valid):
                    await ctx.tick()
                assert ctx.get(dut.pixels) == ctx.get(dut.rows) * ctx.get(dut.cols)
                got.append(((ctx.get(dut.ty), ctx.get(dut.tx), ctx.get(dut.rows), ctx.get(dut.cols)),
                            (ctx.get(dut.iy_lo), ctx.get(dut.iy_hi), ctx.get(dut.ix_lo), ctx.get(dut.ix_hi))))
                assert ctx.get(dut.last) == (i == len(expected) - 1)
                ctx.set(dut.advance, 1)
                await ctx.tick()
                ctx.set(dut.advance, 0)
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)

    run(dut, [bench])
    assert got == expected * 2


@pytest.mark.parametrize("seed", range(4))
def test_the_next_layer_may_arrive_a_cycle_after_the_restart(seed):
    # as in the sequencer: the restart comes with `start`, the walker's `layer` (latched at
    # start) holds the new layer from the next cycle on; every count is the new layer's
    rng = random.Random(seed)
    walks = [random_walk(rng, k=3, max_hw=9) for _ in range(3)]
    tiles = [random_tile(rng, w) for w in walks]
    expected = [t for w, tile in zip(walks, tiles) for t in w.m_tiles(*tile)]
    dut = MTileWalker(addr_bits=ADDR_BITS, window=False)
    got = []

    async def bench(ctx):
        ctx.set(dut.layer, descriptor(walks[-1], tiles[-1]))      # the previous layer's
        for walk, tile in zip(walks, tiles):
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            ctx.set(dut.layer, descriptor(walk, tile))
            while True:
                while not ctx.get(dut.valid):
                    await ctx.tick()
                rows, cols = ctx.get(dut.rows), ctx.get(dut.cols)
                assert ctx.get(dut.pixels) == rows * cols
                got.append((ctx.get(dut.ty), ctx.get(dut.tx), rows, cols))
                last = ctx.get(dut.last)
                ctx.set(dut.advance, 1)
                await ctx.tick()
                ctx.set(dut.advance, 0)
                if last:
                    break

    run(dut, [bench])
    assert got == expected


def test_a_writer_walker_has_no_window():
    dut = MTileWalker(addr_bits=ADDR_BITS, window=False)
    assert "iy_lo" not in dut.signature.members and "last" in dut.signature.members


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="addr_bits must be an integer in 8..64, not 4"):
        MTileWalker(addr_bits=4)
    with pytest.raises(TypeError, match="window must be a bool, not 1"):
        MTileWalker(addr_bits=ADDR_BITS, window=1)
