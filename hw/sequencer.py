"""The GEMM sequencer of the systolic accelerator and the geometry it shares with the compiler.

A pointwise convolution or a fully connected layer is one matrix product
``C (M x N) = A (M x K) @ B (K x N)``: M pixels (or batch rows), K input channels, N
output channels. The sequencer walks it as N tiles of ``cols`` output channels by K
tiles of ``rows`` input channels; for each N tile it reads the tile's quantisation
record, then per K tile the ``rows`` weight vectors and the M activation vectors of
that K tile, and streams them through the weight-stationary array. The K tiles'
partial sums accumulate in an int32 accumulator buffer (M entries of ``cols`` lanes);
the last K tile's sums go through the requantiser and are written back.

:class:`GemmGeometry` is the one description of the DRAM layout (every vector one bus
word, in the order the sequencer reads it) that the RTL is built from and
:mod:`mensa.gen.program` writes.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.config import AcceleratorConfig, ConfigError, Dataflow
from mensa.hw.dma import command_layout, read_layout, write_layout
from mensa.hw.requant import ACC_BITS, SHIFT_BITS, acc_layout, out_layout, quant_layout
from mensa.hw.systolic import act_layout, psum_layout

__all__ = ["GemmGeometry", "GemmSequencer", "descriptor_layout", "ROUTE_DEPTH"]

ROUTE_DEPTH = 8         # DRAM reads in flight, each tagged with where its words go


@dataclass(frozen=True)
class GemmGeometry:
    """Sizes of the GEMM datapath and of its DRAM layout, from one accelerator config.

    Members
    -------
    rows, cols : int
        The array: ``rows`` input channels (K) by ``cols`` output channels (N) per tile.
    word_bytes : int
        Bytes per AXI data word; one activation, weight or output vector per word.
    acc_depth : int
        Accumulator entries (``cols`` int32 lanes each): the largest M.
    quant_words : int
        Bus words of one N tile's quantisation record: ``cols`` int32 biases, ``cols``
        int32 multipliers, ``cols`` int8 shifts, packed and padded to a whole word.
    """
    rows: int
    cols: int
    word_bytes: int
    acc_depth: int
    quant_words: int

    @classmethod
    def of(cls, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        a, wb = config.array, config.memory.data_bits // 8
        where = f"accelerator {config.name!r}"
        if a.dataflow is not Dataflow.WEIGHT_STATIONARY:
            raise ConfigError(f"{where}: array.dataflow 'os' has no accelerator top yet; allowed: 'ws'")
        if (a.input_bits, a.weight_bits, a.acc_bits) != (8, 8, ACC_BITS):
            raise ConfigError(f"{where}: array widths {a.input_bits}/{a.weight_bits}/{a.acc_bits} bits; "
                              f"the accelerator top runs int8 x int8 -> int32 (8/8/32) only")
        if max(a.rows, a.cols) > wb:
            raise ConfigError(f"{where}: a {a.rows}x{a.cols} array needs vectors of up to {max(a.rows, a.cols)} "
                              f"bytes, wider than the {config.memory.data_bits}-bit bus; allowed: "
                              f"rows and cols <= memory.data_bits / 8")
        entries = config.buffers.acc_kib * 1024 // (a.cols * 4)
        if entries < 1:
            raise ConfigError(f"{where}: buffers.acc_kib {config.buffers.acc_kib} holds no {a.cols}-lane entry")
        record = a.cols * (4 + 4 + 1)
        return cls(rows=a.rows, cols=a.cols, word_bytes=wb, acc_depth=1 << (entries.bit_length() - 1),
                   quant_words=-(-record // wb))

    @property
    def quant_bytes(self):
        return self.quant_words * self.word_bytes


def descriptor_layout(addr_bits):
    """What the sequencer reads from the descriptor registers."""
    return data.StructLayout({
        "m": 24, "k": 16, "n": 16,
        "in_zero_point": 8, "out_zero_point": 8, "qmin": 8, "qmax": 8,
        "input_addr": addr_bits, "weight_addr": addr_bits, "quant_addr": addr_bits, "output_addr": addr_bits,
    })
