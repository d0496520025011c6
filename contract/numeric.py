"""Widths and depths the hardware, its compilers and the cost model agree on.

Each is a fact of the contract between the RTL and the software, not a tuning knob:
changing one changes the register layouts, the memory images and the cycle counts
together, which is why they live here and not inside an Amaranth file.
"""

__all__ = ["ACC_BITS", "ACC_MAX", "SHIFT_BITS", "READS_IN_FLIGHT", "DRAM_CREDIT_WORDS", "PAGE_BYTES", "BURST_INCR",
           "TABLE_ENTRIES", "accumulator_bound", "accumulator_refusal"]

ACC_BITS = 32       # the numeric contract: int32 accumulators, bias and Q31 multipliers
SHIFT_BITS = 6      # shift in -32..31 (TFLite's quantize_multiplier gives -31..30)

READS_IN_FLIGHT = 4  # AXI4 read bursts the DMA keeps in flight (its ``outstanding`` default)
PAGE_BYTES = 4096    # an AXI4 burst must not cross a 4 KiB boundary
BURST_INCR = 1       # AXI4 AxBURST of an incrementing burst, the only kind the DMA issues
DRAM_CREDIT_WORDS = 2  # bus words of bandwidth a DRAM slower than the bus banks while idle (sim/harness)
TABLE_ENTRIES = 256  # int8 entries (bytes) of a table activation's table (mensa.core.golden.activation_table)

ACC_MAX = (1 << (ACC_BITS - 1)) - 1


def accumulator_bound(k, x_zero_point, weight_max, bias_max):
    """The largest magnitude an accumulator of ``k`` products can reach, over every int8 input.

    Each product is ``(x - x_zero_point) * w`` with ``x`` in -128..127 and ``|w| <= weight_max``;
    the bias (the zero point folded in or not: the true sum is what must fit) adds ``bias_max``.
    Two's-complement partial sums may wrap on the way; the result is exact whenever this bound
    is at most :data:`ACC_MAX`.
    """
    x_max = max(127 - x_zero_point, x_zero_point + 128)
    return k * x_max * weight_max + bias_max


def accumulator_refusal(k, x_zero_point, weight_max, bias_max):
    """None if ``k`` products fit the int32 accumulator, else the one-line reason naming K and the bound."""
    bound = accumulator_bound(k, x_zero_point, weight_max, bias_max)
    if bound <= ACC_MAX:
        return None
    x_max = max(127 - x_zero_point, x_zero_point + 128)
    k_max = (ACC_MAX - bias_max) // max(1, x_max * weight_max)
    return (f"the int32 accumulator can reach {bound:,} (K = {k:,} products of |x - zero point| <= {x_max} and "
            f"|w| <= {weight_max}, plus |bias| <= {bias_max:,}); allowed: at most {ACC_MAX:,}, "
            f"so K <= {max(0, k_max):,} with these weights and zero point")
