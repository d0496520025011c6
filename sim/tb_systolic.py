"""cocotb testbench of the systolic array: random int8 GEMMs larger than the array.

Parameters come in ``MENSA_TB`` (JSON): ``rows``, ``cols``, ``dataflow``, ``shapes``
(a list of [M, K, N], or an int: that many random shapes), ``max_dim``, ``gap``
(probability of a valid/ready gap), ``result`` (a path for the measured figures).

A shape may carry two more numbers, [M, K, N, G, m_tile]: G independent products
(a depthwise layer's channels, a grouped convolution's groups) streamed back to back
as one workload, and (weight-stationary) the rows of A per M tile, tiles taken
M tile by M tile, then group by group, then N, then K. Figures: ``cycles`` from the first activation
(operand) beat taken, ``core_cycles`` from the first beat of any input (weights
included), both to the last output beat taken.

Driver: tiles A (M x K) and B (K x N) onto the array and feeds its streams.
Monitor: collects the output beats. Model: ``mensa.core.golden.matmul`` of the
tile. Checker: every beat against the model, in order, and the accumulated C
against the golden product of the whole A and B.
"""

import cocotb
import numpy as np

from mensa.core import golden
from mensa.sim.streams import pack, unpack
from mensa.sim.testbench import TB


def _shapes(p, gen):
    shapes = p["shapes"]
    if isinstance(shapes, list):
        return [tuple(s) for s in shapes]
    hi = p.get("max_dim", 3 * max(p["rows"], p["cols"]) + 1)
    out = [(int(gen.integers(1, hi)), 1, int(gen.integers(1, hi)))]   # K = 1 always covered
    while len(out) < shapes:
        out.append(tuple(int(v) for v in gen.integers(1, hi, size=3)))
    return out


def _tile(mat, r0, r1, c0, c1):
    """mat[r0:r1, c0:c1] padded with zeros to (r1-r0) x (c1-c0)."""
    out = np.zeros((r1 - r0, c1 - c0), dtype=mat.dtype)
    part = mat[r0:r1, c0:c1]
    out[:part.shape[0], :part.shape[1]] = part
    return out


def _ports_ws(tb):
    return tb.source("weights", salt=1), tb.source("acts", salt=2), tb.sink("psums", salt=3)


def _ports_os(tb):
    return tb.source("operands", salt=1), tb.sink("results", salt=3)


async def _gemm_ws(p, ports, a, b, m_tile=None):
    """``a``, ``b``: lists of G products' operands, streamed back to back."""
    R, C, acc_bits = p["rows"], p["cols"], p["acc_bits"]
    M, K = a[0].shape
    N = b[0].shape[1]
    mt = m_tile or M
    weights, acts, psums = ports
    acts.first_cycle = weights.first_cycle = None
    tiles = [(g, m0, min(m0 + mt, M), n0, k0) for m0 in range(0, M, mt) for g in range(len(a))
             for n0 in range(0, N, C) for k0 in range(0, K, R)]
    for g, m0, m1, n0, k0 in tiles:                            # driver
        wt = _tile(b[g], k0, k0 + R, n0, n0 + C)
        for i in range(R):
            weights.send(pack(wt[i], p["weight_bits"]))
        at = _tile(a[g], m0, m1, k0, k0 + R)
        for mi in range(m1 - m0):
            acts.send(pack(at[mi], p["input_bits"]) | (int(mi == m1 - m0 - 1) << (R * p["input_bits"])))
    c = np.zeros((len(a), M, N), dtype=np.int64)
    for g, m0, m1, n0, k0 in tiles:                            # monitor + model + checker
        expect = golden.matmul(_tile(a[g], m0, m1, k0, k0 + R), _tile(b[g], k0, k0 + R, n0, n0 + C))
        for mi in range(m1 - m0):
            word = await psums.recv()
            got = unpack(word, C, acc_bits)
            last = (word >> (C * acc_bits)) & 1
            where = f"group {g} tile m0={m0} n0={n0} k0={k0} row {mi}"
            assert got == expect[mi].tolist(), f"{where}: got {got}, expected {expect[mi].tolist()}"
            assert last == int(mi == m1 - m0 - 1), f"{where}: last={last}"
            n1 = min(n0 + C, N)
            c[g, m0 + mi, n0:n1] += got[:n1 - n0]
    return c, acts.first_cycle, min(acts.first_cycle, weights.first_cycle), psums.last_cycle


async def _gemm_os(p, ports, a, b, m_tile=None):
    """``a``, ``b``: lists of G products' operands, streamed back to back."""
    R, C, acc_bits = p["rows"], p["cols"], p["acc_bits"]
    M, K = a[0].shape
    N = b[0].shape[1]
    operands, results = ports
    operands.first_cycle = None
    tiles = [(g, m0, n0) for g in range(len(a)) for m0 in range(0, M, R) for n0 in range(0, N, C)]
    ia, wb = p["input_bits"], p["weight_bits"]
    for g, m0, n0 in tiles:                                    # driver
        at = _tile(a[g], m0, m0 + R, 0, K)
        bt = _tile(b[g], 0, K, n0, n0 + C)
        for k in range(K):
            operands.send(pack(at[:, k], ia) | (pack(bt[k], wb) << (R * ia)) | (int(k == K - 1) << (R * ia + C * wb)))
    c = np.zeros((len(a), M, N), dtype=np.int64)
    for g, m0, n0 in tiles:                                    # monitor + model + checker
        expect = golden.matmul(_tile(a[g], m0, m0 + R, 0, K), _tile(b[g], 0, K, n0, n0 + C))
        for i in range(R):
            word = await results.recv()
            got = unpack(word, C, acc_bits)
            last = (word >> (C * acc_bits)) & 1
            where = f"group {g} tile m0={m0} n0={n0} row {i}"
            assert got == expect[i].tolist(), f"{where}: got {got}, expected {expect[i].tolist()}"
            assert last == int(i == R - 1), f"{where}: last={last}"
            if m0 + i < M:
                n1 = min(n0 + C, N)
                c[g, m0 + i, n0:n1] = got[:n1 - n0]
    return c, operands.first_cycle, operands.first_cycle, results.last_cycle


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def gemm_random_shapes(dut):
    """Random int8 GEMMs, tiled onto the array, equal the golden matmul bit for bit."""
    tb = TB(dut)
    p = tb.params
    gen = tb.rng()
    await tb.reset()
    ws = p["dataflow"] == "ws"
    ports = _ports_ws(tb) if ws else _ports_os(tb)
    gemm = _gemm_ws if ws else _gemm_os
    lo, hi = -(1 << (p["input_bits"] - 1)), 1 << (p["input_bits"] - 1)
    wlo, whi = -(1 << (p["weight_bits"] - 1)), 1 << (p["weight_bits"] - 1)
    figures = []
    for M, K, N, *more in _shapes(p, gen):
        G = more[0] if more else 1
        m_tile = more[1] if len(more) > 1 else None
        a = [gen.integers(lo, hi, size=(M, K), dtype=np.int64) for _ in range(G)]
        b = [gen.integers(wlo, whi, size=(K, N), dtype=np.int64) for _ in range(G)]
        c, first, first_any, last = await gemm(p, ports, a, b, m_tile)
        for g in range(G):
            expect = golden.matmul(a[g], b[g])
            assert np.array_equal(c[g].astype(np.int32), expect), f"GEMM {M}x{K}x{N} group {g}: C differs from golden"
        # Cycles from the first input beat taken to the last output beat taken, inclusive.
        cycles = last - first + 1
        util = G * M * N * K / (p["rows"] * p["cols"] * cycles)
        tb.log.info(f"GEMM M={M} K={K} N={N} G={G}: {cycles} cycles, utilisation {util:.3f}")
        figures.append({"M": M, "K": K, "N": N, "G": G, "m_tile": m_tile or M, "cycles": cycles,
                        "core_cycles": last - first_any + 1, "utilisation": util})
        await tb.wait_idle(settle=3)
    tb.write_result(figures)
