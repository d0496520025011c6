"""The accumulator sums each pixel's partial sums over its K tiles and passes on the final sums."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from mensa.hw.gemm_accumulator import Accumulator
from mensa.hw.gemm_layer import k_flags_layout
from mensa.hw.queue import Queue
from mensa.sim.sim_streams import stream_get, stream_put
from tests.unit.gemm_parts import geometry, run


def wrap32(x):
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


class _WithFlagQueue(wiring.Component):
    """The accumulator behind the flags queue, as the sequencer has it."""

    def __init__(self, g):
        self.acc = Accumulator(geometry=g)
        members = dict(self.acc.signature.members)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = self.acc
        m.submodules.flags = flags = Queue(k_flags_layout, depth=16)
        wiring.connect(m, wiring.flipped(self.k_flags), flags.w)
        wiring.connect(m, flags.r, acc.k_flags)
        wiring.connect(m, wiring.flipped(self.psums), acc.psums)
        wiring.connect(m, acc.sums, wiring.flipped(self.sums))
        return m


@pytest.mark.parametrize("seed", range(6))
def test_sums_over_k_tiles_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    g = geometry()
    C = g.cols
    k_tiles, want = [], []               # (first, final, psum vectors) per K tile
    for _ in range(6):                   # output tiles (an M tile's N tile)
        mt = rng.choice([1, 2, rng.randint(1, g.acc_depth)])
        total = [[0] * C for _ in range(mt)]
        nk = rng.randint(1, 3)
        for k in range(nk):
            vectors = [[rng.randrange(-(1 << 31), 1 << 31) for _ in range(C)] for _ in range(mt)]
            k_tiles.append((k == 0, k == nk - 1, vectors))
            total = [[wrap32(a + b) for a, b in zip(t, v)] for t, v in zip(total, vectors)]
        want += [(row, i == mt - 1) for i, row in enumerate(total)]
    dut = _WithFlagQueue(g)
    flags_in = [0]
    got = []

    async def walk(ctx):
        for first, final, _ in k_tiles:
            await stream_put(ctx, dut.k_flags, {"first": first, "final": final}, rng=rng, gap=0.3)
            flags_in[0] += 1

    async def array(ctx):
        for t, (_, _, vectors) in enumerate(k_tiles):
            # the walk issues a K tile's flags with its weights, well ahead of its psums
            while flags_in[0] <= t:
                await ctx.tick()
            await ctx.tick().repeat(2)
            for i, v in enumerate(vectors):
                await stream_put(ctx, dut.psums, {"data": v, "last": i == len(vectors) - 1}, rng=rng, gap=0.3)

    async def requant(ctx):
        for _ in want:
            beat = await stream_get(ctx, dut.sums, rng=rng, gap=0.3)
            got.append(([beat.data[j] for j in range(C)], beat.last))

    run(dut, [walk, array, requant])
    assert got == want


def test_parameters_are_checked():
    with pytest.raises(TypeError, match="geometry must be a GemmGeometry, not 'x'"):
        Accumulator(geometry="x")
