"""Fast amaranth.sim checks of the systolic array against the golden matmul, with random stalls.

Short tiles (M < rows + cols) keep two tiles in flight, which is where the weight
double-buffering has to hold the bank in use while the other is reloaded.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from mensa.core.config import ArrayConfig, Dataflow
from mensa.hw.systolic import SystolicArray
from mensa.core.golden import matmul


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


@pytest.mark.parametrize("seed", range(4))
def test_ws_reset_in_flight_drops_everything_and_the_next_tiles_are_exact(seed):
    # A reset while tiles are in the array, the output FIFO holds partial sums and the consumer
    # stalls: afterwards no stale vector comes out (the FIFO's pointers are reset a cycle after
    # the flags, by each column's own register) and the next tiles are exact.
    rnd = random.Random(seed)
    gen = np.random.default_rng(seed)
    R, C, M = rnd.randint(2, 4), rnd.randint(2, 4), rnd.randint(3, 8)
    dut = SystolicArray(ArrayConfig(rows=R, cols=C))
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut
    W = [gen.integers(-128, 128, (R, C)) for _ in range(4)]
    A = [gen.integers(-128, 128, (M, R)) for _ in range(4)]
    out = []

    async def feed(ctx, tiles, cycles, record):
        wq = [list(r) for w in W[tiles] for r in w]
        aq = [(list(a[i]), i == M - 1) for a in A[tiles] for i in range(M)]
        for _ in range(cycles):
            _, psums = await _ws_step(ctx, dut, wq, aq, rnd.random() > 0.5)
            if psums and record:
                out.append(psums)

    async def drive(ctx):
        await feed(ctx, slice(0, 2), M + R + C + rnd.randint(2, 6), record=False)
        ctx.set(sync.rst, 1)
        ctx.set(dut.psums.ready, 0)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        await feed(ctx, slice(2, 4), 40 * (M + R + C), record=True)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run()
    expect = [(list(row), int(i == M - 1)) for a, w in zip(A[2:], W[2:]) for i, row in enumerate(matmul(a, w))]
    assert out == expect, f"seed {seed}: R={R} C={C} M={M}"


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


async def _ws_step(ctx, dut, wq, aq, ready):
    """One cycle of a WS array's streams: offers ``wq[0]`` and ``aq[0]`` (queues of weight rows and
    (activations, last), popped when taken) and drives ``psums.ready``. Returns whether an
    activation was taken, and the psum vector read as (data, last), or None."""
    ctx.set(dut.weights.valid, bool(wq))
    if wq:
        ctx.set(dut.weights.payload, wq[0])
    ctx.set(dut.acts.valid, bool(aq))
    if aq:
        ctx.set(dut.acts.payload, {"data": aq[0][0], "last": aq[0][1]})
    ctx.set(dut.psums.ready, ready)
    _, _, w_ready, a_ready, p_valid, p = await ctx.tick().sample(
        dut.weights.ready, dut.acts.ready, dut.psums.valid, dut.psums.payload)
    if wq and w_ready:
        wq.pop(0)
    taken = bool(aq) and bool(a_ready)
    if taken:
        aq.pop(0)
    return taken, (list(p.data), p.last) if p_valid and ready else None


def _ws_run(dut, tiles, M, ready, cycles):
    """Feed ``tiles`` all-ones weight tiles and M activations each at full rate; ``ready(cycle)``
    drives ``psums.ready``. Returns the cycles activations were taken and psums were read, and
    the psums read."""
    R, C = dut.config.rows, dut.config.cols
    log = {"taken": [], "read": [], "psums": []}

    async def drive(ctx):
        wq = [[1] * C for _ in range(R * tiles)]
        aq = [([i + 1] * R, i == M - 1) for _ in range(tiles) for i in range(M)]
        for cycle in range(cycles):
            taken, psums = await _ws_step(ctx, dut, wq, aq, ready(cycle))
            if taken:
                log["taken"].append(cycle)
            if psums:
                log["read"].append(cycle)
                log["psums"].append(psums)

    _simulate(dut, drive, cycles + 2)
    return log


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 2), (4, 4)])
def test_ws_full_rate_and_latency_with_an_always_ready_consumer(rows, cols):
    # The array never stalls inside; the output FIFO's credits cover the round trip, so one
    # activation per cycle goes in and one psum vector per cycle comes out, `latency` later.
    M, tiles = 3 * (rows + cols) + 5, 3
    dut = SystolicArray(ArrayConfig(rows=rows, cols=cols))
    log = _ws_run(dut, tiles, M, lambda cycle: True, 4 * M * tiles)
    taken, read = log["taken"], log["read"]
    assert len(taken) == len(read) == M * tiles
    assert taken == list(range(taken[0], taken[0] + M * tiles))
    assert [r - t for t, r in zip(taken, read)] == [dut.latency] * (M * tiles)
    assert log["psums"][:M] == [([rows * (i + 1)] * cols, int(i == M - 1)) for i in range(M)]


def test_ws_a_stalled_consumer_stops_the_input_at_the_fifo_depth_and_loses_nothing():
    R, C, M = 3, 4, 40
    dut = SystolicArray(ArrayConfig(rows=R, cols=C))
    release = 200
    log = _ws_run(dut, 1, M, lambda cycle: cycle >= release, release + 4 * M)
    # Held off: exactly as many activations as the FIFO has entries are taken, then none
    # until the consumer reads (one credit per read).
    before = [t for t in log["taken"] if t < release]
    assert len(before) == dut.psum_fifo_depth
    assert log["psums"] == [([R * (i + 1)] * C, int(i == M - 1)) for i in range(M)]
    assert log["read"][0] == release


def test_ecp5_elaboration_puts_each_multiplier_in_one_registered_dsp_block():
    # Yosys does not pull registers into ECP5 DSP blocks, so on an ECP5 platform every PE
    # instantiates a MULT18X18D with its input, pipeline and output registers on the clock;
    # elsewhere the same stages are behavioural (what the simulations run).
    from mensa.hw.convert import convert
    from amaranth.back import verilog

    class Ecp5:
        family = "ecp5"

    for dataflow in Dataflow:
        config = ArrayConfig(rows=2, cols=3, dataflow=dataflow)
        text = verilog.convert(SystolicArray(config), name="arr", platform=Ecp5(), emit_src=False)
        assert text.count("MULT18X18D ") == 6
        for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
            assert text.count(f'.REG_{reg}_CLK("CLK0")') == 6
    plain = convert(SystolicArray(config), "arr")
    assert "MULT18X18D" not in plain and plain.count(" * ") == 6


def test_rejects_a_non_config():
    with pytest.raises(TypeError, match="ArrayConfig"):
        SystolicArray({"rows": 2})
