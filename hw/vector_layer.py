"""What the parts of the vector unit share: the layer descriptor, the read routes and the tap stream.

The vector unit (:class:`~mensa.hw.vector.VectorUnit`) walks a layer of
:mod:`mensa.contract.vector_program` with several blocks at once: the read issue, the
loader, the window walk, the operand fetch, the lane MACs, the requantiser and the writer.
"""

from amaranth.hdl import Signal
from amaranth.lib import data

from mensa.contract.regs import OPCODES
from mensa.core.ir import Op

__all__ = ["vector_desc_layout", "tap_layout", "operand_layout", "Q", "WTS", "ROW", "ROW2", "TBL", "route_layout",
           "mode_layout",
           "decode_mode"]


def vector_desc_layout(addr_bits):
    """The descriptor registers the vector unit reads, plus the quantities derived from them
    once per layer (``tiles``: channel tiles, ``taps``: kernel taps, ``m``: output pixels)."""
    return data.StructLayout({
        "op": 4, "in_h": 16, "in_w": 16, "out_h": 16, "out_w": 16, "tiles": 16, "taps": 8, "m": 32,
        "kernel_h": 8, "kernel_w": 8, "stride_h": 8, "stride_w": 8, "dilation_h": 8, "dilation_w": 8,
        "pad_top": 8, "pad_bottom": 8, "pad_left": 8, "line_rows": 8,
        "in_zero_point": 8, "in2_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8,
        "in_multiplier": 32, "in_shift": 8, "in2_multiplier": 32, "in2_shift": 8, "table": 1,
        "input_addr": addr_bits, "input2_addr": addr_bits, "table_addr": addr_bits, "weight_addr": addr_bits,
        "quant_addr": addr_bits, "output_addr": addr_bits,
    })


# What a read command's words are (the read route): a channel tile's quantisation record, its
# kernel's tap vectors, one input row of its plane, (an add) the second input's same row, or
# (once per layer, first) the activation table.
Q, WTS, ROW, ROW2, TBL = 0, 1, 2, 3, 4
route_layout = 3


def tap_layout(line_depth, weight_depth):
    """One multiply-accumulate of every lane: the line buffer's pixel vector (or the zero point,
    ``pad``), the weight bank's tap vector, and where it falls in the pixel's sum (``first``,
    ``last``) and in the channel tile (``tile_last``: the tile's last pixel's last tap)."""
    return data.StructLayout({"line_addr": range(line_depth), "weight_addr": range(weight_depth), "pad": 1,
                              "first": 1, "last": 1, "tile_last": 1})


def operand_layout(lanes):
    """A tap's operands, ``lanes`` int8 activations ``x`` (and ``x2``, an add's second input) and weights
    ``w``, with the tap's flags."""
    return data.StructLayout({"x": 8 * lanes, "x2": 8 * lanes, "w": 8 * lanes, "pad": 1, "first": 1, "last": 1,
                              "tile_last": 1})


#: What an opcode asks of the unit's parts: kernel taps from DRAM (``weights``: depthwise; mul's
#: gate, one tap per channel tile from the second input), the zero points subtracted in the lanes
#: (``offsets``: mul), a quantisation record per channel tile and the sums through the requantiser
#: (``record``: depthwise, add, mul, global average pool), the pool reducer instead (``pool``: max
#: and average pool; ``max``: max pool), sums of the plain inputs (``plain``: no weights), a window
#: of whole planes read row by row (``stream``: global average pool, one output pixel per plane,
#: its rows handed back as they are summed), and two inputs read row by row together, rescaled and
#: added (``add``).
mode_layout = data.StructLayout({"weights": 1, "offsets": 1, "record": 1, "pool": 1, "max": 1, "plain": 1,
                                 "stream": 1, "add": 1})


def decode_mode(m, op):
    """The :data:`mode_layout` flags of opcode ``op`` (a 4-bit value), as a combinational signal."""
    mode = Signal(mode_layout)
    dw, gap = op == OPCODES[Op.DEPTHWISE], op == OPCODES[Op.GLOBAL_AVGPOOL]
    mx, avg, mul = op == OPCODES[Op.MAXPOOL], op == OPCODES[Op.AVGPOOL], op == OPCODES[Op.MUL]
    add = op == OPCODES[Op.ADD]
    m.d.comb += [mode.weights.eq(dw | mul), mode.offsets.eq(mul), mode.record.eq(dw | gap | mul | add),
                 mode.pool.eq(mx | avg), mode.max.eq(mx), mode.plain.eq(~(dw | mul)), mode.stream.eq(gap),
                 mode.add.eq(add)]
    return mode
