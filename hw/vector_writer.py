"""The vector unit's output writer: one DMA write per channel-tile plane, each pixel vector in whole words."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.dma import command_layout, write_layout
from mensa.hw.requant import out_layout
from mensa.hw.vector_layer import vector_desc_layout

__all__ = ["VectorWriter"]


class VectorWriter(wiring.Component):
    """Writes the requantised pixel vectors to the output planes; ``done`` once DRAM has them all.

    Plane ``t`` (``m`` pixel vectors) starts at ``output_addr + t * m * pixel_bytes``; a pixel
    vector's bytes beyond ``lanes`` are not written (their strobes are low).

    Parameters
    ----------
    geometry : :class:`~mensa.contract.vector_program.VectorGeometry`
    addr_bits : int

    Members
    -------
    start : ``In(1)``
    layer : ``In(vector_desc_layout(addr_bits))``
    outs : ``In(stream.Signature(out_layout(lanes)))``
        The output pixel vectors, plane after plane.
    wr_cmd, wr_data, wr_done
        To the DMA's write ports.
    done : ``Out(1)``
        One cycle, as the last plane's write is acknowledged.
    """

    def __init__(self, *, geometry, addr_bits):
        g = self._g = geometry
        W = 8 * g.word_bytes
        super().__init__({
            "start": In(1), "layer": In(vector_desc_layout(addr_bits)),
            "outs": In(stream.Signature(out_layout(g.lanes))),
            "wr_cmd": Out(stream.Signature(command_layout(addr_bits, W))),
            "wr_data": Out(stream.Signature(write_layout(W))),
            "wr_done": In(stream.Signature(2)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g, d = self._g, self.layer
        W, wb, pw = 8 * g.word_bytes, g.word_bytes, g.pixel_words
        pshift = (g.pixel_bytes - 1).bit_length()
        pw_shift = (pw - 1).bit_length()
        writing = Signal()
        addr = Signal.like(self.wr_cmd.payload.addr)
        issued, acked = Signal(16), Signal(16)
        with m.If(self.start):
            m.d.sync += writing.eq(d.tiles != 0), addr.eq(d.output_addr), issued.eq(0), acked.eq(0)
        m.d.comb += [self.wr_cmd.valid.eq(writing), self.wr_cmd.payload.addr.eq(addr),
                     self.wr_cmd.payload.count.eq((d.m << pw_shift) - 1)]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += issued.eq(issued + 1), addr.eq(addr + (d.m << pshift))
            with m.If(issued + 1 == d.tiles):
                m.d.sync += writing.eq(0)

        idx = Signal(range(max(pw, 2)))
        end = Signal()
        bits = self.outs.payload.data.as_value()
        m.d.comb += [end.eq(idx == pw - 1), self.wr_data.valid.eq(self.outs.valid),
                     self.outs.ready.eq(self.wr_data.ready & end), self.wr_done.ready.eq(1)]
        for i in range(pw):
            lanes = min(wb, g.lanes - i * wb)
            with m.If(idx == i):
                m.d.comb += [self.wr_data.payload.data.eq(bits[i * W:i * W + 8 * lanes]),
                             self.wr_data.payload.strb.eq((1 << lanes) - 1)]
        with m.If(self.wr_data.valid & self.wr_data.ready):
            m.d.sync += idx.eq(Mux(end, 0, idx + 1))
        with m.If(self.wr_done.valid & ~self.start):
            m.d.sync += acked.eq(acked + 1)
            with m.If(~writing & (acked + 1 == issued)):
                m.d.comb += self.done.eq(1)
        return m
