"""Read issue: the loop nest of :mod:`mensa.contract.gemm`, one segment at a time.

The walk issues two queues of segments, each drained on its own: the DRAM reads'
(quantisation records, weights; ``weight_seg``, with a read command for each that reads
DRAM), and the activation vectors' (scratchpad reads, zero points; ``act_seg``), so the next
K tile's weights load into the array's free bank while this one's activations stream.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.dma import command_layout
from mensa.hw.gemm_layer import (ACT, PAD, Q, WBUF, WTS, MTileWalker, act_segment_layout, check_addr_bits,
                                 check_geometry, clamp, descriptor_layout, k_flags_layout, progress_layout,
                                 weight_segment_layout)

__all__ = ["SegmentIssuer"]


# (If chains on the state rather than m.FSM: a case statement on a partly used state code is
# an incomplete case to Verilator's lint)
class _Issue(enum.Enum, shape=4):
    IDLE = 0
    MTILE = 1           # take the next M tile and its window
    QREC = 2            # the N tile's quantisation record
    ADJUST = 3          # a depthwise N tile's first channel tile
    WEIGHTS = 4         # the K tile's weights
    KTILE = 5           # plan its first output row
    ROW = 6             # plan an output row's segments
    PAD_LEFT = 7
    READ = 8
    PAD_RIGHT = 9


class SegmentIssuer(wiring.Component):
    """Walks a layer's M tiles, N tiles and K tiles, issuing their reads and segments.

    A K tile's weights are requested only once the loader has requested the window's
    planes up to the K tile's channel tile (and a quantisation record once it has requested
    what the segments ahead of the record read). The DMA answers in order, so the window
    words the walk's activations need are ahead of every word of the walk's that could wait
    for those activations: the two never wait on each other.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.gemm.GemmGeometry`
    addr_bits : int
        DRAM address bits.

    Members
    -------
    start : ``In(1)``
        Begin a layer (``layer`` holds it from the next cycle on).
    layer : ``In(descriptor_layout(addr_bits))``
        The layer running.
    loaded : ``In(progress_layout)``
        The loader's progress (:class:`~mensa.hw.gemm_loader.WindowLoader`).
    rd_cmd : ``Out(stream.Signature(command_layout(addr_bits, 8 * word_bytes)))``
        Reads of quantisation records and of weights from DRAM.
    weight_seg : ``Out(stream.Signature(weight_segment_layout(weight buffer address bits)))``
        One per quantisation record or K tile's weights, in the order of their words. A
        segment that reads DRAM is offered in the cycle its command is taken (its
        ``valid`` follows ``rd_cmd.ready``, and ``rd_cmd`` waits for ``ready`` here); one
        that replays the weight buffer, in a cycle this and ``k_flags`` are both ready.
    act_seg : ``Out(stream.Signature(act_segment_layout(scratchpad address bits)))``
        Each output row's activation segments, K tile by K tile.
    k_flags : ``Out(stream.Signature(k_flags_layout))``
        Each K tile's first and final flags, with its weights' segment.
    """

    def __init__(self, *, geometry, addr_bits):
        check_geometry(geometry)
        check_addr_bits(addr_bits)
        g = self._geometry = geometry
        self._addr_bits = addr_bits
        sa = (g.act_depth - 1).bit_length() or 1
        wa = max((g.weight_depth - 1).bit_length(), 1)
        super().__init__({
            "start": In(1),
            "layer": In(descriptor_layout(addr_bits)),
            "loaded": In(progress_layout),
            "rd_cmd": Out(stream.Signature(command_layout(addr_bits, 8 * g.word_bytes))),
            "weight_seg": Out(stream.Signature(weight_segment_layout(wa))),
            "act_seg": Out(stream.Signature(act_segment_layout(sa))),
            "k_flags": Out(stream.Signature(k_flags_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        g, A, d = self._geometry, self._addr_bits, self.layer
        m.submodules.tiles = tiles = MTileWalker(addr_bits=A)
        m.d.comb += tiles.layer.eq(d)
        r = _WalkRegisters(g, A, len(self.weight_seg.payload.addr))
        self._precompute(m, r)
        self._flags(m, r)
        state = Signal(_Issue)
        self._walk(m, r, state, tiles)
        return m

    def _precompute(self, m, r):
        """Registers that follow others a cycle or two later, long before they are used: the
        layer's, the M tile's and the N tile's terms of the walk's sums and decisions. Each is
        a product, a sum or a comparison of registers, so no decision of the walk waits for one."""
        g, d = self._geometry, self.layer
        R, C = g.rows, g.cols
        two_h = d.stride_h == 2
        m.d.sync += [
            # the layer's
            r.kw_last.eq(d.kernel_w - 1), r.kh_last.eq(d.kernel_h - 1),
            r.pad_left1.eq(d.pad_left + 1), r.in_w_left.eq(d.in_w + d.pad_left),
            # the M tile's (from MTILE on, used from ADJUST on)
            r.plane.eq(r.win_h * r.win_w), r.dil_step.eq(d.dilation_h * r.win_w),
            r.y_rel.eq(r.iy_base - r.iy_lo), r.y_base.eq(r.y_rel * r.win_w),
            r.x_base.eq(-d.pad_left - r.ix_lo),
            r.row_step.eq(Mux(two_h, r.win_w << 1, r.win_w)),
            # the N tile's (from QREC on, used from WEIGHTS on)
            r.ch_end.eq(Mux(d.depthwise & (r.n0 + C < d.k), r.n0 + C, d.k)),
            r.ch_last.eq(r.ch_end - R), r.n_last.eq(r.n0 + C >= d.n),
        ]

    def _flags(self, m, r):
        """The K tile's flags, from comparisons of registers."""
        seg = self.act_seg.payload
        m.d.comb += [
            r.last_ch.eq(r.ch0 >= r.ch_last),
            r.first_k.eq((r.ky == 0) & (r.kx == 0) & (r.ch0 == r.ch_lo)),
            r.last_k.eq((r.ky == r.kh_last) & (r.kx == r.kw_last) & r.last_ch),
            self.k_flags.payload.eq(Cat(r.first_k, r.last_k)),
            seg.release.eq(r.last_k & r.n_last),
            self.weight_seg.payload.kind.eq(seg.kind),
        ]

    def _walk(self, m, r, state, tiles):
        g, d = self._geometry, self.layer
        R = g.rows
        two_h, two_w = d.stride_h == 2, d.stride_w == 2
        cmd, wseg, seg = self.rd_cmd.payload, self.weight_seg.payload, self.act_seg.payload
        took = self.rd_cmd.valid & self.rd_cmd.ready
        l_tiles = self.loaded.tiles
        pushed = self.act_seg.valid & self.act_seg.ready
        planes_issued = Signal()
        m.d.comb += planes_issued.eq((l_tiles >= r.n_tiles) |
                                     ((l_tiles == r.n_prev) & self.loaded.issuing & (self.loaded.channel > r.ch0)))

        def next_row():
            """After a row's last segment: the next row, K tile, N tile or M tile."""
            m.d.sync += [
                r.sl.eq(r.sl - r.e), r.s.eq(0), r.oy.eq(r.oy + 1),
                r.iy.eq(r.iy + Mux(two_h, 2, 1)), r.row_addr.eq(r.row_addr + r.row_step),
            ]
            with m.If(~r.final_row):
                m.d.sync += state.eq(_Issue.ROW)
            with m.Else():
                m.d.sync += state.eq(_Issue.WEIGHTS)
                with m.If(~r.last_ch):
                    m.d.sync += r.ch0.eq(r.ch0 + R), r.ct_addr.eq(r.ct_addr + r.plane)
                with m.Elif(r.kx != r.kw_last):
                    m.d.sync += [r.kx.eq(r.kx + 1), r.kx_off.eq(r.kx_off + d.dilation_w),
                                 r.k_off.eq(r.k_off + d.dilation_w), r.ch0.eq(r.ch_lo), r.ct_addr.eq(r.lo_addr)]
                with m.Elif(r.ky != r.kh_last):
                    m.d.sync += [r.ky.eq(r.ky + 1), r.ky_off.eq(r.ky_off + d.dilation_h), r.kx.eq(0),
                                 r.kx_off.eq(0), r.ky_addr.eq(r.ky_addr + r.dil_step),
                                 r.k_off.eq(r.ky_addr + r.dil_step), r.ch0.eq(r.ch_lo), r.ct_addr.eq(r.lo_addr)]
                with m.Elif(~r.n_last):
                    m.d.sync += r.n0.eq(r.n0 + g.cols)
                    m.d.sync += state.eq(_Issue.QREC)
                with m.Else():
                    m.d.comb += tiles.advance.eq(1)
                    m.d.sync += state.eq(_Issue.MTILE)
                    with m.If(tiles.last):
                        m.d.sync += state.eq(_Issue.IDLE)

        with m.If(state == _Issue.IDLE):
            with m.If(self.start):
                m.d.comb += tiles.restart.eq(1)
                m.d.sync += state.eq(_Issue.MTILE), r.n_tiles.eq(0)
        with m.Elif(state == _Issue.MTILE):
            with m.If(tiles.valid):
                m.d.sync += [
                    r.n_tiles.eq(r.n_tiles + 1), r.n_prev.eq(r.n_tiles),
                    r.from_buf.eq(d.weights_resident & (r.n_tiles != 0)),
                    r.mt.eq(tiles.pixels), r.tx.eq(tiles.tx),
                    r.iy_base.eq(Mux(two_h, tiles.ty << 1, tiles.ty) - d.pad_top),
                    r.iy_lo.eq(tiles.iy_lo), r.ix_lo.eq(tiles.ix_lo),
                    r.win_w.eq(tiles.ix_hi - tiles.ix_lo), r.win_h.eq(tiles.iy_hi - tiles.iy_lo),
                    r.oy0.eq(tiles.ty),
                    r.n0.eq(0), r.ch_lo.eq(0), r.lo_addr.eq(0), r.wv.eq(0),
                    r.q_addr.eq(d.quant_addr), r.w_addr.eq(d.weight_addr),
                ]
                m.d.sync += state.eq(_Issue.QREC)
        with m.Elif(state == _Issue.QREC):
            # (the first N tile's record once the previous M tile's window is requested, the
            # others once this one's is: the segments ahead of a record need no more)
            m.d.comb += [
                self.rd_cmd.valid.eq(self.weight_seg.ready &
                                     Mux(r.n0 == 0, l_tiles >= r.n_prev, l_tiles >= r.n_tiles)),
                cmd.addr.eq(r.q_addr), cmd.count.eq(g.quant_words - 1),
                seg.kind.eq(Q), self.weight_seg.valid.eq(took),
            ]
            with m.If(took):
                m.d.sync += r.q_addr.eq(r.q_addr + g.quant_bytes)
                m.d.sync += state.eq(_Issue.ADJUST)
        with m.Elif(state == _Issue.ADJUST):
            # a depthwise N tile's K walk starts at the channel tile holding channel n0
            with m.If(d.depthwise & (r.ch_lo + R <= r.n0)):
                m.d.sync += r.ch_lo.eq(r.ch_lo + R), r.lo_addr.eq(r.lo_addr + r.plane)
            with m.Else():
                m.d.sync += [r.ky.eq(0), r.kx.eq(0), r.ky_off.eq(0), r.kx_off.eq(0),
                             r.ky_addr.eq(r.x_base), r.k_off.eq(r.x_base), r.ch0.eq(r.ch_lo),
                             r.ct_addr.eq(r.lo_addr)]
                m.d.sync += state.eq(_Issue.WEIGHTS)
        with m.Elif(state == _Issue.WEIGHTS):
            # Resident weights: the first M tile reads them from DRAM and stores them in the
            # weight buffer as they pass to the array; the other M tiles read the buffer.
            from_buf = r.from_buf
            room = self.weight_seg.ready & self.k_flags.ready
            m.d.comb += [
                self.rd_cmd.valid.eq(~from_buf & room & planes_issued),
                cmd.addr.eq(r.w_addr), cmd.count.eq(R * g.weight_words - 1),
                seg.kind.eq(Mux(from_buf, WBUF, WTS)),
                wseg.store.eq(d.weights_resident), wseg.addr.eq(r.wv),
                self.weight_seg.valid.eq(took | (from_buf & room)),
                self.k_flags.valid.eq(self.weight_seg.valid),
            ]
            with m.If(self.weight_seg.valid):
                m.d.sync += [
                    r.wv.eq(r.wv + R),
                    r.w_addr.eq(r.w_addr + R * g.weight_bytes),
                    r.iy.eq(r.iy_base + r.ky_off),
                    # the first output column whose input column (kx_off - pad_left + ox *
                    # stride) is >= 0, and the first past the input
                    r.first_in.eq(Mux(two_w, (r.pad_left1 - r.kx_off) >> 1, d.pad_left - r.kx_off)),
                    r.past_in.eq(Mux(two_w, (r.in_w_left + 1 - r.kx_off) >> 1, r.in_w_left - r.kx_off)),
                    r.kt_off.eq(r.y_base + r.k_off),
                ]
                m.d.sync += state.eq(_Issue.KTILE)
        with m.Elif(state == _Issue.KTILE):
            m.d.sync += [
                r.row_addr.eq(r.ct_addr + r.kt_off),
                r.ox_lo.eq(clamp(r.first_in, 0, d.out_w)),
                r.ox_hi.eq(clamp(r.past_in, 0, d.out_w)),
                r.oy.eq(r.oy0), r.s.eq(r.tx), r.sl.eq(r.tx + r.mt),
            ]
            m.d.sync += state.eq(_Issue.ROW)
        with m.Elif(state == _Issue.ROW):
            self._plan_row(m, r, state)
        with m.Elif(state == _Issue.PAD_LEFT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(r.lo - r.s), seg.end.eq(r.final_row & (r.lo == r.e)),
                         self.act_seg.valid.eq(1)]
            with m.If(self.act_seg.ready):
                m.d.sync += state.eq(_Issue.READ)
        with m.Elif(state == _Issue.READ):
            m.d.comb += [
                seg.kind.eq(ACT), seg.count.eq(r.hi - r.lo), seg.skip.eq(two_w),
                seg.addr.eq(r.row_addr + Mux(two_w, r.lo << 1, r.lo)), seg.end.eq(r.final_row & (r.hi == r.e)),
                self.act_seg.valid.eq(r.hi != r.lo),
            ]
            with m.If((r.hi == r.lo) | pushed):
                with m.If(r.e == r.hi):
                    next_row()
                with m.Else():
                    m.d.sync += state.eq(_Issue.PAD_RIGHT)
        with m.Elif(state == _Issue.PAD_RIGHT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(r.e - r.hi), seg.end.eq(r.final_row),
                         self.act_seg.valid.eq(1)]
            with m.If(self.act_seg.ready):
                next_row()

    def _plan_row(self, m, r, state):
        """A row's segments: output columns ``s .. lo - 1`` padding, ``lo .. hi - 1`` read,
        ``hi .. e - 1`` padding. ``sl`` (``s`` plus the pixels left) is kept so that every
        comparison here is between registers: with ``s < out_w``, ``s < sl`` and ``ox_lo <=
        ox_hi <= out_w``, ``e = min(sl, out_w)``, ``lo = clip(ox_lo, s, e)`` and ``hi =
        clip(ox_hi, lo, e)`` of :meth:`~mensa.contract.gemm.LayerWalk` are the muxes below."""
        d = self.layer
        inside = Signal()
        end, first = Signal(17), Signal(17)
        m.d.comb += [
            inside.eq((r.iy >= 0) & (r.iy < d.in_h)),
            end.eq(Mux(r.sl < d.out_w, r.sl, d.out_w)),
            first.eq(Mux(~inside | (r.ox_lo > r.sl), end, Mux(r.ox_lo < r.s, r.s, r.ox_lo))),
        ]
        m.d.sync += [
            r.e.eq(end), r.lo.eq(first),
            r.hi.eq(Mux(~inside | (r.ox_hi > r.sl), end, Mux(r.ox_hi < r.s, r.s, r.ox_hi))),
            r.final_row.eq(r.sl <= d.out_w),
        ]
        with m.If(inside & (r.ox_lo <= r.s)):
            m.d.sync += state.eq(_Issue.READ)
        with m.Else():
            m.d.sync += state.eq(_Issue.PAD_LEFT)


class _WalkRegisters:
    """The walk's registers, named as the timing reports print them."""

    def __init__(self, g, A, WA):
        def sig(shape, name):
            s = Signal(shape, name=name)
            setattr(self, name, s)
        for name in ("n_tiles", "n_prev"):         # M tiles the walk has begun, and one less
            sig(32, name)
        sig(24, "plane")                            # vectors of one channel tile of the window
        for name in ("win_h", "win_w", "iy_lo", "ix_lo", "tx", "oy0", "n0", "ch_lo", "ch0", "oy"):
            sig(16, name)
        sig(17, "row_step")                         # vectors from one output row's input row to the next's
        sig(range(g.acc_depth + 1), "mt")
        sig(24, "lo_addr")                          # the N tile's first channel tile's plane in the window
        sig(24, "ct_addr")
        for name in ("ky", "kx", "kh_last", "kw_last"):
            sig(8, name)
        for name in ("ky_off", "kx_off"):           # ky * dilation_h, kx * dilation_w
            sig(16, name)
        sig(9, "pad_left1")
        sig(17, "in_w_left")
        # The window address of a K tile's first pixel, (iy - iy_lo) * win_w + ix0 - ix_lo, in
        # terms kept from the M tile on: y_base + k_off, with k_off = ky * dilation_h * win_w
        # + kx * dilation_w + x_base kept by additions as the K walk steps.
        sig(signed(20), "iy_base")                  # the M tile's first input row
        sig(signed(18), "y_rel")                    # (<= 0 where it is used: one DSP block's operand)
        for name in ("y_base", "ky_addr", "k_off", "kt_off"):
            sig(signed(40), name)
        sig(24, "dil_step")                         # dilation_h * win_w
        sig(signed(18), "x_base")                   # -pad_left - ix_lo
        sig(A, "q_addr")
        sig(A, "w_addr")
        sig(WA + 1, "wv")                           # the K tile's first vector in the weight buffer
        sig(signed(19), "iy")                       # input row of the current output row
        sig(signed(26), "row_addr")                 # window address of pixel (iy, ix0)
        for name in ("first_in", "past_in"):        # output columns: the first with input, the first past it
            sig(signed(20), name)
        for name in ("ox_lo", "ox_hi", "s", "e", "lo", "hi"):
            sig(17, name)
        sig(33, "sl")                               # s plus the row's pixels left in the M tile
        sig(17, "ch_end")                           # the N tile's K walk ends before this channel
        sig(signed(18), "ch_last")                  # ch_end - rows
        for name in ("n_last", "last_ch", "first_k", "last_k", "final_row",
                     "from_buf"):                   # resident weights, a later M tile: the K tiles' from the buffer
            sig(1, name)
