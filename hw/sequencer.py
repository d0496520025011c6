"""The layer sequencer of the systolic accelerator and the geometry it shares with the compiler.

Every layer the accelerator runs is one implicit matrix product
``C (M x N) = A (M x K) @ B (K x N)``: M output pixels, N output channels and K the
kernel taps times the input channels. A is never copied into DRAM as an im2col matrix:
the sequencer generates the activation reads of each K tile from the input tensor
(implicit im2col).

The loop nest::

    for each M tile (at most ``acc_depth`` pixels, in raster order)
      for each N tile of ``cols`` output channels: read its quantisation record
        for ky, for kx, for each channel tile of ``rows`` input channels (a K tile;
                a depthwise layer walks only the channel tiles of its own N tile)
          read the K tile's ``rows`` weight vectors
          for each output row of the M tile: the tile's activation vectors, as at most
            three segments -- zero-point vectors for the padded pixels on the left, one
            DRAM burst for the pixels inside the input (a stride-2 row reads every pixel
            of its span and drops the odd ones), zero-point vectors on the right; a row
            wholly in the padding is one zero-point segment

The weight-stationary array multiplies each K tile; the K tiles' partial sums accumulate
in an int32 accumulator buffer (``acc_depth`` entries of ``cols`` lanes); the last K
tile's sums go through the requantiser and are written back, one write per M and N tile.

DRAM layout (:class:`GemmGeometry` sizes it; :mod:`mensa.gen.program` writes it), every
vector in whole bus words:

input
    channel-tiled HWC: channel tile ``t`` (channels ``t * rows ..``) is an ``in_h x in_w``
    plane of activation vectors in raster order, so a stride-1 output row is one burst.
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

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.config import AcceleratorConfig, ConfigError, Dataflow
from mensa.hw.dma import command_layout, read_layout, write_layout
from mensa.hw.requant import ACC_BITS, SHIFT_BITS, acc_layout, out_layout, quant_layout
from mensa.hw.systolic import act_layout, psum_layout

__all__ = ["GemmGeometry", "GemmSequencer", "descriptor_layout", "ROUTE_DEPTH", "FLAG_DEPTH"]

ROUTE_DEPTH = 16        # read and zero-point segments in flight, each tagged with where its vectors go
FLAG_DEPTH = 16         # K tiles issued and not yet accumulated (first/final flags)


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
        Accumulator entries (``cols`` int32 lanes each): the largest M.
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
        record = a.cols * (4 + 4 + 1)
        return cls(rows=a.rows, cols=a.cols, word_bytes=wb, act_words=-(-a.rows // wb),
                   weight_words=-(-a.cols // wb), out_words=-(-a.cols // wb), acc_depth=1 << (entries.bit_length() - 1),
                   quant_words=-(-record // wb))

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


def descriptor_layout(addr_bits):
    """What the sequencer reads from the descriptor registers."""
    return data.StructLayout({
        "m": 32, "k": 16, "n": 16, "depthwise": 1,
        "in_h": 16, "in_w": 16, "out_h": 16, "out_w": 16,
        "kernel_h": 8, "kernel_w": 8, "stride_h": 8, "stride_w": 8, "dilation_h": 8, "dilation_w": 8,
        "pad_top": 8, "pad_left": 8,
        "in_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8,
        "input_addr": addr_bits, "weight_addr": addr_bits, "quant_addr": addr_bits, "output_addr": addr_bits,
    })


# What a read or zero-point segment feeds: its kind, how many zero-point vectors, whether
# every second vector of the burst is dropped (stride 2), whether it ends the K tile.
Q, WTS, ACT, PAD = 0, 1, 2, 3
_segment = data.StructLayout({"kind": 2, "count": 16, "skip": 1, "end": 1})
_ISSUE_STATES = ("IDLE", "SETUP", "MTILE", "QREC", "ADJUST", "WEIGHTS", "KTILE", "ROW", "PAD_LEFT", "BURST",
                 "PAD_RIGHT")


class GemmSequencer(wiring.Component):
    """Runs one layer from DRAM on a weight-stationary array: reads, compute, requantise, writes.

    Conv2d (stride 1 or 2, any padding and dilation), depthwise conv, pointwise conv and
    fully connected layers, walked as the module docstring says.

    Parameters
    ----------
    config : :class:`~mensa.hw.config.AcceleratorConfig`

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

        d = Signal(descriptor_layout(A))        # the layer, latched at start
        go = Signal()
        m.d.comb += go.eq(self.start & ~self.running)
        with m.If(go):
            m.d.sync += d.eq(self.desc), self.running.eq(1)
        o_tile = Signal(A)                      # bytes of one N tile of C: M output vectors
        m.d.comb += o_tile.eq(d.m * g.out_bytes)
        two_h, two_w = d.stride_h == 2, d.stride_w == 2

        # -- read issue: the loop nest of the module docstring, one segment at a time ------
        m.submodules.route = route = fifo.SyncFIFOBuffered(width=_segment.size, depth=ROUTE_DEPTH)
        m.submodules.flags = flags = fifo.SyncFIFOBuffered(width=2, depth=FLAG_DEPTH)
        seg = Signal(_segment)
        m.d.comb += route.w_data.eq(seg)

        plane = Signal(A)           # bytes of one channel tile of the input
        row_step = Signal(A)        # bytes from one output row's input row to the next's
        m_left = Signal(32)         # pixels not yet in an M tile
        mt = Signal(range(g.acc_depth + 1))
        ty, tx = Signal(16), Signal(16)             # the M tile's first pixel
        n0 = Signal(16)
        ch_lo = Signal(16)                          # first channel of the N tile's K walk
        lo_addr = Signal(A)                         # its channel tile's plane
        ch0 = Signal(16)
        ct_addr = Signal(A)
        ky, kx = Signal(8), Signal(8)
        ky_off, kx_off = Signal(16), Signal(16)     # ky * dilation_h, kx * dilation_w
        q_addr, w_addr = Signal(A), Signal(A)
        iy = Signal(signed(19))                     # input row of the current output row
        ix0 = Signal(signed(19))                    # input column of output column 0
        row_addr = Signal(A)                        # DRAM address of pixel (iy, ix0)
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
        ]
        cmd = self.rd_cmd.payload
        pushed = Signal()
        m.d.comb += pushed.eq(route.w_en)

        def clamp(value, low, high):
            return Mux(value < low, low, Mux(value > high, high, value))

        # (If chains on a state register rather than m.FSM: a case statement on a
        # partly used state code is an incomplete case to Verilator's lint)
        state = Signal(range(len(_ISSUE_STATES)))
        (IDLE, SETUP, MTILE, QREC, ADJUST, WEIGHTS, KTILE, ROW, PAD_LEFT, BURST,
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
                    # the next M tile starts after this one's last pixel
                    m.d.sync += m_left.eq(m_left - mt)
                    with m.If(e == d.out_w):
                        m.d.sync += ty.eq(oy + 1), tx.eq(0)
                    with m.Else():
                        m.d.sync += ty.eq(oy), tx.eq(e)
                    m.d.sync += state.eq(MTILE)
                    with m.If(m_left == mt):
                        m.d.sync += state.eq(IDLE)

        with m.If(state == IDLE):
            with m.If(go):
                m.d.sync += state.eq(SETUP)
        with m.Elif(state == SETUP):
            m.d.sync += [
                plane.eq(d.in_h * d.in_w * ab),
                row_step.eq(Mux(two_h, d.in_w * (2 * ab), d.in_w * ab)),
                m_left.eq(d.m), ty.eq(0), tx.eq(0),
            ]
            m.d.sync += state.eq(MTILE)
        with m.Elif(state == MTILE):
            m.d.sync += [
                mt.eq(Mux(m_left < g.acc_depth, m_left, g.acc_depth)),
                n0.eq(0), ch_lo.eq(0), lo_addr.eq(d.input_addr),
                q_addr.eq(d.quant_addr), w_addr.eq(d.weight_addr),
            ]
            m.d.sync += state.eq(QREC)
        with m.Elif(state == QREC):
            m.d.comb += [
                self.rd_cmd.valid.eq(route.w_rdy),
                cmd.addr.eq(q_addr), cmd.count.eq(g.quant_words - 1),
                seg.kind.eq(Q), route.w_en.eq(self.rd_cmd.valid & self.rd_cmd.ready),
            ]
            with m.If(pushed):
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
            m.d.comb += [
                self.rd_cmd.valid.eq(route.w_rdy & flags.w_rdy),
                cmd.addr.eq(w_addr), cmd.count.eq(R * g.weight_words - 1),
                seg.kind.eq(WTS), route.w_en.eq(self.rd_cmd.valid & self.rd_cmd.ready),
                flags.w_en.eq(route.w_en),
            ]
            with m.If(pushed):
                m.d.sync += [
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
                row_addr.eq(ct_addr + (iy * d.in_w + ix0) * ab),
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
                m.d.sync += state.eq(BURST)
            with m.Else():
                m.d.sync += state.eq(PAD_LEFT)
        with m.Elif(state == PAD_LEFT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(lo - s), seg.end.eq(final_row & (lo == e)),
                         route.w_en.eq(route.w_rdy)]
            with m.If(route.w_rdy):
                m.d.sync += state.eq(BURST)
        with m.Elif(state == BURST):
            vectors = Mux(two_w, ((hi - lo) << 1) - 1, hi - lo)
            m.d.comb += [
                self.rd_cmd.valid.eq((hi != lo) & route.w_rdy),
                cmd.addr.eq(row_addr + Mux(two_w, lo << 1, lo) * ab),
                cmd.count.eq(vectors * g.act_words - 1),
                seg.kind.eq(ACT), seg.skip.eq(two_w), seg.end.eq(final_row & (hi == e)),
                route.w_en.eq(self.rd_cmd.valid & self.rd_cmd.ready),
            ]
            with m.If((hi == lo) | pushed):
                with m.If(e == hi):
                    next_row()
                with m.Else():
                    m.d.sync += state.eq(PAD_RIGHT)
        with m.Elif(state == PAD_RIGHT):
            m.d.comb += [seg.kind.eq(PAD), seg.count.eq(e - hi), seg.end.eq(final_row),
                         route.w_en.eq(route.w_rdy)]
            with m.If(route.w_rdy):
                next_row()

        # -- read data: each word, or zero-point vector, to where its segment says ----------
        word = self.rd_data.payload.data
        r_seg = data.View(_segment, route.r_data)
        kind = r_seg.kind
        here = Signal()
        m.d.comb += here.eq(self.rd_data.valid & route.r_rdy)
        qbuf = Signal(g.quant_words * W)
        q_idx = Signal(range(g.quant_words))
        q_full = Signal()
        # A vector wider than the bus arrives as several words: the ones before its last
        # wait in the gather buffer, and the last one goes to the array with them.
        most = max(g.act_words, g.weight_words)
        gbuf = Signal(max(most - 1, 1) * W)
        g_idx = Signal(range(max(most, 2)))         # (a zero-width counter is a lint warning)
        vector = Cat(gbuf[:(most - 1) * W], word) if most > 1 else word
        w_end = Signal()
        a_end = Signal()
        odd = Signal()                              # a stride-2 burst's vector to drop
        drop = Signal()
        pad_i = Signal(16)
        pad_end = Signal()
        zp_vector = Cat(*[d.in_zero_point for _ in range(R)])
        m.d.comb += [
            w_end.eq(g_idx == g.weight_words - 1),
            a_end.eq(g_idx == g.act_words - 1),
            drop.eq(r_seg.skip & odd),
            pad_end.eq(pad_i + 1 == r_seg.count),
            array.weights.payload.eq(vector[(most - g.weight_words) * W:][:8 * C]),
            array.weights.valid.eq(here & (kind == WTS) & w_end),
        ]
        with m.If(kind == PAD):
            m.d.comb += [
                array.acts.payload.data.eq(zp_vector),
                array.acts.payload.last.eq(r_seg.end & pad_end),
                array.acts.valid.eq(route.r_rdy),
            ]
        with m.Else():
            m.d.comb += [
                array.acts.payload.data.eq(vector[(most - g.act_words) * W:][:8 * R]),
                array.acts.payload.last.eq(r_seg.end & self.rd_data.payload.last),
                array.acts.valid.eq(here & (kind == ACT) & a_end & ~drop),
            ]
        pad_go = Signal()
        m.d.comb += pad_go.eq(route.r_rdy & (kind == PAD) & array.acts.ready)
        with m.If(pad_go):
            m.d.sync += pad_i.eq(Mux(pad_end, 0, pad_i + 1))
        rd_go = self.rd_data.valid & self.rd_data.ready
        m.d.comb += route.r_en.eq((rd_go & self.rd_data.payload.last) | (pad_go & pad_end))
        with m.If(kind == Q):
            m.d.comb += self.rd_data.ready.eq(route.r_rdy & ~q_full)
        with m.Elif(kind == WTS):
            m.d.comb += self.rd_data.ready.eq(route.r_rdy & (~w_end | array.weights.ready))
        with m.Elif(kind == ACT):
            m.d.comb += self.rd_data.ready.eq(route.r_rdy & (~a_end | drop | array.acts.ready))
        with m.If(rd_go & (kind == ACT) & a_end):
            m.d.sync += odd.eq(~odd & ~self.rd_data.payload.last)
        if most > 1:
            # the buffer shifts down a word at a time, so a vector's words end at its top
            with m.If(rd_go & (kind != Q)):
                with m.If(Mux(kind == WTS, w_end, a_end)):
                    m.d.sync += g_idx.eq(0)
                with m.Else():
                    m.d.sync += g_idx.eq(g_idx + 1)
                    m.d.sync += gbuf.eq(Cat(gbuf[W:], word) if most > 2 else word)
        with m.If(here & (kind == Q) & ~q_full):
            for i in range(g.quant_words):
                with m.If(q_idx == i):
                    m.d.sync += qbuf[i * W:(i + 1) * W].eq(word)
            with m.If(self.rd_data.payload.last):
                m.d.sync += q_idx.eq(0), q_full.eq(1)
            with m.Else():
                m.d.sync += q_idx.eq(q_idx + 1)
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
        wm_left = Signal(32)
        wmt = Signal(range(g.acc_depth + 1))
        issued, acked = Signal(32), Signal(32)
        m.d.comb += wmt.eq(Mux(wm_left < g.acc_depth, wm_left, g.acc_depth))
        with m.If(go):
            m.d.sync += [writing.eq(1), o_addr.eq(self.desc.output_addr), o_mbase.eq(self.desc.output_addr),
                         wn0.eq(0), wm_left.eq(self.desc.m), issued.eq(0), acked.eq(0)]
        m.d.comb += [
            self.wr_cmd.valid.eq(writing),
            self.wr_cmd.payload.addr.eq(o_addr),
            self.wr_cmd.payload.count.eq(wmt * g.out_words - 1),
        ]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += issued.eq(issued + 1)
            with m.If(wn0 + C >= d.n):
                m.d.sync += [wn0.eq(0), o_mbase.eq(o_mbase + wmt * g.out_bytes),
                             o_addr.eq(o_mbase + wmt * g.out_bytes), wm_left.eq(wm_left - wmt)]
                with m.If(wm_left == wmt):
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
            self.mem_stall.eq(self.running & route.r_rdy & (kind != PAD) & ~self.rd_data.valid),
        ]
        return m
