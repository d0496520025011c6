"""The near-memory unit: matrix-vector products in the logic layer of 3D-stacked memory.

A :class:`NearMemoryUnit` has ``vaults`` vaults. Each vault owns one memory read
port (a request stream of word addresses and an in-order response stream of
``vault_bits``-wide words: a vault of the stacked memory, served by the testbench
in simulation and by BRAM on an FPGA), ``lanes`` int8 MAC lanes with int32
accumulators, and a copy of the input buffer.

Fully connected / matrix-vector (Jacquard-style: large parameters, low reuse)
    The weight matrix W (K x N) is split by output channel: vault ``v`` holds the
    ``groups * lanes`` contiguous channels from ``v * groups * lanes``. Each lane
    accumulates one output channel; the vault streams, per group of ``lanes``
    channels, a header (bias, requantisation multiplier and shift of each lane) and
    then one *lane word* per input element (W[k, group's channels], ``lanes`` bytes),
    straight from its memory port into the lanes, while the input element x[k] is
    read from the vault's input buffer and broadcast to its lanes. Nothing of the
    weights is buffered on the unit: at ``vault_bits / 8 == lanes`` every weight
    byte read is used in the cycle it arrives.
    The input vector is broadcast to all vaults once (``lanes`` elements a beat) into
    a ping-pong input buffer, so the next vector loads while the current one is
    computed. Finished groups wait in a per-vault result queue; the gather emits them
    in channel order (vault 0's groups, then vault 1's, ...), one group a beat.
Batches and pointwise convolution
    A batch of vectors (or the pixels of a 1x1 convolution, one matrix-vector product
    per pixel) runs as a sequence of vectors on the same datapath; every vector
    streams the weights again, so the vaults' bandwidth, not reuse, sets the speed.

LSTM (Pavlov-style; ``nearmem.lstm``)
    One time step is one "vector": the host sends the descriptor and x_0 .. x_{T-1}, and
    the unit runs the T steps of :func:`mensa.core.golden.lstm` on its own. Hidden units
    are split over the vaults in *blocks* of ``lanes``; per step each vault streams, for
    every block, the four gates' groups over x (bias and the input requantisation in the
    header), then the same groups over h_{t-1} (the recurrent requantisation), then, with
    a projection, its groups of projection channels over m8. The lanes and the gathers
    are the FC ones; the one requantiser makes the gate halves int16 Q3.12 (and the
    projection's outputs int8); a :class:`~mensa.hw.lstm.LstmCell` adds the halves, applies
    the tables, keeps the cell state and sends ``o * tanh(c)`` through a second requantiser
    (``hidden_multiplier``) to make h_t or m8. h_t and m8 are written back into the input
    buffer (h in two banks by step parity, so step t + 1 reads h_t while h_{t+1} is written),
    and h_t leaves through ``outs``. A vault's recurrent phase of step t waits until h_{t-1}
    is complete, its projection phase until m8_t is; its x phase of step t + 1 runs
    meanwhile, which hides the cell's latency when there is no projection.
    Steady state, one lane word a cycle: ``4 * blocks * (C + P + 18) + proj_groups * (H + 9)``
    cycles a step per vault.

The memory image, the descriptor's geometry and the program compiler are in
:mod:`mensa.contract.nearmem`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.nearmem import HEADER_WORDS, VECTOR_BITS, NearMemGeometry, descriptor_fields
from mensa.contract.numeric import ACC_BITS, SHIFT_BITS
from mensa.hw.lstm import LstmCell
from mensa.hw.requant import Requantizer, acc_layout, out_layout

__all__ = ["NearMemoryUnit", "layer_layout"]

def layer_layout(geometry):
    """The layer descriptor (:func:`~mensa.contract.nearmem.descriptor_fields`): one beat on ``layer`` starts a layer."""
    return data.StructLayout({name: signed(bits) if is_signed else unsigned(bits)
                              for name, bits, is_signed in descriptor_fields(geometry)})


class _Phase(enum.Enum, shape=2):
    """What a group multiplies: x (FC, LSTM gates' input half), h (gates' recurrent half), m8 (projection)."""
    X = 0
    H = 1
    PROJ = 2


class NearMemoryUnit(wiring.Component):
    """``vaults`` vaults of ``lanes`` int8 MAC lanes, fed by their own memory ports.

    Parameters
    ----------
    config : :class:`~mensa.core.config.NearMemConfig`
        Vaults, lanes, vault port width, vault capacity, local buffer size, LSTM datapath.

    Members
    -------
    layer : ``In(stream.Signature(layer_layout))``
        A layer descriptor; taken when the unit is idle.
    inputs : ``In(stream.Signature(ArrayLayout(signed(8), lanes)))``
        The input vectors, ``ceil(K / lanes)`` beats each, element ``k`` of a vector in
        lane ``k % lanes`` of beat ``k // lanes``; unused lanes of the last beat are ignored.
        LSTM: one vector x_t per time step.
    vault_req : ``Out(stream.Signature(range(vault_words))).array(vaults)``
        Read requests of each vault, one word address a beat.
    vault_resp : ``In(stream.Signature(vault_bits)).array(vaults)``
        The words read, in request order; may come any number of cycles later.
    accs : ``Out(stream.Signature(acc_layout(lanes)))``
        With ``raw``: per vector ``vaults * groups`` beats of ``lanes`` int32 accumulators
        (bias included), channels in order; ``last`` on each vector's final beat. Channels
        beyond the layer's are zero-weight padding.
    outs : ``Out(stream.Signature(out_layout(lanes, 8)))``
        Without ``raw``: the same beats requantised to int8. LSTM: h_t, ``vaults *
        out_groups`` beats per time step.
    busy : ``Out(1)``
        A layer is running.
    """

    def __init__(self, config):
        self._geometry = NearMemGeometry.of(config)
        self._config = config
        g = self._geometry
        super().__init__({
            "layer": In(stream.Signature(layer_layout(g))),
            "inputs": In(stream.Signature(data.ArrayLayout(signed(8), g.lanes))),
            "vault_req": Out(stream.Signature(range(g.vault_words))).array(g.vaults),
            "vault_resp": In(stream.Signature(config.vault_bits)).array(g.vaults),
            "accs": Out(stream.Signature(acc_layout(g.lanes))),
            "outs": Out(stream.Signature(out_layout(g.lanes, 8))),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def geometry(self):
        return self._geometry

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        V, L, IW = g.vaults, g.lanes, g.in_words

        # -- the layer descriptor, held while the layer runs -------------------------------
        desc = Signal(layer_layout(g))
        running = Signal()
        start = Signal()
        finish = Signal()
        m.d.comb += [
            self.layer.ready.eq(~running),
            start.eq(self.layer.valid & self.layer.ready),
            self.busy.eq(running),
        ]
        with m.If(start):
            m.d.sync += [desc.eq(self.layer.payload), running.eq(1)]
        with m.Elif(finish):
            m.d.sync += running.eq(0)
        K, G, M = desc.in_features, desc.groups, desc.vectors
        lstm = desc.lstm if g.lstm else Const(0)

        # -- the input buffer: one write port (the broadcast and, for an LSTM, h and m8),
        # one read port per vault. Banks: x, x, then h, h (step parity), m8 -----------------
        inbuf = memory.Memory(shape=data.ArrayLayout(signed(8), L), depth=g.banks * IW, init=[])
        m.submodules.inbuf = inbuf
        wr = inbuf.write_port()
        full = [Signal(2, name=f"full{v}") for v in range(V)]   # bank holds a vector for vault v
        set_full = Signal(2)
        clear_full = [Signal(2, name=f"clear_full{v}") for v in range(V)]

        # LSTM state write-back (h_t or m8 words) takes the write port before the inputs.
        wb_valid = Signal()
        wb_fire = Signal()
        wb_addr = Signal.like(wr.addr)
        wb_data = Signal.like(wr.data)
        wb_in_bank = Signal()       # padding words beyond a bank are not written

        lword = Signal(range(IW))
        lk = Signal(range(g.max_in + L))        # first element of the beat
        lbank = Signal()
        lvec = Signal(VECTOR_BITS)
        bank_free = Signal()
        m.d.comb += bank_free.eq(~Cat(*(f.bit_select(lbank, 1) for f in full)).any())
        m.d.comb += self.inputs.ready.eq(running & (lvec != M) & bank_free & ~wb_valid)
        load = self.inputs.valid & self.inputs.ready
        m.d.comb += [
            wr.addr.eq(Mux(wb_valid, wb_addr, lbank * IW + lword)),
            wr.data.eq(Mux(wb_valid, wb_data, self.inputs.payload)),
            wr.en.eq(load | wb_fire & wb_in_bank),
        ]
        with m.If(load):
            with m.If(lk + L >= K):
                m.d.sync += [lword.eq(0), lk.eq(0), lbank.eq(~lbank), lvec.eq(lvec + 1)]
                m.d.comb += set_full.eq(Const(1, 2) << lbank)
            with m.Else():
                m.d.sync += [lword.eq(lword + 1), lk.eq(lk + L)]
        with m.If(start):
            m.d.sync += [lword.eq(0), lk.eq(0), lbank.eq(0), lvec.eq(0)]
        for v in range(V):
            with m.If(start):
                m.d.sync += full[v].eq(0)
            with m.Else():
                m.d.sync += full[v].eq((full[v] & ~clear_full[v]) | set_full)

        # h vectors (and the projection's inputs m8) complete so far: a vault's recurrent
        # phase of step t waits for h_{t-1}, its projection phase for m8_t.
        hsteps = Signal(VECTOR_BITS + 1)
        m8steps = Signal(VECTOR_BITS + 1)

        queues = [self._vault(m, v, desc, lstm, running, start, inbuf, wr, full[v], clear_full[v],
                              hsteps, m8steps)
                  for v in range(V)]

        # -- the gathers walk, per vector (time step): the gate groups (x, and for an LSTM
        # h) of vault 0, vault 1, ..., then the projection groups of vault 0, vault 1, ...
        # One walks the accumulators, one the requantisation parameters (it may run ahead),
        # one the requantised beats, to route them -------------------------------------------
        def walker(name, advance):
            sp = Signal(name=f"{name}_proj")             # in the projection groups
            gv = Signal(range(V), name=f"{name}_vault")
            gg = Signal(range(2 * g.max_groups), name=f"{name}_group")
            groups = Mux(sp, desc.proj_groups, Mux(lstm, 2 * G, G))
            group_last = gg == groups - 1
            sp_last = sp | (desc.proj_groups == 0)
            phase = Signal(_Phase, name=f"{name}_phase")
            m.d.comb += phase.eq(Mux(sp, _Phase.PROJ, Mux(gg >= G, _Phase.H, _Phase.X)))
            with m.If(advance):
                with m.If(group_last):
                    m.d.sync += gg.eq(0)
                    with m.If(gv == V - 1):
                        m.d.sync += [gv.eq(0), sp.eq(~sp_last)]
                    with m.Else():
                        m.d.sync += gv.eq(gv + 1)
                with m.Else():
                    m.d.sync += gg.eq(gg + 1)
            with m.If(start):
                m.d.sync += [gv.eq(0), gg.eq(0), sp.eq(0)]
            return gv, phase, sp_last & (gv == V - 1) & group_last

        def gather(name, width, index):
            pop = Signal(name=f"{name}_pop")
            gv, phase, vec_last = walker(name, pop)
            head = Signal(width, name=f"{name}_head")
            head_valid = Signal(name=f"{name}_valid")
            with m.Switch(gv):
                for v, qs in enumerate(queues):
                    with m.Case(v):
                        m.d.comb += [head.eq(qs[index].r_data), head_valid.eq(qs[index].r_rdy)]
            for v, qs in enumerate(queues):
                m.d.comb += qs[index].r_en.eq(pop & (gv == v))
            return head, head_valid & running, pop, vec_last, phase

        acc_head, acc_valid, acc_pop, acc_last, _ = gather("gather", L * ACC_BITS, 0)
        q_head, q_valid, q_pop, _, q_phase = gather("qgather", L * (ACC_BITS + SHIFT_BITS), 1)

        # One requantiser for every matrix-vector product: int8 outputs (FC, projection)
        # and the LSTM's int16 gate halves.
        rq = Requantizer(lanes=L, out_bits=16)
        m.submodules.requantizer = rq
        q_params = data.View(data.StructLayout({"multiplier": data.ArrayLayout(signed(ACC_BITS), L),
                                                "shift": data.ArrayLayout(signed(SHIFT_BITS), L)}), q_head)
        gate_q = lstm & (q_phase != _Phase.PROJ)
        m.d.comb += [
            self.accs.valid.eq(acc_valid & desc.raw),
            self.accs.payload.data.as_value().eq(acc_head),
            self.accs.payload.last.eq(acc_last),
            rq.accs.valid.eq(acc_valid & ~desc.raw),
            rq.accs.payload.data.as_value().eq(acc_head),
            rq.accs.payload.last.eq(1),         # every group has its own parameters
            acc_pop.eq(Mux(desc.raw, self.accs.ready, rq.accs.ready) & acc_valid),
            rq.quant.valid.eq(q_valid & ~desc.raw),
            rq.quant.payload.multiplier.eq(q_params.multiplier),
            rq.quant.payload.shift.eq(q_params.shift),
            # LSTM gate halves: int16 Q3.12, zero point 0; else the int8 output's.
            rq.quant.payload.zero_point.eq(Mux(gate_q, 0, desc.out_zero_point)),
            rq.quant.payload.qmin.eq(Mux(gate_q, -32768, Mux(lstm, -128, desc.qmin))),
            rq.quant.payload.qmax.eq(Mux(gate_q, 32767, Mux(lstm, 127, desc.qmax))),
            q_pop.eq(rq.quant.valid & rq.quant.ready),
        ]
        for l in range(L):
            m.d.comb += rq.quant.payload.bias[l].eq(0)      # the accumulators start at the bias

        # -- where a requantised beat goes: out (FC), the cell (gate halves), h (projection)
        int8 = data.ArrayLayout(signed(8), L)
        rq_int8 = Signal(int8)
        for l in range(L):
            m.d.comb += rq_int8[l].eq(rq.outs.payload.data[l][:8])
        route = Signal()
        _, out_phase, _ = walker("route", route)
        m.d.comb += route.eq(rq.outs.valid & rq.outs.ready)

        out_valid = Signal()
        out_data = Signal(int8)
        out_ready = Signal()
        if g.lstm:
            cell = LstmCell(lanes=L, max_blocks=g.max_blocks, queue=g.max_groups)
            hq = Requantizer(lanes=L, out_bits=8)           # m -> h, or -> the projection's m8
            m.submodules.cell = cell
            m.submodules.hidden_requantizer = hq
            is_proj = out_phase == _Phase.PROJ
            proj_valid = Signal()
            proj_ready = Signal()
            hq_pushed = Signal()
            m.d.comb += [
                cell.start.eq(start),
                cell.blocks.eq(V * (G >> 2)),
                cell.gx.payload.eq(rq.outs.payload.data),
                cell.gh.payload.eq(rq.outs.payload.data),
                cell.gx.valid.eq(rq.outs.valid & lstm & (out_phase == _Phase.X)),
                cell.gh.valid.eq(rq.outs.valid & lstm & (out_phase == _Phase.H)),
                proj_valid.eq(rq.outs.valid & lstm & is_proj),
                rq.outs.ready.eq(Mux(~lstm, out_ready,
                                     Mux(is_proj, proj_ready,
                                         Mux(out_phase == _Phase.X, cell.gx.ready, cell.gh.ready)))),
                hq.accs.valid.eq(cell.m.valid),
                hq.accs.payload.eq(cell.m.payload),
                cell.m.ready.eq(hq.accs.ready),
                # one parameter beat ahead of each m beat: none is left over for the next layer
                hq.quant.valid.eq(cell.m.valid & ~hq_pushed),
                hq.quant.payload.zero_point.eq(Mux(desc.proj_groups == 0, desc.out_zero_point, 0)),
                hq.quant.payload.qmin.eq(-128),
                hq.quant.payload.qmax.eq(127),
            ]
            with m.If(hq.quant.valid & hq.quant.ready):
                m.d.sync += hq_pushed.eq(1)
            with m.If(cell.m.valid & cell.m.ready):
                m.d.sync += hq_pushed.eq(0)
            for l in range(L):
                m.d.comb += [hq.quant.payload.bias[l].eq(0),
                             hq.quant.payload.multiplier[l].eq(desc.hidden_multiplier),
                             hq.quant.payload.shift[l].eq(desc.hidden_shift)]

            # The write-back: h_t (into the h bank of its step's parity, and out) from the
            # hidden requantiser or, with a projection, from the projection's groups; m8
            # (into the m8 bank) from the hidden requantiser. The hidden requantiser first.
            from_hq = hq.outs.valid
            wb_is_h = Signal()
            hw = Signal(range(g.max_blocks + V * g.max_groups), name="h_word")
            m8w = Signal(range(g.max_blocks + 1), name="m8_word")
            h_last = Signal()
            m8_last = Signal()
            m.d.comb += [
                wb_valid.eq(from_hq | proj_valid),
                wb_is_h.eq(~from_hq | (desc.proj_groups == 0)),
                wb_data.eq(Mux(from_hq, hq.outs.payload.data, rq_int8)),
                wb_addr.eq(Mux(wb_is_h, (2 + hsteps[0]) * IW + hw, 4 * IW + m8w)),
                wb_in_bank.eq(Mux(wb_is_h, hw < IW, m8w < IW)),
                hq.outs.ready.eq(~wb_is_h | out_ready),
                proj_ready.eq(~from_hq & out_ready),
                wb_fire.eq(wb_valid & (~wb_is_h | out_ready)),
                out_valid.eq(Mux(lstm, wb_valid & wb_is_h, rq.outs.valid)),
                out_data.eq(Mux(lstm, wb_data, rq_int8)),
                h_last.eq(hw == V * desc.out_groups - 1),
                m8_last.eq(m8w == V * (G >> 2) - 1),
            ]
            with m.If(wb_fire & wb_is_h):
                m.d.sync += hw.eq(Mux(h_last, 0, hw + 1))
                with m.If(h_last):
                    m.d.sync += hsteps.eq(hsteps + 1)
            with m.If(wb_fire & ~wb_is_h):
                m.d.sync += m8w.eq(Mux(m8_last, 0, m8w + 1))
                with m.If(m8_last):
                    m.d.sync += m8steps.eq(m8steps + 1)
            with m.If(start):
                m.d.sync += [hw.eq(0), m8w.eq(0), hsteps.eq(0), m8steps.eq(0)]
        else:
            m.d.comb += [
                rq.outs.ready.eq(out_ready),
                out_valid.eq(rq.outs.valid),
                out_data.eq(rq_int8),
            ]

        # -- the int8 outputs; `last` closes each vector (time step) ----------------------
        obeat = Signal(range(V * g.max_groups), name="out_beat")
        ovec = Signal(VECTOR_BITS, name="out_vector")
        out_last = Signal()
        m.d.comb += [
            out_last.eq(obeat == V * desc.out_groups - 1),
            self.outs.valid.eq(out_valid),
            self.outs.payload.data.eq(out_data),
            self.outs.payload.last.eq(out_last),
            out_ready.eq(self.outs.ready),
        ]
        with m.If(self.outs.valid & self.outs.ready):
            m.d.sync += obeat.eq(Mux(out_last, 0, obeat + 1))
            with m.If(out_last):
                m.d.sync += ovec.eq(ovec + 1)
        with m.If(start):
            m.d.sync += [obeat.eq(0), ovec.eq(0)]

        # The layer ends with its last output: an accumulator beat (raw) or an int8 beat.
        gvec = Signal(VECTOR_BITS, name="gather_vector")
        with m.If(acc_pop & acc_last):
            m.d.sync += gvec.eq(gvec + 1)
        with m.If(start):
            m.d.sync += gvec.eq(0)
        m.d.comb += finish.eq(Mux(desc.raw, acc_pop & acc_last & (gvec == M - 1),
                                  self.outs.valid & self.outs.ready & out_last & (ovec == M - 1)))
        return m

    def _vault(self, m, v, desc, lstm, running, start, inbuf, wr, full, clear_full, hsteps, m8steps):
        """One vault: request generator, word-to-lane-word converter, lanes; returns its result queue."""
        g = self._geometry
        L, H, B, IW = g.lanes, HEADER_WORDS, g.word_bytes, g.in_words
        G, M = desc.groups, desc.vectors
        req, resp = self.vault_req[v], self.vault_resp[v]

        # -- requests: words base .. base + words - 1, once per vector ---------------------
        rw = Signal(range(g.max_words + 1), name=f"v{v}_rw")
        rvec = Signal(VECTOR_BITS, name=f"v{v}_rvec")
        m.d.comb += [
            req.valid.eq(running & (rvec != M)),
            req.payload.eq(desc.base + rw),
        ]
        with m.If(req.valid & req.ready):
            with m.If(rw == desc.words - 1):
                m.d.sync += [rw.eq(0), rvec.eq(rvec + 1)]
            with m.Else():
                m.d.sync += rw.eq(rw + 1)
        with m.If(start):
            m.d.sync += [rw.eq(0), rvec.eq(0)]

        # -- the lane datapath's state -----------------------------------------------------
        vbank = Signal(name=f"v{v}_bank")
        vvec = Signal(VECTOR_BITS, name=f"v{v}_vec")
        phase = Signal(_Phase, name=f"v{v}_phase")
        vg = Signal(range(g.max_groups), name=f"v{v}_group")
        hdr = Signal(range(H + 1), name=f"v{v}_hdr")      # header word; H: weights
        k = Signal(range(g.max_in), name=f"v{v}_k")
        kw = Signal(range(IW), name=f"v{v}_kw")
        kl = Signal(range(L), name=f"v{v}_kl")
        in_header = Signal(name=f"v{v}_in_header")
        k_last = Signal(name=f"v{v}_k_last")
        group_last = Signal(name=f"v{v}_group_last")
        phase_last = Signal(name=f"v{v}_phase_last")
        next_phase = Signal(_Phase, name=f"v{v}_next_phase")
        inputs_ready = Signal(name=f"v{v}_inputs_ready")
        with m.Switch(phase):
            with m.Case(_Phase.X):
                m.d.comb += [k_last.eq(k == desc.in_features - 1), group_last.eq(vg == G - 1),
                             phase_last.eq(~lstm), next_phase.eq(_Phase.H),
                             inputs_ready.eq(full.bit_select(vbank, 1))]
            with m.Case(_Phase.H):
                m.d.comb += [k_last.eq(k == desc.recurrent - 1), group_last.eq(vg == G - 1),
                             phase_last.eq(desc.proj_groups == 0), next_phase.eq(_Phase.PROJ),
                             inputs_ready.eq(hsteps >= vvec if g.lstm else 0)]
            with m.Default():
                m.d.comb += [k_last.eq(k == desc.proj_in - 1), group_last.eq(vg == desc.proj_groups - 1),
                             phase_last.eq(1), next_phase.eq(_Phase.X),
                             inputs_ready.eq(m8steps > vvec if g.lstm else 0)]     # (a unit without the LSTM never gets here)
        m.d.comb += in_header.eq(hdr != H)

        lw = Signal(data.ArrayLayout(signed(8), L), name=f"v{v}_lane_word")
        lw_valid = Signal(name=f"v{v}_lane_word_valid")
        consume = Signal(name=f"v{v}_consume")
        vec_end = Signal(name=f"v{v}_vec_end")

        # -- vault words -> lane words -----------------------------------------------------
        if g.wide:
            word = Signal(B * 8, name=f"v{v}_word")
            held = Signal(name=f"v{v}_held")
            idx = Signal(range(max(g.ratio, 2)), name=f"v{v}_idx")   # no zero-width wire when ratio == 1
            release = Signal(name=f"v{v}_release")
            # A vector's image ends on a whole vault word: its last lane word frees the word.
            m.d.comb += [
                lw_valid.eq(held),
                lw.as_value().eq(word.word_select(idx, L * 8)),
                release.eq(consume & ((idx == g.ratio - 1) | vec_end)),
                resp.ready.eq(~held | release),
            ]
            with m.If(resp.valid & resp.ready):
                m.d.sync += [word.eq(resp.payload), held.eq(1), idx.eq(0)]
            with m.Elif(release):
                m.d.sync += [held.eq(0), idx.eq(0)]
            with m.Elif(consume):
                m.d.sync += idx.eq(idx + 1)
            with m.If(start):
                m.d.sync += [held.eq(0), idx.eq(0)]
        else:
            shreg = Signal(L * 8, name=f"v{v}_shreg")
            count = Signal(range(g.ratio + 1), name=f"v{v}_count")
            m.d.comb += [
                lw_valid.eq(count == g.ratio),
                lw.as_value().eq(shreg),
                resp.ready.eq((count != g.ratio) | consume),
            ]
            with m.If(resp.valid & resp.ready):
                m.d.sync += [shreg.eq(Cat(shreg[B * 8:], resp.payload)), count.eq(count + 1)]
                with m.If(consume):
                    m.d.sync += count.eq(1)
            with m.Elif(consume):
                m.d.sync += count.eq(0)
            with m.If(start):
                m.d.sync += count.eq(0)

        # -- result queues: the accumulators, and each group's requantisation parameters --
        depth = 2 * g.max_groups
        accq = fifo.SyncFIFOBuffered(width=L * ACC_BITS, depth=depth)
        quantq = fifo.SyncFIFOBuffered(width=L * (ACC_BITS + SHIFT_BITS), depth=depth)
        m.submodules[f"acc_queue{v}"] = accq
        m.submodules[f"quant_queue{v}"] = quantq

        # -- the lanes ---------------------------------------------------------------------
        rd = inbuf.read_port(transparent_for=(wr,))
        acc = [Signal(signed(ACC_BITS), name=f"v{v}_acc{l}") for l in range(L)]
        mult = [Signal(signed(ACC_BITS), name=f"v{v}_mult{l}") for l in range(L)]
        shift = [Signal(signed(SHIFT_BITS), name=f"v{v}_shift{l}") for l in range(L)]
        x = Signal(signed(9), name=f"v{v}_x")
        with m.Switch(phase):
            with m.Case(_Phase.X):
                m.d.comb += x.eq(rd.data[kl] - desc.x_zero_point)
            with m.Case(_Phase.H):       # h_{-1} is the zero point: no contribution at step 0
                m.d.comb += x.eq(Mux(vvec == 0, 0, rd.data[kl] - desc.out_zero_point))
            with m.Default():            # m8 has zero point 0
                m.d.comb += x.eq(rd.data[kl])
        sums = [Signal(signed(ACC_BITS), name=f"v{v}_sum{l}") for l in range(L)]
        for l in range(L):
            m.d.comb += sums[l].eq(acc[l] + x * lw[l])

        group_end = ~in_header & k_last
        m.d.comb += [
            consume.eq(running & (vvec != M) & inputs_ready & lw_valid
                       & (~group_end | accq.w_rdy & (desc.raw | quantq.w_rdy))),
            vec_end.eq(consume & group_end & group_last & phase_last),
            accq.w_en.eq(consume & group_end),
            accq.w_data.eq(Cat(*sums)),
            quantq.w_en.eq(consume & group_end & ~desc.raw),
            quantq.w_data.eq(Cat(*mult, *shift)),
        ]
        with m.If(consume):
            with m.If(in_header):
                m.d.sync += hdr.eq(hdr + 1)
                for l in range(L):
                    byte = lw[l].as_unsigned()
                    with m.If(hdr < 4):
                        m.d.sync += acc[l].eq(Cat(acc[l][8:], byte))
                    with m.Elif(hdr < 8):
                        m.d.sync += mult[l].eq(Cat(mult[l][8:], byte))
                    with m.Else():
                        m.d.sync += shift[l].eq(lw[l][:SHIFT_BITS])
            with m.Else():
                for l in range(L):
                    m.d.sync += acc[l].eq(sums[l])
                with m.If(k_last):
                    m.d.sync += [k.eq(0), kw.eq(0), kl.eq(0), hdr.eq(0)]
                    with m.If(group_last):
                        m.d.sync += [vg.eq(0), phase.eq(Mux(phase_last, _Phase.X, next_phase))]
                    with m.Else():
                        m.d.sync += vg.eq(vg + 1)
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    with m.If(kl == L - 1):
                        m.d.sync += [kl.eq(0), kw.eq(kw + 1)]
                    with m.Else():
                        m.d.sync += kl.eq(kl + 1)
        with m.If(vec_end):
            m.d.sync += [vbank.eq(~vbank), vvec.eq(vvec + 1)]
            m.d.comb += clear_full.eq(Const(1, 2) << vbank)
        with m.If(start):
            m.d.sync += [vbank.eq(0), vvec.eq(0), vg.eq(0), hdr.eq(0), k.eq(0), kw.eq(0), kl.eq(0),
                         phase.eq(_Phase.X)]

        # The read port is addressed with next cycle's (bank, word), so x[k] is ready in
        # the cycle its weights arrive. h_{t-1} is in h bank (t - 1) % 2.
        kw_next = Signal.like(kw, name=f"v{v}_kw_next")
        bank_next = Signal(name=f"v{v}_bank_next")
        parity_next = Signal(name=f"v{v}_parity_next")
        phase_next = Signal(_Phase, name=f"v{v}_phase_next")
        m.d.comb += [kw_next.eq(kw), bank_next.eq(vbank), parity_next.eq(vvec[0]), phase_next.eq(phase)]
        with m.If(consume & ~in_header):
            with m.If(k_last):
                m.d.comb += kw_next.eq(0)
                with m.If(group_last):
                    m.d.comb += phase_next.eq(Mux(phase_last, _Phase.X, next_phase))
            with m.Elif(kl == L - 1):
                m.d.comb += kw_next.eq(kw + 1)
        with m.If(vec_end):
            m.d.comb += [bank_next.eq(~vbank), parity_next.eq(~vvec[0])]
        with m.Switch(phase_next):
            with m.Case(_Phase.X):
                m.d.comb += rd.addr.eq(bank_next * IW + kw_next)
            with m.Case(_Phase.H):
                m.d.comb += rd.addr.eq((2 + ~parity_next) * IW + kw_next)
            with m.Default():
                m.d.comb += rd.addr.eq(4 * IW + kw_next)
        return accq, quantq
