"""What the parts of the vector unit share: the layer descriptor, the read routes and the tap stream.

The vector unit (:class:`~mensa.hw.vector.VectorUnit`) walks a layer of
:mod:`mensa.contract.vector_program` with several blocks at once: the read issue, the
loader, the window walk, the operand fetch, the lane MACs, the requantiser and the writer.
"""

from amaranth.lib import data

__all__ = ["vector_desc_layout", "tap_layout", "operand_layout", "Q", "WTS", "ROW", "route_layout"]


def vector_desc_layout(addr_bits):
    """The descriptor registers the vector unit reads, plus the quantities derived from them
    once per layer (``tiles``: channel tiles, ``taps``: kernel taps, ``m``: output pixels)."""
    return data.StructLayout({
        "in_h": 16, "in_w": 16, "out_h": 16, "out_w": 16, "tiles": 16, "taps": 8, "m": 32,
        "kernel_h": 8, "kernel_w": 8, "stride_h": 8, "stride_w": 8, "dilation_h": 8, "dilation_w": 8,
        "pad_top": 8, "pad_bottom": 8, "pad_left": 8, "line_rows": 8,
        "in_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8,
        "input_addr": addr_bits, "weight_addr": addr_bits, "quant_addr": addr_bits, "output_addr": addr_bits,
    })


# What a read command's words are (the read route): a channel tile's quantisation record, its
# kernel's tap vectors, or one input row of its plane.
Q, WTS, ROW = 0, 1, 2
route_layout = 2


def tap_layout(line_depth, weight_depth):
    """One multiply-accumulate of every lane: the line buffer's pixel vector (or the zero point,
    ``pad``), the weight bank's tap vector, and where it falls in the pixel's sum (``first``,
    ``last``) and in the channel tile (``tile_last``: the tile's last pixel's last tap)."""
    return data.StructLayout({"line_addr": range(line_depth), "weight_addr": range(weight_depth), "pad": 1,
                              "first": 1, "last": 1, "tile_last": 1})


def operand_layout(lanes):
    """A tap's operands, ``lanes`` int8 activations ``x`` and weights ``w``, with the tap's flags."""
    return data.StructLayout({"x": 8 * lanes, "w": 8 * lanes, "first": 1, "last": 1, "tile_last": 1})
