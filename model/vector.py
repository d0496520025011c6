"""The vector unit's cycles and bytes: windowed ops one tap of every lane per cycle, from a line buffer.

The vector unit (:mod:`mensa.hw.vector`, laid out by :mod:`mensa.contract.vector_program`)
runs depthwise convs, max and average pools and global average pools of an accelerator with
``[accelerator.vector]``. It walks ``T = ceil(C / lanes)`` channel tiles, in each the output
pixels, in each the window's taps, one tap of every lane per cycle:

    compute = T * M * taps             (a global average pool: M = 1, taps = H * W)

Its reads run ahead of the walk as far as the line buffer's ring of input rows (as many as
it holds: :func:`~mensa.contract.vector_program.ring_rows`) allows, across channel tiles,
so DRAM latency shows only:

- before the first tap: the latency, the tile's quantisation record (layers that
  requantise), its tap vectors (depthwise) and the input rows its first output row reads
  (``first``, exposed at the bus rate as :func:`mensa.model.cost.evaluate` exposes a
  first transfer), plus the pipeline (``vector_fill``, and the requantiser's stages or the pool
  reducer's product stage);
- at a tile boundary, when the ring cannot hold the next tile's first rows beside the
  rows the last output row of this tile still reads: the latency again and those rows;
- the reads in flight: every read burst (a row's, a record's, the taps', the table's) holds one
  of the DMA's ``READS_IN_FLIGHT`` slots for the latency, the turnaround and its words, so
  short rows at a long latency are bound by the slots, not by the bus.

Beyond these the unit waits only where the layer's DRAM bytes outlast its taps (the
model's bus term); its pipeline's fill follows the last input word. Every pixel vector is
``lanes`` bytes in whole bus words.
"""

import numpy as np

from mensa.contract.numeric import READS_IN_FLIGHT, TABLE_ENTRIES
from mensa.contract.vector_program import rows_that_fit
from mensa.model.tiling import cdiv

__all__ = ["vector_terms"]


def vector_terms(cols, acc, cal):
    """The vector unit's terms on the ``(L, A)`` grid.

    Parameters
    ----------
    cols : dict
        ``(L, 1)`` layer columns of :class:`~mensa.model.cost.LayerTable`: ``vec_c`` (channels),
        ``vec_m`` (output pixels a channel), ``vec_taps`` (window taps per output pixel),
        ``vec_wtaps`` (tap vectors to read a tile: a depthwise kernel, a mul's gate),
        ``vec_quant`` (1 if the layer requantises), ``vec_in_h``, ``vec_in_w`` (the input plane),
        ``vec_first_rows`` (input rows the first output row reads), ``vec_held`` (those the
        last output row reads), ``vec_inputs`` (an add's
        2), ``vec_stream`` (1 for a streaming op: a global pool, add, mul).
    acc : :class:`~mensa.model.cost.AcceleratorTable`
    cal : :class:`~mensa.model.cost.Calibration`

    Returns
    -------
    dict of ``(L, A)`` arrays: ``compute``, ``fill``, ``first`` (bytes before the first tap),
    ``boundary`` (cycles at tile boundaries), ``row_trip`` (the cycles the reads take through the
    DMA's slots, to compare with the bus and lane cycles), ``dram_w``, ``dram_a``,
    ``written`` (bytes), ``local`` (line buffer bytes written and read).
    """
    lanes = np.maximum(acc.vector_lanes, 1)
    word = acc.word_bytes
    pixel = cdiv(lanes, word) * word                       # bytes of a pixel vector in DRAM
    quant = cdiv(9 * lanes, word) * word                   # a tile's quantisation record
    c = cols
    tiles = cdiv(c["vec_c"], lanes)
    compute = tiles * c["vec_m"] * c["vec_taps"]
    row = c["vec_in_w"] * pixel
    stream = c["vec_stream"] > 0
    table = c["vec_table"] * cdiv(TABLE_ENTRIES, word) * word           # a table activation's, read first
    first = table + c["vec_quant"] * quant + c["vec_wtaps"] * pixel + c["vec_first_rows"] * row * c["vec_inputs"]
    # the ring: as many input rows as the line buffer holds (mensa.contract.vector_program.ring_rows)
    ring = rows_that_fit(c["vec_in_w"], acc.line_depth, c["vec_inputs"] > 1)
    # a tile boundary: the next tile's first rows that the ring cannot hold beside the held ones
    short = np.maximum(c["vec_first_rows"] - (ring - c["vec_held"]), 0)
    boundary = np.where(short > 0, (tiles - 1) * (acc.latency + cal.vector_boundary + cdiv(short * row, acc.bpc)), 0)
    boundary = np.where(stream, 0, boundary)
    dram_w = table + tiles * (c["vec_quant"] * quant + c["vec_wtaps"] * pixel)
    written = tiles * c["vec_m"] * pixel
    dram_a = tiles * c["vec_in_h"] * row * c["vec_inputs"] + written
    # The reads in flight: a command per input row (an add's two), record, tap vectors and table, each
    # in bursts of at most max_burst words, every burst holding one of the DMA's READS_IN_FLIGHT slots
    # for the latency, the turnaround and its words.
    burst = acc.max_burst * word
    bursts = (tiles * (c["vec_inputs"] * c["vec_in_h"] * cdiv(row, burst) + c["vec_quant"] * cdiv(quant, burst)
                       + np.where(c["vec_wtaps"] > 0, cdiv(c["vec_wtaps"] * pixel, burst), 0))
              + np.where(c["vec_table"] > 0, cdiv(TABLE_ENTRIES, burst), 0))
    read_words = cdiv(dram_w + dram_a - written, word)
    row_trip = (bursts * (acc.latency + cal.dram_turnaround) + read_words) / READS_IN_FLIGHT
    fill = (cal.vector_fill + c["vec_quant"] * cal.vector_requant + (1 - c["vec_quant"]) * cal.vector_pool
            + c["vec_table"] * cal.vector_table
            + np.where(stream, cal.vector_stream_tail, 0))
    return {"compute": compute, "fill": fill + 0 * compute, "first": first, "boundary": boundary,
            "row_trip": row_trip, "dram_w": dram_w, "dram_a": dram_a, "written": written,
            "local": tiles * c["vec_in_h"] * row * c["vec_inputs"] + compute * pixel}
