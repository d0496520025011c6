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

The program side (:func:`compile_layer`, :func:`fc_program`) turns a layer into a
descriptor, the vault images and the input vectors, and refuses with
:class:`NearMemLayerError` a layer the unit cannot run.
"""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.config import ConfigError, NearMemConfig, UserError
from mensa.hw.requant import ACC_BITS, SHIFT_BITS, Requantizer, acc_layout, out_layout

__all__ = [
    "NearMemoryUnit", "NearMemGeometry", "NearMemLayerError", "NearMemProgram",
    "HEADER_WORDS", "layer_layout",
    "fc_program", "compile_layer",
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
    words. The local buffer of a vault is split in half: two input banks of ``max_in``
    int8 elements, and a result queue for two vectors of ``max_groups`` groups.
    """
    vaults: int
    lanes: int
    word_bytes: int
    wide: bool
    ratio: int
    vault_words: int
    max_in: int
    max_groups: int

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
        max_in = local // 4 // lanes * lanes
        max_groups = local // (4 * _QUEUE_ENTRY_BYTES * lanes)
        if max_in < lanes or max_groups < 1:
            raise ConfigError(f"nearmem.local_kib: {config.local_kib} is too small for {lanes} lanes; "
                              f"allowed at least {4 * _QUEUE_ENTRY_BYTES * lanes / 1024:g}")
        wide = word_bytes >= lanes
        return cls(vaults=config.vaults, lanes=lanes, word_bytes=word_bytes, wide=wide,
                   ratio=word_bytes // lanes if wide else lanes // word_bytes,
                   vault_words=config.vault_kib * 1024 // word_bytes, max_in=max_in, max_groups=max_groups)

    @property
    def in_words(self):
        """Input-buffer words (``lanes`` elements each) per bank."""
        return self.max_in // self.lanes

    @property
    def max_words(self):
        """Vault words one vector reads at most."""
        lane_words = self.max_groups * (HEADER_WORDS + self.max_in)
        return lane_words if self.wide else lane_words * self.ratio

    def words(self, in_features, groups):
        """Vault words one vector of a layer reads."""
        lane_words = groups * (HEADER_WORDS + in_features)
        return _ceil_div(lane_words, self.ratio) if self.wide else lane_words * self.ratio


def layer_layout(geometry):
    """The layer descriptor: one beat on ``layer`` starts a layer."""
    g = geometry
    return data.StructLayout({
        "in_features": range(g.max_in + 1),       # K
        "groups": range(g.max_groups + 1),        # groups of `lanes` channels per vault
        "vectors": unsigned(VECTOR_BITS),         # M: vectors (batch rows, pixels)
        "base": range(g.vault_words),             # first vault word of the layer's image
        "x_zero_point": signed(8),
        "out_zero_point": signed(8),
        "qmin": signed(8),                        # clamp of the int8 outputs (ReLU, ReLU6)
        "qmax": signed(8),
        "raw": 1,                                 # 1: int32 accumulators out of `accs`
    })


class NearMemoryUnit(wiring.Component):
    """``vaults`` vaults of ``lanes`` int8 MAC lanes, fed by their own memory ports.

    Parameters
    ----------
    config : :class:`~mensa.hw.config.NearMemConfig`
        Vaults, lanes, vault port width, vault capacity and local buffer size.

    Members
    -------
    layer : ``In(stream.Signature(layer_layout))``
        A layer descriptor; taken when the unit is idle.
    inputs : ``In(stream.Signature(ArrayLayout(signed(8), lanes)))``
        The input vectors, ``ceil(K / lanes)`` beats each, element ``k`` of a vector in
        lane ``k % lanes`` of beat ``k // lanes``; unused lanes of the last beat are ignored.
    vault_req : ``Out(stream.Signature(range(vault_words))).array(vaults)``
        Read requests of each vault, one word address a beat.
    vault_resp : ``In(stream.Signature(vault_bits)).array(vaults)``
        The words read, in request order; may come any number of cycles later.
    accs : ``Out(stream.Signature(acc_layout(lanes)))``
        With ``raw``: per vector ``vaults * groups`` beats of ``lanes`` int32 accumulators
        (bias included), channels in order; ``last`` on each vector's final beat. Channels
        beyond the layer's are zero-weight padding.
    outs : ``Out(stream.Signature(out_layout(lanes, 8)))``
        Without ``raw``: the same beats requantised to int8.
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
        V, L, H = g.vaults, g.lanes, HEADER_WORDS

        # -- the layer descriptor, held while the layer runs -------------------------------
        desc = Signal(layer_layout(g))
        words = Signal(range(g.max_words + 1))
        running = Signal()
        start = Signal()
        finish = Signal()
        m.d.comb += [
            self.layer.ready.eq(~running),
            start.eq(self.layer.valid & self.layer.ready),
            self.busy.eq(running),
        ]
        with m.If(start):
            p = self.layer.payload
            lane_words = p.groups * (H + p.in_features)
            m.d.sync += [desc.eq(p), running.eq(1),
                         words.eq((lane_words + g.ratio - 1) // g.ratio if g.wide else lane_words * g.ratio)]
        with m.Elif(finish):
            m.d.sync += running.eq(0)
        K, G, M = desc.in_features, desc.groups, desc.vectors

        # -- the input buffer: one write port (the broadcast), one read port per vault -----
        inbuf = memory.Memory(shape=data.ArrayLayout(signed(8), L), depth=2 * g.in_words, init=[])
        m.submodules.inbuf = inbuf
        wr = inbuf.write_port()
        full = [Signal(2, name=f"full{v}") for v in range(V)]   # bank holds a vector for vault v
        set_full = Signal(2)
        clear_full = [Signal(2, name=f"clear_full{v}") for v in range(V)]

        lword = Signal(range(g.in_words))
        lk = Signal(range(g.max_in + L))        # first element of the beat
        lbank = Signal()
        lvec = Signal(VECTOR_BITS)
        bank_free = Signal()
        m.d.comb += bank_free.eq(~Cat(*(f.bit_select(lbank, 1) for f in full)).any())
        m.d.comb += self.inputs.ready.eq(running & (lvec != M) & bank_free)
        load = self.inputs.valid & self.inputs.ready
        m.d.comb += [
            wr.addr.eq(lbank * g.in_words + lword),
            wr.data.eq(self.inputs.payload),
            wr.en.eq(load),
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

        queues = [self._vault(m, v, desc, words, running, start, inbuf, wr, full[v], clear_full[v])
                  for v in range(V)]

        # -- the gathers: vault 0's groups, vault 1's, ... per vector; one walks the
        # accumulators, one the requantisation parameters, which may run ahead ------------
        def gather(name, width, index):
            gv = Signal(range(V), name=f"{name}_vault")
            gg = Signal(range(g.max_groups), name=f"{name}_group")
            head = Signal(width, name=f"{name}_head")
            head_valid = Signal(name=f"{name}_valid")
            pop = Signal(name=f"{name}_pop")
            with m.Switch(gv):
                for v, qs in enumerate(queues):
                    with m.Case(v):
                        m.d.comb += [head.eq(qs[index].r_data), head_valid.eq(qs[index].r_rdy)]
            for v, qs in enumerate(queues):
                m.d.comb += qs[index].r_en.eq(pop & (gv == v))
            vec_last = (gv == V - 1) & (gg == G - 1)
            with m.If(pop):
                with m.If(gg == G - 1):
                    m.d.sync += [gg.eq(0), gv.eq(Mux(gv == V - 1, 0, gv + 1))]
                with m.Else():
                    m.d.sync += gg.eq(gg + 1)
            with m.If(start):
                m.d.sync += [gv.eq(0), gg.eq(0)]
            return head, head_valid & running, pop, vec_last

        acc_head, acc_valid, acc_pop, acc_last = gather("gather", L * ACC_BITS, 0)
        q_head, q_valid, q_pop, _ = gather("qgather", L * (ACC_BITS + SHIFT_BITS), 1)

        rq = Requantizer(lanes=L, out_bits=8)
        m.submodules.requantizer = rq
        q_params = data.View(data.StructLayout({"multiplier": data.ArrayLayout(signed(ACC_BITS), L),
                                                "shift": data.ArrayLayout(signed(SHIFT_BITS), L)}), q_head)
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
            rq.quant.payload.zero_point.eq(desc.out_zero_point),
            rq.quant.payload.qmin.eq(desc.qmin),
            rq.quant.payload.qmax.eq(desc.qmax),
            q_pop.eq(rq.quant.valid & rq.quant.ready),
        ]
        for l in range(L):
            m.d.comb += rq.quant.payload.bias[l].eq(0)      # the accumulators start at the bias

        # -- the int8 outputs; `last` closes each vector -----------------------------------
        obeat = Signal(range(V * g.max_groups), name="out_beat")
        ovec = Signal(VECTOR_BITS, name="out_vector")
        out_last = Signal()
        m.d.comb += [
            out_last.eq(obeat == V * G - 1),
            self.outs.valid.eq(rq.outs.valid),
            self.outs.payload.data.eq(rq.outs.payload.data),
            self.outs.payload.last.eq(out_last),
            rq.outs.ready.eq(self.outs.ready),
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

    def _vault(self, m, v, desc, words, running, start, inbuf, wr, full, clear_full):
        """One vault: request generator, word-to-lane-word converter, lanes; returns its result queue."""
        g = self._geometry
        L, H, B = g.lanes, HEADER_WORDS, g.word_bytes
        K, G, M = desc.in_features, desc.groups, desc.vectors
        req, resp = self.vault_req[v], self.vault_resp[v]

        # -- requests: words base .. base + words - 1, once per vector ---------------------
        rw = Signal(range(g.max_words + 1), name=f"v{v}_rw")
        rvec = Signal(VECTOR_BITS, name=f"v{v}_rvec")
        m.d.comb += [
            req.valid.eq(running & (rvec != M)),
            req.payload.eq(desc.base + rw),
        ]
        with m.If(req.valid & req.ready):
            with m.If(rw == words - 1):
                m.d.sync += [rw.eq(0), rvec.eq(rvec + 1)]
            with m.Else():
                m.d.sync += rw.eq(rw + 1)
        with m.If(start):
            m.d.sync += [rw.eq(0), rvec.eq(0)]

        # -- the lane datapath's state -----------------------------------------------------
        vbank = Signal(name=f"v{v}_bank")
        vvec = Signal(VECTOR_BITS, name=f"v{v}_vec")
        vg = Signal(range(g.max_groups), name=f"v{v}_group")
        hdr = Signal(range(H + 1), name=f"v{v}_hdr")      # header word; H: weights
        k = Signal(range(g.max_in), name=f"v{v}_k")
        kw = Signal(range(g.in_words), name=f"v{v}_kw")
        kl = Signal(range(L), name=f"v{v}_kl")
        in_header = Signal(name=f"v{v}_in_header")
        k_last = Signal(name=f"v{v}_k_last")
        m.d.comb += [in_header.eq(hdr != H), k_last.eq(k == K - 1)]

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
        m.d.comb += x.eq(rd.data[kl] - desc.x_zero_point)
        sums = [Signal(signed(ACC_BITS), name=f"v{v}_sum{l}") for l in range(L)]
        for l in range(L):
            m.d.comb += sums[l].eq(acc[l] + x * lw[l])

        group_end = ~in_header & k_last
        m.d.comb += [
            consume.eq(running & (vvec != M) & full.bit_select(vbank, 1) & lw_valid
                       & (~group_end | accq.w_rdy & (desc.raw | quantq.w_rdy))),
            vec_end.eq(consume & group_end & (vg == G - 1)),
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
                    m.d.sync += [k.eq(0), kw.eq(0), kl.eq(0), hdr.eq(0),
                                 vg.eq(Mux(vg == G - 1, 0, vg + 1))]
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
            m.d.sync += [vbank.eq(0), vvec.eq(0), vg.eq(0), hdr.eq(0), k.eq(0), kw.eq(0), kl.eq(0)]

        # The read port is addressed with next cycle's (bank, word), so x[k] is ready in
        # the cycle its weights arrive.
        kw_next = Signal.like(kw, name=f"v{v}_kw_next")
        bank_next = Signal(name=f"v{v}_bank_next")
        m.d.comb += [kw_next.eq(kw), bank_next.eq(vbank)]
        with m.If(consume & ~in_header):
            with m.If(k_last):
                m.d.comb += kw_next.eq(0)
            with m.Elif(kl == L - 1):
                m.d.comb += kw_next.eq(kw + 1)
        with m.If(vec_end):
            m.d.comb += bank_next.eq(~vbank)
        m.d.comb += rd.addr.eq(bank_next * g.in_words + kw_next)
        return accq, quantq


# -- the program side: layer -> descriptor, vault images, input vectors ---------------------

@dataclass(frozen=True, eq=False)
class NearMemProgram:
    """One layer for a :class:`NearMemoryUnit`, as :func:`fc_program` lays it out.

    Members
    -------
    geometry : :class:`NearMemGeometry`
    descriptor : dict
        Field values of :func:`layer_layout`.
    images : tuple of uint8 arrays
        Vault ``v``'s bytes from word ``descriptor["base"]``, a whole number of vault words.
    inputs : int8 array (M, K)
        The input vectors.
    out_channels : int
        N; the unit emits ``vaults * groups * lanes`` channels per vector, the first N real.
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
        return self.geometry.vaults * self.descriptor["groups"]

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
               f"(local_kib / 4 per bank)")
    groups = _ceil_div(_ceil_div(n, V), L)         # groups of L channels per vault
    if groups > g.max_groups:
        refuse(f"{n} output channels need {groups} groups of {L} per vault; allowed at most "
               f"{g.max_groups} ({g.max_groups * L * V} channels)")
    if not 1 <= m < (1 << VECTOR_BITS):
        refuse(f"{m} vectors; allowed 1..{(1 << VECTOR_BITS) - 1}")
    words = g.words(k, groups)
    if base + words > g.vault_words:
        refuse(f"{words} words per vault from word {base} exceed the vault's {g.vault_words}")

    width = V * groups * L
    w = np.zeros((k, width), dtype=np.int8)
    w[:, :n] = weights
    header = np.zeros((HEADER_WORDS, width), dtype=np.uint8)
    planes = lambda v: np.asarray(v, dtype="<i4").view(np.uint8).reshape(-1, 4).T   # noqa: E731
    header[0:4, :n] = planes(_per_channel(bias, n, "bias", -(1 << 31), (1 << 31) - 1))
    header[4:8, :n] = planes(_per_channel(multiplier, n, "multiplier", 0, (1 << 31) - 1))
    header[8, :n] = _per_channel(shift, n, "shift", -32, 31).astype(np.int8).view(np.uint8)
    body = np.concatenate([header, w.view(np.uint8)])                # (9 + K, width)
    images = []
    for v in range(V):
        chunk = body[:, v * groups * L:(v + 1) * groups * L]
        lane_words = chunk.reshape(HEADER_WORDS + k, groups, L).transpose(1, 0, 2).reshape(-1)
        image = np.zeros(words * g.word_bytes, dtype=np.uint8)
        image[:lane_words.size] = lane_words
        images.append(image)
    descriptor = {"in_features": k, "groups": groups, "vectors": m, "base": base,
                  "x_zero_point": int(x_zero_point), "out_zero_point": int(out_zero_point),
                  "qmin": int(qmin), "qmax": int(qmax), "raw": int(bool(raw))}
    return NearMemProgram(geometry=g, descriptor=descriptor, images=tuple(images),
                          inputs=x.astype(np.int8), out_channels=n)


def compile_layer(geometry, layer, params, x, *, base=0):
    """A quantised layer on int8 input ``x`` -> :class:`NearMemProgram` with int8 outputs.

    The unit runs matrix-vector products: fully connected layers (``(N, C)`` or
    ``(N, T, C)`` inputs, one vector per row) and pointwise convolutions (1x1 kernel,
    stride 1, no padding, one group: one vector per pixel), with no activation or ReLU /
    ReLU6. Anything else raises :class:`NearMemLayerError`.
    """
    from mensa.model.ir import Activation, Op
    from mensa.sim.golden import activation_range, check_layer

    check_layer(layer)

    def refuse(text):
        raise NearMemLayerError(f"layer {layer.name!r}: {text}")
    allowed = "allowed: fc, or conv2d with a 1x1 kernel, stride 1, no padding and groups 1"
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
    if layer.quant is None:
        refuse("quant: missing; quantise the network first (mensa.sim.quant.quantize_network)")
    q = layer.quant
    qmin, qmax = activation_range(layer.activation, q.output.scale, q.output.zero_point)
    x = np.asarray(x).reshape(-1, layer.in_channels)
    return fc_program(geometry, weights, x, bias=params.bias, multiplier=params.multiplier,
                      shift=params.shift, x_zero_point=q.inputs[0].zero_point,
                      out_zero_point=q.output.zero_point, qmin=qmin, qmax=qmax, base=base,
                      name=layer.name)
