"""Cycles of matrix products on a systolic array, fed at full rate (no DRAM term).

weight-stationary (``rows`` x ``cols``)
    The reduction K is tiled by ``rows`` (a conv's tap by tap, each tap's input channels
    padded to whole tiles, as the sequencer walks it), the output channels N by ``cols``,
    and M as the compiler tiles it (:mod:`mensa.model.tiling`). Per weight tile the array
    takes ``rows`` weight beats into its second weight bank, then one activation vector per
    cycle. A bank is free to reload only when the last activation of its tile has left the
    far corner PE (``rows + cols - 1`` cycles after it entered), so a tile's first
    activation waits until ``2 rows + cols - 1`` cycles after the last activation of the
    tile two before it: tiles shorter than that expose the difference, split between
    consecutive tiles (:func:`ws_exposed`). The pipeline runs across tiles, so the first
    weight load (``rows``) and the fill and drain (``rows + cols`` plus the PEs' multiplier
    stages and the output FIFO, ``Calibration.ws_fill_extra``) are paid once per step.
output-stationary
    M is tiled by ``rows``, N by ``cols``; per tile K operand beats, then the ``rows``
    result rows drain while the next tile computes, but a tile's last beat waits until the
    previous tile's last result row is out, ``rows + cols + 1`` cycles (plus the PEs'
    multiplier stages, ``Calibration.os_drain_extra``) after its last beat: a tile costs
    ``max(K, rows + cols + 1 + os_drain_extra)`` cycles, and the last tile's results leave
    ``rows + cols + os_fill_extra`` cycles after its last beat.

``acc`` is a :class:`~mensa.model.cost.AcceleratorTable`, ``cal`` a
:class:`~mensa.model.cost.Calibration`; quantities are numpy arrays over the
``layers x accelerators`` grid.
"""

import numpy as np

from mensa.model.tiling import cdiv

__all__ = ["ws_exposed", "systolic_gemm"]


def _alternating(n, prev, x, lo):
    """Sum and last of ``n`` terms ``e_i = max(x - e_(i-1), lo, 0)`` from ``e_0 = prev``.

    From the third term on the sequence repeats with period two (``a, max(x - a,
    lo, 0), a, ...``), so four terms fix the whole sum.
    """
    lo = np.maximum(lo, 0)
    t1 = np.maximum(x - prev, lo)
    t2 = np.maximum(x - t1, lo)
    t3 = np.maximum(x - t2, lo)
    t4 = np.maximum(x - t3, lo)
    rest = np.maximum(n - 2, 0)
    odd = np.ceil(rest / 2)
    total = np.minimum(n, 1) * t1 + (n >= 2) * t2 + odd * t3 + (rest - odd) * t4
    last = np.where(n <= 2, np.where(n == 0, prev, np.where(n == 1, t1, t2)), np.where(rest % 2 == 1, t3, t4))
    return total, last


def ws_exposed(n_a, m_a, n_b, m_b, rows, cols, cal):
    """Cycles a WS array waits for weights: ``n_a`` tiles of ``m_a`` vectors, then ``n_b`` of ``m_b``.

    Tile ``i``'s first vector enters no earlier than ``span = 2 rows + cols - 1``
    cycles after tile ``i - 2``'s last (its bank retires, then reloads ``rows``
    beats), and no earlier than ``rows`` cycles after tile ``i - 1``'s load (one
    weight port), so it waits ``e_i = max(span - m_(i-1) - e_(i-1), rows -
    m_(i-1), 0)``. The first load is not counted here; ``e_0 = rows + cols - 1``
    makes ``e_1 = max(0, rows - m_0)`` (tile 1's weights load while tile 0 runs).
    """
    retire = rows + cols - 1 + cal.ws_retire_extra
    span = retire + rows
    # Only tiles shorter than the span wait (m_b <= m_a): evaluate those pairs alone.
    n_a, m_a, n_b, m_b, retire, span, rows = np.broadcast_arrays(n_a, m_a, n_b, m_b, retire, span, rows)
    out = np.zeros(m_b.shape)
    short = m_b < span
    if short.any():
        n_a, m_a, n_b, m_b, retire, span, rows = (v[short] for v in (n_a, m_a, n_b, m_b, retire, span, rows))
        # Tiles 1 .. n_a follow an m_a tile (tile n_a is the first m_b tile when n_a > 0).
        sum_a, last_a = _alternating(n_a, retire, span - m_a, rows - m_a)
        sum_b, _ = _alternating(np.maximum(n_b - 1, 0), last_a, span - m_b, rows - m_b)
        out[short] = sum_a + sum_b
    return out


def systolic_gemm(M, K, N, G, R, acc, cal, tiling=None, taps=1):
    """Cycles and buffer bytes of ``G x R`` products ``M x K @ K x N`` on the systolic arrays.

    ``tiling``: a WS product's M tiles (:func:`mensa.model.tiling.ws_tiling`); without it,
    the tiles the accumulator buffer holds (a product whose input stays on chip). ``taps``: a
    WS array walks K as ``taps`` kernel taps of ``K / taps`` channels each, tiled by ``rows``.
    Only the dataflows present are computed (a single pair is evaluated often).

    Returns ``(compute, load, fill, weight buffer reads, activation buffer reads,
    accumulator bytes read and written, M tiles)``. The weights enter the array once per M
    tile, the activations once per N tile; every partial sum is written and read back once
    per K pass (WS: twice per K tile).
    """
    rows, cols = acc.rows, acc.cols
    live = M > 0
    nt = cdiv(N, cols)
    any_os, any_ws = bool(acc.os.any()), not bool(acc.os.all())
    ws = os_ = None
    if any_ws:
        kt = taps * cdiv(K / taps, rows)
        per_m = kt * nt * G
        if tiling is None:
            # M tile: the partial sums of one N tile held in the accumulator buffer.
            Mt = np.minimum(M, np.maximum(np.floor(acc.accbuf / (cols * acc.acc_bytes)), 1))
            mt = cdiv(M, Mt)
            Mp, shorts = M - (mt - 1) * Mt, 1
        else:
            Mt, mt, Mp, shorts = tiling.pixels, tiling.tiles, tiling.short, np.maximum(tiling.shorts, 1)
            Mp = np.where(tiling.shorts > 0, Mp, Mt)
        # One activation vector per cycle per (K, N) tile, M tile by M tile (the short ones
        # last, as if together), each M tile through every group and (N, K) tile; weight waits
        # by ws_exposed.
        ws = (kt * nt * M * G * R,
              R * (rows + ws_exposed((mt - shorts) * per_m, Mt, shorts * per_m, Mp, rows, cols, cal)),
              R * (rows + cols + cal.ws_fill_extra),
              mt, 2 * kt)
    if any_os:
        # K operand beats per (M, N) tile; a tile's last beat waits for the previous tile's drain.
        os_mt = cdiv(M, rows)
        os_tiles = os_mt * nt * G
        os_ = (os_tiles * K * R,
               R * (os_tiles - 1) * np.maximum(rows + cols + 1 + cal.os_drain_extra - K, 0),
               R * (rows + cols + cal.os_fill_extra),
               os_mt, 2)
    if ws is None or os_ is None:
        compute, load, fill, m_tiles, acc_passes = ws or os_
    else:
        compute, load, fill, m_tiles, acc_passes = (np.where(acc.os, o, w) for o, w in zip(os_, ws))
    # Buffer traffic: weights into the array once per M tile, activations once per N tile.
    w_reads = K * N * G * R * m_tiles
    a_reads = M * K * G * R * nt
    acc_rw = M * N * G * R * acc.acc_bytes * acc_passes
    return compute, np.where(live, load, 0.0), np.where(live, fill, 0.0), w_reads, a_reads, acc_rw, m_tiles
