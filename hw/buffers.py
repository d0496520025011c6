"""Banked, ping-pong on-chip scratchpads.

A :class:`Scratchpad` holds two *halves*, each split into ``banks`` banks of ``depth``
words. The loader (the DMA) fills one half while the compute side reads the other;
when the loader has filled its half it commits it, and when the compute side is done
with its half it releases it, and the two swap. The handshake is a two-entry queue
of halves, so loading the next tile overlaps computing on the current one.

Each bank is one :class:`amaranth.lib.memory.Memory` of ``2 * depth`` words (the
half is the top address bit) with one write port and one synchronous,
non-transparent read port: the shape every FPGA block RAM (ECP5 DP16KD, iCE40 SB_RAM,
Xilinx RAMB) implements directly. Banks are independent, so ``banks`` words at
different addresses are written and read in the same cycle (an im2col gather, a
vector of the array's width).
"""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Scratchpad"]


class Scratchpad(wiring.Component):
    """Two halves of ``banks`` x ``depth`` words of ``width`` bits, swapped by a handshake.

    Parameters
    ----------
    width : int
        Bits per word.
    depth : int
        Words per bank in each half, a power of two.
    banks : int
        Independent banks, each with its own write and read port.
    tag_shape : shape-like
        Payload the loader attaches to a committed half (a tile's size or coordinates),
        handed to the compute side with the half; ``0`` for none (``commit`` and ``tile``
        are then a bare ``valid``/``ready`` handshake, with no zero-width payload port).

    Members
    -------
    write : ``In(Signature({"addr": Out(range(depth)), "data": Out(width), "en": Out(1)})).array(banks)``
        Write ports of the loader's half, one per bank. A write while the loader's half is
        not free (``commit.ready`` low) is dropped: it would overwrite a half the compute
        side owns.
    commit : ``In(stream.Signature(tag_shape))``
        The loader has filled its half. ``ready`` is high while the loader's half is free
        to be written; the transfer hands that half, with the payload, to the compute side
        and moves the loader to the other half.
    read : ``In(Signature({"addr": Out(range(depth)), "en": Out(1), "data": In(width)})).array(banks)``
        Read ports of the compute side's half, one per bank; ``data`` is the word at
        ``addr`` one cycle after ``en`` (held while ``en`` is low). A read in the cycle of a
        write to the same word returns the old word.
    tile : ``Out(stream.Signature(tag_shape))``
        ``valid`` while the compute side's half holds a committed tile, with its tag; the
        compute side completes the transfer when it is done reading, which frees the half
        for the loader.
    """

    def __init__(self, *, width, depth, banks=1, tag_shape=0):
        for name, value, lo in (("width", width, 1), ("depth", depth, 1), ("banks", banks, 1)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < lo:
                raise ValueError(f"{name} must be at least {lo}, not {value!r}")
        if depth & (depth - 1):
            # the half is the top address bit of each bank: no adder in the address path
            raise ValueError(f"depth must be a power of two, not {depth!r}")
        self._width, self._depth, self._banks = width, depth, banks
        self._tag_shape = Shape.cast(tag_shape)
        write = wiring.Signature({"addr": Out(range(depth)), "data": Out(width), "en": Out(1)})
        read = wiring.Signature({"addr": Out(range(depth)), "en": Out(1), "data": In(width)})
        handshake = (stream.Signature(tag_shape) if self._tag_shape.width else
                     wiring.Signature({"valid": Out(1), "ready": In(1)}))
        super().__init__({
            "write": In(write).array(banks),
            "commit": In(handshake),
            "read": In(read).array(banks),
            "tile": Out(handshake),
        })

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def banks(self):
        return self._banks

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def bits(self):
        """Storage of both halves, in bits."""
        return 2 * self._banks * self._depth * self._width

    def elaborate(self, platform):
        m = Module()
        full = Signal(2)            # full[h]: half h holds a committed tile
        tags = [Signal(self._tag_shape, name=f"tag{h}") for h in range(2)]
        load_half = Signal()
        compute_half = Signal()

        committed = Signal(2)
        released = Signal(2)
        m.d.comb += [
            self.commit.ready.eq(~full.bit_select(load_half, 1)),
            self.tile.valid.eq(full.bit_select(compute_half, 1)),
        ]
        if self._tag_shape.width:
            m.d.comb += self.tile.payload.eq(Mux(compute_half, tags[1], tags[0]))
        with m.If(self.commit.valid & self.commit.ready):
            m.d.comb += committed.eq(1 << load_half)
            m.d.sync += load_half.eq(~load_half)
            if self._tag_shape.width:
                for h in range(2):
                    with m.If(load_half == h):
                        m.d.sync += tags[h].eq(self.commit.payload)
        with m.If(self.tile.valid & self.tile.ready):
            m.d.comb += released.eq(1 << compute_half)
            m.d.sync += compute_half.eq(~compute_half)
        m.d.sync += full.eq((full & ~released) | committed)

        abits = (self._depth - 1).bit_length()
        for b in range(self._banks):
            mem = memory.Memory(shape=self._width, depth=2 * self._depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(domain="sync")      # transparent_for=(): non-transparent
            w, r = self.write[b], self.read[b]
            m.d.comb += [
                wp.addr.eq(Cat(w.addr[:abits], load_half)),
                wp.data.eq(w.data),
                wp.en.eq(w.en & self.commit.ready),
                rp.addr.eq(Cat(r.addr[:abits], compute_half)),
                rp.en.eq(r.en),
                r.data.eq(rp.data),
            ]
        return m
