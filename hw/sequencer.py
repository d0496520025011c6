"""The layer sequencer of the systolic accelerator: the loop nest of :mod:`mensa.contract.gemm` in hardware."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.gemm import FLAG_DEPTH, ROUTE_DEPTH, GemmGeometry
from mensa.contract.numeric import ACC_BITS, SHIFT_BITS
from mensa.hw.dma import command_layout, read_layout, write_layout

__all__ = ["GemmSequencer", "descriptor_layout"]


def descriptor_layout(addr_bits):
    """What the sequencer reads from the descriptor registers."""
    return data.StructLayout({
        "m": 32, "k": 16, "n": 16, "depthwise": 1, "tile_rows": 16, "tile_cols": 16, "weights_resident": 1,
        "in_h": 16, "in_w": 16, "out_h": 16, "out_w": 16,
        "kernel_h": 8, "kernel_w": 8, "stride_h": 8, "stride_w": 8, "dilation_h": 8, "dilation_w": 8,
        "pad_top": 8, "pad_left": 8,
        "in_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8,
        "input_addr": addr_bits, "weight_addr": addr_bits, "quant_addr": addr_bits, "output_addr": addr_bits,
    })


# What a segment of the walk feeds: its kind; for a scratchpad read (ACT) its first
# address, and whether it reads every second vector (stride 2); how many vectors; whether it
# ends the K tile, and whether that K tile ends the M tile (its window's half is released).
Q, WTS, ACT, PAD = 0, 1, 2, 3
WBUF = 2                # (in the weights' queue) a K tile's weight vectors from the weight buffer


def _segment(addr_bits):
    return data.StructLayout({"kind": 2, "count": 16, "skip": 1, "end": 1, "release": 1, "addr": addr_bits})


_ISSUE_STATES = ("IDLE", "MTILE", "QREC", "ADJUST", "WEIGHTS", "KTILE", "ROW", "PAD_LEFT", "READ", "PAD_RIGHT")


class GemmSequencer(wiring.Component):
    """Runs one layer from DRAM on a weight-stationary array: reads, compute, requantise, writes.

    Conv2d (stride 1 or 2, any padding and dilation), depthwise conv, pointwise conv and
    fully connected layers, walked as the module docstring says.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`

    Members
    -------
    desc : ``In(descriptor_layout)``
        The layer, sampled at ``start``.
    start : ``In(1)``
        Begin a layer (ignored while one runs).
    done : ``Out(1)``
        One cycle, once DRAM has acknowledged the layer's last output write.
    running, busy, mem_stall : ``Out(1)``
        A layer runs; the array holds work; a DRAM read is awaited with nothing to stream.
    rd_cmd, rd_data, wr_cmd, wr_data, wr_done
        To the :class:`~mensa.hw.dma.DMA`'s client ports.
    """

    def __init__(self, config):
        self._geometry = GemmGeometry.of(config)
        self._config = config
        mem = config.memory
        super().__init__({
            "desc": In(descriptor_layout(mem.addr_bits)),
            "start": In(1),
            "done": Out(1), "running": Out(1), "busy": Out(1), "mem_stall": Out(1),
            "rd_cmd": Out(stream.Signature(command_layout(mem.addr_bits, mem.data_bits))),
            "rd_data": In(stream.Signature(read_layout(mem.data_bits))),
            "wr_cmd": Out(stream.Signature(command_layout(mem.addr_bits, mem.data_bits))),
            "wr_data": Out(stream.Signature(write_layout(mem.data_bits))),
            "wr_done": In(stream.Signature(2)),
        })

    @property
    def geometry(self):
        return self._geometry

    def elaborate(self, platform):
        from mensa.hw.buffers import Scratchpad
        from mensa.hw.requant import Requantizer
        from mensa.hw.systolic import SystolicArray

        m = Module()
        g, cfg = self._geometry, self._config
        R, C, wb = g.rows, g.cols, g.word_bytes
        W = 8 * wb
        A = cfg.memory.addr_bits
        ab = g.act_bytes
        m.submodules.array = array = SystolicArray(cfg.array)
        m.submodules.requant = requant = Requantizer(lanes=C)
        m.submodules.spad = spad = Scratchpad(width=8 * R, depth=g.act_depth)
        SA = (g.act_depth - 1).bit_length() or 1       # scratchpad address bits

        d = Signal(descriptor_layout(A))        # the layer, latched at start
        go = Signal()
        m.d.comb += go.eq(self.start & ~self.running)
        with m.If(go):
            m.d.sync += d.eq(self.desc), self.running.eq(1)
        o_tile = Signal(A)                      # bytes of one N tile of C: M output vectors
        m.d.comb += o_tile.eq(d.m * g.out_bytes)
        two_h, two_w = d.stride_h == 2, d.stride_w == 2
        span_h, span_w = Signal(16), Signal(16)         # (kernel - 1) * dilation + 1
        m.d.comb += [span_h.eq((d.kernel_h - 1) * d.dilation_h + 1),
                     span_w.eq((d.kernel_w - 1) * d.dilation_w + 1)]

        def clamp(value, low, high):
            return Mux(value < low, low, Mux(value > high, high, value))

        def m_tiles(name):
            """An M tile walker: LayerWalk.m_tiles in registers."""
            ty, tx = Signal(16, name=f"{name}_ty"), Signal(16, name=f"{name}_tx")
            rows, cols = Signal(16, name=f"{name}_rows"), Signal(16, name=f"{name}_cols")
            last = Signal(name=f"{name}_last")
            m.d.comb += [
                rows.eq(Mux(d.tile_rows < d.out_h - ty, d.tile_rows, d.out_h - ty)),
                cols.eq(Mux(d.tile_cols < d.out_w - tx, d.tile_cols, d.out_w - tx)),
                last.eq((ty + d.tile_rows >= d.out_h) & (tx + d.tile_cols >= d.out_w)),
            ]

            def advance():
                with m.If(tx + d.tile_cols < d.out_w):
                    m.d.sync += tx.eq(tx + d.tile_cols)
                with m.Else():
                    m.d.sync += tx.eq(0), ty.eq(ty + d.tile_rows)
            return ty, tx, rows, cols, last, advance

        def window(name, ty, tx, rows, cols):
            """LayerWalk.window of the tile: (iy_lo, iy_hi, ix_lo, ix_hi)."""
            y0, y1 = Signal(signed(20), name=f"{name}_y0"), Signal(signed(20), name=f"{name}_y1")
            x0, x1 = Signal(signed(20), name=f"{name}_x0"), Signal(signed(20), name=f"{name}_x1")
            oy1, ox1 = ty + rows - 1, tx + cols - 1
            m.d.comb += [
                y0.eq(Mux(two_h, ty << 1, ty) - d.pad_top),
                y1.eq(Mux(two_h, oy1 << 1, oy1) - d.pad_top + span_h),
                x0.eq(Mux(two_w, tx << 1, tx) - d.pad_left),
                x1.eq(Mux(two_w, ox1 << 1, ox1) - d.pad_left + span_w),
            ]
            iy_lo, iy_hi = Signal(16, name=f"{name}_iy_lo"), Signal(16, name=f"{name}_iy_hi")
            ix_lo, ix_hi = Signal(16, name=f"{name}_ix_lo"), Signal(16, name=f"{name}_ix_hi")
            m.d.comb += [iy_lo.eq(clamp(y0, 0, d.in_h)), iy_hi.eq(clamp(y1, iy_lo, d.in_h))]
            with m.If(rows == 1):
                m.d.comb += [ix_lo.eq(clamp(x0, 0, d.in_w)), ix_hi.eq(clamp(x1, ix_lo, d.in_w))]
            with m.Else():
                m.d.comb += [ix_lo.eq(0), ix_hi.eq(d.in_w)]
            return iy_lo, iy_hi, ix_lo, ix_hi

        # Reads are issued by two masters, the loader (the next M tile's input window into
        # the scratchpad) and the walk (quantisation records and weights); the DMA answers
        # in order, and `source` says whose each command's words are.
        m.submodules.source = source = fifo.SyncFIFOBuffered(width=1, depth=ROUTE_DEPTH)
        LOAD, WALK = 1, 0
        walk_cmd = Signal.like(self.rd_cmd.payload)
        walk_valid = Signal()
        load_cmd = Signal.like(self.rd_cmd.payload)
        load_valid = Signal()
        m.d.comb += [
            self.rd_cmd.valid.eq((walk_valid | load_valid) & source.w_rdy),
            self.rd_cmd.payload.eq(Mux(walk_valid, walk_cmd, load_cmd)),
            source.w_data.eq(~walk_valid),
            source.w_en.eq(self.rd_cmd.valid & self.rd_cmd.ready),
        ]
        walk_took = Signal()
        load_took = Signal()
        m.d.comb += [walk_took.eq(walk_valid & source.w_en), load_took.eq(~walk_valid & source.w_en)]

        # -- the loader: each M tile's input window, channel tile by channel tile ---------
        # (window rows x columns in raster order, as one burst per channel tile if it spans
        # whole rows, else one per row), into the scratchpad half the walk is not reading.
        l_ty, l_tx, l_rows, l_cols, l_last, l_advance = m_tiles("load")
        l_iy_lo, l_iy_hi, l_ix_lo, l_ix_hi = window("load", l_ty, l_tx, l_rows, l_cols)
        l_state = Signal(range(4))
        L_IDLE, L_TILE, L_ISSUE, L_WAIT = range(4)
        in_plane = Signal(A)                    # bytes of one channel tile of the input in DRAM
        l_ch, l_y = Signal(17), Signal(16)
        l_ct_addr, l_addr = Signal(A), Signal(A)
        l_full = Signal()                       # the window spans whole rows: one burst per channel tile
        l_bursts = Signal(16)                   # bursts per channel tile
        l_vectors = Signal(32)                  # vectors per burst
        l_cmds, l_done = Signal(32), Signal(32)
        l_tiles = Signal(32)                    # M tiles whose window reads are all issued
        m.d.comb += [
            load_cmd.addr.eq(l_addr),
            load_cmd.count.eq(l_vectors * g.act_words - 1),
        ]
        with m.If(go):
            m.d.sync += [l_state.eq(L_TILE), l_ty.eq(0), l_tx.eq(0), l_tiles.eq(0),
                         in_plane.eq(self.desc.in_h * self.desc.in_w * ab)]
        with m.If(l_state == L_TILE):
            # the next half is free once the walk has released the tile before last
            with m.If(spad.commit.ready):
                l_w = l_ix_hi - l_ix_lo
                m.d.sync += [
                    l_ch.eq(0), l_y.eq(0), l_cmds.eq(0), l_done.eq(0),
                    l_full.eq(l_w == d.in_w),
                    l_bursts.eq(Mux(l_w == d.in_w, 1, l_iy_hi - l_iy_lo)),
                    l_vectors.eq(Mux(l_w == d.in_w, (l_iy_hi - l_iy_lo) * d.in_w, l_w)),
                    l_ct_addr.eq(d.input_addr + (l_iy_lo * d.in_w + l_ix_lo) * ab),
                    l_addr.eq(d.input_addr + (l_iy_lo * d.in_w + l_ix_lo) * ab),
                ]
                with m.If((l_iy_hi == l_iy_lo) | (l_w == 0)):
                    m.d.sync += l_state.eq(L_WAIT), l_tiles.eq(l_tiles + 1)      # all padding
                with m.Else():
                    m.d.sync += l_state.eq(L_ISSUE)
        with m.If(l_state == L_ISSUE):
            m.d.comb += load_valid.eq(1)
            with m.If(load_took):
                m.d.sync += l_cmds.eq(l_cmds + 1)
                with m.If(l_y + 1 < l_bursts):
                    m.d.sync += l_y.eq(l_y + 1), l_addr.eq(l_addr + d.in_w * ab)
                with m.Else():
                    m.d.sync += [l_y.eq(0), l_ch.eq(l_ch + R), l_ct_addr.eq(l_ct_addr + in_plane),
                                 l_addr.eq(l_ct_addr + in_plane)]
                    with m.If(l_ch + R >= d.k):
                        m.d.sync += l_state.eq(L_WAIT), l_tiles.eq(l_tiles + 1)
        # the loader's words: act_words to a vector, written to the scratchpad in order
        word = self.rd_data.payload.data
        from_load = Signal()
        m.d.comb += from_load.eq(self.rd_data.valid & source.r_rdy & (source.r_data == LOAD))
        l_gbuf = Signal(max(g.act_words - 1, 1) * W)
        l_gi = Signal(range(max(g.act_words, 2)))
        l_waddr = Signal(SA + 1)                # vectors of the tile's window written so far
        l_vector = Cat(l_gbuf[:(g.act_words - 1) * W], word) if g.act_words > 1 else word
        l_vend = Signal()
        m.d.comb += l_vend.eq(l_gi == g.act_words - 1)
        wport = spad.write[0]
        m.d.comb += [wport.addr.eq(l_waddr), wport.data.eq(l_vector[:8 * R]), wport.en.eq(from_load & l_vend)]
        with m.If(from_load):
            with m.If(l_vend):
                m.d.sync += l_gi.eq(0), l_waddr.eq(l_waddr + 1)
            with m.Else():
                m.d.sync += l_gi.eq(l_gi + 1)
                if g.act_words > 1:
                    m.d.sync += l_gbuf.eq(Cat(l_gbuf[W:], word) if g.act_words > 2 else word)
            with m.If(self.rd_data.payload.last):
                m.d.sync += l_done.eq(l_done + 1)
        m.d.comb += spad.commit.valid.eq((l_state == L_WAIT) & (l_done == l_cmds))
        with m.If(spad.commit.valid & spad.commit.ready):
            m.d.sync += l_waddr.eq(0), l_state.eq(L_TILE)
            l_advance()
            with m.If(l_last):
                m.d.sync += l_state.eq(L_IDLE)

        # -- read issue: the loop nest of the module docstring, one segment at a time ------
        # Two queues of segments, each drained on its own: the DRAM reads' (quantisation
        # records, weights), and the activation vectors' (scratchpad reads, zero points), so
        # the next K tile's weights load into the array's free bank while this one's
        # activations stream.
        WA = max((g.weight_depth - 1).bit_length(), 1)          # weight buffer address bits
        wseg_layout = data.StructLayout({"kind": 2, "store": 1, "addr": WA})
        m.submodules.route = route = fifo.SyncFIFOBuffered(width=wseg_layout.size, depth=ROUTE_DEPTH)
        m.submodules.aroute = aroute = fifo.SyncFIFOBuffered(width=_segment(SA).size, depth=ROUTE_DEPTH)
        m.submodules.flags = flags = fifo.SyncFIFOBuffered(width=2, depth=FLAG_DEPTH)
        seg = Signal(_segment(SA))
        wseg = Signal(wseg_layout)
        m.d.comb += route.w_data.eq(wseg), wseg.kind.eq(seg.kind), aroute.w_data.eq(seg)

        w_ty, w_tx, w_rows, w_cols, w_last, w_advance = m_tiles("walk")
        w_iy_lo, w_iy_hi, w_ix_lo, w_ix_hi = window("walk", w_ty, w_tx, w_rows, w_cols)
        w_tiles = Signal(32)                        # M tiles the walk has begun
        plane = Signal(24)                          # vectors of one channel tile of the window
        win_w = Signal(16)
        iy_lo, ix_lo = Signal(16), Signal(16)
        row_step = Signal(17)                       # vectors from one output row's input row to the next's
        mt = Signal(range(g.acc_depth + 1))
        ty, tx = Signal(16), Signal(16)             # the M tile's first pixel
        n0 = Signal(16)
        ch_lo = Signal(16)                          # first channel of the N tile's K walk
        lo_addr = Signal(24)                        # its channel tile's plane in the window
        ch0 = Signal(16)
        ct_addr = Signal(24)
        ky, kx = Signal(8), Signal(8)
        ky_off, kx_off = Signal(16), Signal(16)     # ky * dilation_h, kx * dilation_w
        q_addr, w_addr = Signal(A), Signal(A)
        wv = Signal(WA + 1)                         # the K tile's first vector in the weight buffer
        iy = Signal(signed(19))                     # input row of the current output row
        ix0 = Signal(signed(19))                    # input column of output column 0
        row_addr = Signal(signed(26))               # window address of pixel (iy, ix0)
        ox_lo, ox_hi = Signal(17), Signal(17)       # output columns whose input is inside
        oy = Signal(16)
        s, e, lo, hi = Signal(17), Signal(17), Signal(17), Signal(17)
        left = Signal(32)
        final_row = Signal()

        ch_end = Signal(17)
        m.d.comb += ch_end.eq(Mux(d.depthwise & (n0 + C < d.k), n0 + C, d.k))
        first_k = Signal()
        last_k = Signal()
        m.d.comb += [
            first_k.eq((ky == 0) & (kx == 0) & (ch0 == ch_lo)),
            last_k.eq((ky + 1 == d.kernel_h) & (kx + 1 == d.kernel_w) & (ch0 + R >= ch_end)),
            flags.w_data.eq(Cat(first_k, last_k)),
            seg.release.eq(last_k & (n0 + C >= d.n)),
        ]
        cmd = walk_cmd
        pushed = Signal()
        m.d.comb += pushed.eq(aroute.w_en)
        # A K tile's weights are requested only once the loader has requested the window's
        # planes up to the K tile's channel tile (and a quantisation record once it has
        # requested what the segments ahead of the record read). The DMA answers in order, so
        # the window words the walk's activations need are ahead of every word of the walk's
        # that could wait for those activations: the two never wait on each other.
        planes_issued = Signal()
        m.d.comb += planes_issued.eq((l_tiles >= w_tiles) |
                                     ((l_tiles + 1 == w_tiles) & (l_state == L_ISSUE) & (l_ch > ch0)))

        # (If chains on a state register rather than m.FSM: a case statement on a
        # partly used state code is an incomplete case to Verilator's lint)
        state = Signal(range(len(_ISSUE_STATES)))
        (IDLE, MTILE, QREC, ADJUST, WEIGHTS, KTILE, ROW, PAD_LEFT, READ,
         PAD_RIGHT) = range(len(_ISSUE_STATES))

        def next_row():
            """After a row's last segment: the next row, K tile, N tile or M tile."""
            m.d.sync += [
                left.eq(left - (e - s)), s.eq(0), oy.eq(oy + 1),
                iy.eq(iy + Mux(two_h, 2, 1)), row_addr.eq(row_addr + row_step),
            ]
            with m.If(~final_row):
                m.d.sync += state.eq(ROW)
            with m.Else():
                m.d.sync += state.eq(WEIGHTS)
                with m.If(ch0 + R < ch_end):
                    m.d.sync += ch0.eq(ch0 + R), ct_addr.eq(ct_addr + plane)
                with m.Elif(kx + 1 < d.kernel_w):
                    m.d.sync += [kx.eq(kx + 1), kx_off.eq(kx_off + d.dilation_w),
                                 ch0.eq(ch_lo), ct_addr.eq(lo_addr)]
                with m.Elif(ky + 1 < d.kernel_h):
                    m.d.sync += [ky.eq(ky + 1), ky_off.eq(ky_off + d.dilation_h), kx.eq(0),
                                 kx_off.eq(0), ch0.eq(ch_lo), ct_addr.eq(lo_addr)]
                with m.Elif(n0 + C < d.n):
                    m.d.sync += n0.eq(n0 + C)
                    m.d.sync += state.eq(QREC)
                with m.Else():
                    w_advance()
                    m.d.sync += state.eq(MTILE)
                    with m.If(w_last):
                        m.d.sync += state.eq(IDLE)

        with m.If(state == IDLE):
            with m.If(go):
                m.d.sync += state.eq(MTILE), w_ty.eq(0), w_tx.eq(0), w_tiles.eq(0)
        with m.Elif(state == MTILE):
            width = w_ix_hi - w_ix_lo
            m.d.sync += [
                w_tiles.eq(w_tiles + 1),
                mt.eq(w_rows * w_cols), ty.eq(w_ty), tx.eq(w_tx),
                iy_lo.eq(w_iy_lo), ix_lo.eq(w_ix_lo), win_w.eq(width),
                plane.eq((w_iy_hi - w_iy_lo) * width),
                row_step.eq(Mux(two_h, width << 1, width)),
                n0.eq(0), ch_lo.eq(0), lo_addr.eq(0), wv.eq(0),
                q_addr.eq(d.quant_addr), w_addr.eq(d.weight_addr),
            ]
            m.d.sync += state.eq(QREC)
        with m.Elif(state == QREC):
            # (the first N tile's record once the previous M tile's window is requested, the
            # others once this one's is: the segments ahead of a record need no more)
            m.d.comb += [
                walk_valid.eq(route.w_rdy & Mux(n0 == 0, l_tiles + 1 >= w_tiles, l_tiles >= w_tiles)),
                cmd.addr.eq(q_addr), cmd.count.eq(g.quant_words - 1),
                seg.kind.eq(Q), route.w_en.eq(walk_took),
            ]
            with m.If(walk_took):
                m.d.sync += q_addr.eq(q_addr + g.quant_bytes)
                m.d.sync += state.eq(ADJUST)
        with m.Elif(state == ADJUST):
            # a depthwise N tile's K walk starts at the channel tile holding channel n0
            with m.If(d.depthwise & (ch_lo + R <= n0)):
                m.d.sync += ch_lo.eq(ch_lo + R), lo_addr.eq(lo_addr + plane)
            with m.Else():
                m.d.sync += [ky.eq(0), kx.eq(0), ky_off.eq(0), kx_off.eq(0), ch0.eq(ch_lo),
                             ct_addr.eq(lo_addr)]
                m.d.sync += state.eq(WEIGHTS)
        with m.Elif(state == WEIGHTS):
            # Resident weights: the first M tile reads them from DRAM and stores them in the
            # weight buffer as they pass to the array; the other M tiles read the buffer.
            from_buf = d.weights_resident & (w_tiles != 1)
            m.d.comb += [
                walk_valid.eq(~from_buf & route.w_rdy & flags.w_rdy & planes_issued),
                cmd.addr.eq(w_addr), cmd.count.eq(R * g.weight_words - 1),
                seg.kind.eq(Mux(from_buf, WBUF, WTS)),
                wseg.store.eq(d.weights_resident), wseg.addr.eq(wv),
                route.w_en.eq(walk_took | (from_buf & route.w_rdy & flags.w_rdy)),
                flags.w_en.eq(route.w_en),
            ]
            with m.If(route.w_en):
                m.d.sync += [
                    wv.eq(wv + R),
                    w_addr.eq(w_addr + R * g.weight_bytes),
                    iy.eq(Mux(two_h, ty << 1, ty) + ky_off - d.pad_top),
                    ix0.eq(kx_off - d.pad_left),
                ]
                m.d.sync += state.eq(KTILE)
        with m.Elif(state == KTILE):
            first_in = Signal(signed(20))       # first output column with ix >= 0, and past the input
            past_in = Signal(signed(20))
            m.d.comb += [
                first_in.eq(Mux(two_w, (1 - ix0) >> 1, -ix0)),
                past_in.eq(Mux(two_w, (d.in_w - ix0 + 1) >> 1, d.in_w - ix0)),
            ]
            m.d.sync += [
                row_addr.eq(ct_addr + (iy - iy_lo) * win_w + ix0 - ix_lo),
                ox_lo.eq(clamp(first_in, 0, d.out_w)),
                ox_hi.eq(clamp(past_in, 0, d.out_w)),
                oy.eq(ty), s.eq(tx), left.eq(mt),
            ]
            m.d.sync += state.eq(ROW)
        # A row takes a cycle to plan and one per segment it has (an empty left
        # padding or right padding takes none), so a one-pixel GEMM row takes two.
        with m.Elif(state == ROW):
            end = Signal(33)
            m.d.comb += end.eq(Mux(s + left < d.out_w, s + left, d.out_w))
            inside = (iy >= 0) & (iy < d.in_h)
            l_ = Signal(17)
            m.d.comb += l_.eq(Mux(inside, clamp(ox_lo, s, end), end))
            m.d.sync += [
                e.eq(end), lo.eq(l_), hi.eq(Mux(inside, clamp(ox_hi, l_, end), end)),
                final_row.eq(left == end - s),
            ]
            with m.If(l_ == s):
                m.d.sync += state.eq(READ)
            with m.Else():
                m.d.sync += state.eq(PAD_LEFT)
        with m.Elif(state == PAD_LEFT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(lo - s), seg.end.eq(final_row & (lo == e)),
                         aroute.w_en.eq(aroute.w_rdy)]
            with m.If(aroute.w_rdy):
                m.d.sync += state.eq(READ)
        with m.Elif(state == READ):
            m.d.comb += [
                seg.kind.eq(ACT), seg.count.eq(hi - lo), seg.skip.eq(two_w),
                seg.addr.eq(row_addr + Mux(two_w, lo << 1, lo)), seg.end.eq(final_row & (hi == e)),
                aroute.w_en.eq((hi != lo) & aroute.w_rdy),
            ]
            with m.If((hi == lo) | pushed):
                with m.If(e == hi):
                    next_row()
                with m.Else():
                    m.d.sync += state.eq(PAD_RIGHT)
        with m.Elif(state == PAD_RIGHT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(e - hi), seg.end.eq(final_row),
                         aroute.w_en.eq(aroute.w_rdy)]
            with m.If(aroute.w_rdy):
                next_row()

        # -- the walk's segments: DRAM words to the requantiser's record and the array's
        # weights; scratchpad reads and zero-point vectors to the array's activations -----
        kind = data.View(wseg_layout, route.r_data).kind
        r_seg = data.View(_segment(SA), aroute.r_data)
        here = Signal()
        m.d.comb += here.eq(self.rd_data.valid & source.r_rdy & (source.r_data == WALK) & route.r_rdy)
        qbuf = Signal(g.quant_words * W)
        q_idx = Signal(range(g.quant_words))
        q_full = Signal()
        # A weight vector wider than the bus arrives as several words: the ones before its
        # last wait in the gather buffer, and the last one goes to the array with them.
        gbuf = Signal(max(g.weight_words - 1, 1) * W)
        g_idx = Signal(range(max(g.weight_words, 2)))   # (a zero-width counter is a lint warning)
        vector = Cat(gbuf[:(g.weight_words - 1) * W], word) if g.weight_words > 1 else word
        w_end = Signal()
        w_seg = data.View(wseg_layout, route.r_data)
        # the weight buffer: one vector of `cols` lanes per entry, written as the first M
        # tile's weights pass, read through one register like the scratchpad
        m.submodules.wbuf = wbuf = memory.Memory(shape=8 * C, depth=g.weight_depth, init=[])
        wb_w = wbuf.write_port()
        wb_r = wbuf.read_port()
        wb_valid, wb_advance, wb_take, wb_seg_end = Signal(), Signal(), Signal(), Signal()
        wb_i = Signal(range(R))
        w_vec = Signal(range(R))                # vector of the DRAM weight segment
        dram_vector = Signal()
        m.d.comb += [
            w_end.eq(g_idx == g.weight_words - 1),
            dram_vector.eq(here & (kind == WTS) & w_end & ~wb_valid),
            array.weights.payload.eq(Mux(wb_valid, wb_r.data, vector[:8 * C])),
            array.weights.valid.eq(wb_valid | dram_vector),
            wb_advance.eq(~wb_valid | array.weights.ready),
            wb_take.eq(route.r_rdy & (kind == WBUF) & wb_advance),
            wb_seg_end.eq(wb_i == R - 1),
            wb_r.en.eq(wb_advance),
            wb_r.addr.eq(w_seg.addr + wb_i),
            wb_w.addr.eq(w_seg.addr + w_vec),
            wb_w.data.eq(vector[:8 * C]),
            wb_w.en.eq(dram_vector & array.weights.ready & w_seg.store),
        ]
        with m.If(wb_advance):
            m.d.sync += wb_valid.eq(wb_take)
        with m.If(wb_take):
            m.d.sync += wb_i.eq(Mux(wb_seg_end, 0, wb_i + 1))
        with m.If(dram_vector & array.weights.ready):
            m.d.sync += w_vec.eq(Mux(w_vec == R - 1, 0, w_vec + 1))
        walk_ready = Signal()
        with m.If(kind == Q):
            m.d.comb += walk_ready.eq(route.r_rdy & ~q_full)
        with m.Elif(kind == WTS):
            m.d.comb += walk_ready.eq(route.r_rdy & ~wb_valid & (~w_end | array.weights.ready))
        m.d.comb += self.rd_data.ready.eq(source.r_rdy & Mux(source.r_data == LOAD, 1, walk_ready))
        rd_go = self.rd_data.valid & self.rd_data.ready
        m.d.comb += source.r_en.eq(rd_go & self.rd_data.payload.last)
        walk_go = Signal()
        m.d.comb += walk_go.eq(rd_go & (source.r_data == WALK))
        if g.weight_words > 1:
            # the buffer shifts down a word at a time, so a vector's words end at its top
            with m.If(walk_go & (kind == WTS)):
                with m.If(w_end):
                    m.d.sync += g_idx.eq(0)
                with m.Else():
                    m.d.sync += g_idx.eq(g_idx + 1)
                    m.d.sync += gbuf.eq(Cat(gbuf[W:], word) if g.weight_words > 2 else word)
        with m.If(here & (kind == Q) & ~q_full):
            for i in range(g.quant_words):
                with m.If(q_idx == i):
                    m.d.sync += qbuf[i * W:(i + 1) * W].eq(word)
            with m.If(self.rd_data.payload.last):
                m.d.sync += q_idx.eq(0), q_full.eq(1)
            with m.Else():
                m.d.sync += q_idx.eq(q_idx + 1)

        # Activation vectors leave through one register, the scratchpad read's: a read
        # segment's vectors and a padding segment's zero-point vectors alike, in segment
        # order. Both wait for the M tile's window to be committed; the M tile's last
        # segment releases its half to the loader.
        rport = spad.read[0]
        a_valid, a_pad, a_last = Signal(), Signal(), Signal()
        a_i = Signal(16)
        a_next = Signal(SA)
        a_advance = Signal()
        a_take = Signal()
        # A segment streams from a committed window, or, while the window is still loading,
        # reads only words already written (the loader fills the half in the walk's order);
        # the M tile's last segment waits for the commit, to release the half.
        act_ok = Signal()
        m.d.comb += act_ok.eq(spad.tile.valid | (~(r_seg.end & r_seg.release) &
                                                 ((r_seg.kind == PAD) | (rport.addr < l_waddr))))
        act_seg = aroute.r_rdy & act_ok
        a_seg_end = Signal()
        m.d.comb += [
            a_advance.eq(~a_valid | array.acts.ready),
            a_take.eq(act_seg & a_advance),
            a_seg_end.eq(a_i + 1 == r_seg.count),
            rport.en.eq(a_advance),
            rport.addr.eq(Mux(a_i == 0, r_seg.addr, a_next)),
            spad.tile.ready.eq(a_take & a_seg_end & r_seg.end & r_seg.release),
            route.r_en.eq((walk_go & self.rd_data.payload.last) | (wb_take & wb_seg_end)),
            aroute.r_en.eq(a_take & a_seg_end),
        ]
        with m.If(a_advance):
            m.d.sync += [a_valid.eq(a_take), a_pad.eq(r_seg.kind == PAD), a_last.eq(r_seg.end & a_seg_end)]
        with m.If(a_take):
            m.d.sync += [a_i.eq(Mux(a_seg_end, 0, a_i + 1)),
                         a_next.eq(rport.addr + Mux(r_seg.skip, 2, 1))]
        zp_vector = Cat(*[d.in_zero_point for _ in range(R)])
        m.d.comb += [
            array.acts.valid.eq(a_valid),
            array.acts.payload.data.eq(Mux(a_pad, zp_vector, rport.data)),
            array.acts.payload.last.eq(a_last),
        ]
        qp = requant.quant.payload
        for j in range(C):
            m.d.comb += [
                qp.bias[j].eq(qbuf[32 * j:32 * (j + 1)]),
                qp.multiplier[j].eq(qbuf[32 * (C + j):32 * (C + j + 1)]),
                qp.shift[j].eq(qbuf[64 * C + 8 * j:64 * C + 8 * j + SHIFT_BITS]),
            ]
        m.d.comb += [
            qp.zero_point.eq(d.out_zero_point), qp.qmin.eq(d.qmin), qp.qmax.eq(d.qmax),
            requant.quant.valid.eq(q_full),
        ]
        with m.If(requant.quant.valid & requant.quant.ready):
            m.d.sync += q_full.eq(0)

        # -- accumulation across K tiles: read-modify-write of the accumulator buffer ----
        # Stage A takes a partial-sum vector and reads its entry; stage B adds and writes it
        # back, or, on the K walk's last tile, hands the sum to the requantiser. Whether a
        # tile is the walk's first or last comes with it through the flags FIFO. The read
        # port is transparent to the write port: with M = 1 the next tile's read meets this
        # write.
        acc_shape = data.ArrayLayout(ACC_BITS, C)
        m.submodules.accbuf = accbuf = memory.Memory(shape=acc_shape, depth=g.acc_depth, init=[])
        wp = accbuf.write_port()
        rp = accbuf.read_port(transparent_for=(wp,))
        pm = Signal(range(g.acc_depth))
        bv, b_first, b_final, b_last = Signal(), Signal(), Signal(), Signal()
        b_m = Signal(range(g.acc_depth))
        b_psum = Signal(acc_shape)
        advance = Signal()
        m.d.comb += [
            advance.eq(~(bv & b_final) | requant.accs.ready),
            array.psums.ready.eq(advance),
            rp.addr.eq(pm),
            rp.en.eq(advance),
        ]
        psum_in = array.psums.valid & array.psums.ready
        with m.If(advance):
            m.d.sync += [
                bv.eq(array.psums.valid), b_first.eq(flags.r_data[0]), b_final.eq(flags.r_data[1]),
                b_last.eq(array.psums.payload.last), b_m.eq(pm), b_psum.eq(array.psums.payload.data),
            ]
        m.d.comb += flags.r_en.eq(psum_in & array.psums.payload.last)
        with m.If(psum_in):
            with m.If(array.psums.payload.last):
                m.d.sync += pm.eq(0)
            with m.Else():
                m.d.sync += pm.eq(pm + 1)
        total = Signal(acc_shape)
        for j in range(C):
            m.d.comb += total[j].eq(b_psum[j] + Mux(b_first, 0, rp.data[j]))
        m.d.comb += [
            wp.addr.eq(b_m), wp.data.eq(total), wp.en.eq(bv & ~b_final & advance),
            requant.accs.valid.eq(bv & b_final),
            requant.accs.payload.data.eq(total),
            requant.accs.payload.last.eq(b_last),
        ]

        # -- output: one write command per M tile and N tile ------------------------------
        writing = Signal()
        o_addr, o_mbase = Signal(A), Signal(A)
        wn0 = Signal(16)
        o_ty, o_tx, o_rows, o_cols, o_last, o_advance = m_tiles("write")
        wmt = Signal(32)
        issued, acked = Signal(32), Signal(32)
        m.d.comb += wmt.eq(o_rows * o_cols)
        with m.If(go):
            m.d.sync += [writing.eq(1), o_addr.eq(self.desc.output_addr), o_mbase.eq(self.desc.output_addr),
                         wn0.eq(0), o_ty.eq(0), o_tx.eq(0), issued.eq(0), acked.eq(0)]
        m.d.comb += [
            self.wr_cmd.valid.eq(writing),
            self.wr_cmd.payload.addr.eq(o_addr),
            self.wr_cmd.payload.count.eq(wmt * g.out_words - 1),
        ]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += issued.eq(issued + 1)
            with m.If(wn0 + C >= d.n):
                m.d.sync += [wn0.eq(0), o_mbase.eq(o_mbase + wmt * g.out_bytes),
                             o_addr.eq(o_mbase + wmt * g.out_bytes)]
                o_advance()
                with m.If(o_last):
                    m.d.sync += writing.eq(0)
            with m.Else():
                m.d.sync += wn0.eq(wn0 + C), o_addr.eq(o_addr + o_tile)
        # an output vector wider than the bus leaves as several words, the last one partial
        o_idx = Signal(range(max(g.out_words, 2)))
        o_end = Signal()
        out_bits = requant.outs.payload.data.as_value()
        m.d.comb += [
            o_end.eq(o_idx == g.out_words - 1),
            self.wr_data.valid.eq(requant.outs.valid),
            requant.outs.ready.eq(self.wr_data.ready & o_end),
            self.wr_done.ready.eq(1),
        ]
        for i in range(g.out_words):
            lanes = min(wb, C - i * wb)
            with m.If(o_idx == i):
                m.d.comb += [self.wr_data.payload.data.eq(out_bits[i * W:i * W + 8 * lanes]),
                             self.wr_data.payload.strb.eq((1 << lanes) - 1)]
        with m.If(self.wr_data.valid & self.wr_data.ready):
            m.d.sync += o_idx.eq(Mux(o_end, 0, o_idx + 1))
        with m.If(self.wr_done.valid & self.running):
            m.d.sync += acked.eq(acked + 1)
            with m.If(~writing & (acked + 1 == issued)):
                m.d.comb += self.done.eq(1)
                m.d.sync += self.running.eq(0)

        m.d.comb += [
            self.busy.eq(array.busy),
            # waiting on DRAM: no activation to offer for want of the window, or one the array
            # cannot take for want of weights that are still on their way
            self.mem_stall.eq(self.running & Mux(a_valid, ~array.acts.ready & route.r_rdy & ~here,
                                                 aroute.r_rdy & ~act_ok)),
        ]
        return m
