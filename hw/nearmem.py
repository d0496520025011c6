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
    the unit runs the T steps of :func:`mensa.sim.golden.lstm` on its own. Hidden units
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

Memory image of one layer in each vault, from word ``base`` (:func:`fc_program`
writes it): for each group, :data:`HEADER_WORDS` header lane words (byte ``b`` of
each lane's int32 bias in word ``b``, byte ``b`` of its Q31 multiplier in word
``4 + b``, its shift in word 8), then K weight lane words; the whole padded to a
whole number of vault words. Every vector reads the image again from ``base``.

Outputs: int8, through a :class:`~mensa.hw.requant.Requantizer` behind the gather
(each group with its lanes' multipliers and shifts, the layer's output zero point and
clamp), out of ``outs``: bit for bit :func:`mensa.sim.golden.fully_connected`. With
``raw = 1`` the int32 accumulators (bias included, wrapping like a 32-bit adder:
:func:`mensa.sim.golden.fully_connected_acc` plus the bias) leave through ``accs`` instead.

The program side (:func:`compile_layer`, :func:`fc_program`, :func:`lstm_program`) turns a layer into a
descriptor, the vault images and the input vectors, and refuses with
:class:`NearMemLayerError` a layer the unit cannot run.
"""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.config import ConfigError, NearMemConfig, UserError
from mensa.hw.lstm import GATES, LstmCell
from mensa.hw.requant import ACC_BITS, SHIFT_BITS, Requantizer, acc_layout, out_layout

__all__ = [
    "NearMemoryUnit", "NearMemGeometry", "NearMemLayerError", "NearMemProgram",
    "HEADER_WORDS", "layer_layout",
    "fc_program", "lstm_program", "compile_layer",
]

HEADER_WORDS = 9    # lane words ahead of each group's weights: bias (4), multiplier (4), shift (1)
VECTOR_BITS = 16    # vectors per layer descriptor
_QUEUE_ENTRY_BYTES = 9  # per lane in the result queue: accumulator, multiplier, shift


class NearMemLayerError(UserError):
    """A layer the near-memory unit cannot run. One line: the layer, why, and what is allowed."""


@dataclass(frozen=True)
class NearMemGeometry:
    """The sizes a :class:`~mensa.hw.config.NearMemConfig` implies, shared by RTL and program.

    ``word_bytes`` bytes arrive per vault word; a lane word is ``lanes`` bytes. Either a
    vault word holds ``ratio`` lane words (``wide``) or a lane word takes ``ratio`` vault
    words. The local buffer of a vault holds ``banks`` input banks of ``max_in`` int8
    elements (two for x; with ``lstm`` also two for h and one for the projection's input)
    and a result queue for two vectors of ``max_groups`` groups: half and half, or with
    ``lstm`` five eighths and three eighths.
    """
    vaults: int
    lanes: int
    word_bytes: int
    wide: bool
    ratio: int
    vault_words: int
    max_in: int
    max_groups: int
    lstm: bool = False

    @classmethod
    def of(cls, config):
        if not isinstance(config, NearMemConfig):
            raise TypeError(f"config must be a NearMemConfig, not {config!r}")
        lanes, word_bytes = config.lanes, config.vault_bits // 8
        # ConfigError is a ValueError the CLI reports in one line.
        if word_bytes % lanes and lanes % word_bytes:
            raise ConfigError(f"nearmem.vault_bits: {config.vault_bits} ({word_bytes} bytes) and nearmem.lanes: "
                              f"{lanes} do not divide one another; allowed: lanes a divisor or a multiple "
                              f"of vault_bits / 8")
        local = config.local_kib * 1024
        if config.lstm:
            max_in = local // 8 // lanes * lanes
            max_groups = local * 3 // 8 // (2 * _QUEUE_ENTRY_BYTES * lanes)
            least = 8 * 2 * GATES * _QUEUE_ENTRY_BYTES * lanes / 3
        else:
            max_in = local // 4 // lanes * lanes
            max_groups = local // (4 * _QUEUE_ENTRY_BYTES * lanes)
            least = 4 * _QUEUE_ENTRY_BYTES * lanes
        if max_in < lanes or max_groups < (GATES if config.lstm else 1):
            raise ConfigError(f"nearmem.local_kib: {config.local_kib} is too small for {lanes} lanes"
                              f"{' with lstm' if config.lstm else ''}; allowed at least "
                              f"{-(-least // 1024):g}")
        wide = word_bytes >= lanes
        return cls(vaults=config.vaults, lanes=lanes, word_bytes=word_bytes, wide=wide,
                   ratio=word_bytes // lanes if wide else lanes // word_bytes,
                   vault_words=config.vault_kib * 1024 // word_bytes, max_in=max_in, max_groups=max_groups,
                   lstm=config.lstm)

    @property
    def in_words(self):
        """Input-buffer words (``lanes`` elements each) per bank."""
        return self.max_in // self.lanes

    @property
    def banks(self):
        """Input banks: x, x (ping-pong); with ``lstm`` also h, h (ping-pong) and m8."""
        return 5 if self.lstm else 2

    @property
    def max_blocks(self):
        """LSTM: blocks of ``lanes`` hidden units per time step at most (over all vaults)."""
        return self.vaults * max(1, self.max_groups // GATES)

    @property
    def max_words(self):
        """Vault words one vector (one LSTM time step) reads at most."""
        lane_words = self.max_groups * (HEADER_WORDS + self.max_in) * (3 if self.lstm else 1)
        return lane_words if self.wide else lane_words * self.ratio

    def _vault_words(self, lane_words):
        return _ceil_div(lane_words, self.ratio) if self.wide else lane_words * self.ratio

    def words(self, in_features, groups):
        """Vault words one vector of an FC layer reads."""
        return self._vault_words(groups * (HEADER_WORDS + in_features))

    def lstm_words(self, in_features, recurrent, groups, proj_in=0, proj_groups=0):
        """Vault words one LSTM time step reads: x and h phases of ``groups`` gate groups, the projection."""
        return self._vault_words(groups * (2 * HEADER_WORDS + in_features + recurrent)
                                 + proj_groups * (HEADER_WORDS + proj_in))


def layer_layout(geometry):
    """The layer descriptor: one beat on ``layer`` starts a layer."""
    g = geometry
    return data.StructLayout({
        "in_features": range(g.max_in + 1),       # K; LSTM: C
        "groups": range(g.max_groups + 1),        # groups of `lanes` channels per vault; LSTM: 4 x blocks
        "vectors": unsigned(VECTOR_BITS),         # M: vectors (batch rows, pixels); LSTM: time steps
        "base": range(g.vault_words),             # first vault word of the layer's image
        "words": range(g.max_words + 1),          # vault words per vector (time step)
        "x_zero_point": signed(8),
        "out_zero_point": signed(8),              # LSTM: h's zero point
        "qmin": signed(8),                        # clamp of the int8 outputs (ReLU, ReLU6)
        "qmax": signed(8),
        "raw": 1,                                 # 1: int32 accumulators out of `accs`
        "lstm": 1,                                # 1: an LSTM layer (needs config lstm)
        "recurrent": range(g.max_in + 1),         # LSTM: P, the length of h
        "proj_in": range(g.max_in + 1),           # LSTM: H, the projection's inputs
        "proj_groups": range(g.max_groups + 1),   # LSTM: projection groups per vault; 0: none
        "out_groups": range(g.max_groups + 1),    # output beats per vault and vector
        "hidden_multiplier": signed(ACC_BITS),    # LSTM: m -> h (or -> the projection's input)
        "hidden_shift": signed(SHIFT_BITS),
    })


class _Phase(enum.Enum, shape=2):
    """What a group multiplies: x (FC, LSTM gates' input half), h (gates' recurrent half), m8 (projection)."""
    X = 0
    H = 1
    PROJ = 2


class NearMemoryUnit(wiring.Component):
    """``vaults`` vaults of ``lanes`` int8 MAC lanes, fed by their own memory ports.

    Parameters
    ----------
    config : :class:`~mensa.hw.config.NearMemConfig`
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


# -- the program side: layer -> descriptor, vault images, input vectors ---------------------

@dataclass(frozen=True, eq=False)
class NearMemProgram:
    """One layer for a :class:`NearMemoryUnit`, as :func:`fc_program` or :func:`lstm_program` lays it out.

    Members
    -------
    geometry : :class:`NearMemGeometry`
    descriptor : dict
        Field values of :func:`layer_layout`.
    images : tuple of uint8 arrays
        Vault ``v``'s bytes from word ``descriptor["base"]``, a whole number of vault words.
    inputs : int8 array (M, K)
        The input vectors (LSTM: x_t, one per time step).
    out_channels : int
        N (LSTM: P); the unit emits ``vaults * out_groups * lanes`` channels per vector, the
        first N real.
    """
    geometry: NearMemGeometry
    descriptor: dict
    images: tuple
    inputs: np.ndarray
    out_channels: int

    @property
    def vectors(self):
        return self.descriptor["vectors"]

    @property
    def out_beats(self):
        """Output beats per vector."""
        return self.geometry.vaults * self.descriptor["out_groups"]

    @property
    def words(self):
        """Vault words each vault reads per vector (time step)."""
        return self.descriptor["words"]

    def descriptor_word(self):
        """The descriptor as the unsigned integer a ``layer`` beat carries."""
        return layer_layout(self.geometry).const(self.descriptor).as_value().value

    def input_beats(self):
        """The ``inputs`` beats of every vector, as unsigned integers (lane 0 in the low byte)."""
        L = self.geometry.lanes
        m, k = self.inputs.shape
        padded = np.zeros((m, _ceil_div(k, L) * L), dtype=np.int8)
        padded[:, :k] = self.inputs
        rows = padded.view(np.uint8).reshape(-1, L)
        return [int.from_bytes(row.tobytes(), "little") for row in rows]

    def outputs(self, beats):
        """(M, N) from the ``(M * out_beats, lanes)`` array of output lanes, in beat order."""
        beats = np.asarray(beats)
        return beats.reshape(self.vectors, -1)[:, :self.out_channels]


def _ceil_div(a, b):
    return -(-a // b)


def _per_channel(value, n, name, lo, hi):
    arr = np.broadcast_to(np.asarray(value if value is not None else 0, dtype=np.int64), (n,))
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name}: values must lie in {lo}..{hi}")
    return arr


def _groups(weights, width, lanes, *, bias=None, multiplier=0, shift=0, name=""):
    """The lane words of ``width // lanes`` groups: ``(groups, HEADER_WORDS + K, lanes)`` uint8.

    ``weights (K, n)``, zero-padded to ``width`` channels; header per channel: bias,
    multiplier, shift (scalars or per channel; checked for range).
    """
    k, n = weights.shape
    w = np.zeros((k, width), dtype=np.int8)
    w[:, :n] = weights
    header = np.zeros((HEADER_WORDS, width), dtype=np.uint8)
    planes = lambda v: np.asarray(v, dtype="<i4").view(np.uint8).reshape(-1, 4).T   # noqa: E731
    header[0:4, :n] = planes(_per_channel(bias, n, f"{name}bias", -(1 << 31), (1 << 31) - 1))
    header[4:8, :n] = planes(_per_channel(multiplier, n, f"{name}multiplier", 0, (1 << 31) - 1))
    header[8, :n] = _per_channel(shift, n, f"{name}shift", -32, 31).astype(np.int8).view(np.uint8)
    body = np.concatenate([header, w.view(np.uint8)])                # (9 + K, width)
    return body.reshape(HEADER_WORDS + k, width // lanes, lanes).transpose(1, 0, 2)


def _image(geometry, words, parts):
    """A vault's image: the lane words of ``parts`` in order, padded to ``words`` vault words."""
    lane_words = np.concatenate([p.reshape(-1) for p in parts])
    image = np.zeros(words * geometry.word_bytes, dtype=np.uint8)
    image[:lane_words.size] = lane_words
    return image


def fc_program(geometry, weights, x, *, bias=None, multiplier=0, shift=0, x_zero_point=0,
               out_zero_point=0, qmin=-128, qmax=127, raw=False, base=0, name="layer"):
    """Lay out ``x (M, K) @ weights (K, N) + bias`` for a :class:`NearMemoryUnit`.

    ``multiplier``, ``shift`` (per channel or scalar) requantise to int8 when ``raw`` is
    false (:func:`mensa.sim.golden.requantize`). Raises :class:`NearMemLayerError` if the
    layer does not fit the unit.
    """
    g = geometry
    weights = np.asarray(weights)
    x = np.asarray(x)
    if weights.ndim != 2 or x.ndim != 2 or x.shape[1] != weights.shape[0]:
        raise ValueError(f"fc_program: x {x.shape} and weights {weights.shape} do not chain")
    (m, k), n = x.shape, weights.shape[1]
    L, V = g.lanes, g.vaults

    def refuse(text):
        raise NearMemLayerError(f"layer {name!r}: {text}")
    if k > g.max_in:
        refuse(f"{k} input features do not fit the input buffer; allowed at most {g.max_in} "
               f"(local_kib / {8 if g.lstm else 4} per bank)")
    groups = _ceil_div(_ceil_div(n, V), L)         # groups of L channels per vault
    if groups > g.max_groups:
        refuse(f"{n} output channels need {groups} groups of {L} per vault; allowed at most "
               f"{g.max_groups} ({g.max_groups * L * V} channels)")
    if not 1 <= m < (1 << VECTOR_BITS):
        refuse(f"{m} vectors; allowed 1..{(1 << VECTOR_BITS) - 1}")
    words = g.words(k, groups)
    if base + words > g.vault_words:
        refuse(f"{words} words per vault from word {base} exceed the vault's {g.vault_words}")

    body = _groups(weights, V * groups * L, L, bias=bias, multiplier=multiplier, shift=shift)
    images = tuple(_image(g, words, [body[v * groups:(v + 1) * groups]]) for v in range(V))
    descriptor = {"in_features": k, "groups": groups, "vectors": m, "base": base, "words": words,
                  "x_zero_point": int(x_zero_point), "out_zero_point": int(out_zero_point),
                  "qmin": int(qmin), "qmax": int(qmax), "raw": int(bool(raw)),
                  "lstm": 0, "recurrent": 0, "proj_in": 0, "proj_groups": 0, "out_groups": groups,
                  "hidden_multiplier": 0, "hidden_shift": 0}
    return NearMemProgram(geometry=g, descriptor=descriptor, images=images,
                          inputs=x.astype(np.int8), out_channels=n)


def lstm_program(geometry, x, w, bias, *, x_zero_point, h_zero_point, input_multiplier, input_shift,
                 recurrent_multiplier, recurrent_shift, hidden_multiplier, hidden_shift,
                 projection_weights=None, projection_bias=None, projection_multiplier=None,
                 projection_shift=None, base=0, name="layer"):
    """Lay out one sequence of :func:`mensa.sim.golden.lstm` for a :class:`NearMemoryUnit`.

    ``x`` int8 (T, C); the other arguments as in :func:`mensa.sim.golden.lstm`. Hidden
    units are split over the vaults in blocks of ``lanes``: vault ``v`` holds the ``blocks``
    blocks from ``v * blocks``. Per time step each vault reads its image again: for each of
    its blocks the four gates' groups (i, f, g, o) over x (header: bias, input
    multiplier and shift), then the same groups over h (header: zero bias, recurrent
    multiplier and shift), then, with a projection, its ``proj_groups`` groups of
    projection channels over m8 (header: projection bias, multiplier, shift).
    Raises :class:`NearMemLayerError` if the layer does not fit the unit.
    """
    g = geometry
    L, V = g.lanes, g.vaults
    x = np.asarray(x)
    w = np.asarray(w)

    def refuse(text):
        raise NearMemLayerError(f"layer {name!r}: {text}")
    if not g.lstm:
        refuse("lstm needs the LSTM datapath; allowed: fc or pointwise conv on this unit, or a config "
               "with nearmem.lstm = true")
    if x.ndim != 2 or w.ndim != 2 or w.shape[1] % 4:
        raise ValueError(f"lstm_program: x {x.shape} (T, C) and w {w.shape} (C + P, 4H) expected")
    (steps, c), hidden = x.shape, w.shape[1] // 4
    proj = projection_weights is not None
    p = np.shape(projection_weights)[1] if proj else hidden
    if w.shape[0] != c + p:
        raise ValueError(f"lstm_program: weights {w.shape} do not match ({c} + {p}, 4 * {hidden})")
    for what, size in (("input", c), ("recurrent", p), ("hidden", hidden)):
        if size > g.max_in:
            refuse(f"{size} {what} features do not fit an input bank; allowed at most {g.max_in} "
                   f"(local_kib / 8 per bank)")
    blocks = _ceil_div(_ceil_div(hidden, V), L)        # blocks of L hidden units per vault
    groups = 4 * blocks
    if groups > g.max_groups:
        refuse(f"{hidden} hidden units need {groups} gate groups of {L} per vault; allowed at most "
               f"{g.max_groups} ({g.max_groups // 4 * L * V} hidden units)")
    proj_groups = _ceil_div(_ceil_div(p, V), L) if proj else 0
    if proj_groups > g.max_groups:
        refuse(f"{p} projection outputs need {proj_groups} groups of {L} per vault; allowed at most "
               f"{g.max_groups} ({g.max_groups * L * V} outputs)")
    if not 1 <= steps < (1 << VECTOR_BITS):
        refuse(f"{steps} time steps; allowed 1..{(1 << VECTOR_BITS) - 1}")
    if np.ndim(hidden_multiplier) or np.ndim(hidden_shift):
        raise ValueError("lstm_program: hidden_multiplier and hidden_shift are one value for the layer")
    words = g.lstm_words(c, p, groups, hidden if proj else 0, proj_groups)
    if base + words > g.vault_words:
        refuse(f"{words} words per vault from word {base} exceed the vault's {g.vault_words}")

    # Gate columns q * H + j -> blocks of L hidden units, four gate groups a block.
    width = V * blocks * L
    order = np.full((V * blocks, 4, L), -1)
    j = np.arange(width).reshape(V * blocks, 1, L)
    cols = np.arange(4).reshape(1, 4, 1) * hidden + j
    order[...] = np.where(j < hidden, cols, -1)
    order = order.reshape(-1)                           # group-major: block, gate, lane

    def gate_groups(rows, b, mult, sh):
        picked = np.zeros((rows.shape[0], order.size), dtype=np.int8)
        real = order >= 0
        picked[:, real] = rows[:, order[real]]
        def per(v):         # a per-gate-column value (or scalar) in group order; padding 0
            if v is None:
                return None
            return np.where(real, np.broadcast_to(np.asarray(v), (4 * hidden,))[np.maximum(order, 0)], 0)
        return _groups(picked, order.size, L, bias=per(b), multiplier=per(mult), shift=per(sh),
                       name="gate ")
    gx = gate_groups(w[:c], bias, input_multiplier, input_shift)
    gh = gate_groups(w[c:], None, recurrent_multiplier, recurrent_shift)
    pg = None
    if proj:
        pg = _groups(np.asarray(projection_weights), V * proj_groups * L, L, bias=projection_bias,
                     multiplier=projection_multiplier, shift=projection_shift, name="projection ")
    images = []
    for v in range(V):
        parts = [gx[v * groups:(v + 1) * groups], gh[v * groups:(v + 1) * groups]]
        if proj:
            parts.append(pg[v * proj_groups:(v + 1) * proj_groups])
        images.append(_image(g, words, parts))
    hm = int(hidden_multiplier)
    hs = int(hidden_shift)
    if not (0 <= hm < (1 << 31) and -32 <= hs <= 31):
        raise ValueError(f"hidden_multiplier {hm} / hidden_shift {hs} out of range (0..2**31-1, -32..31)")
    descriptor = {"in_features": c, "groups": groups, "vectors": steps, "base": base, "words": words,
                  "x_zero_point": int(x_zero_point), "out_zero_point": int(h_zero_point),
                  "qmin": -128, "qmax": 127, "raw": 0, "lstm": 1, "recurrent": p,
                  "proj_in": hidden if proj else 0, "proj_groups": proj_groups,
                  "out_groups": proj_groups if proj else blocks,
                  "hidden_multiplier": hm, "hidden_shift": hs}
    return NearMemProgram(geometry=g, descriptor=descriptor, images=tuple(images),
                          inputs=x.astype(np.int8), out_channels=p)


def compile_layer(geometry, layer, params, x, *, base=0):
    """A quantised layer on int8 input ``x`` -> :class:`NearMemProgram` with int8 outputs.

    The unit runs matrix-vector products: fully connected layers (``(N, C)`` or
    ``(N, T, C)`` inputs, one vector per row) and pointwise convolutions (1x1 kernel,
    stride 1, no padding, one group: one vector per pixel), with no activation or ReLU /
    ReLU6; and, with the LSTM datapath (``nearmem.lstm``), LSTM layers of one sequence
    (``(1, T, C)`` inputs). Anything else raises :class:`NearMemLayerError`.
    """
    from mensa.model.ir import Activation, Op
    from mensa.sim.golden import activation_range, check_layer

    check_layer(layer)

    def refuse(text):
        raise NearMemLayerError(f"layer {layer.name!r}: {text}")
    allowed = "allowed: fc, or conv2d with a 1x1 kernel, stride 1, no padding and groups 1"
    if geometry.lstm:
        allowed += ", or lstm"
    if layer.quant is None and layer.op in (Op.FC, Op.CONV2D, Op.LSTM):
        refuse("quant: missing; quantise the network first (mensa.sim.quant.quantize_network)")
    if layer.op is Op.LSTM:
        if not geometry.lstm:
            refuse("lstm cannot run on a near-memory unit without the LSTM datapath (nearmem.lstm = "
                   "false); allowed: fc, or conv2d with a 1x1 kernel, stride 1, no padding and groups 1")
        if layer.in_shape[0] != 1:
            refuse(f"lstm over a batch of {layer.in_shape[0]} sequences; allowed: one sequence (N = 1) "
                   f"per program, the state stays on chip between its time steps")
        if layer.activation is not Activation.NONE:
            refuse(f"activation {layer.activation.value} cannot be fused after an lstm; allowed: none")
        q = layer.quant
        x = np.asarray(x).reshape(layer.in_shape)[0]
        return lstm_program(geometry, x, params.weights, params.bias,
                            x_zero_point=q.inputs[0].zero_point, h_zero_point=q.output.zero_point,
                            input_multiplier=params.multiplier, input_shift=params.shift,
                            recurrent_multiplier=params.recurrent_multiplier,
                            recurrent_shift=params.recurrent_shift,
                            hidden_multiplier=params.hidden_multiplier, hidden_shift=params.hidden_shift,
                            projection_weights=params.projection_weights,
                            projection_bias=params.projection_bias,
                            projection_multiplier=params.projection_multiplier,
                            projection_shift=params.projection_shift, base=base, name=layer.name)
    if layer.op is Op.FC:
        weights = params.weights
    elif layer.op is Op.CONV2D:
        if layer.kernel != (1, 1):
            refuse(f"conv2d with a {layer.kernel[0]}x{layer.kernel[1]} kernel is not a matrix-vector "
                   f"product; the near-memory unit cannot run it; {allowed}")
        if layer.stride != (1, 1) or any(layer.padding) or layer.groups != 1:
            refuse(f"conv2d with stride {layer.stride}, padding {layer.padding}, groups {layer.groups} "
                   f"cannot run on the near-memory unit; {allowed}")
        weights = np.asarray(params.weights).reshape(layer.in_channels, layer.out_channels)
    else:
        refuse(f"op {layer.op.value} cannot run on the near-memory unit; {allowed}")
    if layer.activation not in (Activation.NONE, Activation.RELU, Activation.RELU6):
        refuse(f"activation {layer.activation.value} cannot be fused on the near-memory unit; "
               f"allowed: none, relu, relu6")
    q = layer.quant
    qmin, qmax = activation_range(layer.activation, q.output.scale, q.output.zero_point)
    x = np.asarray(x).reshape(-1, layer.in_channels)
    return fc_program(geometry, weights, x, bias=params.bias, multiplier=params.multiplier,
                      shift=params.shift, x_zero_point=q.inputs[0].zero_point,
                      out_zero_point=q.output.zero_point, qmin=qmin, qmax=qmax, base=base,
                      name=layer.name)
