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

import cocotb
from cocotb.triggers import RisingEdge

from mensa.contract.numeric import PAGE_BYTES
from mensa.hw.dma import command_layout, read_layout, write_layout
from mensa.sim.streams import pack_struct
from mensa.sim.testbench import TB, read_params

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


class DmaTB(TB):
    """The DMA between its client streams (gaps of the ``gap`` parameter) and an AXI4 RAM of
    ``RAM_BYTES`` (``latency`` and ``pause`` parameters); ``ar`` and ``aw`` log the bursts."""

    def __init__(self, dut, params=None):
        super().__init__(dut, params)
        p = self.params
        self.word_bytes = p["data_bits"] // 8
        self.rnd = self.random()
        self.ram, self.ram_read = self.axi_ram("m_axi", size=RAM_BYTES, latency=p["latency"], pause=p["pause"],
                                               rnd=self.random(1))
        self.rd_cmd = self.source("rd_cmd", salt=1)
        self.wr_cmd = self.source("wr_cmd", salt=2)
        self.wr_data = self.source("wr_data", salt=3)
        self.rd_data = self.sink("rd_data", salt=4)
        self.wr_done = self.sink("wr_done", salt=5)
        self.ar, self.aw = [], []
        cocotb.start_soon(_watch_bursts(dut, "ar", self.ar))
        cocotb.start_soon(_watch_bursts(dut, "aw", self.aw))
        self.cmd_layout = command_layout(p["addr_bits"], p["data_bits"])

    async def reset(self):
        await super().reset(cycles=3, settle=2)

    def command(self, lo, hi):
        """A random word-aligned command inside [lo, hi), often across a 4 KiB boundary."""
        wb = self.word_bytes
        beats = self.rnd.randint(1, self.params["max_beats"])
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
    tb = DmaTB(dut)
    p, wb = tb.params, tb.word_bytes
    await tb.reset()
    initial = bytearray(tb.random(2).randbytes(RAM_BYTES))    # from the seed too, so a rerun replays it
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
    await tb.cycles(5)
    assert tb.ram.read(half, half) == bytes(model[half:]), "written region differs from the model"
    assert tb.ram.read(0, half) == bytes(initial[:half]), "a read changed memory"
    assert int(dut.busy.value) == 0, "busy after every command completed"

    size = (wb - 1).bit_length()
    for name, cmds, seen in (("read", reads, tb.ar), ("write", writes, tb.aw)):
        expect = [(a, n, size, 1) for addr, beats in cmds for a, n in split(addr, beats, wb, p["max_burst"])]
        assert seen == expect, f"{name} bursts differ from the split: {seen[:8]} vs {expect[:8]}"
    tb.log.info(f"{len(reads)} reads ({words} words, {len(tb.ar)} bursts) and {len(writes)} writes "
                  f"({len(tb.aw)} bursts) bit-exact")


@cocotb.test()
async def dma_streams_a_word_per_cycle(dut):
    """Without backpressure a long read and a long write each move one bus word per cycle.

    The read latency is fixed at ``stream_latency`` cycles: enough bursts in flight hide
    it after the first.
    """
    p = read_params()
    tb = DmaTB(dut, dict(p, gap=0.0, pause=0.0, latency=[p["stream_latency"]] * 2))
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
    tb.log.info(f"{beats} words: read in {read_cycles} cycles ({beats / read_cycles:.2f} words/cycle), "
                  f"written in {write_cycles} cycles ({beats / write_cycles:.2f} words/cycle)")
    tb.write_result({"beats": beats, "read_cycles": read_cycles, "write_cycles": write_cycles,
                     "latency": p["stream_latency"]})
