"""Fast amaranth.sim checks of the LSTM cell against the golden model's steps 3-6, with handshake gaps.

Per block of ``lanes`` hidden units the cell takes the four input halves (gates i, f, g, o) and the
four recurrent halves and gives ``m = o * tanh(c)``, keeping each block's cell state ``c`` across time
steps (zero at the first): every ``m`` equals :func:`mensa.core.golden.lstm_cell`'s arithmetic on the
same halves (``pre = sat16(gx + gh)``, the interpolated sigmoid and tanh tables, ``c`` rounded and
saturated), bit for bit.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.core import golden
from mensa.hw.lstm import CYCLES_PER_BLOCK, LstmCell
from mensa.sim.sim_streams import stream_get, stream_put

GATES = 4


def _expected(gx, gh):
    """``m`` of every (step, block) from halves ``gx``, ``gh`` of shape (steps, blocks, gates, lanes)."""
    steps, blocks, _, lanes = gx.shape
    c = np.zeros((blocks, lanes), dtype=np.int32)
    out = np.zeros((steps, blocks, lanes), dtype=np.int64)
    for t in range(steps):
        for b in range(blocks):
            pre = np.clip(gx[t, b].astype(np.int32) + gh[t, b], -32768, 32767)
            i, f, o = (golden.sigmoid_q15(pre[q]).astype(np.int64) for q in (0, 1, 3))
            g = golden.tanh_q15(pre[2]).astype(np.int64)
            c_new = (golden.rounding_divide_by_pot(f * c[b], golden.ACT_FRAC_BITS)
                     + golden.rounding_divide_by_pot(i * g, 2 * golden.ACT_FRAC_BITS - golden.CELL_FRAC_BITS))
            c[b] = np.clip(c_new, -32768, 32767)
            c_q312 = np.clip(c[b] << (golden.GATE_FRAC_BITS - golden.CELL_FRAC_BITS), -32768, 32767)
            out[t, b] = o * golden.tanh_q15(c_q312).astype(np.int64)
    return out


def _run(gx, gh, *, seed, gap, layers=2):
    """``m`` of every (step, block), for each of ``layers`` runs of the same halves on one cell (each
    started anew: its cell state zero at the first step, whatever the memory holds)."""
    steps, blocks, _, lanes = gx.shape
    rng = random.Random(seed)
    dut = LstmCell(lanes=lanes, max_blocks=blocks + 1, queue=2 * GATES)
    got, started = [], []

    async def drive(ctx):
        for layer in range(layers):
            while len(started) <= layer:
                await ctx.tick()
            for t in range(steps):
                for b in range(blocks):
                    for halves, port in ((gx, dut.gx), (gh, dut.gh)):
                        for q in range(GATES):
                            await stream_put(ctx, port, [int(v) for v in halves[t, b, q]], rng=rng, gap=gap)

    async def collect(ctx):
        ctx.set(dut.blocks, blocks)
        for layer in range(layers):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            started.append(layer)
            for _ in range(steps * blocks):
                beat = await stream_get(ctx, dut.m, rng=rng, gap=gap)
                got.append([int(v) for v in beat.data])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(collect)
    sim.add_testbench(drive, background=True)
    sim.run()
    return np.array(got, dtype=np.int64).reshape(layers, steps, blocks, lanes)


@pytest.mark.parametrize("seed", range(3))
def test_m_of_random_blocks_and_steps_with_gaps_bit_exact(seed):
    # random halves over the whole int16 range and near zero (where the tables bend), saturating sums
    # included; several steps, so each block's cell state is read back and carried
    gen = np.random.default_rng(seed)
    steps, blocks, lanes = 3, int(gen.integers(1, 4)), int(gen.integers(1, 5))
    print(f"seed {seed}: {steps} steps, {blocks} blocks, {lanes} lanes")
    shape = (steps, blocks, GATES, lanes)
    wide = gen.integers(-32768, 32768, shape)
    near = gen.integers(-12000, 12000, shape)
    gx = np.where(gen.random(shape) < 0.5, wide, near).astype(np.int16)
    gh = gen.integers(-16000, 16000, shape).astype(np.int16)
    got = _run(gx, gh, seed=seed, gap=0.3)
    expect = _expected(gx, gh)
    for layer in range(len(got)):
        assert np.array_equal(got[layer], expect), f"seed {seed}, layer {layer}: got\n{got[layer]}\nexpected\n{expect}"


def test_a_block_every_cycles_per_block_cycles_without_gaps():
    # the cost model's CYCLES_PER_BLOCK is the cell's own rate: halves always offered, m always taken
    lanes, blocks = 2, 6
    dut = LstmCell(lanes=lanes, max_blocks=blocks, queue=2 * GATES)
    emitted = []

    async def bench(ctx):
        ctx.set(dut.blocks, blocks)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.gx.payload, [100, -100])
        ctx.set(dut.gh.payload, [7, 9])
        ctx.set(dut.gx.valid, 1)
        ctx.set(dut.gh.valid, 1)
        ctx.set(dut.m.ready, 1)
        for cycle in range(blocks * CYCLES_PER_BLOCK + 20):
            _, _, valid = await ctx.tick().sample(dut.m.valid)
            if valid:
                emitted.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(emitted) >= blocks
    assert np.diff(emitted[:blocks]).tolist() == [CYCLES_PER_BLOCK] * (blocks - 1)
