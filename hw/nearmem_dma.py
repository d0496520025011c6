"""The near-memory accelerator's two DMA clients: input vectors from DRAM, output vectors to DRAM.

Both move vectors laid out as :mod:`mensa.contract.nearmem_program` says: ``M`` vectors one after
another, each a whole number of bus words (``W`` bytes) and of lane words (``L`` bytes, one beat of
the unit's ``inputs`` or ``outs``); the bus and the lanes divide one another (``wide``: ``W / L``
lane words a bus word, else ``L / W`` bus words a lane word).

:class:`VectorReader` reads each input vector with one command of ``vector_words`` bus words and
cuts the words into lane beats: a wide word gives up to ``W / L`` beats, the vector's last word
only those up to its ``K``-th element (the element counter steps by ``L``, as the unit's does);
narrow words are gathered ``L / W`` to a beat.

:class:`VectorWriter` packs the unit's output beats into bus words (a vector's last word filled up
with zeros) into a FIFO of two bursts, and issues a write of a burst only once the burst's words are
in the FIFO: the AXI write address never runs ahead of its data, so a DRAM port shared with other
masters (the system top's arbiter serves write data in address order) is never held by a unit that
is still computing. It reports ``done`` once the ``vectors``-th vector is written and every write
has been answered.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.nearmem import VECTOR_BITS
from mensa.core.config import MemoryConfig
from mensa.hw.dma import command_layout, read_layout, write_layout
from mensa.hw.requant import out_layout

__all__ = ["VectorReader", "VectorWriter"]


def _check(memory, lanes):
    if not isinstance(memory, MemoryConfig):
        raise TypeError(f"memory must be a MemoryConfig, not {memory!r}")
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    word = memory.data_bits // 8
    if word % lanes and lanes % word:
        raise ValueError(f"lanes {lanes} and the bus's {word} bytes do not divide one another")
    return word >= lanes, (word // lanes if word >= lanes else lanes // word)


class VectorReader(wiring.Component):
    """Reads ``vectors`` input vectors of ``vector_words`` bus words from ``input_addr`` into lane beats.

    Parameters
    ----------
    memory : :class:`~mensa.core.config.MemoryConfig`
    lanes : int
        Elements (int8) per beat of ``inputs``.
    max_in : int
        Elements a vector may have at most.

    Members
    -------
    start : ``In(1)``
        Begin: ``input_addr`` is taken, the commands follow.
    input_addr : ``In(memory.addr_bits)``
    vector_words : ``In(32)``
        Bus words of one vector in DRAM.
    in_features : ``In(range(max_in + 1))``
        K, elements per vector; held while the layer runs.
    vectors : ``In(VECTOR_BITS)``
        M, held while the layer runs.
    rd_cmd : ``Out(stream.Signature(command_layout))``
    rd_data : ``In(stream.Signature(read_layout))``
    inputs : ``Out(stream.Signature(ArrayLayout(signed(8), lanes)))``
        ``ceil(K / lanes)`` beats per vector.
    """

    def __init__(self, *, memory, lanes, max_in):
        self._wide, self._ratio = _check(memory, lanes)
        self._memory, self._lanes, self._max_in = memory, lanes, max_in
        a, d = memory.addr_bits, memory.data_bits
        super().__init__({
            "start": In(1), "input_addr": In(a), "vector_words": In(32),
            "in_features": In(range(max_in + 1)), "vectors": In(VECTOR_BITS),
            "rd_cmd": Out(stream.Signature(command_layout(a, d))),
            "rd_data": In(stream.Signature(read_layout(d))),
            "inputs": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        mem, L, R = self._memory, self._lanes, self._ratio
        offset_bits = (mem.data_bits // 8 - 1).bit_length()

        # -- one read command per vector -------------------------------------------------
        addr = Signal(mem.addr_bits)
        issued = Signal(VECTOR_BITS)
        active = Signal()
        m.d.comb += [
            self.rd_cmd.valid.eq(active),
            self.rd_cmd.payload.addr.eq(addr),
            self.rd_cmd.payload.count.eq(self.vector_words - 1),
        ]
        with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
            m.d.sync += [addr.eq(addr + (self.vector_words << offset_bits)), issued.eq(issued + 1)]
            with m.If(issued == self.vectors - 1):
                m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.input_addr), issued.eq(0), active.eq(1)]

        # -- bus words -> lane beats ---------------------------------------------------------
        beat_bits = 8 * L
        rd, out = self.rd_data, self.inputs
        if self._wide:
            j = Signal(range(max(R, 2)))                        # lane word of the bus word (no zero-width signal)
            k = Signal(range(self._max_in + L))                 # the beat's first element
            vector_last = Signal()
            m.d.comb += [
                vector_last.eq(k + L >= self.in_features),
                out.valid.eq(rd.valid),
                out.payload.eq(rd.payload.data.word_select(j, beat_bits) if R > 1 else rd.payload.data),
                rd.ready.eq(out.ready & (vector_last | (j == R - 1))),
            ]
            with m.If(out.valid & out.ready):
                with m.If(vector_last):
                    m.d.sync += [k.eq(0), j.eq(0)]
                with m.Else():
                    m.d.sync += [k.eq(k + L), j.eq(Mux(j == R - 1, 0, j + 1))]
            with m.If(self.start):
                m.d.sync += [k.eq(0), j.eq(0)]
        else:
            i = Signal(range(R))                                # bus word of the lane word
            word_bits = mem.data_bits
            held = Signal((R - 1) * word_bits)                  # the lane word's earlier bus words
            m.d.comb += [
                out.valid.eq(rd.valid & (i == R - 1)),
                out.payload.eq(Cat(held, rd.payload.data)),
                rd.ready.eq((i != R - 1) | out.ready),
            ]
            with m.If(rd.valid & rd.ready):
                with m.If(i == R - 1):
                    m.d.sync += i.eq(0)
                with m.Else():
                    m.d.sync += [i.eq(i + 1), held.eq(Cat(held[word_bits:], rd.payload.data))]
            with m.If(self.start):
                m.d.sync += i.eq(0)
        return m


class VectorWriter(wiring.Component):
    """Writes ``vectors`` output vectors of lane beats from ``output_addr`` on, a burst at a time.

    Parameters
    ----------
    memory : :class:`~mensa.core.config.MemoryConfig`
        Bus width, address width and ``max_burst``, the beats of a write command.
    lanes : int

    Members
    -------
    start : ``In(1)``
        Begin: ``output_addr`` is taken.
    output_addr : ``In(memory.addr_bits)``
    vectors : ``In(VECTOR_BITS)``
        M, held while the layer runs.
    outs : ``In(stream.Signature(out_layout(lanes, 8)))``
        The unit's int8 beats, ``last`` on each vector's final beat.
    wr_cmd : ``Out(stream.Signature(command_layout))``
    wr_data : ``Out(stream.Signature(write_layout))``
    wr_done : ``In(stream.Signature(2))``
    done : ``Out(1)``
        One cycle, once the last vector is written and every write answered.
    """

    def __init__(self, *, memory, lanes):
        self._wide, self._ratio = _check(memory, lanes)
        self._memory, self._lanes = memory, lanes
        a, d = memory.addr_bits, memory.data_bits
        super().__init__({
            "start": In(1), "output_addr": In(a), "vectors": In(VECTOR_BITS),
            "outs": In(stream.Signature(out_layout(lanes, 8))),
            "wr_cmd": Out(stream.Signature(command_layout(a, d))),
            "wr_data": Out(stream.Signature(write_layout(d))),
            "wr_done": In(stream.Signature(2)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        mem, L, R = self._memory, self._lanes, self._ratio
        B = mem.max_burst
        word_bits = mem.data_bits
        offset_bits = (word_bits // 8 - 1).bit_length()
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=word_bits, depth=2 * B)

        # -- lane beats -> bus words, while a layer runs ------------------------------------------
        active = Signal()
        beat = self.outs.payload.data.as_value()
        took = Signal()                     # a beat taken
        seen = Signal(VECTOR_BITS)          # vectors whose last beat was taken
        m.d.comb += took.eq(self.outs.valid & self.outs.ready)
        with m.If(took & self.outs.payload.last):
            m.d.sync += seen.eq(seen + 1)
        if self._wide:
            j = Signal(range(max(R, 2)))                        # lane word of the bus word (no zero-width signal)
            slots = [Signal(8 * L, name=f"slot{i}") for i in range(R - 1)]
            complete = Signal()
            m.d.comb += [
                complete.eq((j == R - 1) | self.outs.payload.last),
                self.outs.ready.eq(words.w_rdy & active),
                words.w_en.eq(took & complete),
                # the vector's last word: its lane words after the last beat are zero
                words.w_data.eq(Cat(*[Mux(j > i, slots[i], Mux(j == i, beat, 0)) for i in range(R - 1)],
                                    Mux(j == R - 1, beat, 0))),
            ]
            with m.If(took):
                m.d.sync += j.eq(Mux(complete, 0, j + 1))
                for i, slot in enumerate(slots):
                    with m.If(j == i):
                        m.d.sync += slot.eq(beat)
        else:
            i = Signal(range(R))                                # bus word of the lane word
            m.d.comb += [
                self.outs.ready.eq(words.w_rdy & active & (i == R - 1)),
                words.w_en.eq(self.outs.valid & words.w_rdy & active),
                words.w_data.eq(beat.word_select(i, word_bits) if R > 1 else beat),
            ]
            with m.If(words.w_en):
                m.d.sync += i.eq(Mux(i == R - 1, 0, i + 1))
        m.d.comb += [
            self.wr_data.valid.eq(words.r_rdy),
            self.wr_data.payload.data.eq(words.r_data),
            self.wr_data.payload.strb.eq(Const(-1, word_bits // 8)),
            words.r_en.eq(self.wr_data.ready),
        ]

        # -- a write command per burst of words already in the FIFO ----------------------------
        addr = Signal(mem.addr_bits)
        pending = Signal(range(2 * B + 1))  # words in the FIFO no command has covered yet
        inflight = Signal(range(2 * B + 2))  # commands not yet answered
        all_seen = Signal()
        full_burst = Signal()
        n = Signal(range(B + 1))
        cmd_go = Signal()
        m.d.comb += [
            all_seen.eq(seen == self.vectors),
            full_burst.eq(pending >= B),
            n.eq(Mux(full_burst, B, pending)),
            self.wr_cmd.valid.eq(active & (full_burst | all_seen & (pending != 0))),
            self.wr_cmd.payload.addr.eq(addr),
            self.wr_cmd.payload.count.eq(n - 1),
            cmd_go.eq(self.wr_cmd.valid & self.wr_cmd.ready),
            self.wr_done.ready.eq(1),
        ]
        m.d.sync += [
            pending.eq(pending + words.w_en - Mux(cmd_go, n, 0)),
            inflight.eq(inflight + cmd_go - (self.wr_done.valid & self.wr_done.ready)),
        ]
        with m.If(cmd_go):
            m.d.sync += addr.eq(addr + (n << offset_bits))
        m.d.comb += self.done.eq(active & all_seen & (pending == 0) & (inflight == 0))
        with m.If(self.done):
            m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [active.eq(1), addr.eq(self.output_addr), seen.eq(0)]
        return m
