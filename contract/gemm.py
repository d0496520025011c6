"""The layer sequencer of the systolic accelerator and the geometry it shares with the compiler.

Every layer the accelerator runs is one implicit matrix product
``C (M x N) = A (M x K) @ B (K x N)``: M output pixels, N output channels and K the
kernel taps times the input channels. A is never copied into DRAM as an im2col matrix:
the sequencer generates the activation reads of each K tile from the input tensor
(implicit im2col).

The loop nest::

    for each M tile (TILE_ROWS whole output rows, or TILE_COLS pixels of one row: at most
            ``acc_depth`` pixels, with an input window of at most ``act_depth`` vectors)
      the loader reads the tile's input window -- the input rows (and, for a tile of one
        row, the columns) its pixels' kernels cover, every channel tile -- from DRAM into
        one half of the activation scratchpad, while the walk computes on the other (or
        on this one, behind the loader: it reads only the words already written)
      for each N tile of ``cols`` output channels: read its quantisation record
        for ky, for kx, for each channel tile of ``rows`` input channels (a K tile;
                a depthwise layer walks only the channel tiles of its own N tile)
          read the K tile's ``rows`` weight vectors from DRAM (or, when all the layer's
            weights fit the weight buffer, from the buffer after the first M tile)
          for each output row of the M tile: the tile's activation vectors, as at most
            three segments -- zero-point vectors for the padded pixels on the left, one
            scratchpad read for the pixels inside the input (every second pixel at
            stride 2), zero-point vectors on the right; a row wholly in the padding is one
            zero-point segment

So every input pixel crosses the bus once per M tile whose window holds it (once, plus
the kernel's halo rows shared by neighbouring tiles), not once per tap and N tile; the
weights cross it once per M tile, or once if they fit the weight buffer. The compiler chooses the tile
(:meth:`GemmGeometry.tiling`): the most whole output rows that fit both buffers, else
the longest part of a row.

The weight-stationary array multiplies each K tile; the K tiles' partial sums accumulate
in an int32 accumulator buffer (``acc_depth`` entries of ``cols`` lanes); the last K
tile's sums go through the requantiser and are written back, one write per M and N tile.

DRAM layout (:class:`GemmGeometry` sizes it; :mod:`mensa.contract.gemm_program` writes it), every
vector in whole bus words:

input
    channel-tiled HWC: channel tile ``t`` (channels ``t * rows ..``) is an ``in_h x in_w``
    plane of activation vectors in raster order, so a window of whole rows is one burst per
    channel tile, and a window of part of a row one burst per row.
weights
    per N tile, per K tile in walk order, ``rows`` weight vectors of ``cols`` lanes.
quantisation records
    one per N tile, read again for every M tile.
output
    N tiles of M output vectors (``cols`` lanes), pixel ``m`` of tile ``t`` at
    ``(t * M + m) * out_bytes``.

A fully connected or pointwise layer is the case ``in_h = 1``, ``in_w = M``, a 1x1 kernel.
"""

from dataclasses import dataclass

from mensa.contract.numeric import ACC_BITS
from mensa.core.config import AcceleratorConfig, ConfigError, Dataflow

__all__ = ["GemmGeometry", "LayerWalk", "act_depth", "weight_depth", "ROUTE_DEPTH", "FLAG_DEPTH"]

ROUTE_DEPTH = 16        # read and zero-point segments in flight, each tagged with where its vectors go
FLAG_DEPTH = 16         # K tiles issued and not yet accumulated (first/final flags)


def act_depth(config):
    """Activation vectors of ``config.array.rows`` bytes in each half of the activation
    scratchpad: the largest power of two that fits ``buffers.act_kib`` (0 if none does)."""
    vectors = config.buffers.act_kib * 1024 // (2 * config.array.rows)
    return vectors and 1 << (vectors.bit_length() - 1)


def weight_depth(config):
    """Weight vectors of ``config.array.cols`` bytes the weight buffer (``buffers.weight_kib``) holds."""
    return config.buffers.weight_kib * 1024 // config.array.cols


@dataclass(frozen=True)
class GemmGeometry:
    """Sizes of the GEMM datapath and of its DRAM layout, from one accelerator config.

    Members
    -------
    rows, cols : int
        The array: ``rows`` input channels (K) by ``cols`` output channels (N) per tile.
    word_bytes : int
        Bytes per AXI data word.
    act_words, weight_words, out_words : int
        Bus words of one activation vector (``rows`` bytes), one weight row and one output
        vector (``cols`` bytes each); a vector starts on a word and its last word is padded.
    acc_depth : int
        Accumulator entries (``cols`` int32 lanes each): the most output pixels of an M tile.
    act_depth : int
        Activation vectors (``rows`` bytes each) in one half of the activation scratchpad:
        the most an M tile's input window may hold.
    weight_depth : int
        Weight vectors (``cols`` bytes each) the weight buffer holds: a layer with at most
        this many keeps its weights on chip after the first M tile.
    quant_words : int
        Bus words of one N tile's quantisation record: ``cols`` int32 biases, ``cols``
        int32 multipliers, ``cols`` int8 shifts, packed and padded to a whole word.
    """
    rows: int
    cols: int
    word_bytes: int
    act_words: int
    weight_words: int
    out_words: int
    acc_depth: int
    act_depth: int
    weight_depth: int
    quant_words: int

    @classmethod
    def of(cls, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        a, wb = config.array, config.memory.data_bits // 8
        where = f"accelerator {config.name!r}"
        if a.dataflow is not Dataflow.WEIGHT_STATIONARY:
            raise ConfigError(f"{where}: array.dataflow 'os' has no accelerator top yet; allowed: 'ws'")
        if (a.input_bits, a.weight_bits, a.acc_bits) != (8, 8, ACC_BITS):
            raise ConfigError(f"{where}: array widths {a.input_bits}/{a.weight_bits}/{a.acc_bits} bits; "
                              f"the accelerator top runs int8 x int8 -> int32 (8/8/32) only")
        entries = config.buffers.acc_kib * 1024 // (a.cols * 4)
        if entries < 1:
            raise ConfigError(f"{where}: buffers.acc_kib {config.buffers.acc_kib} holds no {a.cols}-lane entry")
        if act_depth(config) < 1:
            raise ConfigError(f"{where}: buffers.act_kib {config.buffers.act_kib} holds no two {a.rows}-byte vectors")
        record = a.cols * (4 + 4 + 1)
        return cls(rows=a.rows, cols=a.cols, word_bytes=wb, act_words=-(-a.rows // wb),
                   weight_words=-(-a.cols // wb), out_words=-(-a.cols // wb), acc_depth=1 << (entries.bit_length() - 1),
                   act_depth=act_depth(config), weight_depth=weight_depth(config),
                   quant_words=-(-record // wb))

    def tiling(self, walk):
        """The M tile ``(tile_rows, tile_cols)`` of ``walk`` (a :class:`LayerWalk`).

        The largest tile that fits the accumulator and whose input window fits a half of
        the activation scratchpad: whole output rows if one row fits, else the longest
        part of a row. Raises ``ValueError`` if one output pixel's window does not fit.
        """
        kt = -(-walk.k // self.rows)
        if walk.out_w <= self.acc_depth:
            for rows in range(min(walk.out_h, self.acc_depth // walk.out_w), 0, -1):
                if kt * walk.window_bound(rows, walk.out_w) <= self.act_depth:
                    return rows, walk.out_w
        for cols in range(min(walk.out_w, self.acc_depth), 0, -1):
            if kt * walk.window_bound(1, cols) <= self.act_depth:
                return 1, cols
        raise ValueError(f"one output pixel reads {kt * walk.window_bound(1, 1)} input vectors "
                         f"({kt} channel tiles of {self.rows}); the activation scratchpad holds "
                         f"{self.act_depth} per half")

    def channel_tiles(self, k, n_tile, *, depthwise):
        """The channel tiles (of ``rows`` input channels) N tile ``n_tile`` walks per kernel tap.

        A conv walks all ``ceil(k / rows)``; a depthwise conv only those holding the N
        tile's own channels ``n_tile * cols ..`` (its weight tiles are diagonal).
        """
        if not depthwise:
            return range(-(-k // self.rows))
        n0 = n_tile * self.cols
        return range(n0 // self.rows, -(-min(n0 + self.cols, k) // self.rows))

    @property
    def act_bytes(self):
        return self.act_words * self.word_bytes

    @property
    def weight_bytes(self):
        return self.weight_words * self.word_bytes

    @property
    def out_bytes(self):
        return self.out_words * self.word_bytes

    @property
    def quant_bytes(self):
        return self.quant_words * self.word_bytes


@dataclass(frozen=True)
class LayerWalk:
    """The shape of a layer as the sequencer walks it (the descriptor's geometry).

    A fully connected or pointwise layer is ``in_h = out_h = 1``, ``in_w = out_w = M``
    with a 1x1 kernel.
    """
    k: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    pad_top: int = 0
    pad_left: int = 0

    def m_tiles(self, tile_rows, tile_cols):
        """The M tiles in walk order, ``(ty, tx, rows, cols)`` each: output rows ``ty ..``
        and columns ``tx ..``; a tile of several rows spans whole rows."""
        ty = tx = 0
        while ty < self.out_h:
            yield ty, tx, min(tile_rows, self.out_h - ty), min(tile_cols, self.out_w - tx)
            if tx + tile_cols < self.out_w:
                tx += tile_cols
            else:
                tx, ty = 0, ty + tile_rows

    def window(self, ty, tx, rows, cols):
        """``(iy_lo, iy_hi, ix_lo, ix_hi)``: the input rows and columns the tile reads, clipped
        to the input (empty if all of it is padding). A tile of one row reads only the
        columns under it; a tile of several rows reads whole rows."""
        (sh, sw), (kh, kw), (dh, dw) = self.stride, self.kernel, self.dilation
        clip = lambda v, lo, hi: max(lo, min(hi, v))        # noqa: E731
        iy_lo = clip(ty * sh - self.pad_top, 0, self.in_h)
        iy_hi = clip((ty + rows - 1) * sh - self.pad_top + (kh - 1) * dh + 1, iy_lo, self.in_h)
        if rows > 1:
            return iy_lo, iy_hi, 0, self.in_w
        ix_lo = clip(tx * sw - self.pad_left, 0, self.in_w)
        ix_hi = clip((tx + cols - 1) * sw - self.pad_left + (kw - 1) * dw + 1, ix_lo, self.in_w)
        return iy_lo, iy_hi, ix_lo, ix_hi

    def window_bound(self, rows, cols):
        """Pixels (per channel tile) in the window of any tile of ``rows`` x ``cols``."""
        (sh, sw), (kh, kw), (dh, dw) = self.stride, self.kernel, self.dilation
        height = min(self.in_h, (rows - 1) * sh + (kh - 1) * dh + 1)
        width = self.in_w if rows > 1 else min(self.in_w, (cols - 1) * sw + (kw - 1) * dw + 1)
        return height * width
