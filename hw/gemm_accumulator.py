"""Accumulation across K tiles: read-modify-write of the accumulator buffer.

Stage A takes a partial-sum vector and reads its entry; stage B registers the read data (a
block RAM's output is slow: nothing follows it in its cycle); stage C adds and writes it back,
or, on the K walk's final tile, hands the sum to the requantiser through an output register.
Whether a tile is the walk's first or final comes with it, from the walk's flags queue. With
M = 1 every vector adds into the entry the one before it writes: the read port is transparent
to the write port (for the vector two behind), and C forwards its last sum (for the next).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import ACC_BITS
from mensa.hw.gemm_layer import check_geometry, k_flags_layout
from mensa.hw.requant import acc_layout
from mensa.hw.systolic import psum_layout

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """Sums each output pixel's partial sums over the K tiles of its N tile.

    A K tile is the run of ``psums`` vectors up to and including the one with ``last``; its
    ``i``-th vector adds into entry ``i``.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.gemm.GemmGeometry`
        ``acc_depth`` entries of ``cols`` int32 lanes.

    Members
    -------
    psums : ``In(stream.Signature(psum_layout(cols, 32)))``
        The array's partial sums.
    k_flags : ``In(stream.Signature(k_flags_layout))``
        One beat per K tile, taken with its last vector; it must be there by the K tile's
        first vector (the walk issues it with the tile's weights).
    sums : ``Out(stream.Signature(acc_layout(cols)))``
        The sums of each final K tile, with its ``last``.
    """

    def __init__(self, *, geometry):
        check_geometry(geometry)
        self._geometry = geometry
        super().__init__({
            "psums": In(stream.Signature(psum_layout(geometry.cols, ACC_BITS))),
            "k_flags": In(stream.Signature(k_flags_layout)),
            "sums": Out(stream.Signature(acc_layout(geometry.cols))),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        C = g.cols
        psums, flags = self.psums, self.k_flags.payload
        acc_shape = data.ArrayLayout(ACC_BITS, C)
        m.submodules.accbuf = accbuf = memory.Memory(shape=acc_shape, depth=g.acc_depth, init=[])
        wp = accbuf.write_port()
        rp = accbuf.read_port(transparent_for=(wp,))
        pm = Signal(range(g.acc_depth))
        # B: the entry being read; C: its read data registered, the sum, the write
        bv, cv = Signal(), Signal()
        b_first, b_final, b_last = Signal(), Signal(), Signal()
        c_first, c_final, c_last = Signal(), Signal(), Signal()
        b_m, c_m = Signal(range(g.acc_depth)), Signal(range(g.acc_depth))
        b_psum, c_psum, c_old = Signal(acc_shape), Signal(acc_shape), Signal(acc_shape)
        # The entry C writes is read by the vector behind it a cycle too early: that one
        # takes the sum from `written`, a register of the last sum written.
        c_fwd = Signal()
        written = Signal(acc_shape)
        advance = Signal()
        s_valid, s_last = Signal(), Signal()
        s_data = Signal(acc_shape)
        m.d.comb += [
            advance.eq(~(cv & c_final) | ~s_valid | self.sums.ready),
            psums.ready.eq(advance),
            rp.addr.eq(pm),
            rp.en.eq(advance),
        ]
        psum_in = psums.valid & psums.ready
        write = Signal()
        m.d.comb += write.eq(cv & ~c_final & advance)
        with m.If(advance):
            m.d.sync += [
                bv.eq(psums.valid), b_first.eq(flags.first), b_final.eq(flags.final),
                b_last.eq(psums.payload.last), b_m.eq(pm), b_psum.eq(psums.payload.data),
                cv.eq(bv), c_first.eq(b_first), c_final.eq(b_final), c_last.eq(b_last), c_m.eq(b_m),
                c_psum.eq(b_psum), c_old.eq(rp.data), c_fwd.eq(write & (c_m == b_m)),
            ]
        m.d.comb += self.k_flags.ready.eq(psum_in & psums.payload.last)
        with m.If(psum_in):
            with m.If(psums.payload.last):
                m.d.sync += pm.eq(0)
            with m.Else():
                m.d.sync += pm.eq(pm + 1)
        total = Signal(acc_shape)
        for j in range(C):
            m.d.comb += total[j].eq(c_psum[j] + Mux(c_first, 0, Mux(c_fwd, written[j], c_old[j])))
        with m.If(write):
            m.d.sync += written.eq(total)
        m.d.comb += [
            wp.addr.eq(c_m), wp.data.eq(total), wp.en.eq(write),
            self.sums.valid.eq(s_valid),
            self.sums.payload.data.eq(s_data),
            self.sums.payload.last.eq(s_last),
        ]
        with m.If(advance & cv & c_final):
            m.d.sync += s_valid.eq(1), s_data.eq(total), s_last.eq(c_last)
        with m.Elif(self.sums.ready):
            m.d.sync += s_valid.eq(0)
        return m
