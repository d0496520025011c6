"""Two read masters on the DMA's one read port, each given back its own words.

The GEMM sequencer reads DRAM for two masters: the loader (each M tile's input window) and
the walk (quantisation records and weights). The DMA answers commands in order, so a queue
of one-bit tags, written as a command is issued and read as its burst's last word passes,
says whose the words at the head of the read data are.
"""

from amaranth.hdl import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.dma import command_layout, read_layout
from mensa.hw.gemm_layer import check_addr_bits
from mensa.hw.queue import Queue

__all__ = ["ReadArbiter"]

_LOAD, _WALK = 1, 0


class ReadArbiter(wiring.Component):
    """The walk's and the loader's read commands onto ``rd_cmd``, and their words back.

    The walk has priority. A command is issued only while the tag queue has room, so at most
    ``depth`` bursts are in flight.

    Parameters
    ----------
    addr_bits, data_bits : int
        The DMA's address and data widths.
    depth : int
        Bursts in flight (the tag queue's depth).

    Members
    -------
    walk_cmd, load_cmd : ``In(stream.Signature(command_layout(addr_bits, data_bits)))``
        The two masters' read commands; ``load_cmd`` is taken only in a cycle ``walk_cmd``
        is not offered.
    rd_cmd : ``Out(stream.Signature(command_layout(addr_bits, data_bits)))``
        To the DMA.
    rd_data : ``In(stream.Signature(read_layout(data_bits)))``
        From the DMA, bursts in command order.
    walk_data, load_data : ``Out(stream.Signature(read_layout(data_bits)))``
        Each master's words, with ``rd_data``'s payload; a burst goes whole to its master.
    """

    def __init__(self, *, addr_bits, data_bits, depth):
        check_addr_bits(addr_bits)
        if (not isinstance(data_bits, int) or isinstance(data_bits, bool) or data_bits < 8
                or data_bits & (data_bits - 1)):
            raise ValueError(f"data_bits must be a power of two of at least 8, not {data_bits!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._depth = depth
        cmd = stream.Signature(command_layout(addr_bits, data_bits))
        words = stream.Signature(read_layout(data_bits))
        super().__init__({
            "walk_cmd": In(cmd), "load_cmd": In(cmd), "rd_cmd": Out(cmd),
            "rd_data": In(words), "walk_data": Out(words), "load_data": Out(words),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.source = source = Queue(1, depth=self._depth)
        walk, load, cmd = self.walk_cmd, self.load_cmd, self.rd_cmd
        m.d.comb += [
            cmd.valid.eq((walk.valid | load.valid) & source.w.ready),
            cmd.payload.eq(Mux(walk.valid, walk.payload, load.payload)),
            walk.ready.eq(source.w.ready & cmd.ready),
            load.ready.eq(~walk.valid & source.w.ready & cmd.ready),
            source.w.payload.eq(~walk.valid),
            source.w.valid.eq(cmd.valid & cmd.ready),
        ]
        data = self.rd_data
        tag = source.r.payload
        m.d.comb += [
            self.load_data.payload.eq(data.payload),
            self.walk_data.payload.eq(data.payload),
            self.load_data.valid.eq(data.valid & source.r.valid & (tag == _LOAD)),
            self.walk_data.valid.eq(data.valid & source.r.valid & (tag == _WALK)),
            data.ready.eq(source.r.valid & Mux(tag == _LOAD, self.load_data.ready, self.walk_data.ready)),
            source.r.ready.eq(data.valid & data.ready & data.payload.last),
        ]
        return m
