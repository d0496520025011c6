"""The array's feeds: DRAM words to records and weight vectors (and back out of the weight
buffer), and activation segments to scratchpad reads and zero-point vectors."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import memory, wiring

from mensa.contract.numeric import SHIFT_BITS
from mensa.hw.gemm_feeds import ActivationFeed, WeightFeed
from mensa.hw.gemm_layer import ACT, PAD, Q, WBUF, WTS
from mensa.sim.sim_streams import stream_get, stream_put
from tests.unit.gemm_parts import geometry, run


def signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def gather(words, bits, width):
    """``words`` of ``bits`` each, first word lowest, cut to ``width`` bits."""
    return sum(w << (i * bits) for i, w in enumerate(words)) & ((1 << width) - 1)


@pytest.mark.parametrize("seed", range(6))
def test_weight_feed_routes_records_and_weights_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    g = geometry()
    R, C, W = g.rows, g.cols, 8 * g.word_bytes
    dut = WeightFeed(geometry=g)
    segments, words, want_weights, want_quant = [], [], [], []
    stored = {}                                     # weight buffer: addr -> vector
    for _ in range(14):
        choice = rng.random()
        if choice < 0.3:
            record = [rng.randrange(1 << W) for _ in range(g.quant_words)]
            segments.append({"kind": Q})
            words.append(record)
            want_quant.append(gather(record, W, g.quant_words * W))
        elif choice < 0.7 or not stored:
            addr, store = rng.randrange(0, g.weight_depth - R), rng.random() < 0.6
            tile = [rng.randrange(1 << W) for _ in range(R * g.weight_words)]
            vectors = [gather(tile[i * g.weight_words:(i + 1) * g.weight_words], W, 8 * C) for i in range(R)]
            segments.append({"kind": WTS, "store": store, "addr": addr})
            words.append(tile)
            want_weights += vectors
            if store:
                stored.update({addr + i: v for i, v in enumerate(vectors)})
        else:
            addr = rng.choice([a for a in stored if all(a + i in stored for i in range(R))] or [None])
            if addr is None:
                continue
            segments.append({"kind": WBUF, "addr": addr})
            want_weights += [stored[addr + i] for i in range(R)]
    got_weights, got_quant = [], []
    zp, qmin, qmax = rng.randrange(256), rng.randrange(256), rng.randrange(256)

    async def route(ctx):
        ctx.set(dut.out_zero_point, zp)
        ctx.set(dut.qmin, qmin)
        ctx.set(dut.qmax, qmax)
        for seg in segments:
            await stream_put(ctx, dut.seg, seg, rng=rng, gap=0.3)

    async def dram(ctx):
        for burst in words:
            for i, word in enumerate(burst):
                await stream_put(ctx, dut.rd_data, {"data": word, "last": i == len(burst) - 1}, rng=rng, gap=0.3)

    async def array(ctx):
        for _ in want_weights:
            got_weights.append((await stream_get(ctx, dut.weights, rng=rng, gap=0.3)).as_bits())

    async def requant(ctx):
        for _ in want_quant:
            got_quant.append(await stream_get(ctx, dut.quant, rng=rng, gap=0.3))

    run(dut, [route, dram, array, requant])
    assert got_weights == want_weights
    assert len(got_quant) == len(want_quant)
    for q, bits in zip(got_quant, want_quant):
        assert [q.bias[j] for j in range(C)] == [signed(bits >> (32 * j), 32) for j in range(C)]
        assert [q.multiplier[j] for j in range(C)] == [signed(bits >> (32 * (C + j)), 32) for j in range(C)]
        assert [q.shift[j] for j in range(C)] == [signed(bits >> (64 * C + 8 * j), SHIFT_BITS) for j in range(C)]
        assert (q.zero_point, q.qmin, q.qmax) == (signed(zp, 8), signed(qmin, 8), signed(qmax, 8))


class _FeedOnMemory(wiring.Component):
    """The activation feed on a memory standing in for the scratchpad's compute half."""

    def __init__(self, g, init):
        self.feed = ActivationFeed(geometry=g)
        self._init = init
        super().__init__({name: member for name, member in self.feed.signature.members.items()
                          if name != "read"})

    def elaborate(self, platform):
        m = Module()
        m.submodules.feed = feed = self.feed
        m.submodules.mem = mem = memory.Memory(shape=len(feed.read.data), depth=len(self._init), init=self._init)
        rp = mem.read_port()
        m.d.comb += [rp.addr.eq(feed.read.addr), rp.en.eq(feed.read.en), feed.read.data.eq(rp.data)]
        for name in ("seg", "tile", "acts"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(feed, name))
        m.d.comb += [feed.written.eq(self.written), feed.zero_point.eq(self.zero_point),
                     self.starved.eq(feed.starved)]
        return m


@pytest.mark.parametrize("seed", range(6))
def test_activation_feed_streams_reads_and_padding_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    g = geometry()
    R = g.rows
    spad = [rng.randrange(1 << 8 * R) for _ in range(g.act_depth)]
    zp = rng.randrange(256)
    segments, want = [], []
    for _ in range(20):
        count = rng.randint(1, 6)
        end, release = rng.random() < 0.3, False
        release = end and rng.random() < 0.5
        if rng.random() < 0.35:
            segments.append({"kind": PAD, "count": count, "end": end, "release": release})
            vectors = [sum(zp << (8 * i) for i in range(R))] * count
        else:
            skip = rng.random() < 0.3
            addr = rng.randrange(g.act_depth - 2 * count)
            segments.append({"kind": ACT, "count": count, "skip": skip, "end": end, "release": release, "addr": addr})
            vectors = [spad[addr + (2 if skip else 1) * i] for i in range(count)]
        want += [(v, end and i == count - 1) for i, v in enumerate(vectors)]
    dut = _FeedOnMemory(g, spad)
    got, released = [], []

    async def walk(ctx):
        ctx.set(dut.zero_point, zp)
        ctx.set(dut.written, g.act_depth)
        ctx.set(dut.tile.valid, 1)
        for seg in segments:
            await stream_put(ctx, dut.seg, seg, rng=rng, gap=0.3)

    async def array(ctx):
        for _ in want:
            beat = await stream_get(ctx, dut.acts, rng=rng, gap=0.3)
            got.append((beat.data.as_bits(), beat.last))

    async def halves(ctx):
        async for _clk, _rst, ready in ctx.tick().sample(dut.tile.ready):
            if ready:
                released.append(1)

    run(dut, [walk, array], [halves])
    assert got == want
    assert len(released) == sum(s["release"] for s in segments)


def test_activation_feed_reads_only_what_the_loader_has_written():
    g = geometry()
    spad = list(range(1, g.act_depth + 1))
    dut = _FeedOnMemory(g, spad)
    got = []

    async def walk(ctx):
        ctx.set(dut.written, 2)
        await stream_put(ctx, dut.seg, {"kind": ACT, "count": 4, "addr": 0})

    async def loader(ctx):
        for _ in range(10):
            await ctx.tick()
        assert len(got) == 2 and ctx.get(dut.starved)
        ctx.set(dut.written, 4)

    async def array(ctx):
        for _ in range(4):
            got.append((await stream_get(ctx, dut.acts)).data.as_bits())

    run(dut, [walk, loader, array])
    assert got == [1, 2, 3, 4]


def test_parameters_are_checked():
    with pytest.raises(TypeError, match="geometry must be a GemmGeometry, not None"):
        WeightFeed(geometry=None)
    with pytest.raises(TypeError, match="geometry must be a GemmGeometry, not None"):
        ActivationFeed(geometry=None)
