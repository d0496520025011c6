"""One vault of the near-memory unit: its memory port, word-to-lane-word converter and MAC lanes.

A :class:`Vault` streams its part of a layer's image (:mod:`mensa.contract.nearmem`) from
its memory read port, once per vector (LSTM: per time step), and multiplies it with the
input vector it reads from the unit's input buffer: per group of ``lanes`` output
channels, :data:`~mensa.contract.nearmem.HEADER_WORDS` header lane words (bias,
requantisation multiplier and shift of each lane) and then one lane word of weights per
input element, one lane word a cycle. Each finished group leaves through two queues, the
accumulators and the group's requantisation parameters, which the
:class:`~mensa.hw.nearmem.NearMemoryUnit`'s gathers empty in channel order.

The vault holds no input data of its own: the unit's input buffer is shared, one read port
per vault, and the unit tells the vault which x banks hold a vector (``full``) and how many
h and m8 vectors of an LSTM are complete (``hsteps``, ``m8steps``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from mensa.contract.nearmem import HEADER_WORDS, VECTOR_BITS, NearMemGeometry, descriptor_fields
from mensa.contract.numeric import ACC_BITS, SHIFT_BITS
from mensa.hw.dsp import PRODUCT_STAGES, registered_product
from mensa.hw.queue import Queue, count_credits

__all__ = ["Vault", "Phase", "LANE_STAGES", "layer_layout", "lanes_layout", "group_quant_layout"]

#: Cycles from a group's last lane word taken to its results in the queues: the read data's
#: register, the input element's, the lanes' products (:data:`~mensa.hw.dsp.PRODUCT_STAGES`).
LANE_STAGES = 2 + PRODUCT_STAGES


def layer_layout(geometry):
    """The layer descriptor (:func:`~mensa.contract.nearmem.descriptor_fields`): one beat on ``layer`` starts a layer."""
    return data.StructLayout({name: signed(bits) if is_signed else unsigned(bits)
                              for name, bits, is_signed in descriptor_fields(geometry)})


def lanes_layout(lanes):
    """One group's ``lanes`` int32 accumulators."""
    return data.ArrayLayout(signed(ACC_BITS), lanes)


def group_quant_layout(lanes):
    """One group's requantisation parameters, as its header carries them: per lane the Q31 multiplier and the shift."""
    return data.StructLayout({"multiplier": data.ArrayLayout(signed(ACC_BITS), lanes),
                              "shift": data.ArrayLayout(signed(SHIFT_BITS), lanes)})


class Phase(enum.Enum, shape=2):
    """What a group multiplies: x (FC, LSTM gates' input half), h (gates' recurrent half), m8 (projection)."""
    X = 0
    H = 1
    PROJ = 2


class Vault(wiring.Component):
    """A request generator, a word-to-lane-word converter and ``lanes`` int8 MAC lanes.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.nearmem.NearMemGeometry`
        Lanes, vault word width and capacity, input-buffer banks and depth, result-queue
        depth (two vectors of ``max_groups`` groups), whether the LSTM datapath is built.

    Members
    -------
    desc : ``In(layer_layout(geometry))``
        The layer descriptor, held while the layer runs.
    start : ``In(1)``
        A layer starts: requests, lanes and banks go back to the first word, group and vector
        (beats already queued stay).
    running : ``In(1)``
        A layer runs: the vault requests and computes while it is high.
    req : ``Out(stream.Signature(range(vault_words)))``
        Read requests, one word address a beat: words ``base .. base + words - 1``, once
        per vector.
    resp : ``In(stream.Signature(8 * word_bytes))``
        The words read, in request order; may come any number of cycles later.
    inbuf : ``In(memory.ReadPort.Signature(addr_width=ceil_log2(banks * in_words), shape=ArrayLayout(signed(8), lanes)))``
        A read port of the unit's input buffer (``banks * in_words`` words of ``lanes``
        int8 elements; banks x, x, then with the LSTM datapath h, h, m8), transparent for
        its write port: the vault drives ``addr`` with next cycle's word and reads ``data``
        (``en`` stays 1).
    full : ``In(2)``
        Bit ``b``: x bank ``b`` holds the vector the vault reads next from it.
    clear_full : ``Out(2)``
        Bit ``b`` for one cycle: the vault is done with x bank ``b``.
    hsteps : ``In(VECTOR_BITS + 1)``
        LSTM: h vectors complete so far; the recurrent phase of step ``t`` waits for h_{t-1}.
    m8steps : ``In(VECTOR_BITS + 1)``
        LSTM: projection inputs m8 complete so far; the projection phase of step ``t`` waits for m8_t.
    accs : ``Out(stream.Signature(lanes_layout(lanes)))``
        Per finished group its ``lanes`` int32 accumulators (bias included), in group order.
    quant : ``Out(stream.Signature(group_quant_layout(lanes)))``
        Per finished group (unless ``desc.raw``) its lanes' multipliers and shifts; it may
        be taken ahead of ``accs``.
    """

    def __init__(self, *, geometry):
        if not isinstance(geometry, NearMemGeometry):
            raise TypeError(f"geometry must be a NearMemGeometry, not {geometry!r}")
        self._geometry = geometry
        g = geometry
        super().__init__({
            "desc": In(layer_layout(g)),
            "start": In(1),
            "running": In(1),
            "req": Out(stream.Signature(range(g.vault_words))),
            "resp": In(stream.Signature(8 * g.word_bytes)),
            "inbuf": In(memory.ReadPort.Signature(addr_width=ceil_log2(g.banks * g.in_words),
                                                  shape=data.ArrayLayout(signed(8), g.lanes))),
            "full": In(2),
            "clear_full": Out(2),
            "hsteps": In(VECTOR_BITS + 1),
            "m8steps": In(VECTOR_BITS + 1),
            "accs": Out(stream.Signature(lanes_layout(g.lanes))),
            "quant": Out(stream.Signature(group_quant_layout(g.lanes))),
        })

    @property
    def geometry(self):
        return self._geometry

    @property
    def queue_depth(self):
        """Groups each result queue holds: two vectors' worth, so one vector drains while the next computes."""
        return 2 * self._geometry.max_groups

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        L, H, IW = g.lanes, HEADER_WORDS, g.in_words
        desc, running, start = self.desc, self.running, self.start
        G = desc.groups
        lstm = desc.lstm if g.lstm else Const(0)

        # -- requests: words base .. base + words - 1, once per vector ---------------------
        rw = Signal(range(g.max_words + 1))
        rvec = Signal(VECTOR_BITS)
        rvec_step = Signal()
        m.d.comb += [
            self.req.valid.eq(running & self._before_end(m, rvec, rvec_step, "rvec_more")),
            self.req.payload.eq(desc.base + rw),
        ]
        with m.If(self.req.valid & self.req.ready):
            with m.If(rw == desc.words - 1):
                m.d.sync += [rw.eq(0), rvec.eq(rvec + 1)]
                m.d.comb += rvec_step.eq(1)
            with m.Else():
                m.d.sync += rw.eq(rw + 1)
        with m.If(start):
            m.d.sync += [rw.eq(0), rvec.eq(0)]

        # -- the lane datapath's state -----------------------------------------------------
        vbank = Signal()
        vvec = Signal(VECTOR_BITS)
        phase = Signal(Phase)
        vg = Signal(range(g.max_groups))
        hdr = Signal(range(H + 1))      # header word; H: weights
        k = Signal(range(g.max_in))
        kw = Signal(range(IW))
        kl = Signal(range(L))
        in_header = Signal()
        k_last = Signal()           # a register; it and k are kept by _k_last
        group_last = Signal()
        phase_last = Signal()
        next_phase = Signal(Phase)
        inputs_ready = Signal()
        with m.Switch(phase):
            with m.Case(Phase.X):
                m.d.comb += [group_last.eq(vg == G - 1),
                             phase_last.eq(~lstm), next_phase.eq(Phase.H),
                             inputs_ready.eq(self.full.bit_select(vbank, 1))]
            with m.Case(Phase.H):
                m.d.comb += [group_last.eq(vg == G - 1),
                             phase_last.eq(desc.proj_groups == 0), next_phase.eq(Phase.PROJ),
                             inputs_ready.eq(self.hsteps >= vvec if g.lstm else 0)]
            with m.Default():
                m.d.comb += [group_last.eq(vg == desc.proj_groups - 1),
                             phase_last.eq(1), next_phase.eq(Phase.X),
                             inputs_ready.eq(self.m8steps > vvec if g.lstm else 0)]     # (a unit without the LSTM never gets here)
        m.d.comb += in_header.eq(hdr != H)

        consume = Signal()
        vec_end = Signal()
        lw, lw_valid = self._lane_words(m, consume, vec_end)

        # -- result queues: the accumulators, and each group's requantisation parameters --
        m.submodules.acc_queue = accq = Queue(lanes_layout(L), depth=self.queue_depth)
        m.submodules.quant_queue = quantq = Queue(group_quant_layout(L), depth=self.queue_depth)
        wiring.connect(m, accq.r, wiring.flipped(self.accs))
        wiring.connect(m, quantq.r, wiring.flipped(self.quant))

        # A group takes a credit in the queues when its last lane word is consumed (the
        # parameters' queue is taken ahead of the accumulators', so it never holds more), and
        # the pipeline behind `consume` never waits.
        group_end = ~in_header & k_last
        lanes_go = running & self._before_end(m, vvec, vec_end, "vvec_more") & inputs_ready & lw_valid
        outstanding = Signal(range(self.queue_depth + 1))
        credit = Signal(init=1)
        m.d.comb += [
            consume.eq(lanes_go & (~group_end | credit)),
            vec_end.eq(consume & group_end & group_last & phase_last),
        ]
        count_credits(m, outstanding, credit, consume & group_end, self.accs.valid & self.accs.ready,
                      self.queue_depth)
        # What the lanes take with a lane word: the input buffer's word and the element's lane,
        # and the element's zero point (h_{-1} is the zero point: no contribution at step 0;
        # m8 has zero point 0).
        beat = Signal(self._beat_layout)
        m.d.comb += [beat.data.eq(self.inbuf.data), beat.lane.eq(kl), beat.weights.eq(lw), beat.hdr.eq(hdr),
                     beat.group_end.eq(group_end), beat.skip.eq((phase == Phase.H) & (vvec == 0))]
        with m.Switch(phase):
            with m.Case(Phase.X):
                m.d.comb += beat.zero_point.eq(desc.x_zero_point)
            with m.Case(Phase.H):
                m.d.comb += beat.zero_point.eq(desc.out_zero_point)
            with m.Default():
                m.d.comb += beat.zero_point.eq(0)
        self._lanes(m, platform, consume, beat, accq.w, quantq.w)

        with m.If(consume):
            with m.If(in_header):
                m.d.sync += hdr.eq(hdr + 1)
            with m.Else():
                with m.If(k_last):
                    m.d.sync += [kw.eq(0), kl.eq(0), hdr.eq(0)]
                    with m.If(group_last):
                        m.d.sync += [vg.eq(0), phase.eq(Mux(phase_last, Phase.X, next_phase))]
                    with m.Else():
                        m.d.sync += vg.eq(vg + 1)
                with m.Else():
                    with m.If(kl == L - 1):
                        m.d.sync += [kl.eq(0), kw.eq(kw + 1)]
                    with m.Else():
                        m.d.sync += kl.eq(kl + 1)
        with m.If(vec_end):
            m.d.sync += [vbank.eq(~vbank), vvec.eq(vvec + 1)]
            m.d.comb += self.clear_full.eq(Const(1, 2) << vbank)
        with m.If(start):
            m.d.sync += [vbank.eq(0), vvec.eq(0), vg.eq(0), hdr.eq(0), kw.eq(0), kl.eq(0),
                         phase.eq(Phase.X)]

        # The read port is addressed with next cycle's (bank, word), so x[k] is ready in
        # the cycle its weights arrive. h_{t-1} is in h bank (t - 1) % 2.
        kw_next = Signal.like(kw)
        bank_next = Signal()
        parity_next = Signal()
        phase_next = Signal(Phase)
        m.d.comb += [kw_next.eq(kw), bank_next.eq(vbank), parity_next.eq(vvec[0]), phase_next.eq(phase)]
        with m.If(consume & ~in_header):
            with m.If(k_last):
                m.d.comb += kw_next.eq(0)
                with m.If(group_last):
                    m.d.comb += phase_next.eq(Mux(phase_last, Phase.X, next_phase))
            with m.Elif(kl == L - 1):
                m.d.comb += kw_next.eq(kw + 1)
        with m.If(vec_end):
            m.d.comb += [bank_next.eq(~vbank), parity_next.eq(~vvec[0])]
        self._k_last(m, k, k_last, consume & ~in_header, phase_next)
        rd = self.inbuf
        with m.Switch(phase_next):
            with m.Case(Phase.X):
                m.d.comb += rd.addr.eq(bank_next * IW + kw_next)
            with m.Case(Phase.H):
                m.d.comb += rd.addr.eq((2 + ~parity_next) * IW + kw_next)
            with m.Default():
                m.d.comb += rd.addr.eq(4 * IW + kw_next)
        return m

    def _before_end(self, m, index, step, name):
        """``index != desc.vectors`` (a vector index, 0 at ``start``, ``index + 1`` after a ``step``) as a
        register computed from next cycle's index, so the comparison is not behind the decisions that
        step it. After ``start`` it is 1: a layer has at least one vector (``contract.nearmem``), and the
        descriptor is latched only at the start."""
        more = Signal(name=name, init=1)
        M = self.desc.vectors
        m.d.sync += more.eq(Mux(self.start, 1, Mux(step, index + 1 != M, index != M)))
        return more

    def _k_last(self, m, k, k_last, step, phase_next):
        """The element index ``k`` (0 after a phase's last element or at ``start``, else ``k + 1`` at a
        ``step``) and ``k_last`` (``k`` is its phase's last) as a register, computed from next cycle's
        ``k`` and phase, so the comparison and the descriptor's fields are not in front of the consume
        decision. The descriptor is latched at
        ``start``, so ``k_last`` is right from two cycles after it; it is read only once a group's
        header words are consumed, the first of them three cycles after ``start`` at the earliest
        (a request, its response, the word held)."""
        desc = self.desc
        k_next = Signal.like(k)
        k_phase = Signal(Phase)
        k_end = Signal(range(self._geometry.max_in + 1))
        m.d.comb += [k_next.eq(k), k_phase.eq(phase_next)]
        with m.If(step):
            m.d.comb += k_next.eq(Mux(k_last, 0, k + 1))
        with m.If(self.start):
            m.d.comb += [k_next.eq(0), k_phase.eq(Phase.X)]
        with m.Switch(k_phase):
            with m.Case(Phase.X):
                m.d.comb += k_end.eq(desc.in_features - 1)
            with m.Case(Phase.H):
                m.d.comb += k_end.eq(desc.recurrent - 1)
            with m.Default():
                m.d.comb += k_end.eq(desc.proj_in - 1)
        m.d.sync += [k.eq(k_next), k_last.eq(k_next == k_end)]

    @property
    def _beat_layout(self):
        g = self._geometry
        lane_word = data.ArrayLayout(signed(8), g.lanes)
        return data.StructLayout({"data": lane_word, "lane": range(g.lanes), "weights": lane_word,
                                  "hdr": range(HEADER_WORDS + 1), "group_end": 1, "zero_point": signed(9),
                                  "skip": 1})

    def _lanes(self, m, platform, take, beat, accw, quantw):
        """The lanes: a pipeline that never waits, from a taken ``beat`` to the result queues.

        Stage 1 registers the beat, the input buffer's read data among it (nothing after a
        block RAM's read data); stage 2 the input element less its zero point (a header
        word's is 1, so the lanes' products are the header bytes themselves); then each
        lane's product in a DSP block with its registers (``PRODUCT_STAGES``); then the
        accumulators, bias and parameters. A group leaves into ``accw`` and ``quantw``
        (unless raw) ``LANE_STAGES`` cycles after its last lane word is taken.
        """
        g = self._geometry
        L, H = g.lanes, HEADER_WORDS
        s1 = Signal(self._beat_layout, name="mac_beat")
        s1_valid = Signal(name="mac_valid1")
        m.d.sync += s1.eq(beat), s1_valid.eq(take)
        x = Signal(signed(9), name="mac_x")
        in_header = s1.hdr != H
        m.d.sync += x.eq(Mux(in_header, 1, Mux(s1.skip, 0, s1.data[s1.lane] - s1.zero_point)))
        weights = Signal.like(s1.weights, name="mac_weights")
        flags = Signal(data.StructLayout({"valid": 1, "hdr": range(H + 1), "group_end": 1}), name="mac_flags2")
        m.d.sync += [weights.eq(s1.weights), flags.valid.eq(s1_valid), flags.hdr.eq(s1.hdr),
                     flags.group_end.eq(s1.group_end)]
        products = [registered_product(m, platform, x, weights[l], 17, f"mac{l}") for l in range(L)]
        for s in range(PRODUCT_STAGES):
            later = Signal.like(flags, name=f"mac_flags{3 + s}")
            m.d.sync += later.eq(flags)
            flags = later

        acc = [Signal(signed(ACC_BITS), name=f"acc{l}") for l in range(L)]
        mult = [Signal(signed(ACC_BITS), name=f"mult{l}") for l in range(L)]
        shift = [Signal(signed(SHIFT_BITS), name=f"shift{l}") for l in range(L)]
        sums = [Signal(signed(ACC_BITS), name=f"sum{l}") for l in range(L)]
        for l in range(L):
            m.d.comb += sums[l].eq(acc[l] + products[l])
        end = flags.valid & flags.group_end
        m.d.comb += [accw.valid.eq(end), quantw.valid.eq(end & ~self.desc.raw)]
        for l in range(L):
            m.d.comb += [accw.payload[l].eq(sums[l]),
                         quantw.payload.multiplier[l].eq(mult[l]),
                         quantw.payload.shift[l].eq(shift[l])]
        with m.If(flags.valid):
            with m.If(flags.hdr != H):
                for l in range(L):
                    byte = products[l][:8]
                    with m.If(flags.hdr < 4):
                        m.d.sync += acc[l].eq(Cat(acc[l][8:], byte))
                    with m.Elif(flags.hdr < 8):
                        m.d.sync += mult[l].eq(Cat(mult[l][8:], byte))
                    with m.Else():
                        m.d.sync += shift[l].eq(products[l][:SHIFT_BITS])
            with m.Else():
                for l in range(L):
                    m.d.sync += acc[l].eq(sums[l])

    def _lane_words(self, m, consume, vec_end):
        """Vault words from ``resp`` -> the lane word and its valid; ``consume`` takes it, ``vec_end`` ends a vector."""
        g = self._geometry
        L, B = g.lanes, g.word_bytes
        resp, start = self.resp, self.start
        lw = Signal(data.ArrayLayout(signed(8), L))
        lw_valid = Signal()
        if g.wide:
            word = Signal(B * 8)
            held = Signal()
            idx = Signal(range(max(g.ratio, 2)))   # no zero-width wire when ratio == 1
            release = Signal()
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
            shreg = Signal(L * 8)
            count = Signal(range(g.ratio + 1))
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
        return lw, lw_valid
