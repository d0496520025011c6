"""The loader: each M tile's input window from DRAM into the activation scratchpad.

Per M tile, channel tile by channel tile, the window's rows x columns in raster order: one
burst per channel tile if the window spans whole input rows, else one per row (the DRAM
layout of :mod:`mensa.contract.gemm`), into the scratchpad half the walk is not reading.

A layer with a table activation (``table``) has its 256-entry table read first, one command
at the layer's start while the M tile walker sets up, its words to the table's write port:
the DMA answers in order, so the table is in before any window word, long before the first
output is requantised.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import TABLE_ENTRIES
from mensa.hw.dma import command_layout, read_layout
from mensa.hw.gemm_layer import (MTileWalker, check_addr_bits, check_geometry, descriptor_layout,
                                 progress_layout)

__all__ = ["WindowLoader"]


class _Load(enum.Enum, shape=3):
    IDLE = 0
    TILE = 1            # take the next M tile's window, once a half is free
    PLAN = 2            # its first address and size
    SIZE = 3            # its burst size
    ISSUE = 4           # its bursts
    WAIT = 5            # its words, then commit the half


class WindowLoader(wiring.Component):
    """Reads each M tile's input window into the free half of the activation scratchpad.

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
        The layer on offer at ``start`` (its input plane size is taken then).
    layer : ``In(descriptor_layout(addr_bits))``
        The layer running.
    rd_cmd : ``Out(stream.Signature(command_layout(addr_bits, 8 * word_bytes)))``
        The window's bursts: ``act_words`` words per activation vector.
    rd_data : ``In(stream.Signature(read_layout(8 * word_bytes)))``
        Their words, in order; ``ready`` is always high.
    write : ``Out(Signature({"addr": Out(range(act_depth)), "data": Out(8 * rows), "en": Out(1)}))``
        To the scratchpad's write port: one vector per ``act_words`` words.
    commit : ``Out(Signature({"valid": Out(1), "ready": In(1)}))``
        To the scratchpad: the window is written. ``ready`` (the loader's half is free) lets
        the next window begin.
    progress : ``Out(progress_layout)``
        How far the window reads are issued, for the walk to keep its own reads behind them.
    written : ``Out(range(2 * act_depth))``
        Vectors of the current window written so far.
    table_addr, table_data, table_en : ``Out``
        The activation table's write port, a bus word per row (a layer with ``table``).
    """

    def __init__(self, *, geometry, addr_bits):
        check_geometry(geometry)
        check_addr_bits(addr_bits)
        g = self._geometry = geometry
        self._addr_bits = addr_bits
        W = 8 * g.word_bytes
        sa = (g.act_depth - 1).bit_length() or 1
        super().__init__({
            "start": In(1),
            "desc": In(descriptor_layout(addr_bits)),
            "layer": In(descriptor_layout(addr_bits)),
            "rd_cmd": Out(stream.Signature(command_layout(addr_bits, W))),
            "rd_data": In(stream.Signature(read_layout(W))),
            "write": Out(wiring.Signature({"addr": Out(range(g.act_depth)), "data": Out(8 * g.rows),
                                           "en": Out(1)})),
            "commit": Out(wiring.Signature({"valid": Out(1), "ready": In(1)})),
            "progress": Out(progress_layout),
            "written": Out(sa + 1),
            "table_addr": Out(range(max(TABLE_ENTRIES // g.word_bytes, 2))), "table_data": Out(W),
            "table_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        A, d = self._addr_bits, self.layer
        m.submodules.tiles = tiles = MTileWalker(addr_bits=A)
        state = Signal(_Load)
        n_tiles = self.progress.tiles           # M tiles whose window reads are all issued
        committed = self.commit.valid & self.commit.ready
        m.d.comb += [
            tiles.layer.eq(d), tiles.restart.eq(self.start), tiles.advance.eq(committed),
            self.progress.issuing.eq(state == _Load.ISSUE),
        ]
        with m.If(self.start):
            m.d.sync += state.eq(_Load.TILE), n_tiles.eq(0)
        cmds, done = Signal(32, name="cmds"), Signal(32, name="done")
        table_due, filling = Signal(), Signal()     # the table's command, its words, still to come
        self._issue(m, state, tiles, cmds, done, table_due)
        self._write(m, state, tiles, committed, cmds, done, filling)
        with m.If(self.start):
            m.d.sync += table_due.eq(self.desc.table), filling.eq(self.desc.table)
        return m

    def _issue(self, m, state, tiles, cmds, done, table_due):
        """The table's command first; then per M tile: its window's size and first address over
        three cycles (a product, a DSP block's, in a cycle of its own), then its bursts."""
        g, A, d = self._geometry, self._addr_bits, self.layer
        R, ab, aw = g.rows, g.act_bytes, g.act_words
        n_tiles = self.progress.tiles
        # the layer's own sizes, a cycle or two after start (the first burst is later still)
        # of one channel tile of the input in DRAM
        in_pixels = Signal(32)
        in_plane = Signal(A)
        row_bytes, row_words = Signal(A, name="row_bytes"), Signal(32, name="row_words")
        m.d.sync += [in_pixels.eq(d.in_h * d.in_w), in_plane.eq(in_pixels * ab),
                     row_bytes.eq(d.in_w * ab), row_words.eq(d.in_w * aw)]
        ch, y = self.progress.channel, Signal(16)
        ct_addr, addr = Signal(A, name="ct_addr"), Signal(A, name="addr")
        bursts = Signal(16)                     # bursts per channel tile
        count = Signal(32)                      # words per burst, less one
        win_h = Signal(16)
        win_w = Signal(16)
        win_w_words = Signal(32)
        full = Signal()                         # the window spans whole input rows
        first_pixel, ix_lo = Signal(32, name="first_pixel"), Signal(16, name="ix_lo")
        full_words = Signal(32)                 # the window's words per channel tile, if full
        with m.If(table_due):
            m.d.comb += [self.rd_cmd.valid.eq(1), self.rd_cmd.payload.addr.eq(d.table_addr),
                         self.rd_cmd.payload.count.eq(TABLE_ENTRIES // g.word_bytes - 1)]
            with m.If(self.rd_cmd.ready):
                m.d.sync += table_due.eq(0)
        with m.Else():
            m.d.comb += [self.rd_cmd.payload.addr.eq(addr), self.rd_cmd.payload.count.eq(count)]
        with m.If(state == _Load.TILE):
            # the next half is free once the walk has released the tile before last
            with m.If(self.commit.ready & tiles.valid):
                m.d.sync += [
                    win_h.eq(tiles.iy_hi - tiles.iy_lo), win_w.eq(tiles.ix_hi - tiles.ix_lo),
                    win_w_words.eq((tiles.ix_hi - tiles.ix_lo) * aw),
                    full.eq((tiles.ix_lo == 0) & (tiles.ix_hi == d.in_w)),
                    first_pixel.eq(tiles.iy_lo * d.in_w), ix_lo.eq(tiles.ix_lo),
                    ch.eq(0), y.eq(0), cmds.eq(0), done.eq(0),
                ]
                with m.If((tiles.iy_hi == tiles.iy_lo) | (tiles.ix_hi == tiles.ix_lo)):
                    m.d.sync += state.eq(_Load.WAIT), n_tiles.eq(n_tiles + 1)      # all padding
                with m.Else():
                    m.d.sync += state.eq(_Load.PLAN)
        with m.If(state == _Load.PLAN):
            first = Signal(A)
            m.d.comb += first.eq(d.input_addr + (first_pixel + ix_lo) * ab)
            m.d.sync += [
                bursts.eq(Mux(full, 1, win_h)), full_words.eq(win_h * row_words),
                ct_addr.eq(first), addr.eq(first), state.eq(_Load.SIZE),
            ]
        with m.If(state == _Load.SIZE):
            m.d.sync += count.eq(Mux(full, full_words, win_w_words) - 1), state.eq(_Load.ISSUE)
        with m.If((state == _Load.ISSUE) & ~table_due):
            m.d.comb += self.rd_cmd.valid.eq(1)
            with m.If(self.rd_cmd.ready):
                m.d.sync += cmds.eq(cmds + 1)
                with m.If(y + 1 < bursts):
                    m.d.sync += y.eq(y + 1), addr.eq(addr + row_bytes)
                with m.Else():
                    m.d.sync += [y.eq(0), ch.eq(ch + R), ct_addr.eq(ct_addr + in_plane),
                                 addr.eq(ct_addr + in_plane)]
                    with m.If(ch + R >= d.k):
                        m.d.sync += state.eq(_Load.WAIT), n_tiles.eq(n_tiles + 1)

    def _write(self, m, state, tiles, committed, cmds, done, filling):
        """The table's words to the table (while ``filling``); the window's words to the
        scratchpad, vector by vector; the commit."""
        g = self._geometry
        R, W = g.rows, 8 * g.word_bytes
        word = self.rd_data.payload.data
        t_word = self.table_addr
        m.d.comb += [self.table_data.eq(word), self.table_en.eq(self.rd_data.valid & filling)]
        with m.If(self.table_en):
            m.d.sync += t_word.eq(t_word + 1)
            with m.If(self.rd_data.payload.last):
                m.d.sync += filling.eq(0)
        with m.If(self.start):
            m.d.sync += t_word.eq(0)
        # act_words words to a vector, written to the scratchpad in order; the words before a
        # vector's last wait in the gather buffer
        words = self.rd_data.valid & ~filling       # (ready is always high)
        gbuf = Signal(max(g.act_words - 1, 1) * W)
        gi = Signal(range(max(g.act_words, 2)))
        waddr = self.written
        vector = Cat(gbuf[:(g.act_words - 1) * W], word) if g.act_words > 1 else word
        vend = Signal()
        m.d.comb += [
            self.rd_data.ready.eq(1),
            vend.eq(gi == g.act_words - 1),
            self.write.addr.eq(waddr), self.write.data.eq(vector[:8 * R]), self.write.en.eq(words & vend),
        ]
        with m.If(words):
            with m.If(vend):
                m.d.sync += gi.eq(0), waddr.eq(waddr + 1)
            with m.Else():
                m.d.sync += gi.eq(gi + 1)
                if g.act_words > 1:
                    m.d.sync += gbuf.eq(Cat(gbuf[W:], word) if g.act_words > 2 else word)
            with m.If(self.rd_data.payload.last):
                m.d.sync += done.eq(done + 1)
        m.d.comb += self.commit.valid.eq((state == _Load.WAIT) & (done == cmds))
        with m.If(committed):
            m.d.sync += waddr.eq(0), state.eq(_Load.TILE)
            with m.If(tiles.last):
                m.d.sync += state.eq(_Load.IDLE)
