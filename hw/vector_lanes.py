"""The vector unit's datapath: the line buffer and weight banks read per tap, and one MAC per lane.

:class:`OperandFetch` holds the line buffer (a ring of input rows, ``lanes`` channels per
pixel vector) and the two weight banks, and reads one tap's operands per cycle: a padded
tap reads the input zero point instead (the quantisation record's bias has the zero point
folded in, so a padded tap adds nothing). :class:`LaneMacArray` multiplies and accumulates
them, one int8 x int8 product per lane and cycle, and hands each output pixel's int32 sums
to the requantiser. Both stall as a whole when their output is not taken.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import ACC_BITS
from mensa.hw.requant import acc_layout
from mensa.hw.vector_layer import operand_layout, tap_layout

__all__ = ["OperandFetch", "LaneMacArray"]


def _check(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


class OperandFetch(wiring.Component):
    """The line buffer and the weight banks: written by the loader, read one tap per cycle.

    Parameters
    ----------
    lanes : int
    line_depth : int
        Pixel vectors of the line buffer.
    weight_depth : int
        Tap vectors per weight bank (two banks).

    Members
    -------
    line_addr, line_data, line_en : ``In``
        The line buffer's write port.
    weight_addr, weight_data, weight_en : ``In``
        The weight banks' write port.
    zero_point : ``In(8)``
        The input zero point, read for a padded tap.
    taps : ``In(stream.Signature(tap_layout))``
    operands : ``Out(stream.Signature(operand_layout(lanes)))``
        One beat per tap, two cycles later, in order; ``x2`` the line buffer's upper half at the
        tap's place plus ``line_depth // 2`` (an add's second input).
    """

    def __init__(self, *, lanes, line_depth, weight_depth):
        for name, value in (("lanes", lanes), ("line_depth", line_depth), ("weight_depth", weight_depth)):
            _check(name, value)
        self._lanes, self._line_depth, self._weight_depth = lanes, line_depth, weight_depth
        super().__init__({
            "line_addr": In(range(line_depth)), "line_data": In(8 * lanes), "line_en": In(1),
            "weight_addr": In(range(2 * weight_depth)), "weight_data": In(8 * lanes), "weight_en": In(1),
            "zero_point": In(8),
            "taps": In(stream.Signature(tap_layout(line_depth, 2 * weight_depth))),
            "operands": Out(stream.Signature(operand_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        m.submodules.line = line = memory.Memory(shape=8 * L, depth=self._line_depth, init=[])
        m.submodules.weights = weights = memory.Memory(shape=8 * L, depth=2 * self._weight_depth, init=[])
        lw, ww = line.write_port(), weights.write_port()
        lr, lr2, wr = line.read_port(), line.read_port(), weights.read_port()
        m.d.comb += [lw.addr.eq(self.line_addr), lw.data.eq(self.line_data), lw.en.eq(self.line_en),
                     ww.addr.eq(self.weight_addr), ww.data.eq(self.weight_data), ww.en.eq(self.weight_en)]

        # Two stages: the block RAMs' reads (their read data holds while the pipeline stalls), then the
        # operands' registers, so nothing follows the read data in its cycle but the pad select.
        advance = Signal()
        tp, op = self.taps.payload, self.operands.payload
        read = Signal.like(tp, name="read")             # the tap whose vectors the RAMs hold
        read_valid = Signal()
        m.d.comb += [
            advance.eq(~self.operands.valid | self.operands.ready),
            self.taps.ready.eq(advance),
            lr.addr.eq(tp.line_addr), wr.addr.eq(tp.weight_addr), lr.en.eq(advance), wr.en.eq(advance),
            lr2.addr.eq(tp.line_addr + self._line_depth // 2), lr2.en.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [read_valid.eq(self.taps.valid), read.eq(tp), self.operands.valid.eq(read_valid),
                         op.x.eq(Mux(read.pad, Cat(*[self.zero_point for _ in range(L)]), lr.data)),
                         op.x2.eq(lr2.data), op.w.eq(wr.data), op.pad.eq(read.pad), op.first.eq(read.first),
                         op.last.eq(read.last), op.tile_last.eq(read.tile_last)]
        return m


class LaneMacArray(wiring.Component):
    """``lanes`` int8 multiply-accumulate lanes: a pixel's taps in, its int32 sums out.

    Two stages: the products, then the sum (restarted on a ``first`` tap); a ``last`` tap's
    sum goes out, ``last`` set on a channel tile's final pixel (``tile_last``).

    Parameters
    ----------
    lanes : int

    Members
    -------
    operands : ``In(stream.Signature(operand_layout(lanes)))``
    sums : ``Out(stream.Signature(acc_layout(lanes)))``
    plain : ``In(1)``
        Sum the activations themselves (the weights are ignored): a global average pool.
    x_offset, w_offset : ``In(signed(8))``
        Subtracted from every activation and weight before the product (mul's zero points; 0
        otherwise: depthwise folds its zero point into the bias).
    busy : ``Out(1)``
        An operand is taken this cycle.
    """

    def __init__(self, *, lanes):
        _check("lanes", lanes)
        self._lanes = lanes
        super().__init__({
            "operands": In(stream.Signature(operand_layout(lanes))),
            "sums": Out(stream.Signature(acc_layout(lanes))),
            "plain": In(1), "x_offset": In(signed(8)), "w_offset": In(signed(8)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        op, out = self.operands.payload, self.sums.payload
        advance = Signal()
        m.d.comb += [advance.eq(~self.sums.valid | self.sums.ready), self.operands.ready.eq(advance),
                     self.busy.eq(self.operands.valid & advance)]
        p_valid, p_first, p_last, p_tile_last = Signal(), Signal(), Signal(), Signal()
        prods = [Signal(signed(18), name=f"prod{i}") for i in range(L)]
        acc = [Signal(signed(ACC_BITS), name=f"acc{i}") for i in range(L)]
        with m.If(advance):
            m.d.sync += [p_valid.eq(self.operands.valid), p_first.eq(op.first), p_last.eq(op.last),
                         p_tile_last.eq(op.tile_last), self.sums.valid.eq(p_valid & p_last),
                         out.last.eq(p_tile_last)]
            for i in range(L):
                x = op.x[8 * i:8 * i + 8].as_signed() - self.x_offset
                w = op.w[8 * i:8 * i + 8].as_signed() - self.w_offset
                m.d.sync += prods[i].eq(Mux(self.plain, x, x * w))
            with m.If(p_valid):
                for i in range(L):
                    s = (Mux(p_first, 0, acc[i]) + prods[i])[:ACC_BITS].as_signed()
                    m.d.sync += acc[i].eq(s), out.data[i].eq(s)
        return m
