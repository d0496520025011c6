"""The pool reducer: max and rounded average of each window's taps inside the input, as the golden
model pools, under random gaps; the reciprocal ROM divides exactly."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.hw.vector_pool import COUNT_MAX, DIVIDEND_MAX, RECIPROCAL_BITS, PoolReducer, reciprocal
from mensa.sim.sim_streams import stream_get, stream_put


def test_reciprocal_rom_divides_every_dividend_by_every_count_exactly():
    a = np.arange(DIVIDEND_MAX + 1, dtype=np.int64)
    for n in range(1, COUNT_MAX + 1):
        r, s = reciprocal(n)
        assert r <= 1 << RECIPROCAL_BITS        # one DSP block: 17 bits unsigned
        np.testing.assert_array_equal((a * r) >> s, a // n, err_msg=f"count {n}")


def golden_window(taps, pads, is_max, qmin, qmax):
    """One lane's window as core.golden pools it: padded taps skipped, avg rounded half away from zero."""
    inside = [t for t, p in zip(taps, pads) if not p]
    if is_max:
        v = max(inside)
    else:
        s, n = sum(inside), len(inside)
        num = s + n // 2 if s > 0 else s - n // 2
        v = abs(num) // n * (1 if num >= 0 else -1)
    return min(max(v, qmin), qmax)


@pytest.mark.parametrize("seed,max_taps,gaps", [(s, COUNT_MAX, (0.3, 0.3)) for s in range(4)]
                         + [(s, 2, (0.0, 0.6)) for s in range(4, 8)])
def test_windows_reduce_as_the_golden_model_under_random_gaps(seed, max_taps, gaps):
    # (windows of one or two taps back to back under output back-pressure: every stage holds a window
    # while the output stalls)
    rng = random.Random(seed)
    print(f"seed {seed}")
    lanes = rng.choice([1, 3, 4])
    is_max = seed % 2
    qmin, qmax = rng.choice([(-128, 127), (-5, 100)])
    windows = []
    for w in range(12):
        taps = rng.randint(1, max_taps)
        pads = [rng.random() < 0.3 for _ in range(taps)]
        pads[rng.randrange(taps)] = False           # a window holds at least one pixel of the input
        if w < 2:
            pads = [False] * taps                   # the largest sums
        values = [[rng.choice([-128, 127]) if w < 2 else rng.randint(-128, 127) for _ in range(lanes)]
                  for _ in range(taps)]
        windows.append((values, pads))
    dut = PoolReducer(lanes=lanes)
    got = []

    async def source(ctx):
        ctx.set(dut.max, is_max)
        ctx.set(dut.qmin, qmin)
        ctx.set(dut.qmax, qmax)
        for w, (values, pads) in enumerate(windows):
            for i, (vec, pad) in enumerate(zip(values, pads)):
                x = sum((v & 0xFF) << (8 * j) for j, v in enumerate(vec))
                await stream_put(ctx, dut.operands, {"x": x, "w": 0, "pad": pad, "first": i == 0,
                                                     "last": i == len(pads) - 1,
                                                     "tile_last": i == len(pads) - 1 and w == len(windows) - 1},
                                 rng=rng, gap=gaps[0])

    async def sink(ctx):
        for _ in windows:
            beat = await stream_get(ctx, dut.outs, rng=rng, gap=gaps[1])
            got.append(([int(beat.data[j]) for j in range(lanes)], int(beat.last)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    for w, ((values, pads), (out, last)) in enumerate(zip(windows, got)):
        want = [golden_window([v[j] for v in values], pads, is_max, qmin, qmax) for j in range(lanes)]
        assert out == want, f"seed {seed} window {w}"
        assert last == (w == len(windows) - 1)
