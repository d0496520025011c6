"""The read issue walks the loop nest of mensa.contract.gemm: its reads, segments and K tile flags."""

import random

import pytest

from mensa.contract.gemm import LayerWalk
from mensa.hw.gemm_issue import SegmentIssuer
from mensa.hw.gemm_layer import ACT, PAD, Q, WBUF, WTS
from mensa.sim.sim_streams import stream_get
from tests.unit.gemm_parts import ADDR_BITS, descriptor, geometry, random_walk, run

QUANT_ADDR, WEIGHT_ADDR = 0x4000, 0x10000


def expected_walk(g, walk, tile, *, n, depthwise, resident):
    """The reads, weight segments, activation segments and K tile flags of the loop nest."""
    R, C = g.rows, g.cols
    sa = (g.act_depth - 1).bit_length() or 1
    wa = max((g.weight_depth - 1).bit_length(), 1)
    (sh, sw), (dh, dw) = walk.stride, walk.dilation
    cmds, wsegs, asegs, flags = [], [], [], []
    for mi, (ty, tx, rows, cols) in enumerate(walk.m_tiles(*tile)):
        iy_lo, iy_hi, ix_lo, ix_hi = walk.window(ty, tx, rows, cols)
        win_w = ix_hi - ix_lo
        plane = (iy_hi - iy_lo) * win_w
        pixels = [(oy, ox) for oy in range(ty, ty + rows) for ox in range(tx, tx + cols)]
        k_tile = 0
        nt = -(-n // C)
        for t in range(nt):
            cmds.append((QUANT_ADDR + t * g.quant_bytes, g.quant_words - 1))
            wsegs.append((Q, 0, 0))
            taps = [(ky, kx) for ky in range(walk.kernel[0]) for kx in range(walk.kernel[1])]
            cts = list(g.channel_tiles(walk.k, t, depthwise=depthwise))
            for ky, kx in taps:
                for ct in cts:
                    from_buf = resident and mi > 0
                    if not from_buf:
                        cmds.append((WEIGHT_ADDR + k_tile * R * g.weight_bytes, R * g.weight_words - 1))
                    wsegs.append((WBUF if from_buf else WTS, int(resident), (k_tile * R) % (1 << wa)))
                    final = (ky, kx, ct) == (*taps[-1], cts[-1])
                    flags.append(((ky, kx, ct) == (0, 0, cts[0]), final))
                    k_tile += 1
                    segs = []
                    for oy in range(ty, ty + rows):
                        row = [ox for y, ox in pixels if y == oy]
                        iy = oy * sh - walk.pad_top + ky * dh
                        inside = [ox for ox in row if 0 <= iy < walk.in_h
                                  and 0 <= ox * sw - walk.pad_left + kx * dw < walk.in_w]
                        if not inside:
                            segs.append([PAD, len(row), 0, 0])
                            continue
                        left, right = inside[0] - row[0], row[-1] - inside[-1]
                        if left:
                            segs.append([PAD, left, 0, 0])
                        ix = inside[0] * sw - walk.pad_left + kx * dw
                        addr = ct * plane + (iy - iy_lo) * win_w + ix - ix_lo
                        segs.append([ACT, len(inside), int(sw == 2), addr % (1 << sa)])
                        if right:
                            segs.append([PAD, right, 0, 0])
                    for i, (kind, count, skip, addr) in enumerate(segs):
                        end = i == len(segs) - 1
                        asegs.append((kind, count, skip, int(end), int(final and t == nt - 1), addr))
    return cmds, wsegs, asegs, flags


@pytest.mark.parametrize("seed", range(12))
def test_the_walk_issues_the_loop_nest_under_random_gaps(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    g = geometry()
    depthwise = rng.random() < 0.3
    k = rng.randint(1, 13)
    n = k if depthwise else rng.randint(1, 12)
    walk = random_walk(rng, k=k, max_hw=5)
    rows = rng.randint(1, min(walk.out_h, g.acc_depth // walk.out_w)) if rng.random() < 0.5 else 1
    tile = (rows, walk.out_w) if rows > 1 else (1, rng.randint(1, min(walk.out_w, g.acc_depth)))
    resident = rng.random() < 0.5
    want = expected_walk(g, walk, tile, n=n, depthwise=depthwise, resident=resident)
    dut = SegmentIssuer(geometry=g, addr_bits=ADDR_BITS)
    got = ([], [], [], [])

    async def control(ctx):
        ctx.set(dut.layer, descriptor(walk, tile, n=n, depthwise=depthwise, resident=resident,
                                      quant_addr=QUANT_ADDR, weight_addr=WEIGHT_ADDR))
        ctx.set(dut.loaded, {"tiles": 1 << 20})         # every window requested
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    def sink(port, i, fields):
        async def bench(ctx):
            for _ in want[i]:
                beat = await stream_get(ctx, port, rng=rng, gap=0.3)
                got[i].append(tuple(int(getattr(beat, f)) for f in fields))
        return bench

    run(dut, [control,
              sink(dut.rd_cmd, 0, ("addr", "count")),
              sink(dut.weight_seg, 1, ("kind", "store", "addr")),
              sink(dut.act_seg, 2, ("kind", "count", "skip", "end", "release", "addr")),
              sink(dut.k_flags, 3, ("first", "final"))])
    for name, g_, w_ in zip(("reads", "weight segments", "activation segments", "flags"), got, want):
        assert g_ == list(w_), name


def test_weights_wait_for_the_loader_to_request_their_channel_tile():
    g = geometry()
    walk = LayerWalk(k=2 * g.rows, in_h=1, in_w=4, out_h=1, out_w=4)
    dut = SegmentIssuer(geometry=g, addr_bits=ADDR_BITS)
    reads = []
    second = WEIGHT_ADDR + g.rows * g.weight_bytes          # the second channel tile's weights

    async def control(ctx):
        ctx.set(dut.layer, descriptor(walk, (1, 4), n=1, quant_addr=QUANT_ADDR, weight_addr=WEIGHT_ADDR))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for port in (dut.weight_seg, dut.act_seg, dut.k_flags, dut.rd_cmd):
            ctx.set(port.ready, 1)
        # the loader is issuing the window's first channel tile (channel 0), then the second
        # (channel rows), then is done (tiles 1): each K tile's weights wait for their tile
        for loaded, want in [({"tiles": 0, "issuing": 1, "channel": 0}, [QUANT_ADDR]),
                             ({"tiles": 0, "issuing": 1, "channel": g.rows}, [QUANT_ADDR, WEIGHT_ADDR]),
                             ({"tiles": 0, "issuing": 0, "channel": 2 * g.rows}, [QUANT_ADDR, WEIGHT_ADDR]),
                             ({"tiles": 1, "issuing": 0, "channel": 2 * g.rows},
                              [QUANT_ADDR, WEIGHT_ADDR, second])]:
            ctx.set(dut.loaded, loaded)
            for _ in range(40):
                _, _, valid, cmd = await ctx.tick().sample(dut.rd_cmd.valid, dut.rd_cmd.payload)
                if valid:
                    reads.append(cmd.addr)
            assert reads == want, loaded

    run(dut, [control])


def test_parameters_are_checked():
    with pytest.raises(TypeError, match="geometry must be a GemmGeometry, not 1"):
        SegmentIssuer(geometry=1, addr_bits=ADDR_BITS)
