"""The window walk of the vector unit: one tap of every lane per cycle, addresses into the line buffer's ring.

For each channel tile, each output row, each output pixel, each kernel tap (row-major), the
walk emits where the tap's input pixel is in the line buffer, or ``pad`` when it falls in
the padding, and the tap's place in the weight bank. The line buffer holds input rows as
a ring of ``line_rows`` rows: global input row ``g`` (row ``r`` of channel tile ``t`` is
``g = t * in_h + r``) sits at ``(g mod line_rows) * in_w``. The walk keeps each address by
additions only (the products of the row pitch are formed once per layer).

An output row starts only once the loader holds every input row its windows reach and the
tile's weights; as it starts, the rows above its windows are handed back (``freed``) so the
next rows load into them while this row computes. A global average pool (``stream``: one
window of the whole plane) instead waits for each tap's row and hands back the rows above it.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.vector_layer import decode_mode, tap_layout, vector_desc_layout

__all__ = ["WindowWalker", "SETTLE"]

#: Cycles from a walk's start to its first possible tap: the layer's products reach their registers.
SETTLE = 4


def _clamp(m, value, hi, name):
    """``value`` (signed) clamped to ``0..hi``."""
    out = Signal(17, name=name)
    m.d.comb += out.eq(Mux(value < 0, 0, Mux(value > hi, hi, value)))
    return out


class WindowWalker(wiring.Component):
    """Walks a depthwise layer's taps, one per cycle, gated on the rows and weights loaded.

    Parameters
    ----------
    line_depth : int
        Pixel vectors in the line buffer.
    weight_depth : int
        Tap vectors per weight bank (two banks: tile ``t`` in bank ``t mod 2``).
    addr_bits : int
        DRAM address width (of the descriptor).

    Members
    -------
    start : ``In(1)``
        Begin the walk of ``layer`` (valid from this cycle on).
    layer : ``In(vector_desc_layout(addr_bits))``
    loaded_rows : ``In(32)``
        Global input rows the line buffer holds, counted from the layer's start.
    loaded_tiles : ``In(16)``
        Channel tiles whose weights are in their bank.
    taps : ``Out(stream.Signature(tap_layout))``
    freed : ``Out(32)``
        Global input rows the walk no longer reads.
    tile : ``Out(16)``
        The channel tile being walked (``layer.tiles`` once done).
    waiting : ``Out(1)``
        The walk waits on rows or weights not yet loaded.
    """

    def __init__(self, *, line_depth, weight_depth, addr_bits):
        for name, value in (("line_depth", line_depth), ("weight_depth", weight_depth), ("addr_bits", addr_bits)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._line_depth, self._weight_depth = line_depth, weight_depth
        super().__init__({
            "start": In(1), "layer": In(vector_desc_layout(addr_bits)),
            "loaded_rows": In(32), "loaded_tiles": In(16),
            "taps": Out(stream.Signature(tap_layout(line_depth, 2 * weight_depth))),
            "freed": Out(32), "tile": Out(16), "waiting": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.layer
        LB = (2 * self._line_depth).bit_length() + 8
        P = signed(18)
        # once per layer, from the latched layer: the ring's pitch products, each a product in a cycle
        # of its own, and the chains before two of them a stage at a time (free-running registers);
        # the walk's first tap waits SETTLE cycles after start for the last of them, `tile_step`
        names = ("dhw", "shw", "ring", "tile_step", "ra_init")
        dhw, shw, ring, tile_step, ra_init = (Signal(LB, name=n) for n in names)
        span = Signal(17)
        # the window's rows: a product of the layer's alone, a register of its own (it reaches the walk's
        # row_ready, and through it every counter's enable)
        m.d.sync += span.eq((d.kernel_h - 1) * d.dilation_h + 1)
        # next tile's first window row - this tile's last, in the ring: the output rows' span, the
        # difference, its remainder, the product
        out_span, gap, gap_mod, pt_mod = (Signal(signed(18), name=n) for n in ("out_span", "gap", "gap_mod", "pt_mod"))
        m.d.sync += [out_span.eq((d.out_h - 1) * d.stride_h), gap.eq(d.in_h - out_span),
                     gap_mod.eq(Mux(gap < 0, gap + d.line_rows, gap)),
                     pt_mod.eq(Mux(d.pad_top == 0, 0, d.line_rows - d.pad_top))]
        m.d.sync += [dhw.eq(d.dilation_h * d.in_w), shw.eq(d.stride_h * d.in_w), ring.eq(d.line_rows * d.in_w),
                     tile_step.eq(gap_mod * d.in_w), ra_init.eq(pt_mod * d.in_w)]
        settling = Signal(SETTLE)           # a one at a time leaves: the first tap once none is left
        m.d.sync += settling.eq(Mux(self.start, (1 << SETTLE) - 1, settling >> 1))
        settled = ~settling[0]

        def wrap(a, delta):
            s = a + delta
            return Mux(s >= ring, s - ring, s)

        active, armed = Signal(), Signal()
        t, oy, ox, ky, kx, tap = (Signal(16, name=n) for n in ("t", "oy", "ox", "ky", "kx", "tap"))
        iy0, iy, ix0, ix = (Signal(P, name=n) for n in ("iy0", "iy", "ix0", "ix"))
        ra0, ra = Signal(LB), Signal(LB)
        rowbase = Signal(32)
        m.d.comb += self.tile.eq(t)

        mode = decode_mode(m, d.op)
        need = _clamp(m, Mux(mode.stream, iy + 1, iy0 + span), d.in_h, "need")
        low = _clamp(m, Mux(mode.stream, iy, iy0), d.in_h, "low")
        row_ready = Signal()
        m.d.comb += [
            row_ready.eq((self.loaded_rows >= rowbase + need) & ((self.loaded_tiles > t) | ~mode.weights)),
            self.freed.eq(rowbase + low),
            self.waiting.eq(active & ~armed & ~row_ready),
        ]
        last_kx, last_ky = kx == d.kernel_w - 1, ky == d.kernel_h - 1
        last_ox, last_oy = ox == d.out_w - 1, oy == d.out_h - 1
        p = self.taps.payload
        m.d.comb += [
            self.taps.valid.eq(active & settled & ((armed & ~mode.stream) | row_ready)),
            p.pad.eq((iy < 0) | (iy >= d.in_h) | (ix < 0) | (ix >= d.in_w)),
            p.line_addr.eq(ra + ix),
            p.weight_addr.eq(Mux(t[0], self._weight_depth, 0) + tap),
            p.first.eq((kx == 0) & (ky == 0)),
            p.last.eq(last_kx & last_ky),
            p.tile_last.eq(last_kx & last_ky & last_ox & last_oy),
        ]

        with m.If(self.start):
            m.d.sync += [active.eq(d.tiles != 0), armed.eq(0), t.eq(0), oy.eq(0), ox.eq(0), ky.eq(0), kx.eq(0),
                         tap.eq(0), iy0.eq(-d.pad_top), iy.eq(-d.pad_top), ix0.eq(-d.pad_left),
                         ix.eq(-d.pad_left), rowbase.eq(0)]
        with m.Elif(settling[0] & ~settling[1]):    # the last cycle before the first tap: ra_init is in
            m.d.sync += ra0.eq(ra_init), ra.eq(ra_init)
        with m.Elif(self.taps.valid & self.taps.ready):
            m.d.sync += armed.eq(1)
            with m.If(~last_kx):
                m.d.sync += kx.eq(kx + 1), ix.eq(ix + d.dilation_w), tap.eq(tap + 1)
            with m.Elif(~last_ky):
                m.d.sync += [kx.eq(0), ix.eq(ix0), ky.eq(ky + 1), iy.eq(iy + d.dilation_h), ra.eq(wrap(ra, dhw)),
                             tap.eq(tap + 1)]
            with m.Else():
                m.d.sync += kx.eq(0), ky.eq(0), tap.eq(0), iy.eq(iy0), ra.eq(ra0)
                with m.If(~last_ox):
                    m.d.sync += ox.eq(ox + 1), ix0.eq(ix0 + d.stride_w), ix.eq(ix0 + d.stride_w)
                with m.Else():
                    m.d.sync += ox.eq(0), ix0.eq(-d.pad_left), ix.eq(-d.pad_left), armed.eq(0)
                    with m.If(~last_oy):
                        nra = wrap(ra0, shw)
                        m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + d.stride_h), iy.eq(iy0 + d.stride_h),
                                     ra0.eq(nra), ra.eq(nra)]
                    with m.Else():
                        nra = Mux(mode.stream, wrap(ra, dhw), wrap(ra0, tile_step))
                        m.d.sync += [oy.eq(0), iy0.eq(-d.pad_top), iy.eq(-d.pad_top), ra0.eq(nra), ra.eq(nra),
                                     t.eq(t + 1), rowbase.eq(rowbase + d.in_h)]
                        with m.If(t + 1 == d.tiles):
                            m.d.sync += active.eq(0)
        return m
