"""Fast amaranth.sim checks of the systolic array against the golden matmul, with random stalls.

Short tiles (M < rows + cols) keep two tiles in flight, which is where the weight
double-buffering has to hold the bank in use while the other is reloaded.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.hw.config import ArrayConfig, Dataflow
from mensa.hw.systolic import SystolicArray
from mensa.sim.golden import matmul


def _simulate(dut, drive, cycles):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run_until(cycles * 1e-8)


@pytest.mark.parametrize("seed", range(12))
def test_ws_tiles_back_to_back_with_stalls(seed):
    rnd = random.Random(seed)
    gen = np.random.default_rng(seed)
    R, C, M, tiles = rnd.randint(1, 3), rnd.randint(1, 3), rnd.randint(1, 6), 6
    dut = SystolicArray(ArrayConfig(rows=R, cols=C))
    W = [gen.integers(-128, 128, (R, C)) for _ in range(tiles)]
    A = [gen.integers(-128, 128, (M, R)) for _ in range(tiles)]
    out = []

    async def drive(ctx):
        wq = [list(r) for w in W for r in w]
        aq = [(list(a[i]), i == M - 1) for a in A for i in range(M)]
        wv = av = False
        while True:
            wv = wv or bool(wq) and rnd.random() > 0.3
            av = av or bool(aq) and rnd.random() > 0.3
            if wv:
                ctx.set(dut.weights.payload, wq[0])
            if av:
                ctx.set(dut.acts.payload, {"data": aq[0][0], "last": aq[0][1]})
            ready = rnd.random() > 0.3
            ctx.set(dut.weights.valid, wv)
            ctx.set(dut.acts.valid, av)
            ctx.set(dut.psums.ready, ready)
            _, _, w_ready, a_ready, p_valid, p = await ctx.tick().sample(
                dut.weights.ready, dut.acts.ready, dut.psums.valid, dut.psums.payload)
            if p_valid and ready:
                out.append((list(p.data), p.last))
            if wv and w_ready:
                wq.pop(0)
                wv = False
            if av and a_ready:
                aq.pop(0)
                av = False

    _simulate(dut, drive, 40 * tiles * (M + R + C))
    expect = [(list(row), int(i == M - 1)) for a, w in zip(A, W) for i, row in enumerate(matmul(a, w))]
    assert out == expect


@pytest.mark.parametrize("seed", range(12))
def test_os_tiles_back_to_back_with_stalls(seed):
    rnd = random.Random(seed)
    gen = np.random.default_rng(seed)
    R, C, K, tiles = rnd.randint(1, 3), rnd.randint(1, 3), rnd.randint(1, 6), 5
    dut = SystolicArray(ArrayConfig(rows=R, cols=C, dataflow=Dataflow.OUTPUT_STATIONARY))
    A = [gen.integers(-128, 128, (R, K)) for _ in range(tiles)]
    B = [gen.integers(-128, 128, (K, C)) for _ in range(tiles)]
    out = []

    async def drive(ctx):
        q = [(list(a[:, k]), list(b[k]), k == K - 1) for a, b in zip(A, B) for k in range(K)]
        v = False
        while True:
            v = v or bool(q) and rnd.random() > 0.3
            if v:
                ctx.set(dut.operands.payload, {"a": q[0][0], "b": q[0][1], "last": q[0][2]})
            ready = rnd.random() > 0.3
            ctx.set(dut.operands.valid, v)
            ctx.set(dut.results.ready, ready)
            _, _, o_ready, r_valid, r = await ctx.tick().sample(
                dut.operands.ready, dut.results.valid, dut.results.payload)
            if r_valid and ready:
                out.append((list(r.data), r.last))
            if v and o_ready:
                q.pop(0)
                v = False

    _simulate(dut, drive, 40 * tiles * (K + R + C))
    expect = [(list(row), int(i == R - 1)) for a, b in zip(A, B) for i, row in enumerate(matmul(a, b))]
    assert out == expect


def test_rejects_a_non_config():
    with pytest.raises(TypeError, match="ArrayConfig"):
        SystolicArray({"rows": 2})
