"""Fast amaranth.sim checks of the vector unit's add lanes against TFLite's rescale of each input.

Each lane's sum equals ``MultiplyByQuantizedMultiplier((a - a_zp) << 20, a_mult, -a_right)`` plus the
same of ``b`` (:func:`mensa.core.golden.add` before its output requantisation): every right shift the
port holds, ties of both signs (multipliers that make the remainder exactly the half), random
multipliers up to 1/2 and random valid/ready gaps.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.core import golden
from mensa.hw.vector_add import AddLanes
from mensa.sim.sim_streams import stream_get, stream_put


def _expected(a, b, p):
    sa = golden.multiply_by_quantized_multiplier((np.asarray(a, np.int64) - p["zero_point"]) << golden.ADD_LEFT_SHIFT,
                                                 p["multiplier"], -p["right"])
    sb = golden.multiply_by_quantized_multiplier((np.asarray(b, np.int64) - p["zero_point2"]) << golden.ADD_LEFT_SHIFT,
                                                 p["multiplier2"], -p["right2"])
    return (np.asarray(sa, np.int64) + np.asarray(sb, np.int64)).astype(np.int32)


def _run(lanes, params, pixels, *, seed, gap):
    """Stream ``pixels`` (pairs of lane vectors) through AddLanes with ``params`` held; the sums in order."""
    rnd = random.Random(seed)
    dut = AddLanes(lanes=lanes)
    out = []

    def word(v):
        return sum((int(x) & 0xFF) << (8 * i) for i, x in enumerate(v))

    async def source(ctx):
        for name, value in params.items():
            ctx.set(getattr(dut, name), value)
        await ctx.tick().repeat(2)          # the masks are registers of the shifts, as when a layer starts
        for k, (a, b) in enumerate(pixels):
            await stream_put(ctx, dut.operands, {"x": word(a), "x2": word(b), "tile_last": k == len(pixels) - 1},
                             rng=rnd, gap=gap)

    async def sink(ctx):
        for _ in pixels:
            beat = await stream_get(ctx, dut.sums, rng=rnd, gap=gap)
            out.append(([int(v) for v in beat.data], int(beat.last)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return out


def _check(lanes, params, pixels, seed, gap=0.3):
    got = _run(lanes, params, pixels, seed=seed, gap=gap)
    assert [last for _, last in got] == [int(k == len(pixels) - 1) for k in range(len(pixels))]
    for k, ((a, b), (sums, _)) in enumerate(zip(pixels, got)):
        expect = _expected(a, b, params)
        assert sums == list(expect), f"pixel {k} (seed {seed}): got {sums}, expected {list(expect)}; {params}"


@pytest.mark.parametrize("right", range(32))
def test_every_right_shift_with_ties_of_both_signs(right):
    # multiplier 2**30 (one half): the rescaled value is (x - zp) << 19, so a shift of 20 or more leaves
    # remainders of exactly the half, positive and negative
    seed = 100 + right
    print(f"seed {seed}")
    rnd = random.Random(seed)
    params = {"zero_point": 3, "zero_point2": -5, "multiplier": 1 << 30, "multiplier2": rnd.randrange(1, (1 << 30) + 1),
              "right": right, "right2": 31 - right}
    pixels = [([rnd.randrange(-128, 128) for _ in range(4)], [rnd.randrange(-128, 128) for _ in range(4)])
              for _ in range(12)]
    pixels.append(([4, 2, -128, 127], [-5, -6, -4, 127]))
    _check(4, params, pixels, seed)


@pytest.mark.parametrize("seed", range(6))
def test_random_layers_with_gaps(seed):
    print(f"seed {seed}")
    rnd = random.Random(seed)
    lanes = rnd.choice([1, 3, 8])
    params = {"zero_point": rnd.randrange(-128, 128), "zero_point2": rnd.randrange(-128, 128),
              "multiplier": rnd.randrange(1, (1 << 30) + 1), "multiplier2": rnd.randrange(1, (1 << 30) + 1),
              "right": rnd.randrange(32), "right2": rnd.randrange(32)}
    pixels = [([rnd.randrange(-128, 128) for _ in range(lanes)], [rnd.randrange(-128, 128) for _ in range(lanes)])
              for _ in range(rnd.randrange(1, 30))]
    _check(lanes, params, pixels, seed, gap=rnd.choice([0.0, 0.3, 0.7]))
