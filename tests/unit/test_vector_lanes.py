"""The lanes' datapath: the operand fetch reads the line buffer and the weight banks (the zero point for
a padded tap), the MAC lanes sum each window's products (or plain activations), under random gaps."""

import random

import pytest
from amaranth.sim import Simulator

from mensa.hw.vector_lanes import LaneMacArray, OperandFetch
from mensa.sim.sim_streams import stream_get, stream_put


def pack(values):
    return sum((v & 0xFF) << (8 * i) for i, v in enumerate(values))


def unpack(word, lanes):
    return [((word >> (8 * i)) & 0xFF) - (((word >> (8 * i)) & 0x80) << 1) for i in range(lanes)]


def simulate(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("seed", range(4))
def test_windows_sum_their_products_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    lanes, plain = rng.choice([1, 4, 8]), seed % 2
    windows = [[(pack(x), pack(w), x, w) for x, w in
                (([rng.randint(-128, 127) for _ in range(lanes)], [rng.choice([-128, rng.randint(-128, 127)])
                                                                   for _ in range(lanes)])
                 for _ in range(rng.randint(1, 49)))] for _ in range(10)]
    dut = LaneMacArray(lanes=lanes)
    got = []

    async def source(ctx):
        ctx.set(dut.plain, plain)
        for n, taps in enumerate(windows):
            for i, (x, w, _, _) in enumerate(taps):
                await stream_put(ctx, dut.operands, {"x": x, "w": w, "pad": 0, "first": i == 0,
                                                     "last": i == len(taps) - 1,
                                                     "tile_last": i == len(taps) - 1 and n % 3 == 2},
                                 rng=rng, gap=0.3)

    async def sink(ctx):
        for _ in windows:
            beat = await stream_get(ctx, dut.sums, rng=rng, gap=0.4)
            got.append(([int(beat.data[j]) for j in range(lanes)], int(beat.last)))

    simulate(dut, source, sink)
    for n, (taps, (sums, last)) in enumerate(zip(windows, got)):
        want = [sum(x[j] * (1 if plain else w[j]) for _, _, x, w in taps) for j in range(lanes)]
        assert sums == want and last == (n % 3 == 2), f"seed {seed} window {n}"


@pytest.mark.parametrize("seed", range(4))
def test_taps_read_their_pixel_and_weight_vectors_or_the_zero_point(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    lanes, depth, wdepth = rng.choice([1, 4, 8]), 32, 8
    line = [[rng.randint(-128, 127) for _ in range(lanes)] for _ in range(depth)]
    weights = [[rng.randint(-128, 127) for _ in range(lanes)] for _ in range(2 * wdepth)]
    zp = rng.randint(-128, 127)
    taps = [(rng.randrange(depth), rng.randrange(2 * wdepth), rng.random() < 0.3, rng.random() < 0.5)
            for _ in range(60)]
    dut = OperandFetch(lanes=lanes, line_depth=depth, weight_depth=wdepth)
    got = []

    async def source(ctx):
        for kind, contents in (("line", line), ("weight", weights)):
            for a, vec in enumerate(contents):
                ctx.set(getattr(dut, f"{kind}_addr"), a)
                ctx.set(getattr(dut, f"{kind}_data"), pack(vec))
                ctx.set(getattr(dut, f"{kind}_en"), 1)
                await ctx.tick()
            ctx.set(getattr(dut, f"{kind}_en"), 0)
        ctx.set(dut.zero_point, zp & 0xFF)
        for la, wa, pad, last in taps:
            await stream_put(ctx, dut.taps, {"line_addr": la, "weight_addr": wa, "pad": pad, "first": 0,
                                             "last": last, "tile_last": 0}, rng=rng, gap=0.3)

    async def sink(ctx):
        for _ in taps:
            beat = await stream_get(ctx, dut.operands, rng=rng, gap=0.4)
            got.append((unpack(beat.x, lanes), unpack(beat.w, lanes), int(beat.pad), int(beat.last)))

    simulate(dut, source, sink)
    for i, ((la, wa, pad, last), g) in enumerate(zip(taps, got)):
        assert g == ([zp] * lanes if pad else line[la], weights[wa], int(pad), int(last)), f"seed {seed} tap {i}"
