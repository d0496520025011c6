"""Widths and depths the hardware, its compilers and the cost model agree on.

Each is a fact of the contract between the RTL and the software, not a tuning knob:
changing one changes the register layouts, the memory images and the cycle counts
together, which is why they live here and not inside an Amaranth file.
"""

__all__ = ["ACC_BITS", "SHIFT_BITS", "READS_IN_FLIGHT", "PAGE_BYTES", "BURST_INCR"]

ACC_BITS = 32       # the numeric contract: int32 accumulators, bias and Q31 multipliers
SHIFT_BITS = 6      # shift in -32..31 (TFLite's quantize_multiplier gives -31..30)

READS_IN_FLIGHT = 4  # AXI4 read bursts the DMA keeps in flight (its ``outstanding`` default)
PAGE_BYTES = 4096    # an AXI4 burst must not cross a 4 KiB boundary
BURST_INCR = 1       # AXI4 AxBURST of an incrementing burst, the only kind the DMA issues
