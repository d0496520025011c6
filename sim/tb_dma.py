"""cocotb testbench of the AXI4 DMA against cocotbext-axi's AxiRam with random backpressure.

Parameters come in ``MENSA_TB`` (JSON): ``data_bits``, ``addr_bits``, ``max_burst``,
``outstanding`` (the DMA's), ``commands`` (read and write commands each), ``max_beats``,
``gap`` (valid/ready gaps of the DMA's client streams), ``pause`` (probability that an
AXI channel of the RAM pauses in a cycle: slow address acceptance, late data and
responses, write backpressure), ``latency`` ([lo, hi]: cycles from a read burst's
address to its first data, drawn per burst; the RAM keeps answering earlier bursts
meanwhile, like a pipelined DRAM controller), ``stream_latency`` (the fixed latency of
the throughput test).

Driver: random read commands over a region filled with random bytes, and random write
commands (random strobes) over another region, both running at once. Monitor: the words
read, the write completions, and every AR/AW burst on the bus. Model: the RAM's initial
contents and a byte-array model of the writes; the burst split of each command (4 KiB
boundaries, ``max_burst``). Checker: every word read, ``last`` of every command, the
written region byte for byte, and each burst against the split.
"""

import collections
import json
import logging
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge
from cocotbext.axi import AxiBus, AxiResp
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite

from mensa.contract.numeric import PAGE_BYTES
from mensa.hw.dma import command_layout, read_layout, write_layout
from mensa.sim.streams import StreamSink, StreamSource, seed
from mensa.sim.streams import pack_struct

RAM_BYTES = 1 << 16


def split(addr, beats, word_bytes, max_burst):
    """The bursts (address, beats) of a command: as long as allowed, never across 4 KiB."""
    out = []
    while beats:
        n = min(beats, max_burst, (PAGE_BYTES - addr % PAGE_BYTES) // word_bytes)
        out.append((addr, n))
        addr += n * word_bytes
        beats -= n
    return out


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


def _field(word, layout, name):
    f = layout[name]
    return (word >> f.offset) & ((1 << f.width) - 1)


async def _watch_bursts(dut, ch, log):
    while True:
        await RisingEdge(dut.clk)
        if int(getattr(dut, f"m_axi_{ch}valid").value) and int(getattr(dut, f"m_axi_{ch}ready").value):
            log.append((getattr(dut, f"m_axi_{ch}addr").value.to_unsigned(),
                        getattr(dut, f"m_axi_{ch}len").value.to_unsigned() + 1,
                        getattr(dut, f"m_axi_{ch}size").value.to_unsigned(),
                        getattr(dut, f"m_axi_{ch}burst").value.to_unsigned()))


class TB:
    def __init__(self, dut, p):
        self.dut, self.p = dut, p
        self.word_bytes = p["data_bits"] // 8
        self.rnd = random.Random(seed())
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        bus = AxiBus.from_prefix(dut, "m_axi")
        logging.getLogger(f"cocotb.{dut._name}.m_axi").setLevel(logging.WARNING)
        rnd = random.Random(seed() + 1)
        self.ram = AxiRamWrite(bus.write, dut.clk, dut.rst, size=RAM_BYTES)
        self.ram_read = LatencyAxiRamRead(bus.read, dut.clk, dut.rst, latency=p["latency"], rnd=rnd,
                                          size=RAM_BYTES, mem=self.ram.mem)
        for ch in (self.ram.aw_channel, self.ram.w_channel, self.ram.b_channel,
                   self.ram_read.ar_channel, self.ram_read.r_channel):
            ch.set_pause_generator(iter(lambda: rnd.random() < p["pause"], None))
        gap = p["gap"]
        self.rd_cmd = StreamSource(dut, "rd_cmd", dut.clk, gap=gap, salt=1)
        self.wr_cmd = StreamSource(dut, "wr_cmd", dut.clk, gap=gap, salt=2)
        self.wr_data = StreamSource(dut, "wr_data", dut.clk, gap=gap, salt=3)
        self.rd_data = StreamSink(dut, "rd_data", dut.clk, gap=gap, salt=4)
        self.wr_done = StreamSink(dut, "wr_done", dut.clk, gap=gap, salt=5)
        self.ar, self.aw = [], []
        cocotb.start_soon(_watch_bursts(dut, "ar", self.ar))
        cocotb.start_soon(_watch_bursts(dut, "aw", self.aw))
        self.cmd_layout = command_layout(p["addr_bits"], p["data_bits"])

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def command(self, lo, hi):
        """A random word-aligned command inside [lo, hi), often across a 4 KiB boundary."""
        wb = self.word_bytes
        beats = self.rnd.randint(1, self.p["max_beats"])
        if self.rnd.random() < 0.4:
            page = self.rnd.randrange(lo // PAGE_BYTES + 1, hi // PAGE_BYTES)
            addr = page * PAGE_BYTES - wb * self.rnd.randint(1, beats)
        else:
            addr = lo + wb * self.rnd.randrange((hi - lo) // wb - beats)
        addr = max(lo, min(addr, hi - beats * wb))
        return addr, beats


@cocotb.test()
async def dma_random_commands(dut):
    """Random reads and writes at once, under random AXI backpressure, move exactly the right bytes."""
    p = json.loads(os.environ["MENSA_TB"])
    tb = TB(dut, p)
    wb = tb.word_bytes
    await tb.reset()
    initial = bytearray(os.urandom(RAM_BYTES))
    tb.ram.write(0, bytes(initial))
    model = bytearray(initial)
    half = RAM_BYTES // 2
    rnd = tb.rnd

    reads = [tb.command(0, half) for _ in range(p["commands"])]
    writes = [tb.command(half, RAM_BYTES) for _ in range(p["commands"])]
    full = (1 << wb) - 1
    for addr, beats in reads:                                            # drivers
        tb.rd_cmd.send(pack_struct(tb.cmd_layout, {"addr": addr, "count": beats - 1}))
    wl = write_layout(p["data_bits"])
    for addr, beats in writes:
        tb.wr_cmd.send(pack_struct(tb.cmd_layout, {"addr": addr, "count": beats - 1}))
        for i in range(beats):
            word = rnd.getrandbits(8 * wb)
            strb = full if rnd.random() < 0.7 else rnd.getrandbits(wb)
            tb.wr_data.send(pack_struct(wl, {"data": word, "strb": strb}))
            for b in range(wb):
                if strb >> b & 1:
                    model[addr + i * wb + b] = (word >> (8 * b)) & 0xFF

    rl = read_layout(p["data_bits"])
    words = 0
    for n, (addr, beats) in enumerate(reads):                            # monitor + checker
        for i in range(beats):
            word = await tb.rd_data.recv()
            got = _field(word, rl, "data")
            expect = int.from_bytes(initial[addr + i * wb: addr + (i + 1) * wb], "little")
            assert got == expect, f"read {n} ({addr:#x}, {beats} beats) word {i}: {got:#x} != {expect:#x}"
            assert _field(word, rl, "last") == int(i == beats - 1), f"read {n} word {i}: last wrong"
            assert _field(word, rl, "resp") == 0, f"read {n} word {i}: error response"
            words += 1
    for n in range(len(writes)):
        assert await tb.wr_done.recv() == 0, f"write {n} answered with an error response"
    await ClockCycles(dut.clk, 5)
    assert tb.ram.read(half, half) == bytes(model[half:]), "written region differs from the model"
    assert tb.ram.read(0, half) == bytes(initial[:half]), "a read changed memory"
    assert int(dut.busy.value) == 0, "busy after every command completed"

    size = (wb - 1).bit_length()
    for name, cmds, seen in (("read", reads, tb.ar), ("write", writes, tb.aw)):
        expect = [(a, n, size, 1) for addr, beats in cmds for a, n in split(addr, beats, wb, p["max_burst"])]
        assert seen == expect, f"{name} bursts differ from the split: {seen[:8]} vs {expect[:8]}"
    dut._log.info(f"{len(reads)} reads ({words} words, {len(tb.ar)} bursts) and {len(writes)} writes "
                  f"({len(tb.aw)} bursts) bit-exact")


@cocotb.test()
async def dma_streams_a_word_per_cycle(dut):
    """Without backpressure a long read and a long write each move one bus word per cycle.

    The read latency is fixed at ``stream_latency`` cycles: enough bursts in flight hide
    it after the first.
    """
    p = json.loads(os.environ["MENSA_TB"])
    p = dict(p, gap=0.0, pause=0.0, latency=[p["stream_latency"]] * 2)
    tb = TB(dut, p)
    wb = tb.word_bytes
    await tb.reset()
    beats = min(8 * p["max_burst"], 1024)
    tb.rd_cmd.send(pack_struct(tb.cmd_layout, {"addr": 0, "count": beats - 1}))
    for _ in range(beats):
        await tb.rd_data.recv()
    read_cycles = tb.rd_data.last_cycle - tb.rd_cmd.first_cycle
    wl = write_layout(p["data_bits"])
    tb.wr_cmd.send(pack_struct(tb.cmd_layout, {"addr": RAM_BYTES // 2, "count": beats - 1}))
    start = tb.wr_done.cycle
    for i in range(beats):
        tb.wr_data.send(pack_struct(wl, {"data": i, "strb": (1 << wb) - 1}))
    await tb.wr_done.recv()
    write_cycles = tb.wr_done.last_cycle - start
    dut._log.info(f"{beats} words: read in {read_cycles} cycles ({beats / read_cycles:.2f} words/cycle), "
                  f"written in {write_cycles} cycles ({beats / write_cycles:.2f} words/cycle)")
    if p.get("result"):
        with open(p["result"], "w") as f:
            json.dump({"beats": beats, "read_cycles": read_cycles, "write_cycles": write_cycles,
                       "latency": p["stream_latency"]}, f)
