"""The window walk: every tap of every window in order, at the line buffer's ring address of its
input row, only once that row is loaded, and never past the rows it has freed."""

import random

import pytest
from amaranth.sim import Simulator

from mensa.contract.vector_program import line_rows, ring_rows, window
from mensa.hw.vector_walk import WindowWalker
from tests.unit.vector_parts import compiled, descriptor, random_depthwise, random_pool, vector_config

WEIGHTS = 64


def expected_taps(config, layer, lanes):
    """(line_addr or None for padding, weight_addr, first, last, tile_last) of every tap, in walk order."""
    (kh, kw), (sh, sw), (dh, dw), (pt, _, pl, _) = window(layer)
    _, h, w, c = layer.in_shape
    _, oh, ow, _ = layer.out_shape
    ring = ring_rows(config, layer)
    taps = []
    for t in range(-(-c // lanes)):
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sh - pt + ky * dh, ox * sw - pl + kx * dw
                        inside = 0 <= iy < h and 0 <= ix < w
                        addr = ((t * h + iy) % ring) * w + ix if inside else None
                        last = ky == kh - 1 and kx == kw - 1
                        taps.append((addr, (t % 2) * WEIGHTS + (ky * kw + kx) % WEIGHTS, ky == kx == 0, last,
                                     last and oy == oh - 1 and ox == ow - 1, t * h + iy))
    return taps


@pytest.mark.parametrize("seed", range(10))
def test_taps_follow_the_windows_and_wait_for_their_rows(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    lanes = 4
    config = vector_config(lanes=lanes)
    layer = random_depthwise(rng, max_k=5) if seed % 3 else random_pool(rng)
    prog, _ = compiled(config, layer, seed)
    desc = descriptor(prog, lanes)
    want = expected_taps(config, layer, lanes)
    assert desc["line_rows"] == ring_rows(config, layer) >= line_rows(layer)
    total_rows = desc["tiles"] * desc["in_h"]
    dut = WindowWalker(line_depth=prog.geometry.line_depth, weight_depth=WEIGHTS, addr_bits=32)
    got = []

    async def bench(ctx):
        ctx.set(dut.layer, desc)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        loaded = 0
        ctx.set(dut.loaded_tiles, 1 << 15 if seed % 2 else 0)
        while len(got) < len(want):
            freed = ctx.get(dut.freed)
            # a loader: the next row once the ring has room for it, at random
            if loaded < min(total_rows, freed + desc["line_rows"]) and rng.random() < 0.3:
                loaded += 1
            ctx.set(dut.loaded_rows, loaded)
            if not seed % 2:
                ctx.set(dut.loaded_tiles, min(desc["tiles"], ctx.get(dut.tile) + 2) if rng.random() < 0.5 else
                        ctx.get(dut.tile))
            ready = rng.random() < 0.7
            ctx.set(dut.taps.ready, ready)
            if ctx.get(dut.taps.valid) and ready:
                p = ctx.get(dut.taps.payload)
                i = len(got)
                addr, _, _, _, _, row = want[i]
                if addr is not None:
                    assert freed <= row < loaded, f"seed {seed} tap {i}: row {row} outside {freed}..{loaded - 1}"
                got.append((None if p.pad else int(p.line_addr), int(p.weight_addr) if layer.op.value == "depthwise"
                            else want[i][1], int(p.first), int(p.last), int(p.tile_last)))
            await ctx.tick()
        for _ in range(5):
            ctx.set(dut.taps.ready, 1)
            assert not ctx.get(dut.taps.valid), f"seed {seed}: a tap after the walk"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(a, wa, int(f), int(la), int(tl)) for a, wa, f, la, tl, _ in want], f"seed {seed}"
