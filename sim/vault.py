"""A cocotb model of the vaults of a 3D-stacked memory, behind a unit's read ports.

Each vault ``v`` is a request stream ``<req>__<v>`` (word addresses, from the DUT) and
a response stream ``<resp>__<v>`` (words, to the DUT), as ``amaranth.lib.stream``
ports appear in Verilog. :class:`VaultArray` serves every vault from its own byte
image: a request taken in cycle ``t`` is answered, in request order, no earlier
than cycle ``t + latency`` with ``latency`` drawn at random from ``latency`` (a
``(lo, hi)`` range); at most ``outstanding`` requests are in flight per vault (then
``ready`` drops), ``ready`` also drops at random with probability ``gap``, and a
response, once offered, is held until the DUT takes it (backpressure).

Handshakes are sampled at the rising edge and driven at the falling edge, as in
:mod:`mensa.sim.streams`.

:class:`NearMemTB` is the frame of the near-memory unit's testbenches (FC layers and
LSTM): the unit's config from ``MENSA_TB``, its host streams and its vaults.
"""

import collections
import random

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from mensa.contract.nearmem import NearMemGeometry
from mensa.core.config import NearMemConfig
from mensa.sim.streams import seed, unpack
from mensa.sim.testbench import TB

__all__ = ["VaultArray", "NearMemTB"]


class _Vault:
    def __init__(self, dut, req, resp, index):
        self.req_valid = getattr(dut, f"{req}__{index}__valid")
        self.req_ready = getattr(dut, f"{req}__{index}__ready")
        self.req_payload = getattr(dut, f"{req}__{index}__payload")
        self.resp_valid = getattr(dut, f"{resp}__{index}__valid")
        self.resp_ready = getattr(dut, f"{resp}__{index}__ready")
        self.resp_payload = getattr(dut, f"{resp}__{index}__payload")
        self.image = np.zeros(0, dtype=np.uint8)
        self.pending = collections.deque()     # (due cycle, address)
        self.last_due = 0
        self.offered = False
        self.words_read = 0
        self.req_ready.value = 0
        self.resp_valid.value = 0


class VaultArray:
    """Serves ``vaults`` read ports of a DUT from byte images, with random latency.

    Parameters
    ----------
    dut, clk
        The design and its clock.
    vaults : int
    word_bytes : int
        Bytes per word (the port's width / 8).
    latency : (int, int)
        Inclusive range of a request's latency in cycles.
    gap : float
        Probability that a vault drops ``ready`` on its request port in a cycle.
    outstanding : int
        Requests in flight per vault at most.
    """

    def __init__(self, dut, clk, *, vaults, word_bytes, latency=(1, 1), gap=0.0, outstanding=64,
                 req="vault_req", resp="vault_resp", salt=0):
        lo, hi = latency
        if not 1 <= lo <= hi:
            raise ValueError(f"latency must be (lo, hi) with 1 <= lo <= hi, not {latency!r}")
        self.clk = clk
        self.word_bytes = word_bytes
        self.latency = (lo, hi)
        self.gap = gap
        self.outstanding = outstanding
        self.cycle = 0
        self.vaults = [_Vault(dut, req, resp, v) for v in range(vaults)]
        self._random = random.Random(seed() * 31337 + salt)
        cocotb.start_soon(self._run())

    def load(self, images, base=0):
        """Give vault ``v`` the bytes ``images[v]`` from word ``base``; reset the byte counts."""
        for vault, image in zip(self.vaults, images, strict=True):
            full = np.zeros(base * self.word_bytes + len(image), dtype=np.uint8)
            full[base * self.word_bytes:] = image
            vault.image = full
            vault.words_read = 0

    @property
    def bytes_read(self):
        """Bytes each vault has returned since the last :meth:`load`."""
        return [v.words_read * self.word_bytes for v in self.vaults]

    def _word(self, vault, addr):
        b = self.word_bytes
        if (addr + 1) * b > len(vault.image):
            raise AssertionError(f"vault read of word {addr} beyond the image's {len(vault.image) // b} words")
        return int.from_bytes(vault.image[addr * b:(addr + 1) * b].tobytes(), "little")

    async def _run(self):
        rnd = self._random
        lo, hi = self.latency
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            for vault in self.vaults:
                if vault.req_ready.value and vault.req_valid.value:
                    addr = vault.req_payload.value.to_unsigned()
                    due = max(self.cycle + rnd.randint(lo, hi), vault.last_due + 1)
                    vault.last_due = due
                    vault.pending.append((due, addr))
                if vault.offered and vault.resp_ready.value:
                    vault.offered = False
                    vault.pending.popleft()
                    vault.words_read += 1
            await FallingEdge(self.clk)
            for vault in self.vaults:
                if not vault.offered and vault.pending and vault.pending[0][0] <= self.cycle:
                    vault.resp_payload.value = self._word(vault, vault.pending[0][1])
                    vault.offered = True
                vault.resp_valid.value = int(vault.offered)
                room = len(vault.pending) < self.outstanding
                vault.req_ready.value = int(room and (self.gap == 0 or rnd.random() >= self.gap))


class NearMemTB(TB):
    """The near-memory unit under test: ``geom`` (of the :class:`~mensa.core.config.NearMemConfig`
    fields in ``MENSA_TB``); after :meth:`start`, its ``layer`` and ``inputs`` sources, its
    ``outs`` sink (``accs`` with the ``raw`` parameter) and its ``vaults``, of the ``latency``,
    ``gap`` and ``outstanding`` parameters."""

    CONFIG_FIELDS = ("vaults", "lanes", "vault_bits", "vault_kib", "local_kib", "lstm")

    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.geom = NearMemGeometry.of(NearMemConfig(**{f: p[f] for f in self.CONFIG_FIELDS if f in p}))
        self.outstanding = p.get("outstanding", 64)

    async def start(self):
        """Reset, then attach the drivers (their gaps drawn from then on)."""
        await self.reset()
        p = self.params
        self.layer = self.source("layer", salt=1)
        self.inputs = self.source("inputs", salt=2)
        self.outs = self.sink("accs" if p.get("raw") else "outs", salt=3)
        self.vaults = VaultArray(self.dut, self.clk, vaults=self.geom.vaults, word_bytes=self.geom.word_bytes,
                                 latency=tuple(p["latency"]), gap=p["gap"], outstanding=self.outstanding)

    async def run(self, prog, base, vectors, *, out_bits, what, bound):
        """Run ``prog`` (its vault images loaded from word ``base``): its descriptor and input
        beats sent, ``vectors`` times its output beats taken, ``last`` checked on each vector's
        final beat only, a hang failed after ``bound`` cycles. Returns its outputs
        (``prog.outputs``) and the cycles from the descriptor taken to the last output taken."""
        L = self.geom.lanes
        self.vaults.load(prog.images, base)
        self.layer.first_cycle = None
        self.layer.send(prog.descriptor_word())                  # driver
        for beat in prog.input_beats():
            self.inputs.send(beat)
        lanes_out = []
        beats = vectors * prog.out_beats

        async def monitor():                                     # monitor + checker of `last`
            for i in range(beats):
                word = await self.outs.recv()
                lanes_out.append(unpack(word, L, out_bits))
                last = (word >> (L * out_bits)) & 1
                assert last == int(i % prog.out_beats == prog.out_beats - 1), f"{what}: beat {i} has last={last}"
        await self.within(monitor(), bound, lambda: f"{what}: {len(lanes_out)} of {beats} output beats")
        return prog.outputs(lanes_out), self.outs.last_cycle - self.layer.first_cycle + 1
