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
        R, C = g.rows, g.cols
        WA = len(self.weight_seg.payload.addr)
        two_h, two_w = d.stride_h == 2, d.stride_w == 2
        m.submodules.tiles = tiles = MTileWalker(addr_bits=A)
        cmd, wseg, seg = self.rd_cmd.payload, self.weight_seg.payload, self.act_seg.payload
        took = self.rd_cmd.valid & self.rd_cmd.ready
        l_tiles = self.loaded.tiles

        n_tiles = Signal(32)                        # M tiles the walk has begun
        plane = Signal(24)                          # vectors of one channel tile of the window
        win_h, win_w = Signal(16, name="win_h"), Signal(16, name="win_w")
        iy_lo, ix_lo = Signal(16, name="iy_lo"), Signal(16, name="ix_lo")
        row_step = Signal(17)                       # vectors from one output row's input row to the next's
        mt = Signal(range(g.acc_depth + 1))
        ty, tx = Signal(16, name="ty"), Signal(16, name="tx")  # the M tile's first pixel
        n0 = Signal(16)
        ch_lo = Signal(16)                          # first channel of the N tile's K walk
        lo_addr = Signal(24)                        # its channel tile's plane in the window
        ch0 = Signal(16)
        ct_addr = Signal(24)
        ky, kx = Signal(8, name="ky"), Signal(8, name="kx")
        # ky * dilation_h, kx * dilation_w
        ky_off = Signal(16)
        kx_off = Signal(16)
        # the window address of a K tile's first pixel, in terms kept from the M tile on:
        # (iy - iy_lo) * win_w + ix0 - ix_lo = y_base + ky * dilation_h * win_w + kx_off + x_base
        y_rel = Signal(signed(20))                  # the M tile's first input row, less iy_lo
        y_base = Signal(signed(40))
        ky_addr = Signal(signed(40))
        kt_off = Signal(signed(40))
        dil_step = Signal(24)                       # dilation_h * win_w
        x_base = Signal(signed(18))                 # -pad_left - ix_lo
        q_addr, w_addr = Signal(A, name="q_addr"), Signal(A, name="w_addr")
        wv = Signal(WA + 1)                         # the K tile's first vector in the weight buffer
        iy = Signal(signed(19))                     # input row of the current output row
        ix0 = Signal(signed(19))                    # input column of output column 0
        row_addr = Signal(signed(26))               # window address of pixel (iy, ix0)
        # output columns whose input is inside
        ox_lo = Signal(17)
        ox_hi = Signal(17)
        oy = Signal(16)
        s = Signal(17)
        e = Signal(17)
        lo = Signal(17)
        hi = Signal(17)
        left = Signal(32)
        final_row = Signal()

        ch_end = Signal(17)
        m.d.comb += ch_end.eq(Mux(d.depthwise & (n0 + C < d.k), n0 + C, d.k))
        first_k = Signal()
        last_k = Signal()
        # from the M tile's registers, a cycle or two before a K tile needs them
        m.d.sync += [
            plane.eq(win_h * win_w), dil_step.eq(d.dilation_h * win_w),
            y_rel.eq(Mux(two_h, ty << 1, ty) - d.pad_top - iy_lo), y_base.eq(y_rel * win_w),
            x_base.eq(-d.pad_left - ix_lo),
        ]
        m.d.comb += [
            first_k.eq((ky == 0) & (kx == 0) & (ch0 == ch_lo)),
            last_k.eq((ky + 1 == d.kernel_h) & (kx + 1 == d.kernel_w) & (ch0 + R >= ch_end)),
            self.k_flags.payload.eq(Cat(first_k, last_k)),
            seg.release.eq(last_k & (n0 + C >= d.n)),
            wseg.kind.eq(seg.kind),
            tiles.layer.eq(d),
        ]
        pushed = self.act_seg.valid & self.act_seg.ready
        planes_issued = Signal()
        m.d.comb += planes_issued.eq((l_tiles >= n_tiles) |
                                     ((l_tiles + 1 == n_tiles) & self.loaded.issuing &
                                      (self.loaded.channel > ch0)))

        state = Signal(_Issue)

        def next_row():
            """After a row's last segment: the next row, K tile, N tile or M tile."""
            m.d.sync += [
                left.eq(left - (e - s)), s.eq(0), oy.eq(oy + 1),
                iy.eq(iy + Mux(two_h, 2, 1)), row_addr.eq(row_addr + row_step),
            ]
            with m.If(~final_row):
                m.d.sync += state.eq(_Issue.ROW)
            with m.Else():
                m.d.sync += state.eq(_Issue.WEIGHTS)
                with m.If(ch0 + R < ch_end):
                    m.d.sync += ch0.eq(ch0 + R), ct_addr.eq(ct_addr + plane)
                with m.Elif(kx + 1 < d.kernel_w):
                    m.d.sync += [kx.eq(kx + 1), kx_off.eq(kx_off + d.dilation_w),
                                 ch0.eq(ch_lo), ct_addr.eq(lo_addr)]
                with m.Elif(ky + 1 < d.kernel_h):
                    m.d.sync += [ky.eq(ky + 1), ky_off.eq(ky_off + d.dilation_h), kx.eq(0),
                                 ky_addr.eq(ky_addr + dil_step),
                                 kx_off.eq(0), ch0.eq(ch_lo), ct_addr.eq(lo_addr)]
                with m.Elif(n0 + C < d.n):
                    m.d.sync += n0.eq(n0 + C)
                    m.d.sync += state.eq(_Issue.QREC)
                with m.Else():
                    m.d.comb += tiles.advance.eq(1)
                    m.d.sync += state.eq(_Issue.MTILE)
                    with m.If(tiles.last):
                        m.d.sync += state.eq(_Issue.IDLE)

        with m.If(state == _Issue.IDLE):
            with m.If(self.start):
                m.d.comb += tiles.restart.eq(1)
                m.d.sync += state.eq(_Issue.MTILE), n_tiles.eq(0)
        with m.Elif(state == _Issue.MTILE):
            width = tiles.ix_hi - tiles.ix_lo
            with m.If(tiles.valid):
                m.d.sync += [
                    n_tiles.eq(n_tiles + 1),
                    mt.eq(tiles.pixels), ty.eq(tiles.ty), tx.eq(tiles.tx),
                    iy_lo.eq(tiles.iy_lo), ix_lo.eq(tiles.ix_lo), win_w.eq(width),
                    win_h.eq(tiles.iy_hi - tiles.iy_lo),
                    row_step.eq(Mux(two_h, width << 1, width)),
                    n0.eq(0), ch_lo.eq(0), lo_addr.eq(0), wv.eq(0),
                    q_addr.eq(d.quant_addr), w_addr.eq(d.weight_addr),
                ]
                m.d.sync += state.eq(_Issue.QREC)
        with m.Elif(state == _Issue.QREC):
            # (the first N tile's record once the previous M tile's window is requested, the
            # others once this one's is: the segments ahead of a record need no more)
            m.d.comb += [
                self.rd_cmd.valid.eq(self.weight_seg.ready &
                                     Mux(n0 == 0, l_tiles + 1 >= n_tiles, l_tiles >= n_tiles)),
                cmd.addr.eq(q_addr), cmd.count.eq(g.quant_words - 1),
                seg.kind.eq(Q), self.weight_seg.valid.eq(took),
            ]
            with m.If(took):
                m.d.sync += q_addr.eq(q_addr + g.quant_bytes)
                m.d.sync += state.eq(_Issue.ADJUST)
        with m.Elif(state == _Issue.ADJUST):
            # a depthwise N tile's K walk starts at the channel tile holding channel n0
            with m.If(d.depthwise & (ch_lo + R <= n0)):
                m.d.sync += ch_lo.eq(ch_lo + R), lo_addr.eq(lo_addr + plane)
            with m.Else():
                m.d.sync += [ky.eq(0), kx.eq(0), ky_off.eq(0), kx_off.eq(0), ky_addr.eq(0), ch0.eq(ch_lo),
                             ct_addr.eq(lo_addr)]
                m.d.sync += state.eq(_Issue.WEIGHTS)
        with m.Elif(state == _Issue.WEIGHTS):
            # Resident weights: the first M tile reads them from DRAM and stores them in the
            # weight buffer as they pass to the array; the other M tiles read the buffer.
            from_buf = d.weights_resident & (n_tiles != 1)
            room = self.weight_seg.ready & self.k_flags.ready
            m.d.comb += [
                self.rd_cmd.valid.eq(~from_buf & room & planes_issued),
                cmd.addr.eq(w_addr), cmd.count.eq(R * g.weight_words - 1),
                seg.kind.eq(Mux(from_buf, WBUF, WTS)),
                wseg.store.eq(d.weights_resident), wseg.addr.eq(wv),
                self.weight_seg.valid.eq(took | (from_buf & room)),
                self.k_flags.valid.eq(self.weight_seg.valid),
            ]
            with m.If(self.weight_seg.valid):
                m.d.sync += [
                    wv.eq(wv + R),
                    w_addr.eq(w_addr + R * g.weight_bytes),
                    iy.eq(Mux(two_h, ty << 1, ty) + ky_off - d.pad_top),
                    ix0.eq(kx_off - d.pad_left),
                    kt_off.eq(y_base + ky_addr + kx_off + x_base),
                ]
                m.d.sync += state.eq(_Issue.KTILE)
        with m.Elif(state == _Issue.KTILE):
            first_in = Signal(signed(20))       # first output column with ix >= 0, and past the input
            past_in = Signal(signed(20))
            m.d.comb += [
                first_in.eq(Mux(two_w, (1 - ix0) >> 1, -ix0)),
                past_in.eq(Mux(two_w, (d.in_w - ix0 + 1) >> 1, d.in_w - ix0)),
            ]
            m.d.sync += [
                row_addr.eq(ct_addr + kt_off),
                ox_lo.eq(clamp(first_in, 0, d.out_w)),
                ox_hi.eq(clamp(past_in, 0, d.out_w)),
                oy.eq(ty), s.eq(tx), left.eq(mt),
            ]
            m.d.sync += state.eq(_Issue.ROW)
        # A row takes a cycle to plan and one per segment it has (an empty left
        # padding or right padding takes none), so a one-pixel GEMM row takes two.
        with m.Elif(state == _Issue.ROW):
            end = Signal(33)
            m.d.comb += end.eq(Mux(s + left < d.out_w, s + left, d.out_w))
            inside = (iy >= 0) & (iy < d.in_h)
            first = Signal(17)
            m.d.comb += first.eq(Mux(inside, clamp(ox_lo, s, end), end))
            m.d.sync += [
                e.eq(end), lo.eq(first), hi.eq(Mux(inside, clamp(ox_hi, first, end), end)),
                final_row.eq(left == end - s),
            ]
            with m.If(first == s):
                m.d.sync += state.eq(_Issue.READ)
            with m.Else():
                m.d.sync += state.eq(_Issue.PAD_LEFT)
        with m.Elif(state == _Issue.PAD_LEFT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(lo - s), seg.end.eq(final_row & (lo == e)),
                         self.act_seg.valid.eq(1)]
            with m.If(self.act_seg.ready):
                m.d.sync += state.eq(_Issue.READ)
        with m.Elif(state == _Issue.READ):
            m.d.comb += [
                seg.kind.eq(ACT), seg.count.eq(hi - lo), seg.skip.eq(two_w),
                seg.addr.eq(row_addr + Mux(two_w, lo << 1, lo)), seg.end.eq(final_row & (hi == e)),
                self.act_seg.valid.eq(hi != lo),
            ]
            with m.If((hi == lo) | pushed):
                with m.If(e == hi):
                    next_row()
                with m.Else():
                    m.d.sync += state.eq(_Issue.PAD_RIGHT)
        with m.Elif(state == _Issue.PAD_RIGHT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(e - hi), seg.end.eq(final_row),
                         self.act_seg.valid.eq(1)]
            with m.If(self.act_seg.ready):
                next_row()
        return m
