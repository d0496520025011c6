"""The LSTM cell of the near-memory unit (Pavlov): gate activations, cell and hidden state.

:class:`LstmCell` sits behind the :class:`~mensa.hw.nearmem.NearMemoryUnit`'s requantiser.
The vault lanes compute, per block of ``lanes`` hidden units, the four gates' two int32
matrix-vector products (``W x_t + bias`` and ``U h_{t-1}``); the requantiser turns them
into int16 Q3.12 halves ``gx`` and ``gh`` (steps 1 and 2 of :func:`mensa.core.golden.lstm`).
The cell takes, per block, the four ``gx`` beats (gates i, f, g, o) and then the four
``gh`` beats, and for every lane:

3. ``pre = sat16(gx + gh)``;
4. ``i, f, o = sigmoid(pre)``, ``g = tanh(pre)``: a 257-point table with linear
   interpolation (:func:`mensa.core.golden.sigmoid_table`, :func:`~mensa.core.golden.tanh_table`);
   one table memory holds both, each entry the pair ``(T[i], T[i+1])`` so that one read
   serves one interpolation;
5. ``c = sat16(RDBPOT(f * c, 15) + RDBPOT(i * g, 19))``, the int16 Q4.11 cell state kept in
   the cell's own memory across time steps (zero at step 0);
6. ``m = o * tanh(sat16(c << 1))``, int32 Q0.30, out of ``m`` (to the unit's second
   requantiser, which makes ``h`` or the projection's int8 input of it).

Throughput is one block of ``lanes`` hidden units every :data:`CYCLES_PER_BLOCK` cycles
(two a gate: accept, table read; six for the cell: its two products, ``c``, the table address of
``tanh(c)``, ``tanh(c)``, ``m``), one multiply at most a cycle, none behind a block RAM's read
data and a second one (docs/synth.md, timing rules). The MAC
lanes need ``4 (C + P)`` cycles a block, so the cell is idle most of the time; it uses
four multipliers a lane (interpolation, ``f * c``, ``i * g``, ``o * tanh(c)``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.nearmem import GATES
from mensa.core.golden import sigmoid_table, tanh_table
from mensa.contract.numeric import ACC_BITS
from mensa.hw.queue import Queue
from mensa.hw.requant import acc_layout

__all__ = ["LstmCell", "gate_layout", "CYCLES_PER_BLOCK"]

CYCLES_PER_BLOCK = 2 * GATES + 6
_TANH_GATE = 2          # g takes tanh, the others sigmoid
_STEP_BITS = 8          # the table index is the top 8 bits of the Q3.12 input (golden)
_CELL_SHIFT = 1         # Q4.11 -> Q3.12


def gate_layout(lanes):
    """``lanes`` int16 Q3.12 gate pre-activation halves."""
    return data.ArrayLayout(signed(16), lanes)


def _tables():
    """The table memory's contents: sigmoid entries 0..255, tanh 256..511, each (T[i], T[i+1])."""

    words = []
    for table in (sigmoid_table(), tanh_table()):
        t = [int(v) & 0xFFFF for v in table]
        words += [t[i] | t[i + 1] << 16 for i in range(256)]
    return words


def _sat16(m, value, name):
    s = Signal(signed(16), name=name)
    m.d.comb += s.eq(Mux(value > 32767, 32767, Mux(value < -32768, -32768, value)))
    return s


def _rdbpot(x, exponent):
    """gemmlowp's RoundingDivideByPOT of a signed value by a constant power of two."""
    threshold = Const((1 << (exponent - 1)) - 1, exponent) + x[-1]
    return (x >> exponent) + (x[:exponent] > threshold)


class LstmCell(wiring.Component):
    """Gate activations, cell state and ``o * tanh(c)`` of ``lanes`` hidden units at a time.

    Parameters
    ----------
    lanes : int
        Hidden units per block (the unit's MAC lanes).
    max_blocks : int
        Blocks of hidden units per time step at most (the cell-state memory's depth).
    queue : int
        ``gx`` beats waiting for their ``gh`` at most (four a block of one vault).

    Members
    -------
    gx : ``In(stream.Signature(gate_layout(lanes)))``
        The input halves of a block's gate pre-activations, gates i, f, g, o in turn.
    gh : ``In(stream.Signature(gate_layout(lanes)))``
        The recurrent halves, in the same order; a block's ``gx`` beats come first (up to
        ``queue`` of them wait).
    m : ``Out(stream.Signature(acc_layout(lanes)))``
        ``o * tanh(c)`` of each block, int32 Q0.30; ``last`` set on every beat.
    blocks : ``In(range(max_blocks + 1))``
        Blocks per time step; the cell state of block ``b`` lives at address ``b``.
    start : ``In(1)``
        A new layer: the next block is block 0 of time step 0 (cell state zero).
    """

    class _State(enum.Enum, shape=3):
        GATE = 0
        LOOKUP = 1
        PRODUCTS = 2
        CELL = 3
        ADDRESS = 4
        TANH = 5
        OUTPUT = 6
        EMIT = 7

    def __init__(self, *, lanes, max_blocks, queue):
        for name, value in (("lanes", lanes), ("max_blocks", max_blocks), ("queue", queue)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
        self._lanes = lanes
        self._max_blocks = max_blocks
        self._queue = queue
        super().__init__({
            "gx": In(stream.Signature(gate_layout(lanes))),
            "gh": In(stream.Signature(gate_layout(lanes))),
            "m": Out(stream.Signature(acc_layout(lanes))),
            "blocks": In(range(max_blocks + 1)),
            "start": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, S = self._lanes, self._State

        # -- the input halves wait for their recurrent halves ------------------------------
        m.submodules.gx_queue = gxq = Queue(gate_layout(L), depth=self._queue)
        wiring.connect(m, wiring.flipped(self.gx), gxq.w)
        gx = gxq.r.payload

        tables = memory.Memory(shape=unsigned(32), depth=512, init=_tables())
        depth = max(self._max_blocks, 2)       # no zero-width address
        cells = memory.Memory(shape=data.ArrayLayout(signed(16), L), depth=depth, init=[])
        m.submodules.tables = tables
        m.submodules.cells = cells
        cell_wr = cells.write_port()
        cell_rd = cells.read_port(transparent_for=(cell_wr,))

        state = Signal(S)
        gate = Signal(range(GATES))
        block = Signal(range(depth))
        first = Signal()            # time step 0: the cell state starts at zero
        m.d.comb += cell_rd.addr.eq(block)

        take = Signal()
        m.d.comb += [
            self.gh.ready.eq((state == S.GATE) & gxq.r.valid),
            take.eq(self.gh.valid & self.gh.ready),
            gxq.r.ready.eq(take),
        ]

        acts = [[Signal(signed(16), name=f"act{q}_{l}") for l in range(L)] for q in range(GATES)]
        frac = [Signal(unsigned(_STEP_BITS), name=f"frac{l}") for l in range(L)]
        m_reg = [Signal(signed(ACC_BITS), name=f"m{l}") for l in range(L)]
        for l in range(L):
            rd = tables.read_port(transparent_for=())
            lo, hi = rd.data[:16].as_signed(), rd.data[16:].as_signed()
            interp = Signal(signed(17), name=f"interp{l}")
            m.d.comb += interp.eq(lo + (((hi - lo) * frac[l] + 128) >> _STEP_BITS))

            # step 3 and the table address of step 4
            pre = _sat16(m, gx[l] + self.gh.payload[l], f"pre{l}")
            # step 5: the two products a state ahead of their sum (the cell state's read data into a
            # product's register, not through it into the sum)
            f, i, g, o = acts[1][l], acts[0][l], acts[2][l], acts[3][l]
            fc, ig = Signal(signed(32), name=f"fc{l}"), Signal(signed(32), name=f"ig{l}")
            with m.If(state == S.PRODUCTS):
                m.d.sync += [fc.eq(f * Mux(first, 0, cell_rd.data[l])), ig.eq(i * g)]
            c = _sat16(m, _rdbpot(fc, 15) + _rdbpot(ig, 19), f"c{l}")
            c_reg = Signal(signed(16), name=f"c_reg{l}")
            with m.If(state == S.CELL):
                m.d.sync += c_reg.eq(c)
            c_q312 = _sat16(m, c_reg << _CELL_SHIFT, f"c_q312_{l}")
            # the table address: ((x >> 8) + 128) is x's top byte with its sign bit flipped
            with m.If(state == S.ADDRESS):
                m.d.comb += rd.addr.eq(Cat(c_q312[_STEP_BITS:16] ^ 0x80, 1))
                m.d.sync += frac[l].eq(c_q312[:_STEP_BITS])
            with m.Else():
                m.d.comb += rd.addr.eq(Cat(pre[_STEP_BITS:16] ^ 0x80, gate == _TANH_GATE))
                with m.If(take):
                    m.d.sync += frac[l].eq(pre[:_STEP_BITS])
            for q in range(GATES):      # an If per gate: no case statement on a partly used code
                with m.If((state == S.LOOKUP) & (gate == q)):
                    m.d.sync += acts[q][l].eq(interp)
            # step 6: tanh(c) into a register, then the product
            tanh_c = Signal(signed(17), name=f"tanh_c{l}")
            with m.If(state == S.TANH):
                m.d.sync += tanh_c.eq(interp)
            with m.If(state == S.OUTPUT):
                m.d.sync += m_reg[l].eq(o * tanh_c)
            m.d.comb += [
                cell_wr.data[l].eq(c),
                self.m.payload.data[l].eq(m_reg[l]),
            ]
        m.d.comb += [
            cell_wr.addr.eq(block),
            cell_wr.en.eq(state == S.CELL),
            self.m.valid.eq(state == S.EMIT),
            self.m.payload.last.eq(1),
        ]

        # If / Elif rather than a case statement (Verilator lint)
        with m.If(state == S.GATE):
            with m.If(take):
                m.d.sync += state.eq(S.LOOKUP)
        with m.Elif(state == S.LOOKUP):
            m.d.sync += [gate.eq(gate + 1), state.eq(Mux(gate == GATES - 1, S.PRODUCTS, S.GATE))]
        with m.Elif(state == S.PRODUCTS):
            m.d.sync += state.eq(S.CELL)
        with m.Elif(state == S.CELL):
            m.d.sync += state.eq(S.ADDRESS)
        with m.Elif(state == S.ADDRESS):
            m.d.sync += state.eq(S.TANH)
        with m.Elif(state == S.TANH):
            m.d.sync += state.eq(S.OUTPUT)
        with m.Elif(state == S.OUTPUT):
            m.d.sync += state.eq(S.EMIT)
        with m.Elif(self.m.ready):      # EMIT
            m.d.sync += state.eq(S.GATE)
            with m.If(block == self.blocks - 1):
                m.d.sync += [block.eq(0), first.eq(0)]
            with m.Else():
                m.d.sync += block.eq(block + 1)
        with m.If(self.start):
            m.d.sync += [state.eq(S.GATE), gate.eq(0), block.eq(0), first.eq(1)]
        return m
