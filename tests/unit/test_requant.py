"""Fast amaranth.sim checks of the Requantizer against the golden requantisation, with stalls.

Every output equals ``golden.requantize(wrap32(acc + bias), multiplier, shift, zero_point,
qmin, qmax)``: the edge values of TFLite's arithmetic (the saturating doubling high
multiply of INT32_MIN by INT32_MIN, negative ties of both roundings, every shift the
parameter can hold, saturating left shifts, ReLU/ReLU6 clamps) and random tiles.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.hw.requant import Requantizer
from mensa.core import golden

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _expected(tile):
    acc, bias, mult, shift, zp, qmin, qmax = tile
    x = (np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)).astype(np.int32)
    return golden.requantize(x, np.asarray(mult), np.asarray(shift), zp, qmin, qmax)


def _run(lanes, tiles, *, seed, gap=0.3, out_bits=8, passes=1):
    """Stream ``tiles`` through a Requantizer with random valid/ready gaps; the outputs per tile."""
    rnd = random.Random(seed)
    dut = Requantizer(lanes=lanes, out_bits=out_bits, passes=passes)
    quant = [{"bias": list(t[1]), "multiplier": list(t[2]), "shift": list(t[3]),
              "zero_point": t[4], "qmin": t[5], "qmax": t[6]} for t in tiles]
    accs = [{"data": [int(v) for v in row], "last": r == len(t[0]) - 1}
            for t in tiles for r, row in enumerate(t[0])]
    total = len(accs)
    out = []

    async def drive(ctx):
        qv = av = False
        while len(out) < total:
            qv = qv or bool(quant) and rnd.random() >= gap
            av = av or bool(accs) and rnd.random() >= gap
            if qv:
                ctx.set(dut.quant.payload, quant[0])
            if av:
                ctx.set(dut.accs.payload, accs[0])
            ready = rnd.random() >= gap
            ctx.set(dut.quant.valid, qv)
            ctx.set(dut.accs.valid, av)
            ctx.set(dut.outs.ready, ready)
            _, _, q_ready, a_ready, o_valid, o = await ctx.tick().sample(
                dut.quant.ready, dut.accs.ready, dut.outs.valid, dut.outs.payload)
            if o_valid and ready:
                out.append(([int(v) for v in o.data], int(o.last)))
            if qv and q_ready:
                quant.pop(0)
                qv = False
            if av and a_ready:
                accs.pop(0)
                av = False

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run()
    got, k = [], 0
    for t in tiles:
        n = len(t[0])
        rows = out[k:k + n]
        k += n
        assert [last for _, last in rows] == [int(r == n - 1) for r in range(n)]
        got.append(np.array([row for row, _ in rows]))
    return got


def _check(lanes, tiles, seed=0, **kwargs):
    for t, (tile, got) in enumerate(zip(tiles, _run(lanes, tiles, seed=seed, **kwargs))):
        expect = _expected(tile)
        assert np.array_equal(got, expect), f"tile {t}: got\n{got}\nexpected\n{expect}\nparams {tile[1:]}"


def _tile(acc, bias=0, mult=1 << 30, shift=0, zp=0, qmin=-128, qmax=127, lanes=None):
    acc = np.atleast_2d(np.asarray(acc, dtype=np.int64))
    lanes = lanes or acc.shape[1]
    per = lambda v: [int(x) for x in np.broadcast_to(v, (lanes,))]
    return acc, per(bias), per(mult), per(shift), zp, qmin, qmax


def test_saturating_doubling_high_mul_of_int32_min_by_int32_min():
    # the only product gemmlowp saturates: INT32_MIN * INT32_MIN / 2**31 = 2**31 -> INT32_MAX
    tiles = [_tile([[INT32_MIN, INT32_MIN, INT32_MIN + 1, INT32_MAX]], mult=INT32_MIN, shift=s, zp=zp)
             for s in (0, -1, -30, -31) for zp in (-128, 0, 127)]
    _check(4, tiles)


def test_negative_ties_round_away_from_zero():
    # x * 2**30 / 2**31 = x / 2: odd x are ties in the doubling high multiply, then
    # RoundingDivideByPOT ties at every shift
    xs = np.arange(-9, 10)
    tiles = [_tile(xs.reshape(1, -1), mult=1 << 30, shift=s, qmin=-128, qmax=127) for s in (0, -1, -2, -3)]
    tiles += [_tile(np.array([[-3 << 20, -5 << 20, -1 << 20, 3 << 20]]), mult=INT32_MAX, shift=s)
              for s in range(-21, -17)]
    _check(xs.size, tiles[:4])
    _check(4, tiles[4:])


@pytest.mark.parametrize("seed,passes", [(0, 1), (1, 1), (2, 2), (3, 8)])
def test_every_shift_the_parameter_holds(seed, passes):
    # TFLite's quantize_multiplier gives -31..30; the 6-bit field holds -32..31 and the
    # hardware follows the golden model on all of them, including saturating left shifts
    gen = np.random.default_rng(seed)
    lanes = 8
    edge = np.array([INT32_MIN, INT32_MAX, -1, 0, 1, 1 << 24, -(1 << 24), 12345], dtype=np.int64)
    tiles = []
    for s in range(-32, 32, lanes):
        shifts = list(range(s, s + lanes))
        acc = np.concatenate([edge.reshape(1, -1), gen.integers(INT32_MIN, INT32_MAX + 1, (3, lanes))])
        mult = gen.integers(1 << 30, 1 << 31, lanes)
        zp = int(gen.integers(-128, 128))
        tiles.append(_tile(acc, bias=gen.integers(-1 << 20, 1 << 20, lanes), mult=mult, shift=shifts, zp=zp))
    print(f"seed {seed}, passes {passes}")
    _check(lanes, tiles, seed=seed, passes=passes)


@pytest.mark.parametrize("seed", range(2))
def test_saturated_left_shifts_times_small_multipliers_in_range(seed):
    # A saturated shift (INT32_MAX or INT32_MIN) times a multiplier small enough that the product's
    # high half lands inside the int16 range: every bit of the product shows (the Karatsuba sums
    # of the halves, of a saturated value too)
    gen = np.random.default_rng(seed)
    lanes = 8
    acc = np.concatenate([np.array([[INT32_MAX, INT32_MIN, 1 << 30, -(1 << 30), 3 << 28, -(3 << 28), 65535, -65536]]),
                          gen.integers(INT32_MIN, INT32_MAX + 1, (3, lanes))])
    tiles = [_tile(acc, mult=gen.integers(-(1 << 15), 1 << 15, lanes), shift=list(gen.integers(1, 32, lanes)),
                   qmin=-32768, qmax=32767) for _ in range(3)]
    _check(lanes, tiles, seed=seed, out_bits=16)


def test_relu_and_relu6_clamps():
    gen = np.random.default_rng(5)
    acc = gen.integers(-(1 << 16), 1 << 16, (6, 3))
    tiles = [_tile(acc, mult=1 << 30, shift=-8, zp=zp, qmin=lo, qmax=hi)
             for zp, lo, hi in ((-128, -128, 127), (-20, -20, 127), (-20, -20, 40), (10, 10, 10))]
    _check(3, tiles)


@pytest.mark.parametrize("seed", range(4))
def test_random_tiles_back_to_back_with_stalls(seed):
    gen = np.random.default_rng(seed)
    lanes = int(gen.integers(1, 5))
    tiles = []
    for _ in range(6):
        rows = int(gen.integers(1, 5))
        mult, shift = golden.quantize_multiplier(gen.uniform(1e-6, 2.0, lanes) ** 2)
        zp = int(gen.integers(-128, 128))
        qmin, qmax = golden.activation_range(["none", "relu", "relu6"][int(gen.integers(3))],
                                             float(gen.uniform(0.01, 0.2)), zp)
        tiles.append(_tile(gen.integers(INT32_MIN, INT32_MAX + 1, (rows, lanes)),
                           bias=gen.integers(-(1 << 24), 1 << 24, lanes), mult=mult, shift=shift,
                           zp=zp, qmin=qmin, qmax=qmax))
    passes = int(gen.choice([d for d in range(1, lanes + 1) if lanes % d == 0]))
    print(f"seed {seed}: {lanes} lanes, {passes} passes")
    _check(lanes, tiles, seed=seed, gap=0.4, passes=passes)


@pytest.mark.parametrize("passes", [2, 4])
def test_passes_in_tiles_of_several_vectors(passes):
    # tiles of one to five vectors, one lane's parameters per pass apart: a pass that took another
    # pass's lanes or parameters, or a vector assembled out of order, differs
    gen = np.random.default_rng(10 + passes)
    tiles = []
    for t in range(6):
        rows = int(gen.integers(1, 6))
        mult, shift = golden.quantize_multiplier(gen.uniform(1e-4, 1.0, 4))
        tiles.append(_tile(gen.integers(-1 << 24, 1 << 24, (rows, 4)), bias=gen.integers(-1000, 1000, 4), mult=mult,
                           shift=shift, zp=int(gen.integers(-128, 128))))
    _check(4, tiles, seed=passes, gap=0.5, passes=passes)


def test_int16_outputs():
    gen = np.random.default_rng(3)
    mult, shift = golden.quantize_multiplier(gen.uniform(1e-4, 1.0, 2))
    tiles = [_tile(gen.integers(INT32_MIN, INT32_MAX + 1, (8, 2)), mult=mult, shift=shift, zp=0,
                   qmin=-(1 << 15), qmax=(1 << 15) - 1)]
    _check(2, tiles, out_bits=16)


@pytest.mark.parametrize("passes", [1, 2])
def test_full_throughput_without_gaps(passes):
    dut = Requantizer(lanes=2, passes=passes)
    n = 20
    cycles = {}

    async def drive(ctx):
        ctx.set(dut.quant.payload, {"bias": [0, 0], "multiplier": [1 << 30] * 2, "shift": [0, 0],
                                    "zero_point": 0, "qmin": -128, "qmax": 127})
        ctx.set(dut.quant.valid, 1)
        await ctx.tick()
        ctx.set(dut.quant.valid, 0)
        ctx.set(dut.outs.ready, 1)
        ctx.set(dut.accs.valid, 1)
        seen = 0
        sent = 0
        for cycle in range(n * passes + 20):
            ctx.set(dut.accs.payload, {"data": [sent, -sent], "last": sent == n - 1})
            if sent == n:
                ctx.set(dut.accs.valid, 0)
            _, _, o_valid, a_ready = await ctx.tick().sample(dut.outs.valid, dut.accs.ready)
            sent += a_ready and sent < n
            if o_valid:
                cycles.setdefault("first", cycle)
                cycles["last"] = cycle
                seen += 1
        cycles["seen"] = seen

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run()
    assert cycles["seen"] == n
    assert cycles["first"] == dut.latency                           # the first pass entered in cycle 0
    assert cycles["last"] - cycles["first"] == passes * (n - 1)       # one vector per `passes` cycles


def test_bad_parameters_name_the_parameter():
    with pytest.raises(TypeError, match="lanes"):
        Requantizer(lanes=0)
    with pytest.raises(ValueError, match="out_bits"):
        Requantizer(lanes=1, out_bits=32)
    with pytest.raises(ValueError, match="passes"):
        Requantizer(lanes=8, passes=3)
