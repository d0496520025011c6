"""cocotb drivers and monitors for ``amaranth.lib.stream`` ports, with random handshake gaps.

An Amaranth stream port ``NAME`` appears in Verilog as ``NAME__payload``,
``NAME__valid`` and ``NAME__ready``. :class:`StreamSource` drives one with
payload words, dropping ``valid`` at random with probability ``gap`` between
beats (never retracting a beat once offered); :class:`StreamSink` takes beats
and drops ``ready`` at random with probability ``gap``. Payloads are plain
unsigned integers; :func:`pack` and :func:`unpack` convert arrays of signed
elements, lowest index in the lowest bits, as ``data.ArrayLayout`` lays them out.

Handshakes are sampled at the rising edge and new values driven at the falling
edge: a ``ready`` that depends combinationally on another port's ``ready``
(a stalled pipeline) is then never read half-updated, whatever order the
coroutines run in.
"""

import collections
import random

import cocotb
from cocotb.triggers import Event, FallingEdge, RisingEdge, SimTimeoutError, with_timeout

__all__ = ["pack", "pack_struct", "unpack", "StreamSource", "StreamSink", "seed", "rng", "within"]


def seed():
    """The running test's random seed: cocotb derives it from the run's COCOTB_RANDOM_SEED and
    the test's name (outside a test, the run seed itself)."""
    return cocotb.RANDOM_SEED


def rng(salt=0):
    """A numpy generator derived from the test seed."""
    import numpy as np
    return np.random.default_rng([seed(), salt])


def pack(values, bits):
    """Pack signed integers into one word, element 0 in the lowest ``bits`` bits."""
    mask = (1 << bits) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * bits)
    return word


def pack_struct(layout, values):
    """Pack a dict of field -> int or list of ints by an Amaranth StructLayout."""
    word = 0
    for name, field in layout:
        shape = field.shape
        value = values[name]
        if hasattr(value, "__len__"):
            elem = shape.elem_shape.width
            for i, v in enumerate(value):
                word |= (int(v) & ((1 << elem) - 1)) << (field.offset + i * elem)
        else:
            width = field.width
            word |= (int(value) & ((1 << width) - 1)) << field.offset
    return word


def unpack(word, count, bits, offset=0):
    """The ``count`` signed ``bits``-wide elements of ``word`` starting at bit ``offset``."""
    mask = (1 << bits) - 1
    out = []
    for i in range(count):
        v = (word >> (offset + i * bits)) & mask
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


class _StreamPort:
    """The ``<prefix>__valid``/``__ready``/``__payload`` signals of a DUT stream port."""

    def __init__(self, dut, prefix, clk, gap, salt):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.gap = gap
        self.queue = collections.deque()
        self.cycle = 0
        self._random = random.Random(seed() * 7919 + salt)


class StreamSource(_StreamPort):
    """Drives ``<prefix>__valid``/``__payload`` of a DUT stream input."""

    def __init__(self, dut, prefix, clk, *, gap=0.0, salt=0):
        super().__init__(dut, prefix, clk, gap, salt)
        self.sent = 0
        self.first_cycle = None
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def send(self, word):
        self.queue.append(int(word))

    async def wait_idle(self):
        while self.queue or self.valid.value:
            await RisingEdge(self.clk)

    async def _run(self):
        offered = False
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if offered and self.ready.value:
                offered = False
                self.sent += 1
                if self.first_cycle is None:
                    self.first_cycle = self.cycle
            await FallingEdge(self.clk)
            if not offered and self.queue and self._random.random() >= self.gap:
                self.payload.value = self.queue.popleft()
                offered = True
            self.valid.value = int(offered)


class StreamSink(_StreamPort):
    """Takes beats from ``<prefix>__valid``/``__payload``, driving ``__ready``."""

    def __init__(self, dut, prefix, clk, *, gap=0.0, salt=1):
        super().__init__(dut, prefix, clk, gap, salt + 104729)
        self.last_cycle = None
        self._arrived = Event()
        self.ready.value = 0
        cocotb.start_soon(self._run())

    async def recv(self):
        while not self.queue:
            self._arrived.clear()
            await self._arrived.wait()
        return self.queue.popleft()

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if self.ready.value and self.valid.value:
                value = self.payload.value
                if not value.is_resolvable:
                    raise AssertionError(f"{self.payload._name}: X/Z in a valid beat: {value}")
                # A 1-bit payload reads as a Logic, wider ones as a LogicArray.
                self.queue.append(value.to_unsigned() if hasattr(value, "to_unsigned") else int(value))
                self.last_cycle = self.cycle
                self._arrived.set()
            await FallingEdge(self.clk)
            self.ready.value = int(self._random.random() >= self.gap)


async def within(coro, cycles, progress, period_ns=10):
    """Await ``coro``; if it takes more than ``cycles`` clock cycles, fail the test as a hang.

    ``progress()`` says how far the design got (called only on the hang).
    """
    try:
        return await with_timeout(coro, cycles * period_ns, "ns")
    except SimTimeoutError:
        raise AssertionError(f"{progress()} after {cycles} cycles; the unit hangs") from None
