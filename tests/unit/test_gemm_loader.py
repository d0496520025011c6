"""The loader reads each M tile's window, burst by burst, into the scratchpad, and commits it; a layer
with a table activation has its table read first, into the table's write port."""

import random

import pytest

from mensa.hw.gemm_loader import WindowLoader
from mensa.sim.sim_streams import stream_get, stream_put
from tests.unit.gemm_parts import ADDR_BITS, descriptor, geometry, random_tile, random_walk, run

INPUT_ADDR = 0x1000
TABLE_ADDR = 0x7000


def dram_word(addr):
    """The word at byte address ``addr`` of the test's DRAM."""
    return (addr * 2654435761 >> 3) & 0xFFFF_FFFF


def expected_load(g, walk, tile):
    """Per M tile: the bursts ``(addr, count, channel)`` (``channel``: its channel tile's first) and
    the vectors written to the scratchpad, in order."""
    W, ab, wb = 8 * g.word_bytes, g.act_bytes, g.word_bytes
    plane = walk.in_h * walk.in_w * ab
    tiles = []
    for t in walk.m_tiles(*tile):
        iy_lo, iy_hi, ix_lo, ix_hi = walk.window(*t)
        bursts, vectors = [], []
        if iy_hi > iy_lo and ix_hi > ix_lo:
            for ct in range(-(-walk.k // g.rows)):
                first = INPUT_ADDR + ct * plane + (iy_lo * walk.in_w + ix_lo) * ab
                if ix_hi - ix_lo == walk.in_w:
                    bursts.append((first, (iy_hi - iy_lo) * walk.in_w * g.act_words - 1, ct * g.rows))
                else:
                    bursts += [(first + y * walk.in_w * ab, (ix_hi - ix_lo) * g.act_words - 1, ct * g.rows)
                               for y in range(iy_hi - iy_lo)]
                for iy in range(iy_lo, iy_hi):
                    for ix in range(ix_lo, ix_hi):
                        a = INPUT_ADDR + ct * plane + (iy * walk.in_w + ix) * ab
                        v = sum(dram_word(a + i * wb) << (i * W) for i in range(g.act_words))
                        vectors.append(v & ((1 << 8 * g.rows) - 1))
        tiles.append((bursts, vectors))
    return tiles


@pytest.mark.parametrize("seed", range(8))
def test_windows_are_read_and_written_in_order_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    g = geometry()
    walk = random_walk(rng, k=rng.randint(1, 13))
    tile = random_tile(rng, walk)
    expected = expected_load(g, walk, tile)
    dut = WindowLoader(geometry=g, addr_bits=ADDR_BITS)
    pending = []                    # bursts taken and not yet answered
    bursts, writes, commits = [], [], []
    table = seed % 2 == 1           # odd seeds: a table activation's table first
    table_words = 256 // g.word_bytes
    table_cmds, table_writes = [], []

    async def control(ctx):
        layer = descriptor(walk, tile, input_addr=INPUT_ADDR, table_addr=TABLE_ADDR if table else None)
        ctx.set(dut.desc, layer)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.desc, descriptor(walk, tile, input_addr=0))     # sampled at start only
        ctx.set(dut.layer, layer)
        ctx.set(dut.commit.ready, 1)
        while len(commits) < len(expected):
            await ctx.tick()
            if ctx.get(dut.commit.valid):
                # the walk holds the other half for a while: the next window waits for it
                ctx.set(dut.commit.ready, 0)
                for _ in range(rng.randrange(6)):
                    await ctx.tick()
                ctx.set(dut.commit.ready, 1)
        assert ctx.get(dut.progress.tiles) == len(expected)

    total = sum(len(b) for b, _ in expected) + table

    async def commands(ctx):
        for _ in range(total):
            cmd = await stream_get(ctx, dut.rd_cmd, rng=rng, gap=0.3)
            pending.append((cmd.addr, cmd.count))

    async def answers(ctx):
        for _ in range(total):
            while not pending:
                await ctx.tick()
            addr, count = pending.pop(0)
            for i in range(count + 1):
                await stream_put(ctx, dut.rd_data, {"data": dram_word(addr + i * g.word_bytes),
                                                    "last": i == count}, rng=rng, gap=0.3)

    async def scratchpad(ctx):
        # a burst with the loader's progress as it is taken (the walk's reads follow it), a
        # window with the M tiles counted as issued when it commits; the table's burst first
        async for _clk, _rst, en, addr, data, valid, ready, cmd_valid, cmd_ready, cmd, progress, t_en, t_addr, \
                t_data in ctx.tick().sample(
                dut.write.en, dut.write.addr, dut.write.data, dut.commit.valid, dut.commit.ready,
                dut.rd_cmd.valid, dut.rd_cmd.ready, dut.rd_cmd.payload, dut.progress, dut.table_en,
                dut.table_addr, dut.table_data):
            if t_en:
                table_writes.append((t_addr, t_data))
            if cmd_valid and cmd_ready and cmd.addr == TABLE_ADDR:
                assert not bursts and not commits
                table_cmds.append((cmd.addr, cmd.count))
            elif cmd_valid and cmd_ready:
                assert progress.issuing
                bursts.append((cmd.addr, cmd.count, progress.channel))
            if en:
                writes.append((addr, data))
            if valid and ready:
                assert (progress.tiles, progress.issuing) == (len(commits) + 1, 0)
                commits.append((list(bursts), list(writes)))
                bursts.clear()
                writes.clear()

    run(dut, [control, commands, answers], [scratchpad])
    assert table_cmds == ([(TABLE_ADDR, table_words - 1)] if table else [])
    assert table_writes == [(i, dram_word(TABLE_ADDR + i * g.word_bytes)) for i in range(table_words if table else 0)]
    for (want_bursts, want_vectors), (got_bursts, got_writes) in zip(expected, commits, strict=True):
        assert got_bursts == want_bursts
        assert got_writes == list(enumerate(want_vectors))


def test_parameters_are_checked():
    with pytest.raises(TypeError, match="geometry must be a GemmGeometry, not 3"):
        WindowLoader(geometry=3, addr_bits=ADDR_BITS)
    with pytest.raises(ValueError, match="addr_bits must be an integer in 8..64, not 80"):
        WindowLoader(geometry=geometry(), addr_bits=80)
