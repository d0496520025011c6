"""The vector unit's pool reducer: max or average of each window's taps inside the input, per lane.

Average pooling divides by the count of taps inside the input, which changes at the borders,
so the division is a multiply by an exact reciprocal from a small ROM
(:func:`reciprocal`): for every dividend a window can reach and every count, the product's
high bits are the quotient, as :func:`mensa.core.golden.avg_pool` rounds it (half away from
zero, then toward zero).
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.vector_program import KERNEL_MAX
from mensa.hw.dsp import dsp_product
from mensa.hw.requant import out_layout
from mensa.hw.vector_layer import operand_layout

__all__ = ["PoolReducer", "reciprocal", "RECIPROCAL_BITS", "COUNT_MAX", "DIVIDEND_MAX"]

COUNT_MAX = KERNEL_MAX * KERNEL_MAX            # taps of a window inside the input
DIVIDEND_MAX = COUNT_MAX * 128 + COUNT_MAX // 2  # |sum of taps| plus the rounding half
RECIPROCAL_BITS = 16                           # a reciprocal is at most 2 ** RECIPROCAL_BITS: one DSP block
assert DIVIDEND_MAX < 1 << (RECIPROCAL_BITS - 1)   # exact (reciprocal's proof)


def reciprocal(n):
    """``(r, s)`` with ``(a * r) >> s == a // n`` for ``0 <= a <= DIVIDEND_MAX`` and ``1 <= n <= COUNT_MAX``.

    ``s = RECIPROCAL_BITS + floor(log2 n)`` and ``r = ceil(2 ** s / n)``, so ``r <= 2 ** RECIPROCAL_BITS``
    (17 bits unsigned: with the 14-bit dividend, one 18x18 DSP block). Exact: with ``a = q n + t``
    (``0 <= t < n``) and ``r n = 2 ** s + e`` (``0 <= e < n``), ``a r / 2 ** s = q + (t 2 ** s + a e) / (n 2 **
    s)``, and ``a e < a n < 2 ** s`` (``DIVIDEND_MAX < 2 ** (RECIPROCAL_BITS - 1) <= 2 ** s / n``) keeps the
    fraction below 1.
    """
    s = RECIPROCAL_BITS + n.bit_length() - 1
    return -(-(1 << s) // n), s


class PoolReducer(wiring.Component):
    """Max or rounded average of each window's taps, per lane, clamped to ``qmin..qmax``.

    Four stages: the window's running maximum or sum and its count of taps inside the input
    (padded taps are skipped); the rounding and the reciprocal's lookup; the product (in a DSP
    block's output register); its shift, the sign and the clamp. The whole pipeline stalls when
    its output is not taken; a stage's registers hold while the stage before holds no window.

    Parameters
    ----------
    lanes : int

    Members
    -------
    operands : ``In(stream.Signature(operand_layout(lanes)))``
        A window's taps, ``first`` to ``last``; ``pad`` taps are outside the input.
    max : ``In(1)``
        1: the maximum; 0: the average.
    qmin, qmax : ``In(signed(8))``
        The clamp.
    outs : ``Out(stream.Signature(out_layout(lanes)))``
        One vector per window, ``last`` on a channel tile's final one.
    """

    def __init__(self, *, lanes):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = lanes
        super().__init__({
            "operands": In(stream.Signature(operand_layout(lanes))),
            "max": In(1), "qmin": In(signed(8)), "qmax": In(signed(8)),
            "outs": Out(stream.Signature(out_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        L, K = self._lanes, RECIPROCAL_BITS
        op, out = self.operands.payload, self.outs.payload
        advance = Signal()
        m.d.comb += [advance.eq(~self.outs.valid | self.outs.ready), self.operands.ready.eq(advance)]
        # an entry for every value of a count's bits (those above COUNT_MAX never occur): the case is full;
        # each the reciprocal and its shift beyond K
        extra = COUNT_MAX.bit_length() - 1
        entry = data.StructLayout({"recip": K + 1, "extra": range(extra + 1)})
        rom = Array(entry.const({"recip": r, "extra": s - K}).as_value()
                    for r, s in (reciprocal(n) if 0 < n <= COUNT_MAX else (0, K)
                                 for n in range(1 << COUNT_MAX.bit_length())))

        count, count2 = Signal(range(COUNT_MAX + 1)), Signal(range(COUNT_MAX + 1))
        v2, last2, v3, last3, v4, last4 = Signal(), Signal(), Signal(), Signal(), Signal(), Signal()
        recip, extra3 = Signal(entry), Signal(range(extra + 1))
        new_count = Mux(op.first, 0, count) + ~op.pad
        with m.If(advance):
            m.d.sync += [v2.eq(self.operands.valid & op.last), last2.eq(op.tile_last),
                         v3.eq(v2), last3.eq(last2), v4.eq(v3), last4.eq(last3),
                         self.outs.valid.eq(v4), out.last.eq(last4)]
            with m.If(v2):
                m.d.sync += recip.eq(rom[count2])
            with m.If(v3):
                m.d.sync += extra3.eq(recip.extra)
            with m.If(self.operands.valid):
                m.d.sync += count.eq(new_count), count2.eq(new_count)
        for i in range(L):
            x = op.x[8 * i:8 * i + 8].as_signed()
            acc, acc2 = Signal(signed(16), name=f"acc{i}"), Signal(signed(16), name=f"sum{i}")
            mag, neg = Signal(14, name=f"mag{i}"), Signal(name=f"neg{i}")
            mag3, neg3 = Signal(14, name=f"mag3_{i}"), Signal(name=f"neg3_{i}")
            start = Mux(self.max, -128, 0)
            base = Mux(op.first, start, acc)
            folded = Mux(op.pad, base, Mux(self.max, Mux(x > base, x, base), base + x))
            half = count2 >> 1
            num = Mux(acc2 > 0, acc2 + half, acc2 - half)
            # stage 3: the magnitude times the reciprocal, in a DSP block's output register (it holds
            # while the pipeline stalls: `advance` is its clock enable, as every stage's here)
            product = dsp_product(m, platform, mag, recip.recip, unsigned(14 + K + 1), f"quot{i}", en=advance & v3)
            q = Mux(self.max, mag3, (product >> K) >> extra3)
            kept = Mux(neg3, -q, q)
            with m.If(advance):
                with m.If(self.operands.valid):
                    m.d.sync += acc.eq(folded), acc2.eq(folded)
                # stage 2: the magnitude to divide (the maximum passes as its magnitude and sign)
                with m.If(v2):
                    m.d.sync += [mag.eq(Mux(self.max, Mux(acc2 < 0, -acc2, acc2), Mux(num < 0, -num, num))),
                                 neg.eq(Mux(self.max, acc2 < 0, num < 0))]
                with m.If(v3):
                    m.d.sync += [mag3.eq(mag), neg3.eq(neg)]
                # stage 4: the quotient's shift, its sign and the clamp
                with m.If(v4):
                    m.d.sync += out.data[i].eq(Mux(kept < self.qmin, self.qmin,
                                                   Mux(kept > self.qmax, self.qmax, kept)))
        return m
