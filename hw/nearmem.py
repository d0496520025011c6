"""The near-memory unit: matrix-vector products in the logic layer of 3D-stacked memory.

A :class:`NearMemoryUnit` has ``vaults`` vaults, each a :class:`~mensa.hw.vault.Vault`.
Each vault owns one memory read port (a request stream of word addresses and an
in-order response stream of ``vault_bits``-wide words: a vault of the stacked memory,
served by the testbench in simulation and by BRAM on an FPGA), ``lanes`` int8 MAC
lanes with int32 accumulators, and a copy of the input buffer.

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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.nearmem import VECTOR_BITS, NearMemGeometry
from mensa.hw.lstm import LstmCell
from mensa.hw.requant import Requantizer, acc_layout, out_layout
from mensa.hw.vault import Phase, Vault, group_quant_layout, lanes_layout, layer_layout

__all__ = ["NearMemoryUnit", "layer_layout"]


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
        vaults = [Vault(geometry=g) for _ in range(V)]

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
                m.d.sync += full[v].eq((full[v] & ~vaults[v].clear_full) | set_full)

        # h vectors (and the projection's inputs m8) complete so far: a vault's recurrent
        # phase of step t waits for h_{t-1}, its projection phase for m8_t.
        hsteps = Signal(VECTOR_BITS + 1)
        m8steps = Signal(VECTOR_BITS + 1)

        for v, vault in enumerate(vaults):
            m.submodules[f"vault{v}"] = vault
            wiring.connect(m, inbuf.read_port(transparent_for=(wr,)), vault.inbuf)
            wiring.connect(m, wiring.flipped(self.vault_req[v]), vault.req)
            wiring.connect(m, vault.resp, wiring.flipped(self.vault_resp[v]))
            m.d.comb += [
                vault.desc.eq(desc),
                vault.start.eq(start),
                vault.running.eq(running),
                vault.full.eq(full[v]),
                vault.hsteps.eq(hsteps),
                vault.m8steps.eq(m8steps),
            ]

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
            phase = Signal(Phase, name=f"{name}_phase")
            m.d.comb += phase.eq(Mux(sp, Phase.PROJ, Mux(gg >= G, Phase.H, Phase.X)))
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

        def gather(name, layout, streams):
            pop = Signal(name=f"{name}_pop")
            gv, phase, vec_last = walker(name, pop)
            head = Signal(layout, name=f"{name}_head")
            head_valid = Signal(name=f"{name}_valid")
            with m.Switch(gv):
                for v, s in enumerate(streams):
                    with m.Case(v):
                        m.d.comb += [head.eq(s.payload), head_valid.eq(s.valid)]
            for v, s in enumerate(streams):
                m.d.comb += s.ready.eq(pop & (gv == v))
            return head, head_valid & running, pop, vec_last, phase

        acc_head, acc_valid, acc_pop, acc_last, _ = gather("gather", lanes_layout(L), [v.accs for v in vaults])
        q_params, q_valid, q_pop, _, q_phase = gather("qgather", group_quant_layout(L), [v.quant for v in vaults])

        # One requantiser for every matrix-vector product: int8 outputs (FC, projection)
        # and the LSTM's int16 gate halves.
        rq = Requantizer(lanes=L, out_bits=16, passes=self._config.requant_passes)
        m.submodules.requantizer = rq
        gate_q = lstm & (q_phase != Phase.PROJ)
        m.d.comb += [
            self.accs.valid.eq(acc_valid & desc.raw),
            self.accs.payload.data.eq(acc_head),
            self.accs.payload.last.eq(acc_last),
            rq.accs.valid.eq(acc_valid & ~desc.raw),
            rq.accs.payload.data.eq(acc_head),
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
            # m -> h, or -> the projection's m8
            hq = Requantizer(lanes=L, out_bits=8, passes=self._config.requant_passes)
            m.submodules.cell = cell
            m.submodules.hidden_requantizer = hq
            is_proj = out_phase == Phase.PROJ
            proj_valid = Signal()
            proj_ready = Signal()
            hq_pushed = Signal()
            m.d.comb += [
                cell.start.eq(start),
                cell.blocks.eq(V * (G >> 2)),
                cell.gx.payload.eq(rq.outs.payload.data),
                cell.gh.payload.eq(rq.outs.payload.data),
                cell.gx.valid.eq(rq.outs.valid & lstm & (out_phase == Phase.X)),
                cell.gh.valid.eq(rq.outs.valid & lstm & (out_phase == Phase.H)),
                proj_valid.eq(rq.outs.valid & lstm & is_proj),
                rq.outs.ready.eq(Mux(~lstm, out_ready,
                                     Mux(is_proj, proj_ready,
                                         Mux(out_phase == Phase.X, cell.gx.ready, cell.gh.ready)))),
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
