"""The near-memory accelerator's DMA clients: the reader cuts each vector's bus words into lane beats, one
read command a vector; the writer packs lane beats into bus words and writes whole bursts of words it
already holds, then reports done once."""

import gc
import random

import pytest

from mensa.core.config import MemoryConfig
from mensa.hw.nearmem_dma import VectorReader, VectorWriter
from mensa.sim.sim_streams import stream_get, stream_put
from tests.unit.gemm_parts import run

ADDR = 0x3000


def _shape(rng):
    """(memory, lanes): a bus and lanes that divide one another, wide or narrow."""
    data_bits = rng.choice([32, 64])
    lanes = rng.choice([1, 2, 4, 8, 16, 24] if data_bits == 64 else [1, 2, 4, 8, 12])
    if (data_bits // 8) % lanes and lanes % (data_bits // 8):
        lanes = data_bits // 8
    return MemoryConfig(data_bits=data_bits, max_burst=rng.choice([1, 2, 4, 16])), lanes


def _up(n, to):
    return -(-n // to) * to


@pytest.mark.parametrize("seed", range(24))
def test_reader_gives_each_vector_as_lane_beats_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    memory, lanes = _shape(rng)
    word = memory.data_bits // 8
    k, m = rng.randint(1, 50), rng.randint(1, 4)
    vbytes = _up(k, max(word, lanes))
    dram = bytes(rng.randrange(256) for _ in range(m * vbytes))     # padding bytes too: passed as they are
    want_beats = [dram[v * vbytes + b * lanes: v * vbytes + (b + 1) * lanes]
                  for v in range(m) for b in range(-(-k // lanes))]
    dut = VectorReader(memory=memory, lanes=lanes, max_in=64)
    cmds, beats = [], []

    async def control(ctx):
        ctx.set(dut.input_addr, ADDR)
        ctx.set(dut.vector_words, vbytes // word)
        ctx.set(dut.in_features, k)
        ctx.set(dut.vectors, m)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.input_addr, 0)          # taken at start only

    async def dma(ctx):
        for _ in range(m):
            cmd = await stream_get(ctx, dut.rd_cmd, rng=rng, gap=0.3)
            cmds.append((cmd.addr, cmd.count))
            for i in range(cmd.count + 1):
                at = cmd.addr - ADDR + i * word
                await stream_put(ctx, dut.rd_data, {"data": int.from_bytes(dram[at:at + word], "little"),
                                                    "last": i == cmd.count, "resp": 0}, rng=rng, gap=0.3)

    async def unit(ctx):
        for _ in want_beats:
            beat = await stream_get(ctx, dut.inputs, rng=rng, gap=0.3)
            beats.append(bytes(int(beat[i]) & 0xFF for i in range(lanes)))

    run(dut, [control, dma, unit])
    assert cmds == [(ADDR + v * vbytes, vbytes // word - 1) for v in range(m)]
    assert beats == want_beats


@pytest.mark.parametrize("seed", range(24))
def test_writer_writes_whole_bursts_it_holds_and_reports_done_once(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    memory, lanes = _shape(rng)
    word, burst = memory.data_bits // 8, memory.max_burst
    # vectors that end in the middle of a bus word after whole ones (a stale lane word would show)
    m, per_vector = rng.randint(1, 4), rng.randint(1, 3 * max(word // lanes, 1) + 2)
    vbytes = _up(per_vector * lanes, max(word, lanes))
    vectors = [[bytes(rng.randrange(256) for _ in range(lanes)) for _ in range(per_vector)] for _ in range(m)]
    want = b"".join(b"".join(v).ljust(vbytes, b"\0") for v in vectors)
    dut = VectorWriter(memory=memory, lanes=lanes)
    cmds, dram, done = [], {}, []

    async def control(ctx):
        ctx.set(dut.output_addr, ADDR)
        ctx.set(dut.vectors, m)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.output_addr, 0)
        async for _clk, _rst, pulse in ctx.tick().sample(dut.done):
            if pulse:
                done.append(len(cmds))
                break
        for _ in range(30):
            await ctx.tick()
            assert not ctx.get(dut.done)

    async def unit(ctx):
        for v in vectors:
            for b, lane_word in enumerate(v):
                data = [x - 256 if x > 127 else x for x in lane_word]
                await stream_put(ctx, dut.outs, {"data": data, "last": b == len(v) - 1}, rng=rng, gap=0.3)

    async def dma(ctx):
        while sum(c + 1 for _, c in cmds) < len(want) // word:
            cmd = await stream_get(ctx, dut.wr_cmd, rng=rng, gap=0.3)
            cmds.append((cmd.addr, cmd.count))
            for i in range(cmd.count + 1):
                beat = await stream_get(ctx, dut.wr_data, rng=rng, gap=0.3)
                assert beat.strb == (1 << word) - 1
                dram[cmd.addr + i * word] = beat.data.to_bytes(word, "little")
            await stream_put(ctx, dut.wr_done, 0, rng=rng, gap=0.5)

    run(dut, [control, unit, dma])
    assert b"".join(dram[ADDR + i * word] for i in range(len(want) // word)) == want
    assert all(c + 1 == burst for _, c in cmds[:-1]) and 1 <= cmds[-1][1] + 1 <= burst, cmds
    assert [a for a, _ in cmds] == [ADDR + word * sum(c + 1 for _, c in cmds[:i]) for i in range(len(cmds))]
    assert done == [len(cmds)]


# The refused components are never elaborated: Amaranth's warning about that, when they are collected, is noise here.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_lanes_and_bus_must_divide_one_another():
    for component in (VectorReader, VectorWriter):
        kwargs = {"max_in": 8} if component is VectorReader else {}
        with pytest.raises(ValueError, match="lanes 3 and the bus's 8 bytes do not divide one another"):
            component(memory=MemoryConfig(data_bits=64), lanes=3, **kwargs)
    gc.collect()
