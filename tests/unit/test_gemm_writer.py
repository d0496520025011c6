"""The writer issues one write per M tile and N tile, splits vectors into bus words, and
ends the layer on the last acknowledgement."""

import random

import pytest

from mensa.hw.gemm_writer import OutputWriter
from mensa.sim.sim_streams import stream_get, stream_put
from tests.unit.gemm_parts import ADDR_BITS, descriptor, geometry, random_tile, random_walk, run

OUTPUT_ADDR = 0x8000


def expected_writes(g, walk, tile, n):
    m = walk.out_h * walk.out_w
    cmds, mbase = [], OUTPUT_ADDR
    for _, _, rows, cols in walk.m_tiles(*tile):
        for t in range(-(-n // g.cols)):
            cmds.append((mbase + t * m * g.out_bytes, rows * cols * g.out_words - 1))
        mbase += rows * cols * g.out_bytes
    return cmds


def words_of(g, vector):
    """The bus words of one output vector (int8 lanes), the last one partial: (data, strb)."""
    wb, raw = g.word_bytes, bytes(v & 0xFF for v in vector)
    out = []
    for i in range(g.out_words):
        lanes = raw[i * wb:(i + 1) * wb]
        out.append((int.from_bytes(lanes, "little"), (1 << len(lanes)) - 1))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_writes_follow_the_tiles_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    g = geometry()
    walk = random_walk(rng, k=4)
    tile = random_tile(rng, walk)
    n = rng.randint(1, 12)
    want_cmds = expected_writes(g, walk, tile, n)
    vectors = [[rng.randrange(-128, 128) for _ in range(g.cols)]
               for _ in range(walk.out_h * walk.out_w * -(-n // g.cols))]
    want_words = [w for v in vectors for w in words_of(g, v)]
    dut = OutputWriter(geometry=g, addr_bits=ADDR_BITS)
    cmds, words, acks, done_at = [], [], [0], []

    async def control(ctx):
        ctx.set(dut.desc, descriptor(walk, tile, n=n, output_addr=OUTPUT_ADDR))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.desc, descriptor(walk, tile, n=n, output_addr=0))      # sampled at start only
        ctx.set(dut.layer, descriptor(walk, tile, n=n, output_addr=OUTPUT_ADDR))
        ctx.set(dut.running, 1)
        async for _clk, _rst, done, ack in ctx.tick().sample(dut.done, dut.wr_done.valid):
            acks[0] += ack
            if done:
                done_at.append(acks[0])
                ctx.set(dut.running, 0)
                break
        for _ in range(20):
            await ctx.tick()
            assert not ctx.get(dut.done)

    async def dma_cmds(ctx):
        for _ in want_cmds:
            cmd = await stream_get(ctx, dut.wr_cmd, rng=rng, gap=0.3)
            cmds.append((cmd.addr, cmd.count))

    async def dma_data(ctx):
        for _ in want_words:
            beat = await stream_get(ctx, dut.wr_data, rng=rng, gap=0.3)
            words.append((beat.data, beat.strb))

    async def dma_done(ctx):
        for i in range(len(want_cmds)):
            while len(cmds) <= i:
                await ctx.tick()
            await stream_put(ctx, dut.wr_done, 0, rng=rng, gap=0.5)

    async def requant(ctx):
        for v in vectors:
            await stream_put(ctx, dut.outs, {"data": v, "last": 0}, rng=rng, gap=0.3)

    run(dut, [control, dma_cmds, dma_data, dma_done, requant])
    assert cmds == want_cmds
    assert words == want_words
    assert done_at == [len(want_cmds)]


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="addr_bits must be an integer in 8..64, not True"):
        OutputWriter(geometry=geometry(), addr_bits=True)
