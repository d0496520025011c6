"""The writer: the requantised output to DRAM, one write command per M tile and N tile.

Output tile ``(M tile, N tile)`` is ``rows x cols`` output vectors at N tile ``t``'s plane
(``t * M * out_bytes``) plus the M tile's first pixel, the DRAM layout of
:mod:`mensa.contract.gemm`; the tiles leave in the walk's order, N tiles inside M tiles.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.dma import command_layout, write_layout
from mensa.hw.gemm_layer import MTileWalker, check_addr_bits, check_geometry, descriptor_layout
from mensa.hw.requant import out_layout

__all__ = ["OutputWriter"]


class OutputWriter(wiring.Component):
    """Issues a layer's output writes, streams the output vectors and counts the acknowledgements.

    The write commands are offered from the layer's start, one per tile, as fast as the DMA
    takes them, ahead of their data. An output vector wider than the bus leaves as several
    words, the last one partial.

    Parameters
    ----------
    geometry : :class:`~mensa.contract.gemm.GemmGeometry`
    addr_bits : int
        DRAM address bits.

    Members
    -------
    start : ``In(1)``
        Begin a layer: ``desc`` is sampled, ``layer`` holds it from the next cycle on.
    desc : ``In(descriptor_layout(addr_bits))``
        The layer on offer at ``start`` (its output address is taken then).
    layer : ``In(descriptor_layout(addr_bits))``
        The layer running.
    running : ``In(1)``
        A layer runs (acknowledgements are counted only then).
    outs : ``In(stream.Signature(out_layout(cols)))``
        The requantiser's output vectors, tile by tile in write order.
    wr_cmd, wr_data, wr_done
        To the :class:`~mensa.hw.dma.DMA`'s write ports; ``wr_done`` is always ready.
    done : ``Out(1)``
        One cycle, as DRAM acknowledges the layer's last write.
    """

    def __init__(self, *, geometry, addr_bits):
        check_geometry(geometry)
        check_addr_bits(addr_bits)
        self._geometry = geometry
        self._addr_bits = addr_bits
        W = 8 * geometry.word_bytes
        super().__init__({
            "start": In(1),
            "desc": In(descriptor_layout(addr_bits)),
            "layer": In(descriptor_layout(addr_bits)),
            "running": In(1),
            "outs": In(stream.Signature(out_layout(geometry.cols))),
            "wr_cmd": Out(stream.Signature(command_layout(addr_bits, W))),
            "wr_data": Out(stream.Signature(write_layout(W))),
            "wr_done": In(stream.Signature(2)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g, A, d = self._geometry, self._addr_bits, self.layer
        C, W, wb = g.cols, 8 * g.word_bytes, g.word_bytes
        m.submodules.tiles = tiles = MTileWalker(addr_bits=A, window=False)
        o_tile = Signal(A)                      # bytes of one N tile of C: M output vectors
        m.d.sync += o_tile.eq(d.m * g.out_bytes)         # (a cycle after start, long before it is used)
        writing = Signal()
        o_addr, o_mbase = Signal(A, name="o_addr"), Signal(A, name="o_mbase")
        wn0 = Signal(16)
        wmt = tiles.pixels
        o_step = Signal(A)                      # bytes of the M tile's outputs of one N tile
        count = Signal(32)                      # words of a write command, less one
        # (from the walker's pixel count, before the walker is valid)
        m.d.sync += count.eq(wmt * g.out_words - 1), o_step.eq(wmt * g.out_bytes)
        issued, acked = Signal(32, name="issued"), Signal(32, name="acked")
        cmd_go = self.wr_cmd.valid & self.wr_cmd.ready
        m.d.comb += [
            tiles.layer.eq(d), tiles.restart.eq(self.start),
            tiles.advance.eq(cmd_go & (wn0 + C >= d.n)),
        ]
        with m.If(self.start):
            m.d.sync += [writing.eq(1), o_addr.eq(self.desc.output_addr), o_mbase.eq(self.desc.output_addr),
                         wn0.eq(0), issued.eq(0), acked.eq(0)]
        m.d.comb += [
            self.wr_cmd.valid.eq(writing & tiles.valid),
            self.wr_cmd.payload.addr.eq(o_addr),
            self.wr_cmd.payload.count.eq(count),
        ]
        with m.If(cmd_go):
            m.d.sync += issued.eq(issued + 1)
            with m.If(wn0 + C >= d.n):
                m.d.sync += [wn0.eq(0), o_mbase.eq(o_mbase + o_step), o_addr.eq(o_mbase + o_step)]
                with m.If(tiles.last):
                    m.d.sync += writing.eq(0)
            with m.Else():
                m.d.sync += wn0.eq(wn0 + C), o_addr.eq(o_addr + o_tile)
        o_idx = Signal(range(max(g.out_words, 2)))
        o_end = Signal()
        out_bits = self.outs.payload.data.as_value()
        m.d.comb += [
            o_end.eq(o_idx == g.out_words - 1),
            self.wr_data.valid.eq(self.outs.valid),
            self.outs.ready.eq(self.wr_data.ready & o_end),
            self.wr_done.ready.eq(1),
        ]
        for i in range(g.out_words):
            lanes = min(wb, C - i * wb)
            with m.If(o_idx == i):
                m.d.comb += [self.wr_data.payload.data.eq(out_bits[i * W:i * W + 8 * lanes]),
                             self.wr_data.payload.strb.eq((1 << lanes) - 1)]
        with m.If(self.wr_data.valid & self.wr_data.ready):
            m.d.sync += o_idx.eq(Mux(o_end, 0, o_idx + 1))
        with m.If(self.wr_done.valid & self.running):
            m.d.sync += acked.eq(acked + 1)
            with m.If(~writing & (acked + 1 == issued)):
                m.d.comb += self.done.eq(1)
        return m
