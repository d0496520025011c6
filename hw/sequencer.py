"""The GEMM sequencer of the systolic accelerator and the geometry it shares with the compiler.

A pointwise convolution or a fully connected layer is one matrix product
``C (M x N) = A (M x K) @ B (K x N)``: M pixels (or batch rows), K input channels, N
output channels. The sequencer walks it as N tiles of ``cols`` output channels by K
tiles of ``rows`` input channels; for each N tile it reads the tile's quantisation
record, then per K tile the ``rows`` weight vectors and the M activation vectors of
that K tile, and streams them through the weight-stationary array. The K tiles'
partial sums accumulate in an int32 accumulator buffer (M entries of ``cols`` lanes);
the last K tile's sums go through the requantiser and are written back.

:class:`GemmGeometry` is the one description of the DRAM layout (every vector in whole
bus words, in the order the sequencer reads it) that the RTL is built from and
:mod:`mensa.gen.program` writes.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.config import AcceleratorConfig, ConfigError, Dataflow
from mensa.hw.dma import command_layout, read_layout, write_layout
from mensa.hw.requant import ACC_BITS, SHIFT_BITS, acc_layout, out_layout, quant_layout
from mensa.hw.systolic import act_layout, psum_layout

__all__ = ["GemmGeometry", "GemmSequencer", "descriptor_layout", "ROUTE_DEPTH"]

ROUTE_DEPTH = 8         # DRAM reads in flight, each tagged with where its words go


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
        "m": 24, "k": 16, "n": 16,
        "in_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8,
        "input_addr": addr_bits, "weight_addr": addr_bits, "quant_addr": addr_bits, "output_addr": addr_bits,
    })


class GemmSequencer(wiring.Component):
    """Runs one GEMM layer from DRAM on a weight-stationary array: reads, compute, requantise, writes.

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
        m.submodules.array = array = SystolicArray(cfg.array)
        m.submodules.requant = requant = Requantizer(lanes=C)

        d = Signal(descriptor_layout(cfg.memory.addr_bits))        # the layer, latched at start
        go = Signal()
        m.d.comb += go.eq(self.start & ~self.running)
        with m.If(go):
            m.d.sync += d.eq(self.desc), self.running.eq(1)
        a_tile = Signal(d.input_addr.shape())       # bytes of one K tile of A: M activation vectors
        o_tile = Signal(d.input_addr.shape())       # bytes of one N tile of C: M output vectors
        m.d.comb += a_tile.eq(d.m * g.act_bytes), o_tile.eq(d.m * g.out_bytes)

        # -- read issue: per N tile the quantisation record, then per K tile weights, activations
        Q, WTS, ACT = 0, 1, 2
        m.submodules.route = route = fifo.SyncFIFOBuffered(width=2, depth=ROUTE_DEPTH)
        issuing = Signal()
        phase = Signal(2)
        n0, k0 = Signal(16), Signal(16)
        q_addr, w_addr, a_addr = (Signal(d.input_addr.shape(), name=n) for n in ("q_addr", "w_addr", "a_addr"))
        with m.If(go):
            m.d.sync += [issuing.eq(1), phase.eq(Q), n0.eq(0), k0.eq(0), q_addr.eq(self.desc.quant_addr),
                         w_addr.eq(self.desc.weight_addr), a_addr.eq(self.desc.input_addr)]
        m.d.comb += [
            self.rd_cmd.valid.eq(issuing & route.w_rdy),
            route.w_data.eq(phase),
            route.w_en.eq(self.rd_cmd.valid & self.rd_cmd.ready),
        ]
        # (If chains rather than Switch: a case statement on a two-bit code with three
        # values is an incomplete case to Verilator's lint)
        with m.If(phase == Q):
            m.d.comb += self.rd_cmd.payload.addr.eq(q_addr), self.rd_cmd.payload.count.eq(g.quant_words - 1)
        with m.Elif(phase == WTS):
            m.d.comb += self.rd_cmd.payload.addr.eq(w_addr), self.rd_cmd.payload.count.eq(R * g.weight_words - 1)
        with m.Else():
            m.d.comb += self.rd_cmd.payload.addr.eq(a_addr), self.rd_cmd.payload.count.eq(d.m * g.act_words - 1)
        with m.If(route.w_en):
            with m.If(phase == Q):
                m.d.sync += q_addr.eq(q_addr + g.quant_bytes), phase.eq(WTS)
            with m.Elif(phase == WTS):
                m.d.sync += w_addr.eq(w_addr + R * g.weight_bytes), phase.eq(ACT)
            with m.Else():
                    with m.If(k0 + R >= d.k):
                        m.d.sync += [k0.eq(0), a_addr.eq(d.input_addr), phase.eq(Q)]
                        with m.If(n0 + C >= d.n):
                            m.d.sync += issuing.eq(0)
                        with m.Else():
                            m.d.sync += n0.eq(n0 + C)
                    with m.Else():
                        m.d.sync += [k0.eq(k0 + R), a_addr.eq(a_addr + a_tile), phase.eq(WTS)]

        # -- read data: each word to where its command's tag says -----------------------
        word = self.rd_data.payload.data
        kind = route.r_data
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
        m.d.comb += [
            w_end.eq(g_idx == g.weight_words - 1),
            a_end.eq(g_idx == g.act_words - 1),
            array.weights.payload.eq(vector[(most - g.weight_words) * W:][:8 * C]),
            array.acts.payload.data.eq(vector[(most - g.act_words) * W:][:8 * R]),
            array.acts.payload.last.eq(self.rd_data.payload.last),
            array.weights.valid.eq(here & (kind == WTS) & w_end),
            array.acts.valid.eq(here & (kind == ACT) & a_end),
            route.r_en.eq(self.rd_data.valid & self.rd_data.ready & self.rd_data.payload.last),
        ]
        with m.If(kind == Q):
            m.d.comb += self.rd_data.ready.eq(route.r_rdy & ~q_full)
        with m.Elif(kind == WTS):
            m.d.comb += self.rd_data.ready.eq(route.r_rdy & (~w_end | array.weights.ready))
        with m.Else():
            m.d.comb += self.rd_data.ready.eq(route.r_rdy & (~a_end | array.acts.ready))
        if most > 1:
            # the buffer shifts down a word at a time, so a vector's words end at its top
            with m.If(self.rd_data.valid & self.rd_data.ready & (kind != Q)):
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
        # back, or, on the last K tile, hands the sum to the requantiser. The read port is
        # transparent to the write port: with M = 1 the next tile's read meets this write.
        acc_shape = data.ArrayLayout(ACC_BITS, C)
        m.submodules.accbuf = accbuf = memory.Memory(shape=acc_shape, depth=g.acc_depth, init=[])
        wp = accbuf.write_port()
        rp = accbuf.read_port(transparent_for=(wp,))
        pm = Signal(range(g.acc_depth))
        pk0 = Signal(16)
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
                bv.eq(array.psums.valid), b_first.eq(pk0 == 0), b_final.eq(pk0 + R >= d.k),
                b_last.eq(array.psums.payload.last), b_m.eq(pm), b_psum.eq(array.psums.payload.data),
            ]
        with m.If(psum_in):
            with m.If(array.psums.payload.last):
                m.d.sync += pm.eq(0), pk0.eq(Mux(pk0 + R >= d.k, 0, pk0 + R))
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

        # -- output: one write command per N tile, the requantised vectors as its words ---
        writing = Signal()
        o_addr = Signal(d.output_addr.shape())
        wn0, dn0 = Signal(16), Signal(16)
        with m.If(go):
            m.d.sync += writing.eq(1), o_addr.eq(self.desc.output_addr), wn0.eq(0), dn0.eq(0)
        m.d.comb += [
            self.wr_cmd.valid.eq(writing),
            self.wr_cmd.payload.addr.eq(o_addr),
            self.wr_cmd.payload.count.eq(d.m * g.out_words - 1),
        ]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += o_addr.eq(o_addr + o_tile)
            with m.If(wn0 + C >= d.n):
                m.d.sync += writing.eq(0)
            with m.Else():
                m.d.sync += wn0.eq(wn0 + C)
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
            with m.If(dn0 + C >= d.n):
                m.d.comb += self.done.eq(1)
                m.d.sync += self.running.eq(0)
            with m.Else():
                m.d.sync += dn0.eq(dn0 + C)

        m.d.comb += [
            self.busy.eq(array.busy),
            self.mem_stall.eq(self.running & route.r_rdy & ~self.rd_data.valid),
        ]
        return m
