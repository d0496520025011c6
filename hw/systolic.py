"""Systolic arrays of int8 multiply-accumulate processing elements.

Two dataflows, each one :class:`SystolicArray` component chosen by ``dataflow``:

weight-stationary (``ws``, the Edge TPU / TPU dataflow)
    Each PE holds one weight of a ``rows`` x ``cols`` tile of B (K x N). Activation
    vectors (one row of A, ``rows`` wide) enter skewed at the left edge and move right;
    partial sums move down and leave the bottom edge, de-skewed into one ``cols``-wide
    vector per activation vector. Every PE has two weight registers: the next tile's
    weights shift in through the ``weights`` stream while the current tile computes,
    and each activation carries the bank it is to be multiplied with, so the array
    switches tiles without a bubble. The array never stalls: the psum vectors go into
    a FIFO, and an activation is taken only while the FIFO has a credit for the vector
    it will produce, so back-pressure on ``psums`` stops the input instead of fanning a
    stall out over every PE register (which is what limits the clock otherwise).

output-stationary (``os``)
    Each PE accumulates one element of a ``rows`` x ``cols`` tile of C. Operand beats
    carry one column of A (``rows`` wide) and one row of B (``cols`` wide) per step of
    K, skewed into the array; on the tile's last step each PE moves its sum to a result
    register and starts the next tile, and the results leave row by row through
    ``results`` while the next tile computes.

Every PE multiplies in ``MULT_STAGES`` register stages (an ECP5 DSP block's input,
pipeline and output registers and one fabric register) and adds in the next, so no
path holds more than a multiplier or a carry chain.
"""

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mensa.core.config import ArrayConfig, Dataflow
from mensa.hw.dsp import PRODUCT_STAGES, registered_product
from mensa.hw.keep import kept_register
from mensa.hw.queue import count_credits

__all__ = ["SystolicArray", "MULT_STAGES", "act_layout", "psum_layout", "operand_layout"]

#: Register stages of a PE's multiplier (:data:`mensa.hw.dsp.PRODUCT_STAGES`).
MULT_STAGES = PRODUCT_STAGES

#: Cycles from a partial-sum vector's write into the WS output FIFO to its first possible read.
_FIFO_LATENCY = 2


def _credit_fifo(m, platform, depth, w_en, columns, r_ready):
    """A FIFO whose writer holds credits (it never writes into a full FIFO), so it has no
    full flag: LUT-RAM rings and an output register. Returns the output's valid and its
    register of each field; an entry written in a cycle can be read two cycles later.

    ``columns`` are the entry's fields (one per array column); each is a FIFO of its own: its
    ring, write and read pointers, output register and valid flag, all written and read
    together. So a pointer and a load enable reach one column's LUT RAMs and registers, placed
    beside that column, not every payload bit of the array. The copies of a pointer start at
    different entries (column ``j`` at entry ``j``) and step together: they are distinct
    flip-flops that synthesis cannot merge back into one, and so are the flags that follow
    from them. ``w_en`` is the write enable a cycle ahead: each column registers its own copy
    (:func:`~mensa.hw.keep.kept_register`). A ring is written every cycle at its write pointer,
    whose entry is free (the ring never holds all its entries), and ``w_en`` moves the pointer: so
    no enable reaches the LUT RAMs.
    """
    ring = 1 << max(1, (depth - 1).bit_length())    # depth - 1 entries wait at most; 2 at least
    outs, valids = [], []
    for j, field in enumerate(columns):
        mem = Memory(shape=unsigned(len(field)), depth=ring, init=[])
        m.submodules[f"psum_ring{j}"] = mem
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        # The pointers are reset by a register of the column's own, a cycle after the array's reset
        # (the reset then reaches the flags alone across the array). In that cycle no entry is
        # written (the tags are reset) or read (`waiting` is reset), so the pointers only hold.
        reset = kept_register(m, platform, ResetSignal(allow_reset_less=True), f"psum_reset{j}", init=1)
        write = kept_register(m, platform, w_en, f"psum_write{j}", reset_less=False)
        head = Signal(range(ring), name=f"psum_head{j}", init=j % ring, reset_less=True)
        tail = Signal(range(ring), name=f"psum_tail{j}", init=j % ring, reset_less=True)
        out = Signal(len(field), name=f"psum_out{j}", reset_less=True)
        out_valid = Signal(name=f"psum_valid{j}")
        # `waiting`: the ring holds entries (never all: no wrap), a flip-flop of the column's own
        # (the pointers' comparison is a cycle ahead of it), so the pop is one LUT from registers.
        waiting = Signal(name=f"psum_waiting{j}")
        pop = Signal(name=f"psum_pop{j}")
        m.d.comb += [
            wr.addr.eq(head), wr.data.eq(field), wr.en.eq(1), rd.addr.eq(tail),
            pop.eq(waiting & (~out_valid | r_ready)),
        ]
        # `last`: the read pointer's successor is the write pointer (one entry left to pop), a
        # register: the pointers' successors are registers too (`after`, `after2`, `head2`), and
        # each move's comparison is made side by side and selected by the move, as count_credits does
        after = Signal(range(ring), name=f"psum_after{j}", init=(j + 1) % ring, reset_less=True)
        after2 = Signal(range(ring), name=f"psum_after2_{j}", init=(j + 2) % ring, reset_less=True)
        head2 = Signal(range(ring), name=f"psum_head2_{j}", init=(j + 1) % ring, reset_less=True)
        last = Signal(name=f"psum_last{j}", reset_less=True)
        m.d.sync += waiting.eq(write | waiting & ~(pop & last))
        with m.If(pop & ~write):
            m.d.sync += last.eq(after2 == head)
        with m.Elif(write & ~pop):
            m.d.sync += last.eq(after == head2)
        with m.If(write):
            m.d.sync += head.eq(head2), head2.eq(head2 + 1)
        with m.If(pop):
            m.d.sync += out.eq(rd.data), out_valid.eq(1), tail.eq(after), after.eq(after2), after2.eq(after2 + 1)
        with m.Elif(r_ready):
            m.d.sync += out_valid.eq(0)
        with m.If(reset):
            m.d.sync += [head.eq(head.init), tail.eq(tail.init), after.eq(after.init), after2.eq(after2.init),
                         head2.eq(head2.init), last.eq(0)]
        outs.append(out)
        valids.append(out_valid)
    return valids[0], outs


def act_layout(rows, input_bits):
    return data.StructLayout({"data": data.ArrayLayout(signed(input_bits), rows), "last": 1})


def psum_layout(cols, acc_bits):
    return data.StructLayout({"data": data.ArrayLayout(signed(acc_bits), cols), "last": 1})


def operand_layout(rows, cols, input_bits, weight_bits):
    return data.StructLayout({
        "a": data.ArrayLayout(signed(input_bits), rows),
        "b": data.ArrayLayout(signed(weight_bits), cols),
        "last": 1,
    })


class SystolicArray(wiring.Component):
    """A ``rows`` x ``cols`` systolic array of int8 MAC processing elements.

    Parameters
    ----------
    config : :class:`~mensa.core.config.ArrayConfig`
        Rows, columns, dataflow and widths.

    Members (weight-stationary)
    ---------------------------
    weights : ``In(stream.Signature(ArrayLayout(signed(weight_bits), cols)))``
        A weight tile as ``rows`` beats, row 0 first; beat ``i`` is row ``i`` of the
        tile (B[k0 + i, n0 : n0 + cols]).
    acts : ``In(stream.Signature(act_layout))``
        Activation vectors A[m, k0 : k0 + rows]; ``last`` marks the tile's last one,
        after which the next activation uses the next weight tile.
    psums : ``Out(stream.Signature(psum_layout))``
        One vector of ``cols`` partial sums per activation vector, in order, with its ``last``.

    Members (output-stationary)
    ---------------------------
    operands : ``In(stream.Signature(operand_layout))``
        For k = 0 .. K-1: A[m0 : m0 + rows, k] and B[k, n0 : n0 + cols]; ``last`` on k = K-1.
    results : ``Out(stream.Signature(psum_layout))``
        The tile's ``rows`` result rows C[m0 + i, n0 : n0 + cols], ``last`` on the final row.
    """

    def __init__(self, config):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self._config = config
        c = config
        if c.dataflow is Dataflow.WEIGHT_STATIONARY:
            members = {
                "weights": In(stream.Signature(data.ArrayLayout(signed(c.weight_bits), c.cols))),
                "acts": In(stream.Signature(act_layout(c.rows, c.input_bits))),
                "psums": Out(stream.Signature(psum_layout(c.cols, c.acc_bits))),
            }
        else:
            members = {
                "operands": In(stream.Signature(operand_layout(c.rows, c.cols, c.input_bits, c.weight_bits))),
                "results": Out(stream.Signature(psum_layout(c.cols, c.acc_bits))),
            }
        members["busy"] = Out(1)
        super().__init__(members)

    @property
    def config(self):
        return self._config

    @property
    def latency(self):
        """Cycles from an input beat's acceptance to its first possible output (unstalled)."""
        c = self._config
        if c.dataflow is Dataflow.WEIGHT_STATIONARY:
            return c.rows + c.cols + MULT_STAGES + _FIFO_LATENCY
        return c.rows + c.cols - 1 + MULT_STAGES

    @property
    def psum_fifo_depth(self):
        """Entries of the WS output FIFO: enough credits to cover the round trip (a read's credit
        returns a cycle after it), so a ``psums`` consumer that is always ready never throttles
        the activations."""
        return self.latency + 2

    def elaborate(self, platform):
        if self._config.dataflow is Dataflow.WEIGHT_STATIONARY:
            return self._elaborate_ws(platform)
        return self._elaborate_os(platform)

    def _elaborate_ws(self, platform):
        m = Module()
        c = self._config
        R, C = c.rows, c.cols
        D = R + C - 1   # anti-diagonals: PE (i, j) sees an activation i + j cycles after it enters
        P = MULT_STAGES
        depth = self.psum_fifo_depth

        # -- weight loading into the bank not in use, row by row ------------------------------
        # w[b][i][j] is the weight of PE (i, j) in bank b.
        # Data registers have no reset (the tags and bank flags say what is valid), so the
        # reset reaches only the control flip-flops, not every register of the array.
        w = [[[Signal(signed(c.weight_bits), name=f"w{b}_{i}_{j}", reset_less=True) for j in range(C)]
              for i in range(R)] for b in range(2)]
        # Bank b is `loaded` from its last weight beat until its tile's last activation is
        # taken, then `inuse` until that activation has passed the far corner PE. With short
        # tiles (M < rows + cols) a bank can be in use while the other is loaded again.
        loaded = Signal(2)
        inuse = Signal(2)
        load_bank = Signal()
        # `load_at`: the (bank, row) the next weight beat loads, one-hot (bit b * R + i), so a take's
        # write enables and a bank's last row are its bits, not a decode of a row count
        load_at = Signal(2 * R, init=1)
        comp_bank = Signal()
        comp_loaded = Signal()      # loaded[comp_bank], a register of its own (from the next state, below)

        # `w_free`: the bank to load next is neither loaded nor in use, a flip-flop computed
        # from the banks' next state (below), so `ready` and the take start at a register.
        w_free = Signal(init=1)
        m.d.comb += self.weights.ready.eq(w_free)
        w_take = Signal()
        m.d.comb += w_take.eq(self.weights.valid & w_free)
        # A taken beat is registered with a one-hot write enable per (bank, row); the enable
        # and the beat then travel along the row, one PE a cycle (column j's weight is written
        # j cycles after column 0's), so every enable is a flip-flop of its own beside the one
        # PE whose weights it loads, not a net across the row's DSP blocks. An activation
        # reaches PE (i, j) i + j cycles after it enters and its weight is selected a cycle
        # before that; row i's beat came at least R - 1 - i cycles before the last, so with two
        # rows or more the extra stage costs no cycle. (A one-row array has no earlier row to
        # hide it: its beat is written as it is taken.) The enables (`w_write` and those travelling) have no reset:
        # what they carry at a reset leaves the row before a new beat's enables follow it, and
        # the banks' flags, which a reset clears, say which weights are loaded.
        onehot = Mux(w_take, load_at, 0)
        if R > 1:
            w_in = Signal.like(self.weights.payload, reset_less=True)
            w_write = Signal(2 * R, reset_less=True)
            m.d.sync += w_in.eq(self.weights.payload), w_write.eq(onehot)  # no load enable on w_in
        else:
            w_in, w_write = self.weights.payload, onehot
        with m.If(w_take):
            m.d.sync += load_at.eq(load_at.rotate_left(1))
        w_data = []                 # w_data[j]: column j's weight of the beat, delayed j cycles
        for j in range(C):
            value = w_in[j]
            for s in range(j):
                reg = Signal(signed(c.weight_bits), name=f"wdata{j}_{s}", reset_less=True)
                m.d.sync += reg.eq(value)
                value = reg
            w_data.append(value)
        for b in range(2):
            for i in range(R):
                enable = w_write[b * R + i]
                for j in range(C):
                    if j:
                        delayed = Signal(name=f"wen{b}_{i}_{j}", reset_less=True)
                        m.d.sync += delayed.eq(enable)
                        enable = delayed
                    with m.If(enable):
                        m.d.sync += w[b][i][j].eq(w_data[j])

        # -- admission: the array never stalls. An activation is taken only when the output
        # FIFO has room for the partial sums it will produce (a credit), so a stalled
        # `psums` stops the input, not the pipeline, and no enable fans out over the PEs.
        outstanding = Signal(range(depth + 1))  # taken activations whose psums are not yet read
        credit = Signal(init=1)                 # outstanding < depth, registered
        accept = Signal()
        m.d.comb += [
            self.acts.ready.eq(credit & comp_loaded),
            accept.eq(self.acts.valid & self.acts.ready),
        ]

        # Tags travel along the anti-diagonals: tag[d] belongs to the activation vector that
        # PEs with i + j == d are working on in this cycle (d >= D: in the multipliers' and the
        # bottom row's pipeline, then the de-skew).
        T = D + P + 1
        tag_valid = Signal(T, name="tag_valid")
        tag_last = Signal(T, name="tag_last", reset_less=True)     # read only where tag_valid is set
        tag_bank = Signal(D, name="tag_bank", reset_less=True)
        m.d.sync += [
            tag_valid.eq((tag_valid << 1) | accept),
            tag_last.eq((tag_last << 1) | self.acts.payload.last),
            tag_bank.eq((tag_bank << 1) | comp_bank),
        ]
        ps = self._ws_pes(m, platform, w, comp_bank)     # the bottom row's partial sums, registered

        started = Signal(2)
        comp_bank_next = Signal()
        m.d.comb += comp_bank_next.eq(comp_bank)
        with m.If(accept & self.acts.payload.last):
            m.d.comb += started.eq(Const(1, 2) << comp_bank), comp_bank_next.eq(~comp_bank)
        m.d.sync += comp_bank.eq(comp_bank_next)

        # A bank retires when its tile's last activation has passed the far corner PE's
        # weight select (into the multiplier's input register).
        corner = D - 1
        retire = Signal(2)
        with m.If(tag_valid[corner] & tag_last[corner]):
            m.d.comb += retire.eq(Const(1, 2) << tag_bank[corner])
        load_done = Signal(2)
        m.d.comb += load_done.eq(Mux(w_take, Cat(load_at[R - 1], load_at[2 * R - 1]), 0))
        loaded_next = Signal(2)
        inuse_next = Signal(2)
        load_bank_next = Signal()
        m.d.comb += [
            loaded_next.eq((loaded & ~started) | load_done),
            inuse_next.eq((inuse & ~retire) | started),
            load_bank_next.eq(load_bank ^ load_done.any()),       # (`load_bank` is `load_at`'s upper half set)
        ]
        m.d.sync += [
            load_bank.eq(load_bank_next),
            loaded.eq(loaded_next),
            comp_loaded.eq(loaded_next.bit_select(comp_bank_next, 1)),
            inuse.eq(inuse_next),
            w_free.eq(~(loaded_next | inuse_next).bit_select(load_bank_next, 1)),
        ]

        # -- de-skew: column j's sum for a vector leaves row R-1 at diagonal R-1+j (+ the
        # multiplier's stages); delay it C-1-j more cycles so a whole vector is written into
        # the FIFO together.
        # The rings keep the bottom row's bits per column (fewer than acc_bits); the sums are
        # sign-extended to acc_bits after the output register.
        columns = []
        for j in range(C):
            chain = ps[j]
            for s in range(C - 1 - j):
                reg = Signal(signed(len(chain)), name=f"dsk{j}_{s}", reset_less=True)
                m.d.sync += reg.eq(chain)
                chain = reg
            columns.append(chain)
        columns[0] = Cat(columns[0], tag_last[T - 1])     # the tile's `last` beside column 0's sums
        valid, fields = _credit_fifo(m, platform, depth, tag_valid[T - 2], columns, self.psums.ready)
        m.d.comb += [
            self.psums.valid.eq(valid),
            self.psums.payload.last.eq(fields[0][-1]),
            self.psums.payload.data[0].eq(fields[0][:-1].as_signed()),
        ]
        for j in range(1, C):
            m.d.comb += self.psums.payload.data[j].eq(fields[j].as_signed())
        # A read returns its credit a cycle later, from a register: `psums.ready`, which loads every
        # column's output register, does not also reach the count.
        read = Signal()
        m.d.sync += read.eq(self.psums.valid & self.psums.ready)
        count_credits(m, outstanding, credit, accept, read, depth)
        m.d.comb += self.busy.eq((outstanding != 0) | loaded.any() | inuse.any())
        return m

    def _ws_pes(self, m, platform, w, comp_bank):
        """The WS array's PEs: the activations skewed into the rows and passed right, each PE's
        weight selected from ``w`` (``w[b][i][j]``, bank ``b``) and multiplied, the partial sums
        added down the columns. Returns the bottom row's partial sums (registered), ``acc_bits``
        wide at most."""
        c = self._config
        R, C = c.rows, c.cols
        # Each activation carries its weight bank with it, so the bank select of a PE is a
        # local flip-flop beside the activation register, not a net across a diagonal. The bank
        # bits are kept registers (:func:`~mensa.hw.keep.kept_register`): each is a delay of
        # `comp_bank` like the diagonal's `tag_bank`, and synthesis would merge them into it.
        skew = [[Signal(signed(c.input_bits), name=f"askew{i}_{s}", reset_less=True) for s in range(i + 1)]
                for i in range(R)]
        a = [[skew[i][i]] + [Signal(signed(c.input_bits), name=f"a{i}_{j}", reset_less=True) for j in range(1, C)]
             for i in range(R)]
        # Partial sums leaving PE (i, j) (registered). Row i's sum of i + 1 products needs only
        # ceil(log2(i + 1)) bits beyond a product (never more than acc_bits, which wraps the
        # same way), so the carry chains are short; the bottom row's sums are extended at the end.
        pw = c.input_bits + c.weight_bits
        width = [min(c.acc_bits, pw + i.bit_length()) for i in range(R)]
        ps = [[Signal(signed(width[i]), name=f"ps{i}_{j}", reset_less=True) for j in range(C)] for i in range(R)]
        bank_skew = []                  # bank_skew[i][s]: the bank of askew{i}_{s}
        for i in range(R):
            m.d.sync += skew[i][0].eq(self.acts.payload.data[i])
            for s in range(1, i + 1):
                m.d.sync += skew[i][s].eq(skew[i][s - 1])
            for j in range(1, C):
                m.d.sync += a[i][j].eq(a[i][j - 1])
            bank_skew.append([])
            for s in range(i + 1):
                bank_skew[i].append(kept_register(m, platform, bank_skew[i][-1] if s else comp_bank, f"bskew{i}_{s}"))
            bank = [bank_skew[i][i]]    # bank[j]: the bank of a{i}_{j}
            for j in range(1, C):
                bank.append(kept_register(m, platform, bank[-1], f"bank{i}_{j}"))
            for j in range(C):
                # The weight is selected a cycle ahead, into a register of its own, by the bank
                # of the activation that reaches PE (i, j) next (the one a PE to the left, or
                # entering the row's skew), so the weight registers' route to the DSP block
                # and the bank mux are apart.
                if j:
                    bank_next = bank[j - 1]
                elif i:
                    bank_next = bank_skew[i][i - 1]
                else:
                    bank_next = comp_bank
                weight = Signal(signed(c.weight_bits), name=f"wsel{i}_{j}", reset_less=True)
                m.d.sync += weight.eq(Mux(bank_next, w[1][i][j], w[0][i][j]))
                act = a[i][j]
                product = registered_product(m, platform, act, weight, min(c.acc_bits, pw), f"mul{i}_{j}")
                above = ps[i - 1][j] if i else 0
                m.d.sync += ps[i][j].eq(above + product)
        return ps[R - 1]

    def _elaborate_os(self, platform):
        m = Module()
        c = self._config
        R, C = c.rows, c.cols
        D = R + C - 1
        P = MULT_STAGES

        # Inputs: row i of A is skewed by i, column j of B by j; PE (i, j) meets step k of the
        # tile i + j cycles after it entered and adds the product P cycles later. Tags follow
        # the anti-diagonals as in WS: tag[d + P] belongs to the products PEs with i + j == d add.
        pending = Signal(range(3))      # tiles whose last step has entered but not been fully read
        accept = Signal()
        is_last = self.operands.payload.last
        m.d.comb += [
            self.operands.ready.eq(~is_last | (pending == 0)),
            accept.eq(self.operands.valid & self.operands.ready),
        ]
        tag_valid = Signal(D + P)
        tag_last = Signal(D + P)
        m.d.sync += [
            tag_valid.eq((tag_valid << 1) | accept),
            tag_last.eq((tag_last << 1) | (accept & is_last)),
        ]
        # Operand and result registers have no reset (the tags say what is valid); the
        # accumulators do (a tile starts from zero).
        askew = [[Signal(signed(c.input_bits), name=f"askew{i}_{s}", reset_less=True) for s in range(i + 1)]
                 for i in range(R)]
        bskew = [[Signal(signed(c.weight_bits), name=f"bskew{j}_{s}", reset_less=True) for s in range(j + 1)]
                 for j in range(C)]
        for i in range(R):
            m.d.sync += askew[i][0].eq(self.operands.payload.a[i])
            for s in range(1, i + 1):
                m.d.sync += askew[i][s].eq(askew[i][s - 1])
        for j in range(C):
            m.d.sync += bskew[j][0].eq(self.operands.payload.b[j])
            for s in range(1, j + 1):
                m.d.sync += bskew[j][s].eq(bskew[j][s - 1])
        a = [[askew[i][i]] + [Signal(signed(c.input_bits), name=f"a{i}_{j}", reset_less=True) for j in range(1, C)]
             for i in range(R)]
        b = [[bskew[j][j]] + [Signal(signed(c.weight_bits), name=f"b{i}_{j}", reset_less=True) for i in range(1, R)]
             for j in range(C)]     # b[j][i]: the B operand at PE (i, j)
        for i in range(R):
            for j in range(1, C):
                m.d.sync += a[i][j].eq(a[i][j - 1])
        for j in range(C):
            for i in range(1, R):
                m.d.sync += b[j][i].eq(b[j][i - 1])

        acc = [[Signal(signed(c.acc_bits), name=f"acc{i}_{j}") for j in range(C)] for i in range(R)]
        res = [[Signal(signed(c.acc_bits), name=f"res{i}_{j}", reset_less=True) for j in range(C)] for i in range(R)]
        for i in range(R):
            for j in range(C):
                d = i + j + P
                product = registered_product(m, platform, a[i][j], b[j][i], c.input_bits + c.weight_bits, f"mul{i}_{j}")
                total = Signal(signed(c.acc_bits), name=f"sum{i}_{j}")
                m.d.comb += total.eq(acc[i][j] + product)
                with m.If(tag_valid[d]):
                    with m.If(tag_last[d]):
                        m.d.sync += res[i][j].eq(total), acc[i][j].eq(0)
                    with m.Else():
                        m.d.sync += acc[i][j].eq(total)

        # Row i's results are complete when the tile's last step has passed PE (i, C-1).
        ready_rows = Signal(R)
        captured = Signal(R)
        for i in range(R):
            m.d.comb += captured[i].eq(tag_valid[i + C - 1 + P] & tag_last[i + C - 1 + P])
        read_row = Signal(range(R))
        read = Signal()
        m.d.comb += [
            self.results.valid.eq(ready_rows.bit_select(read_row, 1)),
            self.results.payload.last.eq(read_row == R - 1),
            read.eq(self.results.valid & self.results.ready),
        ]
        with m.Switch(read_row):
            for i in range(R):
                with m.Case(i):
                    for j in range(C):
                        m.d.comb += self.results.payload.data[j].eq(res[i][j])
        cleared = Signal(R)
        with m.If(read):
            m.d.comb += cleared.eq(Const(1, R) << read_row)
            with m.If(read_row == R - 1):
                m.d.sync += read_row.eq(0)
            with m.Else():
                m.d.sync += read_row.eq(read_row + 1)
        m.d.sync += ready_rows.eq((ready_rows & ~cleared) | captured)
        done = Signal()
        m.d.comb += done.eq(read & (read_row == R - 1))
        with m.If(accept & is_last & ~done):
            m.d.sync += pending.eq(pending + 1)
        with m.Elif(done & ~(accept & is_last)):
            m.d.sync += pending.eq(pending - 1)
        m.d.comb += self.busy.eq(tag_valid.any() | ready_rows.any() | (pending != 0))
        return m
