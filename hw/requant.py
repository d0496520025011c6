"""The post-processing unit: bias, TFLite requantisation, zero point and clamp, pipelined.

:class:`Requantizer` turns vectors of int32 accumulators (one element per output
channel, ``lanes`` wide: the columns of the array) into ``out_bits``-wide outputs,
bit for bit as :func:`mensa.sim.golden.requantize` of ``acc + bias`` (the bias add
wraps like a 32-bit adder, as in the golden model)::

    x   = wrap32(acc + bias)
    x   = saturate32(x << max(shift, 0))
    x   = SaturatingRoundingDoublingHighMul(x, multiplier)
    x   = RoundingDivideByPOT(x, max(-shift, 0))
    out = clamp(x + zero_point, qmin, qmax)

ReLU and ReLU6 are the clamp bounds (:func:`mensa.sim.golden.activation_range`).

Pipeline (one register stage each, chosen so that no stage holds more than one
adder or one DSP level on an FPGA): bias add; saturating left shift; four partial
products of the 32x32 multiply, each a signed 17x17 product that fits one 18x18 DSP
block; their sum; the rounding nudge; the truncation toward zero; the rounding right
shift; the round-up, zero point and clamp. The whole pipeline advances together and
stalls when the output is not taken.

The quantisation parameters arrive on their own stream, one beat per tile (a tile is
the run of accumulator vectors up to and including the one with ``last``); a two-entry
queue holds the next tile's parameters while the current tile passes, and every vector
carries its parameters down the pipeline, so tiles follow one another without a bubble.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requantizer", "acc_layout", "quant_layout", "out_layout", "ACC_BITS", "SHIFT_BITS"]

ACC_BITS = 32       # the numeric contract: int32 accumulators, bias and Q31 multipliers
SHIFT_BITS = 6      # shift in -32..31 (TFLite's quantize_multiplier gives -31..30)

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


class Requantizer(wiring.Component):
    """Bias, Q31 requantisation with TFLite rounding, zero point and clamp of ``lanes`` channels.

    Parameters
    ----------
    lanes : int
        Accumulators per vector (output channels processed together).
    out_bits : int
        Width of the signed outputs (8 for int8 activations, 16 for LSTM gates).

    Members
    -------
    quant : ``In(stream.Signature(quant_layout(lanes, out_bits)))``
        Parameters of one tile: per lane ``bias`` (int32), ``multiplier`` (Q31, int32) and
        ``shift`` (positive = left); the output ``zero_point`` and the clamp ``qmin``,
        ``qmax``. Beat ``t`` applies to the ``t``-th tile of ``accs``.
    accs : ``In(stream.Signature(acc_layout(lanes)))``
        Accumulator vectors; ``last`` closes a tile.
    outs : ``Out(stream.Signature(out_layout(lanes, out_bits)))``
        One requantised vector per accumulator vector, in order, with its ``last``.
    busy : ``Out(1)``
        A vector is in the pipeline.
    """

    STAGES = 8

    def __init__(self, *, lanes, out_bits=8):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"lanes must be a positive integer, not {lanes!r}")
        if not isinstance(out_bits, int) or isinstance(out_bits, bool) or not 2 <= out_bits <= 16:
            raise ValueError(f"out_bits must be an integer in 2..16, not {out_bits!r}")
        self._lanes = lanes
        self._out_bits = out_bits
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
    def latency(self):
        """Cycles from a vector's acceptance to its output beat (unstalled)."""
        return self.STAGES

    def elaborate(self, platform):
        m = Module()
        L, ob = self._lanes, self._out_bits
        qlayout = quant_layout(L, ob)

        # -- the parameter queue: slot 0 is the tile now entering the pipeline ------------
        slots = [Signal(qlayout, name=f"quant{i}") for i in range(2)]
        count = Signal(range(3))
        accept = Signal()
        retire = Signal()
        m.d.comb += [
            self.quant.ready.eq(count < 2),
            retire.eq(accept & self.accs.payload.last),
        ]
        push = self.quant.valid & self.quant.ready
        after = Signal(range(3))            # occupancy once this cycle's retire is done
        m.d.comb += after.eq(count - retire)
        with m.If(retire):
            m.d.sync += slots[0].eq(slots[1])
        with m.If(push):
            with m.If(after == 0):
                m.d.sync += slots[0].eq(self.quant.payload)
            with m.Else():
                m.d.sync += slots[1].eq(self.quant.payload)
        m.d.sync += count.eq(after + push)

        # -- one global advance: a stalled output stalls every stage ----------------------
        valid = Signal(self.STAGES)         # valid[s]: stage s's registers hold a vector
        last = Signal(self.STAGES)
        advance = Signal()
        m.d.comb += [
            advance.eq(~valid[-1] | self.outs.ready),
            self.accs.ready.eq(advance & (count != 0)),
            accept.eq(self.accs.valid & self.accs.ready),
        ]
        with m.If(advance):
            m.d.sync += [
                valid.eq((valid << 1) | accept),
                last.eq((last << 1) | self.accs.payload.last),
            ]
        m.d.comb += [
            self.outs.valid.eq(valid[-1]),
            self.outs.payload.last.eq(last[-1]),
            self.busy.eq(valid.any()),
        ]

        q = slots[0]

        def reg(shape, name, value):
            """A pipeline register loaded with ``value`` when the pipeline advances."""
            r = Signal(shape, name=name)
            with m.If(advance):
                m.d.sync += r.eq(value)
            return r

        # Layer-wide values ride along the pipeline like the per-lane ones.
        zp, qmin, qmax = q.zero_point, q.qmin, q.qmax
        for s in range(self.STAGES - 1):
            zp = reg(signed(ob), f"zp_s{s}", zp)
            qmin = reg(signed(ob), f"qmin_s{s}", qmin)
            qmax = reg(signed(ob), f"qmax_s{s}", qmax)

        for i in range(L):
            shift = q.shift[i]
            left = Mux(shift[-1], 0, shift.as_unsigned()[:SHIFT_BITS - 1])
            right = Mux(shift[-1], -shift, 0)

            # stage 0: bias add, wrapping like a 32-bit adder
            x0 = reg(signed(32), f"sum{i}", self.accs.payload.data[i] + q.bias[i])
            ls0 = reg(unsigned(SHIFT_BITS - 1), f"ls{i}", left)
            rs0 = reg(unsigned(SHIFT_BITS), f"rs0_{i}", right)
            m0 = reg(signed(32), f"mul0_{i}", q.multiplier[i])

            # stage 1: saturating left shift
            wide = Signal(signed(32 + (1 << (SHIFT_BITS - 1)) - 1), name=f"wide{i}")
            m.d.comb += wide.eq(x0 << ls0)
            sat = Mux(wide > _INT32_MAX, _INT32_MAX, Mux(wide < _INT32_MIN, _INT32_MIN, wide))
            x1 = reg(signed(32), f"shl{i}", sat)
            rs1 = reg(unsigned(SHIFT_BITS), f"rs1_{i}", rs0)
            m1 = reg(signed(32), f"mul1_{i}", m0)

            # stage 2: partial products, high halves signed, low halves unsigned
            xh, xl = x1[16:].as_signed(), x1[:16]
            mh, ml = m1[16:].as_signed(), m1[:16]
            hh = reg(signed(32), f"hh{i}", xh * mh)
            hl = reg(signed(33), f"hl{i}", xh * ml)
            lh = reg(signed(33), f"lh{i}", xl * mh)
            ll = reg(unsigned(32), f"ll{i}", xl * ml)
            # gemmlowp's one saturating case: both operands INT32_MIN
            both_min = reg(1, f"bothmin2_{i}", (x1 == _INT32_MIN) & (m1 == _INT32_MIN))
            rs2 = reg(unsigned(SHIFT_BITS), f"rs2_{i}", rs1)

            # stage 3: the 64-bit product
            product = reg(signed(64), f"prod{i}", (hh << 32) + ((hl + lh) << 16) + ll)
            both_min3 = reg(1, f"bothmin3_{i}", both_min)
            rs3 = reg(unsigned(SHIFT_BITS), f"rs3_{i}", rs2)

            # stage 4: the rounding nudge, 2**30 or 1 - 2**30 by the product's sign (the sum
            # keeps that sign)
            nudged = reg(signed(64), f"nudged{i}",
                         product + Mux(product[-1], 1 - (1 << 30), 1 << 30))
            both_min4 = reg(1, f"bothmin4_{i}", both_min3)
            rs4 = reg(unsigned(SHIFT_BITS), f"rs4_{i}", rs3)

            # stage 5: divide by 2**31 truncating toward zero (floor, plus one for a negative
            # value with a remainder)
            toward_zero = (nudged >> 31) + (nudged[-1] & nudged[:31].any())
            high = reg(signed(32), f"high{i}", Mux(both_min4, _INT32_MAX, toward_zero))
            rs5 = reg(unsigned(SHIFT_BITS), f"rs5_{i}", rs4)

            # stage 6: RoundingDivideByPOT: shift, and round away from zero past the half
            mask = Signal(unsigned(33), name=f"mask{i}")
            m.d.comb += mask.eq((1 << rs5) - 1)
            remainder = high.as_unsigned() & mask
            threshold = (mask >> 1) + high[-1]
            shifted = reg(signed(32), f"shr{i}", high >> rs5)
            round_up = reg(1, f"round{i}", remainder > threshold)

            # stage 7: round up, zero point, clamp
            v = Signal(signed(34), name=f"zpadd{i}")
            m.d.comb += v.eq(shifted + round_up + zp)
            lo = Mux(v < qmin, qmin, v)
            clamped = Mux(lo > qmax, qmax, lo)
            out = reg(signed(ob), f"out{i}", clamped)
            m.d.comb += self.outs.payload.data[i].eq(out)
        return m
