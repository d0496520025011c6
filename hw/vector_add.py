"""The vector unit's element-wise add: each input rescaled to a common scale, per lane, then summed.

TFLite's int8 ADD (:func:`mensa.core.golden.add`) brings both inputs to twice the larger
input scale before it adds them: ``a' = MultiplyByQuantizedMultiplier((a - a_zp) << 20,
a_multiplier, a_shift)`` and the same for ``b``; the sum goes through the requantiser
(the output multiplier and shift from the layer's quantisation records). The input
multipliers are at most 1/2, so their shifts only divide (a right shift, rounded half away
from zero) and the shifted value never saturates.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import ACC_BITS
from mensa.hw.requant import acc_layout, round_up, rounding_masks
from mensa.hw.vector_layer import operand_layout

__all__ = ["AddLanes", "ADD_LEFT_SHIFT"]

ADD_LEFT_SHIFT = 20         # TFLite's left shift of both inputs before their rescale (core.golden.ADD_LEFT_SHIFT)


#: Bits of a lane's product ``((x - zp) << ADD_LEFT_SHIFT) * multiplier``: a 9-bit difference, shifted, times
#: 32 bits. Every value below stays within 64 bits (the simulators' native word).
PRODUCT_BITS = 9 + ADD_LEFT_SHIFT + 32


def _srdhm(product):
    """gemmlowp's SaturatingRoundingDoublingHighMul of the product: (p + nudge) / 2**31 toward zero."""
    neg = product < 0
    t = product + Mux(neg, 1 - (1 << 30), 1 << 30)
    return (t >> 31) + (neg & (t[:31] != 0))


class AddLanes(wiring.Component):
    """``lanes`` pairs of int8 inputs rescaled and summed into int32, for the requantiser.

    Four stages: the products of the shifted differences with the multipliers; the doubling
    high halves; the right shifts and their round-up decisions; the sum with the round-ups. The
    whole pipeline stalls when its output is not taken; a stage's registers hold while the stage
    before holds no vector. The rounding's masks are registers of the layer's shifts, which hold
    while a layer runs.

    Parameters
    ----------
    lanes : int

    Members
    -------
    operands : ``In(stream.Signature(operand_layout(lanes)))``
        ``x`` the first input's pixel vector, ``x2`` the second's; one output per beat.
    zero_point, zero_point2 : ``In(signed(8))``
    multiplier, multiplier2 : ``In(signed(32))``
        Q31 multipliers of the two inputs.
    right, right2 : ``In(5)``
        Their right shifts (TFLite's negative shifts, negated).
    sums : ``Out(stream.Signature(acc_layout(lanes)))``
        ``last`` on a channel tile's final pixel.
    """

    def __init__(self, *, lanes):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "operands": In(stream.Signature(operand_layout(lanes))),
            "zero_point": In(signed(8)), "zero_point2": In(signed(8)),
            "multiplier": In(signed(32)), "multiplier2": In(signed(32)), "right": In(5), "right2": In(5),
            "sums": Out(stream.Signature(acc_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        op, out = self.operands.payload, self.sums.payload
        advance = Signal()
        m.d.comb += [advance.eq(~self.sums.valid | self.sums.ready), self.operands.ready.eq(advance)]
        valid, last = [Signal(name=f"valid{s}") for s in range(3)], [Signal(name=f"last{s}") for s in range(3)]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.operands.valid), last[0].eq(op.tile_last)]
            m.d.sync += [valid[s + 1].eq(valid[s]) for s in range(2)] + [last[s + 1].eq(last[s]) for s in range(2)]
            m.d.sync += [self.sums.valid.eq(valid[2]), out.last.eq(last[2])]
        # the rounding's masks: functions of the layer's shifts, registered (they hold while a layer runs)
        masks = []
        for k, right in enumerate((self.right, self.right2)):
            power = Signal(33, name=f"power{k}")     # 2**right: half is it shifted down, below 2**right - 1
            m.d.comb += power.eq(Const(1, 1) << right)
            half, below = Signal(32, name=f"half{k}"), Signal(32, name=f"below{k}")
            half_next, below_next = rounding_masks(power)
            m.d.sync += [half.eq(half_next), below.eq(below_next)]
            masks.append((half, below))
        for i in range(L):
            shifted, rounds = [], []
            for k, (x, zp, mult, right) in enumerate(((op.x, self.zero_point, self.multiplier, self.right),
                                                      (op.x2, self.zero_point2, self.multiplier2, self.right2))):
                prod = Signal(signed(PRODUCT_BITS), name=f"prod{i}_{k}")
                high = Signal(signed(ACC_BITS + 1), name=f"high{i}_{k}")
                shr = Signal(signed(ACC_BITS), name=f"shr{i}_{k}")
                round_q = Signal(name=f"round{i}_{k}")
                diff = x[8 * i:8 * i + 8].as_signed() - zp
                # a stage's registers take a value only when the stage before holds a vector
                with m.If(advance & self.operands.valid):
                    m.d.sync += prod.eq((diff << ADD_LEFT_SHIFT) * mult)
                with m.If(advance & valid[0]):
                    m.d.sync += high.eq(_srdhm(prod))
                with m.If(advance & valid[1]):
                    m.d.sync += [shr.eq(high >> right), round_q.eq(round_up(high, *masks[k]))]
                shifted.append(shr)
                rounds.append(round_q)
            with m.If(advance & valid[2]):
                m.d.sync += out.data[i].eq(shifted[0] + shifted[1] + (rounds[0] + rounds[1]))
        return m
