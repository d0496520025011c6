"""The array's two feeds: its weights (and the requantiser's records), and its activations.

:class:`WeightFeed` routes the walk's DRAM words by the segments of
:class:`~mensa.hw.gemm_issue.SegmentIssuer`: quantisation records to the requantiser, weight
vectors to the array (and into the weight buffer, when the layer's weights stay on chip),
and replays K tiles' weights from that buffer. :class:`ActivationFeed` streams the
activation segments: scratchpad reads and zero-point vectors.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import SHIFT_BITS
from mensa.hw.dma import read_layout
from mensa.hw.gemm_layer import PAD, Q, WBUF, WTS, act_segment_layout, check_geometry, weight_segment_layout
from mensa.hw.requant import quant_layout
from mensa.hw.systolic import act_layout

__all__ = ["WeightFeed", "ActivationFeed"]


class WeightFeed(wiring.Component):
    """DRAM words to quantisation records and weight vectors; the weight buffer.

    A weight vector wider than the bus arrives as several words: the ones before its last
    wait in a gather buffer, and the last one goes to the array with them. The weight buffer
    holds one vector of ``cols`` lanes per entry, written as the first M tile's weights
    pass, read through one register like the scratchpad.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.gemm.GemmGeometry`

    Members
    -------
    seg : ``In(stream.Signature(weight_segment_layout(weight buffer address bits)))``
        What the next words are (Q, WTS) or which K tile to replay from the buffer (WBUF).
        Taken with a DRAM segment's last word, or a WBUF segment's last vector.
    rd_data : ``In(stream.Signature(read_layout(8 * word_bytes)))``
        The walk's words from DRAM.
    weights : ``Out(stream.Signature(ArrayLayout(signed(8), cols)))``
        Weight vectors to the array.
    quant : ``Out(stream.Signature(quant_layout(cols)))``
        One quantisation record per Q segment, with ``out_zero_point``, ``qmin``, ``qmax``.
    out_zero_point, qmin, qmax : ``In(8)``
        The layer's output zero point and clamp.
    """

    def __init__(self, *, geometry):
        check_geometry(geometry)
        g = self._geometry = geometry
        wa = max((g.weight_depth - 1).bit_length(), 1)
        super().__init__({
            "seg": In(stream.Signature(weight_segment_layout(wa))),
            "rd_data": In(stream.Signature(read_layout(8 * g.word_bytes))),
            "weights": Out(stream.Signature(data.ArrayLayout(signed(8), g.cols))),
            "quant": Out(stream.Signature(quant_layout(g.cols))),
            "out_zero_point": In(8), "qmin": In(8), "qmax": In(8),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        R, C, W = g.rows, g.cols, 8 * g.word_bytes
        seg, words, weights = self.seg, self.rd_data, self.weights
        kind = seg.payload.kind
        word = words.payload.data
        here = Signal()
        m.d.comb += here.eq(words.valid & seg.valid)
        qbuf = Signal(g.quant_words * W)
        q_idx = Signal(range(g.quant_words))
        q_full = Signal()
        gbuf = Signal(max(g.weight_words - 1, 1) * W)
        g_idx = Signal(range(max(g.weight_words, 2)))   # (a zero-width counter is a lint warning)
        vector = Cat(gbuf[:(g.weight_words - 1) * W], word) if g.weight_words > 1 else word
        w_end = Signal()
        m.submodules.wbuf = wbuf = memory.Memory(shape=8 * C, depth=g.weight_depth, init=[])
        wb_w = wbuf.write_port()
        wb_r = wbuf.read_port()
        wb_valid = Signal()
        wb_advance = Signal()
        wb_take = Signal()
        wb_seg_end = Signal()
        wb_i = Signal(range(R))
        w_vec = Signal(range(R))                # vector of the DRAM weight segment
        dram_vector = Signal()
        m.d.comb += [
            w_end.eq(g_idx == g.weight_words - 1),
            dram_vector.eq(here & (kind == WTS) & w_end & ~wb_valid),
            weights.payload.eq(Mux(wb_valid, wb_r.data, vector[:8 * C])),
            weights.valid.eq(wb_valid | dram_vector),
            wb_advance.eq(~wb_valid | weights.ready),
            wb_take.eq(seg.valid & (kind == WBUF) & wb_advance),
            wb_seg_end.eq(wb_i == R - 1),
            wb_r.en.eq(wb_advance),
            wb_r.addr.eq(seg.payload.addr + wb_i),
            wb_w.addr.eq(seg.payload.addr + w_vec),
            wb_w.data.eq(vector[:8 * C]),
            wb_w.en.eq(dram_vector & weights.ready & seg.payload.store),
        ]
        with m.If(wb_advance):
            m.d.sync += wb_valid.eq(wb_take)
        with m.If(wb_take):
            m.d.sync += wb_i.eq(Mux(wb_seg_end, 0, wb_i + 1))
        with m.If(dram_vector & weights.ready):
            m.d.sync += w_vec.eq(Mux(w_vec == R - 1, 0, w_vec + 1))
        with m.If(kind == Q):
            m.d.comb += words.ready.eq(seg.valid & ~q_full)
        with m.Elif(kind == WTS):
            m.d.comb += words.ready.eq(seg.valid & ~wb_valid & (~w_end | weights.ready))
        taken = Signal()
        m.d.comb += [
            taken.eq(words.valid & words.ready),
            seg.ready.eq((taken & words.payload.last) | (wb_take & wb_seg_end)),
        ]
        if g.weight_words > 1:
            # the buffer shifts down a word at a time, so a vector's words end at its top
            with m.If(taken & (kind == WTS)):
                with m.If(w_end):
                    m.d.sync += g_idx.eq(0)
                with m.Else():
                    m.d.sync += g_idx.eq(g_idx + 1)
                    m.d.sync += gbuf.eq(Cat(gbuf[W:], word) if g.weight_words > 2 else word)
        with m.If(here & (kind == Q) & ~q_full):
            for i in range(g.quant_words):
                with m.If(q_idx == i):
                    m.d.sync += qbuf[i * W:(i + 1) * W].eq(word)
            with m.If(words.payload.last):
                m.d.sync += q_idx.eq(0), q_full.eq(1)
            with m.Else():
                m.d.sync += q_idx.eq(q_idx + 1)

        qp = self.quant.payload
        for j in range(C):
            m.d.comb += [
                qp.bias[j].eq(qbuf[32 * j:32 * (j + 1)]),
                qp.multiplier[j].eq(qbuf[32 * (C + j):32 * (C + j + 1)]),
                qp.shift[j].eq(qbuf[64 * C + 8 * j:64 * C + 8 * j + SHIFT_BITS]),
            ]
        m.d.comb += [
            qp.zero_point.eq(self.out_zero_point), qp.qmin.eq(self.qmin), qp.qmax.eq(self.qmax),
            self.quant.valid.eq(q_full),
        ]
        with m.If(self.quant.valid & self.quant.ready):
            m.d.sync += q_full.eq(0)
        return m


class ActivationFeed(wiring.Component):
    """Activation segments to the array: scratchpad reads and zero-point vectors.

    Activation vectors leave through one register, the scratchpad read's: a read segment's
    vectors and a padding segment's zero-point vectors alike, in segment order. A segment
    streams from a committed window, or, while the window is still loading, reads only
    vectors already written (the loader fills the half in the walk's order); the M tile's
    last segment waits for the commit, to release the half.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.gemm.GemmGeometry`

    Members
    -------
    seg : ``In(stream.Signature(act_segment_layout(scratchpad address bits)))``
        The walk's activation segments; taken with a segment's last vector.
    read : ``Out(Signature({"addr": Out(range(act_depth)), "en": Out(1), "data": In(8 * rows)}))``
        To the scratchpad's read port.
    tile : ``In(Signature({"valid": Out(1), "ready": In(1)}))``
        From the scratchpad: its compute half holds a committed window; taken (the half
        released) with a ``release`` segment's last vector.
    written : ``In(range(2 * act_depth))``
        Vectors of the loading window written so far (the loader's).
    zero_point : ``In(8)``
        The input's zero point: a padding vector's every byte.
    acts : ``Out(stream.Signature(act_layout(rows, 8)))``
        Activation vectors to the array; ``last`` on a K tile's last.
    starved : ``Out(1)``
        A segment waits for the window.
    """

    def __init__(self, *, geometry):
        check_geometry(geometry)
        g = self._geometry = geometry
        sa = (g.act_depth - 1).bit_length() or 1
        super().__init__({
            "seg": In(stream.Signature(act_segment_layout(sa))),
            "read": Out(wiring.Signature({"addr": Out(range(g.act_depth)), "en": Out(1), "data": In(8 * g.rows)})),
            "tile": In(wiring.Signature({"valid": Out(1), "ready": In(1)})),
            "written": In(sa + 1),
            "zero_point": In(8),
            "acts": Out(stream.Signature(act_layout(g.rows, 8))),
            "starved": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        SA = len(self.written) - 1
        seg, rport, acts = self.seg.payload, self.read, self.acts
        a_valid, a_pad, a_last = Signal(name="a_valid"), Signal(name="a_pad"), Signal(name="a_last")
        a_i = Signal(16)
        a_i1 = Signal(16, init=1)               # a_i + 1, kept so the segment's end is one comparison
        a_next = Signal(SA)
        a_advance = Signal()
        a_take = Signal()
        act_ok = Signal()
        m.d.comb += act_ok.eq(self.tile.valid | (~(seg.end & seg.release) &
                                                 ((seg.kind == PAD) | (rport.addr < self.written))))
        a_seg_end = Signal()
        m.d.comb += [
            a_advance.eq(~a_valid | acts.ready),
            a_take.eq(self.seg.valid & act_ok & a_advance),
            a_seg_end.eq(a_i1 == seg.count),
            rport.en.eq(a_advance),
            rport.addr.eq(Mux(a_i == 0, seg.addr, a_next)),
            self.tile.ready.eq(a_take & a_seg_end & seg.end & seg.release),
            self.seg.ready.eq(a_take & a_seg_end),
            self.starved.eq(self.seg.valid & ~act_ok),
        ]
        with m.If(a_advance):
            m.d.sync += [a_valid.eq(a_take), a_pad.eq(seg.kind == PAD), a_last.eq(seg.end & a_seg_end)]
        with m.If(a_take):
            m.d.sync += [a_i.eq(Mux(a_seg_end, 0, a_i1)), a_i1.eq(Mux(a_seg_end, 1, a_i1 + 1)),
                         a_next.eq(rport.addr + Mux(seg.skip, 2, 1))]
        zp_vector = Cat(*[self.zero_point for _ in range(g.rows)])
        m.d.comb += [
            acts.valid.eq(a_valid),
            acts.payload.data.eq(Mux(a_pad, zp_vector, rport.data)),
            acts.payload.last.eq(a_last),
        ]
        return m
