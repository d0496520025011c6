"""One vault on block RAM: a near-memory accelerator's vault port served on the chip.

On a board whose vaults are not wired to memory of their own, :class:`VaultRam` stands in for a
vault as the network harness's vault model does in simulation: it holds the words a network
compiled into the vault (:attr:`mensa.contract.network.NetworkProgram.vaults`, little-endian)
and answers each request of ``req`` (a word address) with the word on ``resp``, in request order,
the cycle after it was taken. A word beyond those stored reads as zero.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["VaultRam", "vault_words"]


def vault_words(contents, bits):
    """``contents`` (uint8, from word 0) as the list of ``bits``-wide words, little-endian, the last padded."""
    word = bits // 8
    data = np.ascontiguousarray(contents, np.uint8)
    data = np.concatenate([data, np.zeros(-data.size % word, np.uint8)])
    return [int.from_bytes(data[i:i + word].tobytes(), "little") for i in range(0, data.size, word)]


class VaultRam(wiring.Component):
    """A vault's request and response streams answered from a block RAM.

    Parameters
    ----------
    vault_words : int
        Words of the vault's address space (the request's range).
    bits : int
        Bits of a word.
    init : list of int
        The stored words, from word 0 (may be empty).

    Members
    -------
    req : ``In(stream.Signature(range(vault_words)))``
    resp : ``Out(stream.Signature(bits))``
    """

    def __init__(self, *, vault_words, bits, init):
        self._depth = max(1, len(init))
        self._bits, self._init = bits, list(init)
        super().__init__({"req": In(stream.Signature(range(vault_words))), "resp": Out(stream.Signature(bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = Memory(shape=self._bits, depth=self._depth, init=self._init or [0])
        rd = mem.read_port()
        take = self.req.valid & self.req.ready
        inside = Signal()
        m.d.comb += [self.req.ready.eq(~self.resp.valid | self.resp.ready),
                     rd.addr.eq(self.req.payload), rd.en.eq(take),
                     self.resp.payload.eq(Mux(inside, rd.data, 0))]
        with m.If(take):
            m.d.sync += [self.resp.valid.eq(1), inside.eq(self.req.payload < len(self._init))]
        with m.Elif(self.resp.ready):
            m.d.sync += self.resp.valid.eq(0)
        return m
