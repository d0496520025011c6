"""Products on the FPGA's terms: ``lut_product`` equals ``*`` on every pair of narrow values, and
``registered_product`` on random signed pairs, ``PRODUCT_STAGES`` cycles later (simulation)."""

import random

from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from mensa.hw.dsp import PRODUCT_STAGES, lut_product, registered_product


def test_lut_product_of_every_pair_of_three_and_five_bit_values():
    a, b = Signal(5), Signal(3)
    p = Signal(8)
    m = Module()
    m.d.comb += p.eq(lut_product(a, b))
    sim = Simulator(m)
    seen = []

    async def bench(ctx):
        for x in range(32):
            for y in range(8):
                ctx.set(a, x)
                ctx.set(b, y)
                seen.append((x, y, ctx.get(p)))
    sim.add_testbench(bench)
    sim.run()
    assert [v for _, _, v in seen] == [x * y for x, y, _ in seen]


def test_registered_product_equals_the_product_stages_later():
    rnd = random.Random(7)
    a, b = Signal(signed(9)), Signal(signed(8))
    m = Module()
    p = registered_product(m, None, a, b, 17, "mul")
    pairs = [(rnd.randrange(-256, 256), rnd.randrange(-128, 128)) for _ in range(50)] + [(-256, -128), (255, 127)]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for x, y in pairs + [(0, 0)] * PRODUCT_STAGES:
            ctx.set(a, x)
            ctx.set(b, y)
            await ctx.tick()
            got.append(ctx.get(p))
    sim.add_testbench(bench)
    sim.run()
    assert got[PRODUCT_STAGES - 1:PRODUCT_STAGES - 1 + len(pairs)] == [x * y for x, y in pairs]
