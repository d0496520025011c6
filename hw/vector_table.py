"""The vector unit's table activation: every lane's requantised int8 value ``q`` becomes ``T[q + 128]``.

The 256-entry int8 table (:func:`mensa.core.golden.activation_table`: sigmoid, tanh,
hard-swish, hard-sigmoid) is loaded from DRAM at the layer's start, a bus word (``word_bytes``
entries) per memory row; each lane has its own read port, so every lane looks up in the
same cycle.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import TABLE_ENTRIES
from mensa.hw.requant import out_layout

__all__ = ["TableActivation"]


class TableActivation(wiring.Component):
    """``lanes`` lookups per cycle in a 256-entry int8 table, or a pass-through when not ``enable``\\ d.

    Parameters
    ----------
    lanes : int
    word_bytes : int
        Table entries per written word (the bus word), a power of two.

    Members
    -------
    w_addr, w_data, w_en : ``In``
        The table's write port: word ``w_addr`` holds entries ``w_addr * word_bytes ..``.
    enable : ``In(1)``
        Look up; 0 passes the values through.
    ins : ``In(stream.Signature(out_layout(lanes)))``
    outs : ``Out(stream.Signature(out_layout(lanes)))``
        One beat per input beat, a cycle later, with its ``last``.
    """

    def __init__(self, *, lanes, word_bytes):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if not isinstance(word_bytes, int) or word_bytes < 1 or word_bytes & (word_bytes - 1) or word_bytes > 256:
            raise ValueError(f"word_bytes must be a power of two in 1..256, not {word_bytes!r}")
        self._lanes, self._wb = lanes, word_bytes
        words = TABLE_ENTRIES // word_bytes
        super().__init__({
            "w_addr": In(range(max(words, 2))), "w_data": In(8 * word_bytes), "w_en": In(1),
            "enable": In(1),
            "ins": In(stream.Signature(out_layout(lanes))),
            "outs": Out(stream.Signature(out_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        L, wb = self._lanes, self._wb
        shift = (wb - 1).bit_length()
        m.submodules.table = table = memory.Memory(shape=8 * wb, depth=TABLE_ENTRIES // wb, init=[])
        wp = table.write_port()
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en)]
        advance = Signal()
        m.d.comb += [advance.eq(~self.outs.valid | self.outs.ready), self.ins.ready.eq(advance)]
        with m.If(advance):
            m.d.sync += [self.outs.valid.eq(self.ins.valid), self.outs.payload.last.eq(self.ins.payload.last)]
        for i in range(L):
            rp = table.read_port()
            index = (self.ins.payload.data[i] + 128)[:8]
            byte, raw = Signal(max(shift, 1), name=f"byte{i}"), Signal(8, name=f"raw{i}")
            m.d.comb += [rp.addr.eq(index >> shift), rp.en.eq(advance)]
            with m.If(advance):
                m.d.sync += [byte.eq(index[:shift] if shift else 0), raw.eq(self.ins.payload.data[i])]
            entry = rp.data.word_select(byte, 8) if shift else rp.data
            m.d.comb += self.outs.payload.data[i].eq(Mux(self.enable, entry, raw))
        return m
