"""The frame every mensa cocotb testbench shares, in cocotbext-axi's manner: one ``TB`` object.

``TB(dut)`` starts the clock and holds what a test needs from its surroundings: the
parameters that :func:`mensa.sim.runner.run` passes in ``MENSA_TB`` (JSON), the test's
seed (cocotb's, derived from the run's ``COCOTB_RANDOM_SEED`` and the test's name; the TB
logs the run seed, which the runner also names when a test fails and reruns with
waveforms) and generators derived from it, the reset sequence, and constructors of the
stream drivers of :mod:`mensa.sim.streams` with the run's valid/ready gaps. A testbench
with more drivers (an AXI RAM, a register master) subclasses it, as cocotbext-axi's own
tests do::

    @cocotb.test()
    async def my_test(dut):
        tb = TB(dut)
        await tb.reset()
        src, snk = tb.source("inputs", salt=1), tb.sink("outs", salt=2)
        ...
        tb.write_result(figures)

:class:`LatencyAxiRamRead` and :meth:`TB.axi_ram` give the AXI4 DRAM of the DMA and the
accelerator: cocotbext-axi's AxiRam with a drawn latency per read burst and random pauses.
"""

import collections
import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiResp
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite

from mensa.contract.numeric import PAGE_BYTES
from mensa.sim import streams

__all__ = ["TB", "read_params", "pause_generator", "assert_bit_exact", "LatencyAxiRamRead"]

PERIOD_NS = 10


def read_params():
    """The testbench parameters :func:`mensa.sim.runner.run` passes in ``MENSA_TB`` (JSON); {} if none."""
    text = os.environ.get("MENSA_TB")
    return json.loads(text) if text else {}


def pause_generator(probability, rnd):
    """cocotbext-axi pause generator: pause in a cycle with ``probability``, drawn from ``rnd``."""
    return iter(lambda: rnd.random() < probability, None)


def assert_bit_exact(got, expect, what, *, axes="", row=False):
    """Fail unless the arrays ``got`` and ``expect`` are equal, naming how many elements differ
    and the first (its index named by ``axes``, e.g. "(vector, channel)"; with ``row``, the
    whole first row that differs too)."""
    bad = np.argwhere(got != expect)
    if bad.size:
        first = tuple(int(i) for i in bad[0])
        message = (f"{what}: {len(bad)} of {expect.size} outputs differ from golden, first at "
                   f"{axes + ' ' if axes else ''}{first}: got {got[first]}, expected {expect[first]}")
        if row:
            message += f"; row {first[0]}: got {got[first[0]].tolist()}, expected {expect[first[0]].tolist()}"
        raise AssertionError(message)


class TB:
    """A DUT with clock ``clk`` and synchronous active-high reset ``rst``, as Amaranth writes them.

    Attributes: ``dut``, ``clk``, ``rst``, ``params`` (``MENSA_TB``, or the ``params`` given),
    ``seed``, ``log``.
    """

    def __init__(self, dut, params=None, *, period_ns=PERIOD_NS):
        self.dut = dut
        self.clk = dut.clk
        self.rst = dut.rst
        self.period_ns = period_ns
        self.params = read_params() if params is None else params
        self.seed = streams.seed()
        self.log = logging.getLogger("cocotb.tb")
        self.log.setLevel(logging.INFO)
        # cocotb derives each test's seed from the run's COCOTB_RANDOM_SEED and the test's name
        run_seed = os.environ.get("COCOTB_RANDOM_SEED", "<the seed cocotb logged at start>")
        self.log.info(f"replay with COCOTB_RANDOM_SEED={run_seed} (this test's seed: {self.seed})")
        Clock(self.clk, period_ns, unit="ns").start()

    # --- randomness: everything drawn from the test's seed, so the runner's rerun replays it

    def rng(self, salt=0):
        """A numpy generator derived from the seed (:func:`mensa.sim.streams.rng`)."""
        return streams.rng(salt)

    def random(self, salt=0):
        """A ``random.Random`` seeded with seed + ``salt``."""
        return random.Random(self.seed + salt)

    # --- reset and waiting

    async def reset(self, cycles=2, settle=0):
        """Hold ``rst`` high for ``cycles`` clock cycles, then low for ``settle`` more."""
        self.rst.value = 1
        await ClockCycles(self.clk, cycles)
        self.rst.value = 0
        if settle:
            await ClockCycles(self.clk, settle)

    async def cycles(self, n):
        await ClockCycles(self.clk, n)

    async def wait_idle(self, settle=2, busy="busy"):
        """Wait for the DUT's ``busy`` output to fall, then ``settle`` cycles more."""
        signal = getattr(self.dut, busy)
        while int(signal.value):
            await RisingEdge(self.clk)
        await ClockCycles(self.clk, settle)

    async def within(self, coro, cycles, progress):
        """``coro``, failed as a hang after ``cycles`` clock cycles (:func:`mensa.sim.streams.within`)."""
        return await streams.within(coro, cycles, progress, self.period_ns)

    # --- stream drivers with idle (source) and backpressure (sink) gaps

    def source(self, prefix, *, salt, gap=None):
        """A :class:`~mensa.sim.streams.StreamSource` on stream port ``prefix``; ``gap``: the
        probability of an idle cycle before a beat, by default the ``gap`` parameter (or 0)."""
        return streams.StreamSource(self.dut, prefix, self.clk, gap=self._gap(gap), salt=salt)

    def sink(self, prefix, *, salt, gap=None):
        """A :class:`~mensa.sim.streams.StreamSink` on stream port ``prefix``; ``gap``: the
        probability that ``ready`` is low in a cycle, by default the ``gap`` parameter (or 0)."""
        return streams.StreamSink(self.dut, prefix, self.clk, gap=self._gap(gap), salt=salt)

    def _gap(self, gap):
        return self.params.get("gap", 0.0) if gap is None else gap

    # --- AXI

    def quiet(self, *prefixes):
        """Only warnings from the cocotbext-axi drivers on bus ``prefixes`` (they log every transfer)."""
        for prefix in prefixes:
            logging.getLogger(f"cocotb.{self.dut._name}.{prefix}").setLevel(logging.WARNING)

    def axil_master(self, prefix, *, pause=0.0, rnd=None):
        """An AXI4-Lite master on slave port ``prefix``; every channel pauses in a cycle with
        probability ``pause``, drawn from ``rnd`` (by default a generator of its own from the seed)."""
        self.quiet(prefix)
        master = AxiLiteMaster(AxiLiteBus.from_prefix(self.dut, prefix), self.clk, self.rst)
        if pause:
            rnd = self.random(0xA11) if rnd is None else rnd
            for ch in (master.write_if.aw_channel, master.write_if.w_channel, master.write_if.b_channel,
                       master.read_if.ar_channel, master.read_if.r_channel):
                ch.set_pause_generator(pause_generator(pause, rnd))
        return master

    def axi_ram(self, prefix, *, size, latency, pause, rnd):
        """An AXI4 RAM of ``size`` bytes on master port ``prefix``: (write side, read side), one memory.

        A read burst's data leaves ``latency`` ([lo, hi], drawn per burst from ``rnd``) cycles
        after its address; every channel pauses in a cycle with probability ``pause`` (``rnd``).
        """
        self.quiet(prefix)
        bus = AxiBus.from_prefix(self.dut, prefix)
        ram = AxiRamWrite(bus.write, self.clk, self.rst, size=size)
        ram_read = LatencyAxiRamRead(bus.read, self.clk, self.rst, latency=latency, rnd=rnd, size=size, mem=ram.mem)
        for ch in (ram.aw_channel, ram.w_channel, ram.b_channel, ram_read.ar_channel, ram_read.r_channel):
            ch.set_pause_generator(pause_generator(pause, rnd))
        return ram, ram_read

    # --- registers of an accelerator: ``self.master`` (an AxiLiteMaster) and ``self.regmap``, set by the subclass

    async def read(self, name):
        return await self.master.read_dword(self.regmap[name].offset)

    async def write(self, name, value):
        await self.master.write_dword(self.regmap[name].offset, value)

    async def counter(self, name):
        """A performance counter, read as one register or as its _LO and _HI halves."""
        if name in self.regmap:
            return await self.read(name)
        return await self.read(f"{name}_LO") | (await self.read(f"{name}_HI")) << 32

    # --- results

    def write_result(self, data):
        """Write ``data`` as JSON to the ``result`` parameter's path, if one was given."""
        if self.params.get("result"):
            with open(self.params["result"], "w") as f:
                json.dump(data, f)


class LatencyAxiRamRead(AxiRamRead):
    """cocotbext-axi's AxiRamRead answering each burst ``latency`` cycles after its address.

    AxiRamRead answers one burst at a time, as soon as it has the address, so it cannot
    show what outstanding bursts are for. Here addresses are accepted as they come and
    each burst's data leaves, in order, no earlier than its drawn latency after its
    address: DRAM latency overlaps with the data of the bursts before it.
    """

    def __init__(self, bus, clock, reset, *, latency, rnd, **kwargs):
        self.latency, self.rnd, self.cycle = latency, rnd, 0
        super().__init__(bus, clock, reset, **kwargs)
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.clock)
            self.cycle += 1

    async def _process_read(self):
        pending, arrived = collections.deque(), Event()
        cocotb.start_soon(self._answer(pending, arrived))
        while True:
            ar = await self.ar_channel.recv()
            pending.append((ar, self.cycle + self.rnd.randint(*self.latency)))
            arrived.set()

    async def _answer(self, pending, arrived):
        while True:
            while not pending:
                arrived.clear()
                await arrived.wait()
            ar, due = pending.popleft()
            while self.cycle < due:
                await RisingEdge(self.clock)
            addr, beats = int(ar.araddr), int(ar.arlen) + 1
            step = 1 << int(ar.arsize)
            assert int(ar.arburst) == 1, "only INCR bursts are expected"
            assert PAGE_BYTES - addr % PAGE_BYTES >= beats * step, f"burst at {addr:#x} crosses 4 KiB"
            for n in range(beats):
                word = (addr + n * step) // self.byte_lanes * self.byte_lanes
                r = self.r_channel._transaction_obj()
                r.rid, r.rlast, r.rresp = int(ar.arid), n == beats - 1, AxiResp.OKAY
                r.rdata = int.from_bytes(await self._read(word, self.byte_lanes), "little")
                await self.r_channel.send(r)
