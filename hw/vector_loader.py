"""The read side of the vector unit: read commands in layer order, and the words routed where they belong.

:class:`VectorReadIssuer` asks the DMA for, per channel tile, the tile's quantisation
record, its kernel's tap vectors, then its input rows one command each, and tags every
command with its route (an op without weights or quantisation records skips those reads; a
table activation's table is read first, once). It runs ahead of the walk as far as the line buffer's ring
(``line_rows`` rows beyond the rows the walk has freed) and the two weight banks (one
tile beyond the walk's) allow, so DRAM latency hides behind the current row's compute.

:class:`VectorLoader` takes the words in command order, assembles each vector from its
bus words, and writes pixel vectors into the line buffer's ring, tap vectors into the
tile's weight bank, and the quantisation record to the requantiser.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import TABLE_ENTRIES
from mensa.hw.dma import command_layout, read_layout
from mensa.hw.requant import quant_layout
from mensa.hw.vector_layer import Q, ROW, ROW2, TBL, WTS, decode_mode, route_layout, vector_desc_layout

__all__ = ["VectorReadIssuer", "VectorLoader"]


class VectorReadIssuer(wiring.Component):
    """The layer's read commands, each with its route, as far ahead as the buffers allow.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.vector_program.VectorGeometry`
    addr_bits : int

    Members
    -------
    start : ``In(1)``
    layer : ``In(vector_desc_layout(addr_bits))``
    freed : ``In(32)``
        Global input rows the walk no longer reads.
    tile : ``In(16)``
        The channel tile the walk is on.
    rd_cmd : ``Out(stream.Signature(command_layout))``
    route : ``Out(stream.Signature(route_layout))``
        One beat per command, taken with it.
    """

    def __init__(self, *, geometry, addr_bits):
        self._g, self._addr_bits = geometry, addr_bits
        data_bits = 8 * geometry.word_bytes
        super().__init__({
            "start": In(1), "layer": In(vector_desc_layout(addr_bits)), "freed": In(32), "tile": In(16),
            "rd_cmd": Out(stream.Signature(command_layout(addr_bits, data_bits))),
            "route": Out(stream.Signature(route_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        g, d = self._g, self.layer
        pshift = (g.pixel_bytes - 1).bit_length()
        pw_shift = (g.pixel_words - 1).bit_length()
        A = self._addr_bits
        active = Signal()
        phase = Signal(range(5))
        t, r = Signal(16), Signal(16)
        issued = Signal(32)             # global input rows requested
        q_addr, w_addr, in_addr, in2_addr = Signal(A), Signal(A), Signal(A), Signal(A)

        mode = decode_mode(m, d.op)
        first_phase = Mux(mode.record, Q, Mux(mode.weights, WTS, ROW))      # of a channel tile
        want = Signal()
        with m.Switch(phase):
            with m.Case(Q):
                m.d.comb += [want.eq(t <= self.tile + 1), self.rd_cmd.payload.addr.eq(q_addr),
                             self.rd_cmd.payload.count.eq(g.quant_words - 1)]
            with m.Case(WTS):
                m.d.comb += [want.eq(t <= self.tile + 1), self.rd_cmd.payload.addr.eq(w_addr),
                             self.rd_cmd.payload.count.eq((d.taps << pw_shift) - 1)]
            with m.Case(ROW):
                m.d.comb += [want.eq(issued < self.freed + d.line_rows), self.rd_cmd.payload.addr.eq(in_addr),
                             self.rd_cmd.payload.count.eq((d.in_w << pw_shift) - 1)]
            with m.Case(ROW2):
                m.d.comb += [want.eq(1), self.rd_cmd.payload.addr.eq(in2_addr),
                             self.rd_cmd.payload.count.eq((d.in_w << pw_shift) - 1)]
            with m.Default():           # TBL (phase never takes the values above it)
                m.d.comb += [want.eq(1), self.rd_cmd.payload.addr.eq(d.table_addr),
                             self.rd_cmd.payload.count.eq(-(-TABLE_ENTRIES // g.word_bytes) - 1)]
        # the route is queued as the command goes (its queue's ready does not wait on valid)
        m.d.comb += [
            self.rd_cmd.valid.eq(active & want & self.route.ready),
            self.route.valid.eq(self.rd_cmd.valid & self.rd_cmd.ready),
            self.route.payload.eq(phase),
        ]

        def row_done():
            """An input row (of both inputs, an add's) is requested: the next row, or the next tile."""
            m.d.sync += issued.eq(issued + 1), r.eq(r + 1)
            with m.If(r == d.in_h - 1):
                m.d.sync += r.eq(0), t.eq(t + 1), phase.eq(first_phase)
                with m.If(t + 1 == d.tiles):
                    m.d.sync += active.eq(0)

        with m.If(self.start):
            m.d.sync += [active.eq(d.tiles != 0), phase.eq(Mux(d.table, TBL, first_phase)), t.eq(0), r.eq(0),
                         issued.eq(0),
                         q_addr.eq(d.quant_addr), w_addr.eq(Mux(mode.offsets, d.input2_addr, d.weight_addr)),
                         in_addr.eq(d.input_addr), in2_addr.eq(d.input2_addr)]
        with m.Elif(self.rd_cmd.valid & self.rd_cmd.ready):
            # an if chain, not a switch: the signals row_done() sets would be cases of their own
            # that leave the other phases out
            with m.If(phase == Q):
                m.d.sync += phase.eq(Mux(mode.weights, WTS, ROW)), q_addr.eq(q_addr + g.quant_bytes)
            with m.Elif(phase == WTS):
                m.d.sync += phase.eq(ROW), w_addr.eq(w_addr + (d.taps << pshift))
            with m.Elif(phase == ROW):
                m.d.sync += in_addr.eq(in_addr + (d.in_w << pshift))
                with m.If(mode.add):
                    m.d.sync += phase.eq(ROW2)
                with m.Else():
                    row_done()
            with m.Elif(phase == ROW2):
                m.d.sync += in2_addr.eq(in2_addr + (d.in_w << pshift)), phase.eq(ROW)
                row_done()
            with m.Else():              # TBL
                m.d.sync += phase.eq(first_phase)
        return m


class VectorLoader(wiring.Component):
    """Routes the read words: pixel vectors to the line buffer, tap vectors to a weight bank,
    quantisation records to the requantiser. An add's second input goes to the line buffer's
    upper half, its rows at the same places as the first input's in the lower half.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.vector_program.VectorGeometry`
    weight_depth : int
        Tap vectors per weight bank.
    addr_bits : int

    Members
    -------
    start : ``In(1)``
    layer : ``In(vector_desc_layout(addr_bits))``
    rd_data : ``In(stream.Signature(read_layout))``
    route : ``In(stream.Signature(route_layout))``
        The route of each command's words, popped on its last word.
    line_addr, line_data, line_en : ``Out``
        The line buffer's write port.
    weight_addr, weight_data, weight_en : ``Out``
        The weight banks' write port.
    quant : ``Out(stream.Signature(quant_layout(lanes)))``
    table_addr, table_data, table_en : ``Out``
        The activation table's write port, a bus word per row.
    loaded_rows : ``Out(32)``
        Global input rows written, since ``start``.
    loaded_tiles : ``Out(16)``
        Channel tiles whose weights are written, since ``start``.
    """

    def __init__(self, *, geometry, weight_depth, addr_bits):
        g = self._g = geometry
        self._weight_depth = weight_depth
        data_bits = 8 * g.word_bytes
        super().__init__({
            "start": In(1), "layer": In(vector_desc_layout(addr_bits)),
            "rd_data": In(stream.Signature(read_layout(data_bits))),
            "route": In(stream.Signature(route_layout)),
            "line_addr": Out(range(g.line_depth)), "line_data": Out(8 * g.lanes), "line_en": Out(1),
            "weight_addr": Out(range(2 * weight_depth)), "weight_data": Out(8 * g.lanes), "weight_en": Out(1),
            "quant": Out(stream.Signature(quant_layout(g.lanes))),
            "table_addr": Out(range(max(TABLE_ENTRIES // g.word_bytes, 2))), "table_data": Out(8 * g.word_bytes),
            "table_en": Out(1),
            "loaded_rows": Out(32), "loaded_tiles": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        g, d = self._g, self.layer
        L, W, pw = g.lanes, 8 * g.word_bytes, g.pixel_words
        mode = decode_mode(m, d.op)
        word = self.rd_data.payload.data
        vec = Signal(pw * W)                    # the vector being assembled, oldest word lowest
        vec_next = Cat(vec[W:], word) if pw > 1 else word
        widx = Signal(range(max(pw, 2)))       # one bit even for one-word vectors (no zero-width wire)
        record = Signal(g.quant_words * W)      # the quantisation record, shifted in the same way
        q_full = Signal()
        row_addr, col = Signal(range(2 * g.line_depth + 1)), Signal(16)
        tap, bank = Signal(range(self._weight_depth)), Signal()
        kind = self.route.payload
        take = Signal()
        vector_end = widx == pw - 1
        end = self.rd_data.payload.last

        m.d.comb += [
            self.rd_data.ready.eq(self.route.valid & ((kind != Q) | ~q_full)),
            take.eq(self.rd_data.valid & self.rd_data.ready),
            self.route.ready.eq(take & end),
            self.line_addr.eq(row_addr + col + Mux(kind == ROW2, g.line_depth // 2, 0)),
            self.line_data.eq(vec_next[:8 * L]),
            self.line_en.eq(take & ((kind == ROW) | (kind == ROW2)) & vector_end),
            self.weight_addr.eq(Mux(bank, self._weight_depth, 0) + tap), self.weight_data.eq(vec_next[:8 * L]),
            self.weight_en.eq(take & (kind == WTS) & vector_end),
        ]
        t_word = Signal.like(self.table_addr)
        m.d.comb += [self.table_addr.eq(t_word), self.table_data.eq(word), self.table_en.eq(take & (kind == TBL))]
        with m.If(take & (kind == TBL)):
            m.d.sync += t_word.eq(t_word + 1)
        with m.If(self.start):
            m.d.sync += t_word.eq(0)
        qp = self.quant.payload
        for i in range(L):
            m.d.comb += [qp.bias[i].eq(record[32 * i:32 * i + 32].as_signed()),
                         qp.multiplier[i].eq(record[32 * (L + i):32 * (L + i) + 32].as_signed()),
                         qp.shift[i].eq(record[64 * L + 8 * i:64 * L + 8 * i + 6].as_signed())]
        m.d.comb += [qp.zero_point.eq(d.out_zero_point), qp.qmin.eq(d.qmin), qp.qmax.eq(d.qmax),
                     self.quant.valid.eq(q_full)]
        with m.If(self.quant.valid & self.quant.ready):
            m.d.sync += q_full.eq(0)

        with m.If(self.start):
            m.d.sync += [widx.eq(0), row_addr.eq(0), col.eq(0), tap.eq(0), bank.eq(0), q_full.eq(0),
                         self.loaded_rows.eq(0), self.loaded_tiles.eq(0)]
        with m.Elif(take):
            with m.If(kind == Q):
                m.d.sync += record.eq(Cat(record[W:], word) if g.quant_words > 1 else word)
                with m.If(end):
                    m.d.sync += q_full.eq(1)
            with m.Else():
                m.d.sync += vec.eq(vec_next), widx.eq(Mux(vector_end, 0, widx + 1))
            with m.If((kind == WTS) & vector_end):
                m.d.sync += tap.eq(tap + 1)
                with m.If(end):
                    m.d.sync += tap.eq(0), bank.eq(~bank), self.loaded_tiles.eq(self.loaded_tiles + 1)
            with m.If(((kind == ROW) | (kind == ROW2)) & vector_end):
                m.d.sync += col.eq(col + 1)
                with m.If(end & (kind == ROW) & mode.add):
                    m.d.sync += col.eq(0)           # the second input's row follows
                with m.Elif(end):
                    next_row = row_addr + d.in_w
                    m.d.sync += [col.eq(0), self.loaded_rows.eq(self.loaded_rows + 1),
                                 row_addr.eq(Mux(next_row >= d.line_rows * d.in_w, 0, next_row))]
        return m
