"""The vector unit alone, on a DRAM model with random latency and gaps: depthwise, pool, add, mul and
table-activation layers bit-exact with the golden model, each input pixel read once."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.core.ir import Op
from mensa.hw.vector import VectorUnit
from tests.unit.vector_parts import (Dram, compiled, descriptor, random_add, random_depthwise, random_mul,
                                    random_pool, vector_config, with_table)


@pytest.mark.parametrize("seed", range(4))
def test_depthwise_layers_bit_exact_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    run_layer(rng, seed, random_depthwise(rng, max_k=7 if seed % 2 else 3))


@pytest.mark.parametrize("seed", range(100, 106))
def test_pools_bit_exact_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    run_layer(rng, seed, random_pool(rng))


@pytest.mark.parametrize("seed", range(200, 203))
def test_mul_by_a_per_channel_gate_bit_exact_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    run_layer(rng, seed, random_mul(rng))


@pytest.mark.parametrize("seed", range(300, 303))
def test_add_of_two_quantisations_bit_exact_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    run_layer(rng, seed, random_add(rng))


@pytest.mark.parametrize("seed", range(400, 403))
def test_table_activations_after_the_requantiser_bit_exact(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    layer = (random_depthwise, random_add, random_mul)[seed % 3](rng)
    run_layer(rng, seed, with_table(rng, layer))


def run_layer(rng, seed, layer):
    """``layer`` on the vector unit against the DRAM model: the golden output, each input pixel read once."""
    lanes, data_bits = ((4, 32), (8, 64), (4, 64), (8, 32))[seed % 4]
    config = vector_config(lanes=lanes, data_bits=data_bits)
    prog, expect = compiled(config, layer, seed)
    dut = VectorUnit(config)
    dram = Dram(prog.image, data_bits // 8, rng)
    pending, clock, done = [], [0], []

    async def control(ctx):
        ctx.set(dut.desc, descriptor(prog, lanes))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().until(dut.done)
        done.append(clock[0])

    async def reads(ctx):
        await dram.reads(ctx, dut, pending, clock)

    async def answers(ctx):
        await dram.answers(ctx, dut, pending, clock)

    async def writes(ctx):
        await dram.writes(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(control)
    for bench in (reads, answers, writes):
        sim.add_testbench(bench, background=True)
    elapsed = 0
    while not done and elapsed < 100_000:
        elapsed += 500
        sim.run_until(elapsed * 1e-6)
    assert done, f"seed {seed}: no done after 100000 cycles"
    at = prog.output_addr - prog.base
    got = prog.output(dram.mem[at:at + prog.output_bytes])
    np.testing.assert_array_equal(got, expect, err_msg=f"seed {seed}: {layer}")
    g = prog.geometry
    planes = -(-layer.in_channels // lanes)
    h, w = layer.in_shape[1:3]
    taps = {Op.DEPTHWISE: layer.kernel[0] * layer.kernel[1], Op.MUL: 1}.get(layer.op, 0)
    inputs = 2 if layer.op is Op.ADD else 1
    records = g.quant_bytes if layer.op in (Op.DEPTHWISE, Op.ADD, Op.MUL, Op.GLOBAL_AVGPOOL) else 0
    table = 256 if layer.activation.value not in ("none", "relu", "relu6") else 0
    assert dram.read_bytes == planes * ((inputs * h * w + taps) * g.pixel_bytes + records) + table
