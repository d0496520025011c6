"""Cycles of a layer on an accelerator's vector unit, in closed form after its RTL (:mod:`mensa.hw.vector`).

The unit walks a layer per channel tile of ``lanes`` channels (``ceil(C / lanes)`` tiles),
one tap of every lane per cycle: ``OH * OW * taps`` cycles per tile, taps being the kernel's
(``kh * kw``; a global average pool's ``H * W`` for its one output; 1 for add and mul). Its
reads run ahead of the walk as far as the line buffer and the two weight banks allow, on a
read channel of one bus word per cycle: per tile the input plane (``H * W`` pixel vectors of
``pixel_words`` words, twice for an add), the kernel's tap vectors (depthwise; a mul's gate:
one) and the quantisation record. A tile takes the longer of the two; writes go out on
their own channel, one word per cycle. Before the first tap: the DRAM latency, the
activation table, tile 0's record and taps, and the input rows above the first output
row's windows; after the last: the pipeline (MACs, requantiser, table, writer) and DRAM's
write response, :data:`DRAIN` cycles.
"""

from mensa.contract.vector_program import VectorGeometry, window
from mensa.core.ir import Activation, Op

__all__ = ["vector_cycles", "DRAIN"]

DRAIN = 20          # the last tap to the last write's response: MACs 2, requantiser 9, table 1, writer, B channel


def vector_cycles(config, layer, *, latency):
    """Cycles from START to DONE of ``layer`` on the vector unit of ``config`` at DRAM read ``latency``."""
    g = VectorGeometry.of(config)
    _, h, w, c = layer.in_shape
    _, oh, ow, _ = layer.out_shape
    (kh, kw), _, (dh, _), (pt, _, _, _) = window(layer)
    tiles, pw = -(-c // g.lanes), g.pixel_words
    taps = kh * kw
    weight_taps = {Op.DEPTHWISE: taps, Op.MUL: 1}.get(layer.op, 0)
    record = g.quant_words if layer.op in (Op.DEPTHWISE, Op.ADD, Op.MUL, Op.GLOBAL_AVGPOOL) else 0
    inputs = 2 if layer.op is Op.ADD else 1
    table = 0 if layer.activation in (Activation.NONE, Activation.RELU, Activation.RELU6) else -(-256 // g.word_bytes)
    compute = oh * ow * taps
    reads = inputs * h * w * pw + weight_taps * pw + record
    first_rows = 1 if layer.op is Op.GLOBAL_AVGPOOL else min(h, (kh - 1) * dh + 1 - pt)
    first = latency + table + record + weight_taps * pw + first_rows * w * pw * inputs
    return max(first + tiles * compute, latency + table + tiles * max(reads, oh * ow * pw)) + DRAIN
