"""M tiles of a weight-stationary product, as the compiler cuts them, and the input windows they read.

A WS product ``M x K @ K x N`` is walked M tile by M tile
(:meth:`mensa.contract.gemm.GemmGeometry.tiling`): a tile is the most whole output rows
whose partial sums fit the accumulator buffer (``cols`` lanes of ``acc_bits`` a pixel) and,
for an input streamed from DRAM, whose input window fits one half of the ping-pong
activation scratchpad; else the longest part of an output row that fits both. A tile's
window is the input rows (for part of a row, the input columns) under its kernels, every
channel tile of ``rows`` channels; neighbouring tiles share their kernels' halo rows, and
the tiles at an edge do not read the padding their windows reach into. An FC, LSTM or
pointwise product is one row of M pixels. Every quantity is a numpy array over the
``layers x accelerators`` grid.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["cdiv", "Tiling", "Window", "accumulator_tiles", "ws_tiling"]


def cdiv(a, b):
    """Tiles of ``b`` covering ``a`` (``ceil(a / b)``, with ``b`` at least 1), elementwise."""
    return np.ceil(a / np.maximum(b, 1))


@dataclass
class Tiling:
    """The M tiles of a WS product (:func:`ws_tiling`), every field ``(L, A)`` or broadcastable."""
    pixels: object        # output pixels of a full M tile
    tiles: object         # M tiles of the product (all images)
    short: object         # pixels of a short tile (the last rows of an image, the last part of a row)
    shorts: object        # how many tiles are short
    vectors: object       # input vectors (rows bytes) all the windows read, every channel tile
    first: object         # input vectors of the first tile's window
    commands: object      # DMA commands reading the windows: one per channel tile, per row for part rows
    halo: object          # window pixels read over input pixels (>= 1 with halo rows shared by tiles)
    segments: object      # activation segments the walk queues per K tile (a row's read and its padding)
    run: object           # input vectors of one DMA command of a full tile's window (one channel tile's
    #                       rows, or one row's columns)
    run_short: object     # the same of a short tile's window
    segments_short: object = 0.0    # the activation segments of a short tile's K tile (0: as a full tile's)


class Window:
    """A :class:`~mensa.model.cost.LayerTable`'s window columns as ``(L, 1)`` arrays (``col`` makes one)."""

    def __init__(self, lt, col):
        for name in ("images", "in_h", "in_w", "out_h", "out_w", "span_h", "span_w", "stride_h", "stride_w",
                     "pad_top", "pad_left", "pad_w", "in_c", "taps"):
            setattr(self, name, col(getattr(lt, name)))


def accumulator_tiles(M, acc):
    """``(pixels, tiles, short, shorts)``: M tiles of what the accumulator buffer holds alone."""
    Mt = np.minimum(M, np.maximum(np.floor(acc.accbuf / (acc.cols * acc.acc_bytes)), 1))
    mt = np.where(M > 0, cdiv(M, Mt), 1.0)
    Mp = M - (mt - 1) * Mt
    return Mt, mt, Mp, np.where(Mp < Mt, 1.0, 0.0)


def _clipped(pad, step, last=None):
    """Window rows lost to ``pad`` rows of padding by tiles ``step`` rows apart from the edge:
    ``sum max(pad - j step, 0)``; ``last``: the tile at the edge is ``last`` rows (not ``step``) long."""
    if last is not None:
        return np.maximum(pad, 0) + _clipped(pad - last, step)
    pad = np.maximum(pad, 0)
    n = np.ceil(pad / step)
    return n * pad - step * n * (n - 1) / 2


def ws_tiling(w, acc):
    """The WS compiler's M tiles and their windows (module docstring), vectorised.

    A pixel whose window alone overflows the half scratchpad is taken as a one-pixel tile
    (the compiler refuses the layer). ``w``: the layer's :class:`Window`, ``acc`` the
    :class:`~mensa.model.cost.AcceleratorTable`.
    """
    ct = np.maximum(cdiv(w.in_c, acc.rows), 1)                          # channel tiles
    ih, iw, oh, ow = (np.maximum(v, 1) for v in (w.in_h, w.in_w, w.out_h, w.out_w))
    sh, sw, kh, kw = w.stride_h, w.stride_w, w.span_h, w.span_w
    acc_px = np.maximum(np.floor(acc.accbuf / (acc.cols * acc.acc_bytes)), 1)
    depth = acc.act_depth
    # whole rows: input rows a window may hold, then output rows whose kernels they cover
    h_max = np.floor(depth / (ct * iw))
    r_win = np.where(h_max >= ih, oh, np.floor((h_max - kh) / sh) + 1)
    r = np.minimum(np.minimum(oh, np.floor(acc_px / ow)), r_win)
    whole = r >= 1
    # part of a row: the kernel's rows, input columns a window may hold
    in_rows = np.minimum(ih, kh)
    c_max = np.floor(depth / (ct * in_rows))
    c_win = np.where(c_max >= iw, ow, np.floor((c_max - kw) / sw) + 1)
    c = np.maximum(np.minimum(np.minimum(ow, acc_px), c_win), 1)
    t_rows, t_cols = np.where(whole, r, 1), np.where(whole, ow, c)
    per_row = np.where(whole, 1, cdiv(ow, t_cols))                      # tiles across an output row
    per_image = np.where(whole, cdiv(oh, t_rows), oh * per_row)
    pixels = t_rows * t_cols
    short = np.where(whole, (oh - (per_image - 1) * t_rows) * ow, ow - (per_row - 1) * t_cols)
    shorts = np.where(short < pixels, w.images * np.where(whole, 1, oh), 0)
    # Windows, clipped to the input: neighbouring tiles share their kernels' halo rows (columns);
    # the tiles nearest an edge lose the padding rows (columns) their windows reach into. A tile
    # of several rows reads whole input rows; one of a single row only the columns under it.
    pad_h = np.maximum((oh - 1) * sh + kh - ih, 0)
    pad_w = np.maximum((ow - 1) * sw + kw - iw, 0)
    row_step, last_rows = np.where(whole, t_rows, 1) * sh, np.where(whole, oh - (per_image - 1) * t_rows, 1)
    rows_read = (np.where(whole, (oh - per_image) * sh + per_image * kh, oh * kh)
                 - _clipped(w.pad_top, row_step) - _clipped(pad_h - w.pad_top, row_step, last_rows * sh))
    col_step, last_cols = t_cols * sw, ow - (per_row - 1) * t_cols
    cols_read = np.where(t_rows > 1, iw, (ow - per_row) * sw + per_row * kw
                         - _clipped(w.pad_left, col_step) - _clipped(pad_w - w.pad_left, col_step, last_cols * sw))
    windows = np.where(whole, per_image, oh)                            # row windows per image
    pixels_read = w.images * np.maximum(rows_read, windows) * cols_read
    first_rows = np.clip((t_rows - 1) * sh + kh - w.pad_top, 0, ih)
    first_cols = np.where(t_rows > 1, iw, np.clip((t_cols - 1) * sw + kw - w.pad_left, 0, iw))
    # A row is a scratchpad read and, under the taps that reach into the left or right
    # padding, a zero-point segment besides.
    pads = (np.minimum(w.pad_left, kw - 1) + np.minimum(w.pad_w - w.pad_left, kw - 1)) / kw
    segments = t_rows * (1 + pads)
    segments_short = np.where(whole, last_rows, 1) * (1 + pads)
    # One command's vectors (bursts are cut from each command alone): a full tile's window,
    # interior, and a short tile's.
    run = np.where(whole, np.minimum((t_rows - 1) * sh + kh, ih) * iw, np.minimum((t_cols - 1) * sw + kw, iw))
    s_px = np.where(whole, last_rows, last_cols)
    run_short = np.where(whole, np.minimum((s_px - 1) * sh + kh, ih) * iw, np.minimum((s_px - 1) * sw + kw, iw))
    live = w.in_h > 0
    tiles = np.where(live, w.images * per_image, 1.0)
    return Tiling(run=run, run_short=run_short, pixels=pixels, tiles=tiles, short=short, shorts=shorts,
                  vectors=np.where(live, pixels_read * ct, 0.0),
                  first=np.where(live, first_rows * first_cols * ct, 0.0),
                  commands=np.where(live, tiles * ct * np.where(whole, 1, in_rows), 0.0),
                  halo=np.where(live, pixels_read / np.maximum(w.images * ih * iw, 1), 1.0), segments=segments,
                  segments_short=segments_short)
