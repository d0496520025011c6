"""The post-processing unit: bias, TFLite requantisation, zero point and clamp, pipelined.

:class:`Requantizer` turns vectors of int32 accumulators (one element per output
channel, ``lanes`` wide: the columns of the array) into ``out_bits``-wide outputs,
bit for bit as :func:`mensa.core.golden.requantize` of ``acc + bias`` (the bias add
wraps like a 32-bit adder, as in the golden model)::

    x   = wrap32(acc + bias)
    x   = saturate32(x << max(shift, 0))
    x   = SaturatingRoundingDoublingHighMul(x, multiplier)
    x   = RoundingDivideByPOT(x, max(-shift, 0))
    out = clamp(x + zero_point, qmin, qmax)

ReLU and ReLU6 are the clamp bounds (:func:`mensa.core.golden.activation_range`).

Pipeline (nine register stages, the last the output register, chosen so that no stage
holds more than one carry chain or one DSP level on an FPGA): bias add; left shift; saturation; four partial
products of the 32x32 multiply, each a signed 17x17 product that fits one 18x18 DSP
block; the middle products plus the rounding nudge; the sum, whose bits 31..62 are the
doubling high half; the rounding right shift; the round-up and zero point; the clamp.
Saturation and rounding decisions are reductions over bits, not comparisons.
The stages never stall: they are free-running registers, and a vector is taken only while the
output has a credit for it; vectors the output cannot take yet wait in a LUT-RAM ring behind the
output register (a stalled output stops the input, not the pipeline, so no enable fans out
over every stage).

With ``passes`` > 1 the pipeline is ``lanes / passes`` lanes wide and takes a vector in ``passes``
passes of that many lanes, one a cycle (the first lanes first), and assembles them again behind
the clamp: a vector every ``passes`` cycles from a ``passes``-th of the DSP blocks and logic (a
near-memory unit, whose vaults produce a vector every few tens of cycles).

The quantisation parameters arrive on their own stream, one beat per tile (a tile is
the run of accumulator vectors up to and including the one with ``last``); a two-entry
queue holds the next tile's parameters while the current tile passes, and every vector
carries its parameters down the pipeline, so tiles follow one another without a bubble.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import ACC_BITS, SHIFT_BITS
from mensa.hw.dsp import dsp_product
from mensa.hw.queue import count_credits

__all__ = ["Requantizer", "acc_layout", "quant_layout", "out_layout", "requant_members", "resize", "rounding_masks",
           "round_up"]


_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1


def acc_layout(lanes):
    return data.StructLayout({"data": data.ArrayLayout(signed(ACC_BITS), lanes), "last": 1})


def quant_layout(lanes, out_bits=8):
    return data.StructLayout({
        "bias": data.ArrayLayout(signed(ACC_BITS), lanes),
        "multiplier": data.ArrayLayout(signed(ACC_BITS), lanes),
        "shift": data.ArrayLayout(signed(SHIFT_BITS), lanes),
        "zero_point": signed(out_bits),
        "qmin": signed(out_bits),
        "qmax": signed(out_bits),
    })


def out_layout(lanes, out_bits=8):
    return data.StructLayout({"data": data.ArrayLayout(signed(out_bits), lanes), "last": 1})


def requant_members(lanes):
    """The ports of an engine that borrows a requantiser of ``lanes`` or more lanes: its parameters and
    accumulators out, the requantised vectors back (``rq_quant``, ``rq_accs``, ``rq_outs``)."""
    return {"rq_quant": Out(stream.Signature(quant_layout(lanes))), "rq_accs": Out(stream.Signature(acc_layout(lanes))),
            "rq_outs": In(stream.Signature(out_layout(lanes)))}


def resize(m, src, dst):
    """Stream ``src`` to ``dst`` of the same layout but other lane counts: lanes ``dst`` has beyond
    ``src``'s are zero, lanes ``src`` has beyond ``dst``'s are dropped."""
    m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
    for name, field in dst.payload.shape():
        a, b = src.payload[name], dst.payload[name]
        if isinstance(field.shape, data.ArrayLayout):
            m.d.comb += [b[i].eq(a[i]) for i in range(min(field.shape.length, a.shape().length))]
        else:
            m.d.comb += b.eq(a)


def rounding_masks(power):
    """The masks of gemmlowp's RoundingDivideByPOT by ``rs``, given ``power`` = ``2**rs`` (33 bits; 0 when
    ``rs > 32``): ``half`` (bit k set when ``rs == k + 1``) and ``below`` (the bits under it: ``rs > k + 1``),
    32 bits each. ``below`` is ``2**rs - 1`` shifted down, one carry chain (not a prefix OR, which synthesis
    maps as a ripple of LUTs)."""
    return power[1:33], (power - 1)[1:33]


def round_up(x, half, below):
    """RoundingDivideByPOT rounds ``x >> rs`` up (half away from zero) exactly when the remainder reaches the
    half (``x >= 0``) or exceeds it (``x < 0``): the half's bit set and, for a negative ``x``, some bit
    below it too (:func:`rounding_masks`)."""
    return (x & half).any() & (~x[-1] | (x & below).any())


def _head_slot(m, slots, retire, lanes, layout):
    """The parameter ring's head slot (the tile entering the pipeline), the head pointer flipping at
    ``retire``. Each lane's parameters are selected by a copy of the pointer of its own (one more for the
    layer-wide fields); a copy toggles on its own state, so synthesis keeps the copies apart and each drives
    its own lane's ~70 select bits, not all of them (docs/synth.md, timing rules)."""
    q = Signal(layout, name="quant_head_slot")
    heads = [Signal(name=f"quant_head{i}") for i in range(lanes + 1)]
    with m.If(retire):
        m.d.sync += [h.eq(~h) for h in heads]
    for i in range(lanes):
        for field in ("bias", "multiplier", "shift"):
            m.d.comb += q[field][i].eq(Mux(heads[i], slots[1][field][i], slots[0][field][i]))
    for field in ("zero_point", "qmin", "qmax"):
        m.d.comb += q[field].eq(Mux(heads[lanes], slots[1][field], slots[0][field]))
    return q


class Requantizer(wiring.Component):
    """Bias, Q31 requantisation with TFLite rounding, zero point and clamp of ``lanes`` channels.

    Parameters
    ----------
    lanes : int
        Accumulators per vector (output channels processed together).
    out_bits : int
        Width of the signed outputs (8 for int8 activations, 16 for LSTM gates).
    passes : int
        Cycles per vector: the pipeline computes ``lanes / passes`` lanes a cycle (``passes``
        divides ``lanes``).

    Members
    -------
    quant : ``In(stream.Signature(quant_layout(lanes, out_bits)))``
        Parameters of one tile: per lane ``bias`` (int32), ``multiplier`` (Q31, int32) and
        ``shift`` (positive = left); the output ``zero_point`` and the clamp ``qmin`` <=
        ``qmax``. Beat ``t`` applies to the ``t``-th tile of ``accs``.
    accs : ``In(stream.Signature(acc_layout(lanes)))``
        Accumulator vectors; ``last`` closes a tile.
    outs : ``Out(stream.Signature(out_layout(lanes, out_bits)))``
        One requantised vector per accumulator vector, in order, with its ``last``.
    busy : ``Out(1)``
        A vector is in the pipeline.
    """

    STAGES = 9

    def __init__(self, *, lanes, out_bits=8, passes=1):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1 or lanes % passes:
            raise ValueError(f"passes must be a positive integer dividing lanes = {lanes}, not {passes!r}")
        if not isinstance(out_bits, int) or isinstance(out_bits, bool) or not 2 <= out_bits <= 16:
            raise ValueError(f"out_bits must be an integer in 2..16, not {out_bits!r}")
        self._lanes = lanes
        self._out_bits = out_bits
        self._passes = passes
        super().__init__({
            "quant": In(stream.Signature(quant_layout(lanes, out_bits))),
            "accs": In(stream.Signature(acc_layout(lanes))),
            "outs": Out(stream.Signature(out_layout(lanes, out_bits))),
            "busy": Out(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def out_bits(self):
        return self._out_bits

    @property
    def passes(self):
        return self._passes

    @property
    def latency(self):
        """Cycles from a vector's first pass to its output beat (unstalled)."""
        return self.STAGES + self._passes - 1

    def elaborate(self, platform):
        m = Module()
        L, ob, n = self._lanes, self._out_bits, self._passes
        W = L // n                          # lanes a pass
        qlayout = quant_layout(L, ob)

        # -- the parameter queue: a ring of two slots; the head pointer (below) points at the tile now
        # entering the pipeline. A slot is written only by a push, so the take of a tile's last vector
        # steers the pointer's flip-flops, not the load of every parameter bit (docs/synth.md, timing rules).
        slots = [Signal(qlayout, name=f"quant{i}") for i in range(2)]
        tail = Signal(name="quant_tail")
        count = Signal(range(3))
        after = Signal(range(3))
        ready = Signal(init=1, name="quant_ready")     # count < 2, registered: the slots' load enables
        accept = Signal()
        retire = Signal()
        push = Signal()
        m.d.comb += [
            self.quant.ready.eq(ready),
            retire.eq(accept & self.accs.payload.last),
            push.eq(self.quant.valid & ready),
            after.eq(count - retire + push),
        ]
        m.d.sync += [count.eq(after), ready.eq(after < 2)]
        with m.If(push):
            m.d.sync += tail.eq(~tail)
            with m.If(tail):
                m.d.sync += slots[1].eq(self.quant.payload)
            with m.Else():
                m.d.sync += slots[0].eq(self.quant.payload)

        # -- a pipeline that never stalls: the stages are free-running registers, and a vector
        # is taken only while the output has a credit for it (a place in the output ring), so
        # a stalled `outs` stops the input, not the stages, and no enable fans out over them.
        # A vector of several passes enters a pass a cycle and is taken with its last pass (a stream's
        # valid holds until then, and the credit and the parameters cannot leave meanwhile).
        P = self.STAGES - 1                 # free-running stages; the last is the output register
        depth = self.STAGES + 1             # credits: the round trip from a take to its read
        valid = Signal(P)                   # valid[s]: stage s's registers hold a pass
        last = Signal(P)
        done = Signal(P) if n > 1 else ~Const(0, P)    # the pass completes its vector
        outstanding = Signal(range(depth + 1))  # vectors taken and not yet read
        credit = Signal(init=1)                 # outstanding < depth, registered
        enter = Signal()                        # a pass enters the stages
        step = Signal(range(n), name="pass") if n > 1 else Const(0)    # the pass entering
        final = Signal(name="final_pass") if n > 1 else Const(1)     # step == n - 1, a register
        m.d.comb += [
            enter.eq(self.accs.valid & credit & (count != 0)),
            self.accs.ready.eq(credit & (count != 0) & final),
            accept.eq(self.accs.valid & self.accs.ready),
        ]
        m.d.sync += [
            valid.eq((valid << 1) | enter),
            last.eq((last << 1) | self.accs.payload.last),
        ]
        if n > 1:
            m.d.sync += done.eq((done << 1) | final)
            with m.If(enter):
                m.d.sync += [step.eq(Mux(final, 0, step + 1)), final.eq(step == n - 2)]

        q = _head_slot(m, slots, retire, L, qlayout)

        def this_pass(lanes_of):
            """Lane ``i`` of the pass entering, of ``lanes_of`` (an array of ``L``)."""
            return lambda i: lanes_of[i] if n == 1 else Array(lanes_of[k * W + i] for k in range(n))[step]
        acc_in, bias_in, mult_in, shift_in = (this_pass(a) for a in (self.accs.payload.data, q.bias, q.multiplier,
                                                                      q.shift))

        def reg(shape, name, value):
            """A free-running pipeline register (no reset: `valid` says what it holds)."""
            r = Signal(shape, name=name, reset_less=True)
            m.d.sync += r.eq(value)
            return r

        # Layer-wide values ride along the pipeline like the per-lane ones: the zero point
        # to stage 7, the clamp bounds to stage 8.
        zp, qmin, qmax = q.zero_point, q.qmin, q.qmax
        for s in range(P):
            if s < P - 1:
                zp = reg(signed(ob), f"zp_s{s}", zp)
            qmin = reg(signed(ob), f"qmin_s{s}", qmin)
            qmax = reg(signed(ob), f"qmax_s{s}", qmax)

        result = Signal(out_layout(W, ob), name="result")     # stage 8's pass, combinational
        for i in range(W):
            shift = shift_in(i)
            left = Mux(shift[-1], 0, shift.as_unsigned()[:SHIFT_BITS - 1])
            right = Mux(shift[-1], -shift, 0)

            # stage 0: bias add, wrapping like a 32-bit adder
            x0 = reg(signed(32), f"sum{i}", acc_in(i) + bias_in(i))
            ls0 = reg(unsigned(SHIFT_BITS - 1), f"ls{i}", left)
            rs = reg(unsigned(SHIFT_BITS), f"rs0_{i}", right)
            m0 = reg(signed(32), f"mul0_{i}", mult_in(i))

            # stage 1: left shift; the multiplier's halves' sum (signed high half plus unsigned
            # low half, 18 bits signed) for stage 3
            wide = reg(signed(32 + (1 << (SHIFT_BITS - 1)) - 1), f"wide{i}", x0 << ls0)
            rs = reg(unsigned(SHIFT_BITS), f"rs1a_{i}", rs)
            m0_sum = reg(signed(18), f"msum1a_{i}", m0[16:].as_signed() + m0[:16])
            m0 = reg(signed(32), f"mul1a_{i}", m0)

            # stage 2: saturation: the shift overflowed when the bits above bit 31 are not all
            # copies of the sign (a reduction, not a comparison: no carry chain); beside it the
            # sum of the halves, of the shifted value or of the saturated one
            fits = ~wide[31:].any() | wide[31:].all()
            sat = Mux(fits, wide[:32], Mux(wide[-1], _INT32_MIN, _INT32_MAX))
            x1 = reg(signed(32), f"shl{i}", sat)
            halves = wide[16:32].as_signed() + wide[:16]
            x_sum = reg(signed(18), f"xsum{i}", Mux(fits, halves, Mux(wide[-1], -(1 << 15), (1 << 16) + (1 << 15) - 2)))
            rs = reg(unsigned(SHIFT_BITS), f"rs1_{i}", rs)
            m1 = reg(signed(32), f"mul1_{i}", m0)
            m_sum = reg(signed(18), f"msum1_{i}", m0_sum)

            # stage 3: three partial products (Karatsuba), high halves signed, low halves
            # unsigned, and the halves' sums: one 18x18 DSP block each, into its output register
            hh = dsp_product(m, platform, x1[16:].as_signed(), m1[16:].as_signed(), signed(32), f"hh{i}")
            ll = dsp_product(m, platform, x1[:16], m1[:16], unsigned(32), f"ll{i}")
            sums = dsp_product(m, platform, x_sum, m_sum, signed(36), f"hmid{i}")   # hh + xh*ml + xl*mh + ll
            # gemmlowp's one saturating case: both operands INT32_MIN
            both_min = reg(1, f"bothmin3_{i}", (x1 == _INT32_MIN) & (m1 == _INT32_MIN))
            rs = reg(unsigned(SHIFT_BITS), f"rs3_{i}", rs)

            # stage 4: the middle products plus the rounding nudge. gemmlowp adds 2**30 (or
            # 1 - 2**30 to a negative product) and divides by 2**31 toward zero; for a
            # negative product that is ceil((p + 1 - 2**30) / 2**31) = floor((p + 2**30) / 2**31),
            # so one nudge of 2**30 = 2**14 << 16 and an arithmetic shift do for both signs.
            # hh and ll do not overlap: their sum is a concatenation.
            mid = reg(signed(35), f"mid{i}", sums - hh - ll + (1 << 14))
            outer = reg(signed(64), f"outer{i}", Cat(ll, hh))
            both_min = reg(1, f"bothmin4_{i}", both_min)
            # the right shift decoded for stage 5: 2**rs in 33 bits (0 when rs > 32), one LUT level a bit
            power = reg(unsigned(33), f"power{i}", (Const(1, 1) << rs)[:33])
            rs = reg(unsigned(SHIFT_BITS), f"rs4_{i}", rs)

            # stage 5: the doubling high half of the nudged product; meanwhile the masks of the right
            # shift for stage 6: bit k of half is rs == k + 1 (2**rs shifted down), of below rs > k + 1
            # (2**rs - 1 shifted down: when rs > 32 the power is 0 and the difference all ones). One
            # carry chain, not a prefix OR over the bits, which synthesis maps as a ripple of LUTs.
            nudged = Signal(signed(64), name=f"nudged{i}")
            m.d.comb += nudged.eq(outer + (mid << 16))
            high = reg(signed(32), f"high{i}", Mux(both_min, _INT32_MAX, nudged[31:63]))
            half_next, below_next = rounding_masks(power)
            half = reg(unsigned(32), f"half{i}", half_next)
            below = reg(unsigned(32), f"below{i}", below_next)
            rs = reg(unsigned(SHIFT_BITS), f"rs5_{i}", rs)

            # stage 6: RoundingDivideByPOT: the remainder passes the half (x >= 0: reaches it;
            # x < 0: exceeds it) exactly when the half's bit is set and, for a negative x, some
            # bit below it is too
            shifted = reg(signed(32), f"shr{i}", high >> rs)
            round_q = reg(1, f"round{i}", round_up(high, half, below))

            # stage 7: saturate to out_bits + 1 bits (a reduction, not a comparison), which
            # keeps every clamp result: the zero point and the bounds are out_bits wide, so a
            # value beyond +-2**out_bits clamps the same as the saturated one. Then round up
            # and add the zero point on the short value.
            fits = ~shifted[ob:].any() | shifted[ob:].all()
            narrow = Mux(fits, shifted[:ob + 1].as_signed(), Mux(shifted[-1], -(1 << ob), (1 << ob) - 1))
            v = reg(signed(ob + 2), f"zpadd{i}", narrow + round_q + zp)

            # stage 8: clamp, both comparisons side by side (qmin <= qmax, as the golden
            # model requires), into the output register (or the ring, when the output waits)
            clamped = Signal(signed(ob), name=f"clamp{i}")
            m.d.comb += clamped.eq(Mux(v > qmax, qmax, Mux(v < qmin, qmin, v)))
            m.d.comb += result.data[i].eq(clamped)
        m.d.comb += result.last.eq(last[-1])

        # the vector: the earlier passes' lanes, kept as they leave the stages, then the last pass's
        vector = Signal(out_layout(L, ob), name="vector")
        kept = [Signal(data.ArrayLayout(signed(ob), W), name=f"kept{k}", reset_less=True) for k in range(n - 1)]
        if kept:
            with m.If(valid[-1]):
                m.d.sync += [a.eq(b) for a, b in zip(kept, kept[1:] + [result.data])]
        m.d.comb += vector.last.eq(result.last)
        for k, part in enumerate(kept + [result.data]):
            m.d.comb += [vector.data[k * W + i].eq(part[i]) for i in range(W)]

        # -- the output: every vector leaving the stages is written into a LUT-RAM ring; the
        # output register takes the ring's oldest entry, or the new vector itself when the
        # ring holds none (so an unstalled vector leaves after STAGES cycles, as before).
        ring = 1 << (depth - 1).bit_length()
        m.submodules.out_ring = mem = Memory(shape=out_layout(L, ob), depth=ring, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        head = Signal(range(ring), name="out_head")
        tail = Signal(range(ring), name="out_tail")
        level = Signal(range(ring + 1), name="out_level")     # entries written and not yet output
        waiting = Signal(name="out_waiting")                   # level != 0, a flip-flop
        out = Signal(out_layout(L, ob), name="out", reset_less=True)
        out_valid = Signal(name="out_valid")
        incoming = valid[-1] & done[-1]
        pop = Signal(name="out_pop")
        m.d.comb += [
            wr.addr.eq(head), wr.data.eq(vector), wr.en.eq(incoming), rd.addr.eq(tail),
            pop.eq((waiting | incoming) & (~out_valid | self.outs.ready)),
        ]
        with m.If(incoming):
            m.d.sync += head.eq(head + 1)
        m.d.sync += [
            level.eq(level + incoming - pop),
            waiting.eq(Mux(waiting, (level > 1) | incoming | ~pop, incoming & ~pop)),
        ]
        with m.If(pop):
            m.d.sync += out.eq(Mux(waiting, rd.data, vector)), out_valid.eq(1), tail.eq(tail + 1)
        with m.Elif(self.outs.ready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += [
            self.outs.valid.eq(out_valid),
            self.outs.payload.eq(out),
            self.busy.eq(valid.any() | out_valid | waiting | (step != 0)),
        ]

        count_credits(m, outstanding, credit, accept, self.outs.valid & self.outs.ready, depth)
        return m
