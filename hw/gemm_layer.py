"""What the parts of the GEMM sequencer share: the layer descriptor, the segments of the walk,
and the M tile walker (:meth:`mensa.contract.gemm.LayerWalk.m_tiles` and ``window`` in registers).

The sequencer (:class:`~mensa.hw.sequencer.GemmSequencer`) walks the loop nest of
:mod:`mensa.contract.gemm` with several blocks at once: the loader, the read issue and the
writer each keep their own place in the M tiles, one :class:`MTileWalker` each.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.gemm import GemmGeometry
from mensa.hw.dsp import registered_product

__all__ = ["descriptor_layout", "act_segment_layout", "weight_segment_layout", "k_flags_layout",
           "progress_layout", "MTileWalker", "Q", "WTS", "ACT", "PAD", "WBUF"]


def descriptor_layout(addr_bits):
    """What the sequencer reads from the descriptor registers (``table``: ACT_TABLE, the output goes
    through the activation table read from ``table_addr`` at the layer's start)."""
    return data.StructLayout({
        "m": 32, "k": 16, "n": 16, "depthwise": 1, "tile_rows": 16, "tile_cols": 16, "weights_resident": 1,
        "in_h": 16, "in_w": 16, "out_h": 16, "out_w": 16,
        "kernel_h": 8, "kernel_w": 8, "stride_h": 8, "stride_w": 8, "dilation_h": 8, "dilation_w": 8,
        "pad_top": 8, "pad_left": 8,
        "in_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8, "table": 1,
        "input_addr": addr_bits, "weight_addr": addr_bits, "quant_addr": addr_bits, "output_addr": addr_bits,
        "table_addr": addr_bits,
    })


# What a segment of the walk feeds (its `kind`): a quantisation record, a K tile's weight
# vectors from DRAM, a scratchpad read of activation vectors, zero-point vectors; in the
# weights' queue, a K tile's weight vectors from the weight buffer (one code with ACT: the
# two queues are apart).
Q, WTS, ACT, PAD = 0, 1, 2, 3
WBUF = 2


def act_segment_layout(addr_bits):
    """An activation segment: its kind (ACT or PAD); for a scratchpad read its first address
    and whether it reads every second vector (``skip``, stride 2); how many vectors; whether it
    ends the K tile (``end``), and whether that K tile ends the M tile (``release``: its
    window's half goes back to the loader)."""
    return data.StructLayout({"kind": 2, "count": 16, "skip": 1, "end": 1, "release": 1, "addr": addr_bits})


def weight_segment_layout(addr_bits):
    """A DRAM-or-weight-buffer segment: its kind (Q, WTS or WBUF), whether its weights are
    stored in the weight buffer as they pass (``store``), and the K tile's first vector there."""
    return data.StructLayout({"kind": 2, "store": 1, "addr": addr_bits})


#: A K tile's place in its N tile's K walk: the first (the accumulator starts from zero) and
#: the final (its sums go to the requantiser).
k_flags_layout = data.StructLayout({"first": 1, "final": 1})

#: How far the loader has requested: M tiles whose window reads are all issued (``tiles``),
#: whether it is issuing a window's reads (``issuing``) and, if so, the next channel tile's
#: first channel (``channel``).
progress_layout = data.StructLayout({"tiles": 32, "issuing": 1, "channel": 17})


def check_geometry(geometry):
    if not isinstance(geometry, GemmGeometry):
        raise TypeError(f"geometry must be a GemmGeometry, not {geometry!r}")


def check_addr_bits(addr_bits):
    if not isinstance(addr_bits, int) or isinstance(addr_bits, bool) or not 8 <= addr_bits <= 64:
        raise ValueError(f"addr_bits must be an integer in 8..64, not {addr_bits!r}")


def clamp(value, low, high):
    return Mux(value < low, low, Mux(value > high, high, value))


class MTileWalker(wiring.Component):
    """The M tiles of a layer in walk order, and the input window of the current one.

    ``LayerWalk.m_tiles`` and ``LayerWalk.window`` of :mod:`mensa.contract.gemm` in
    registers: the tile's first pixel is held in ``ty``/``tx``; its size, pixel count, whether
    it is the layer's last and its window follow from them and ``layer`` through a pipeline
    of :attr:`LATENCY` registers (one add or compare each, so it closes at the clock of the
    array), and ``valid`` says they have.

    Parameters
    ----------
    addr_bits : int
        DRAM address bits (of the descriptor's addresses).
    window : bool
        Whether to compute the window (a writer needs only the tiles).

    Members
    -------
    layer : ``In(descriptor_layout(addr_bits))``
        The layer, held while it runs.
    restart : ``In(1)``
        Go back to the first tile (at the next clock edge).
    advance : ``In(1)``
        Go to the next tile (wins over ``restart``).
    ty, tx : ``Out(16)``
        The tile's first output row and column.
    valid : ``Out(1)``
        The members below are the current tile's: :attr:`LATENCY` cycles after an advance,
        ``LATENCY + SETUP`` after a restart.
    rows, cols : ``Out(16)``
        Its output rows and columns (a tile of several rows spans whole rows).
    pixels : ``Out(32)``
        ``rows * cols``, without a per-tile product: ``cols`` for a tile of one row, else
        the smaller of a full band's pixels (``tile_rows * out_w``, the layer's one product,
        in a DSP block with its registers) and the layer's pixels left from the tile on (a
        running count, less each tile's pixels at an advance).
    last : ``Out(1)``
        It is the layer's last tile.
    iy_lo, iy_hi, ix_lo, ix_hi : ``Out(16)``
        With ``window``: the input rows ``iy_lo .. iy_hi - 1`` and columns
        ``ix_lo .. ix_hi - 1`` it reads, clipped to the input.
    """

    #: Cycles from an advance to ``valid``; a restart takes :attr:`SETUP` more (the layer's
    #: own terms: products, in a DSP block each, with its registers for a full band's pixels).
    LATENCY = 6
    SETUP = 2

    def __init__(self, *, addr_bits, window=True):
        check_addr_bits(addr_bits)
        if not isinstance(window, bool):
            raise TypeError(f"window must be a bool, not {window!r}")
        self._addr_bits = addr_bits
        self._window = window
        members = {
            "layer": In(descriptor_layout(addr_bits)),
            "restart": In(1), "advance": In(1),
            "ty": Out(16), "tx": Out(16), "valid": Out(1),
            "rows": Out(16), "cols": Out(16), "pixels": Out(32), "last": Out(1),
        }
        if window:
            members.update({"iy_lo": Out(16), "iy_hi": Out(16), "ix_lo": Out(16), "ix_hi": Out(16)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        d = self.layer
        ty, tx, rows, cols = self.ty, self.tx, self.rows, self.cols
        rem_h, rem_w = Signal(16, name="rem_h"), Signal(16, name="rem_w")    # output rows, columns left
        with m.If(self.restart):
            m.d.sync += ty.eq(0), tx.eq(0)
        # (an advance comes while valid)
        with m.If(self.advance):
            with m.If(d.tile_cols < rem_w):
                m.d.sync += tx.eq(tx + d.tile_cols)
            with m.Else():
                m.d.sync += tx.eq(0), ty.eq(ty + d.tile_rows)
        wait = Signal(range(self.LATENCY + self.SETUP + 1), init=self.LATENCY + self.SETUP)
        with m.If(self.advance):
            m.d.sync += wait.eq(self.LATENCY)
        with m.Elif(self.restart):
            m.d.sync += wait.eq(self.LATENCY + self.SETUP)
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        m.d.comb += self.valid.eq(wait == 0)
        # each stage a register, recomputed every cycle from the one before
        m.d.sync += [
            rem_h.eq(d.out_h - ty), rem_w.eq(d.out_w - tx),
            rows.eq(Mux(d.tile_rows < rem_h, d.tile_rows, rem_h)),
            cols.eq(Mux(d.tile_cols < rem_w, d.tile_cols, rem_w)),
            self.last.eq((d.tile_rows >= rem_h) & (d.tile_cols >= rem_w)),
        ]
        # The pixel count without a per-tile product: a tile of one row has `cols`; one of
        # several rows spans whole rows, `min(tile_rows, rem_h) * out_w` = the smaller of a
        # full band's pixels and the pixels left in the layer (m less each tile's at an advance).
        band_px = registered_product(m, platform, d.tile_rows, d.out_w, 34, "band_px")  # free-running
        left_px = Signal(32, name="left_px")        # the layer's pixels from this tile's first on
        band_fits = Signal(name="band_fits")        # band_px <= left_px
        one_row = Signal(name="one_row")            # tile_rows == 1
        restarted = Signal(name="restarted")        # (a restart comes with the layer's start:
        m.d.sync += restarted.eq(self.restart)      # `layer` holds the new layer a cycle later)
        with m.If(restarted):
            m.d.sync += left_px.eq(d.m)
        with m.If(self.advance):
            m.d.sync += left_px.eq(left_px - self.pixels)
        m.d.sync += [
            band_fits.eq(band_px[:32] <= left_px), one_row.eq(d.tile_rows == 1),
            self.pixels.eq(Mux(one_row, cols, Mux(band_fits, band_px[:32], left_px))),
        ]
        if self._window:
            self._window_stages(m)
        return m

    def _window_stages(self, m):
        d, ty, tx, rows, cols = self.layer, self.ty, self.tx, self.rows, self.cols
        two_h, two_w = d.stride_h == 2, d.stride_w == 2
        # the layer's own terms, (kernel - 1) * dilation + 1 - padding, over three cycles
        span_h, span_w = Signal(8, name="span_h"), Signal(8, name="span_w")        # kernel - 1
        dspan_h, dspan_w = Signal(16, name="dspan_h"), Signal(16, name="dspan_w")  # its product
        reach_h, reach_w = Signal(signed(18), name="reach_h"), Signal(signed(18), name="reach_w")
        m.d.sync += [span_h.eq(d.kernel_h - 1), span_w.eq(d.kernel_w - 1),
                     dspan_h.eq(span_h * d.dilation_h), dspan_w.eq(span_w * d.dilation_w),
                     reach_h.eq(dspan_h + 1 - d.pad_top), reach_w.eq(dspan_w + 1 - d.pad_left)]
        y0, x0 = Signal(signed(20), name="y0"), Signal(signed(20), name="x0")  # first input row, column
        oy1, ox1 = Signal(17, name="oy1"), Signal(17, name="ox1")  # last output row, column
        # past the last input row, column
        y1 = Signal(signed(20))
        x1 = Signal(signed(20))
        y1c, x1c = Signal(16, name="y1c"), Signal(16, name="x1c")
        lo_y, lo_x = Signal(16, name="lo_y"), Signal(16, name="lo_x")
        m.d.sync += [
            y0.eq(Mux(two_h, ty << 1, ty) - d.pad_top), x0.eq(Mux(two_w, tx << 1, tx) - d.pad_left),
            oy1.eq(ty + rows - 1), ox1.eq(tx + cols - 1),
            lo_y.eq(clamp(y0, 0, d.in_h)), lo_x.eq(clamp(x0, 0, d.in_w)),
            y1.eq(Mux(two_h, oy1 << 1, oy1) + reach_h), x1.eq(Mux(two_w, ox1 << 1, ox1) + reach_w),
            y1c.eq(clamp(y1, 0, d.in_h)), x1c.eq(clamp(x1, 0, d.in_w)),
            # (clip(v, lo, hi) = max(lo, min(hi, v)), and lo <= hi)
            self.iy_lo.eq(lo_y), self.iy_hi.eq(Mux(y1c < lo_y, lo_y, y1c)),
        ]
        with m.If(rows == 1):
            m.d.sync += [self.ix_lo.eq(lo_x), self.ix_hi.eq(Mux(x1c < lo_x, lo_x, x1c))]
        with m.Else():
            m.d.sync += [self.ix_lo.eq(0), self.ix_hi.eq(d.in_w)]
