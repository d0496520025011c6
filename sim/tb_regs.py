"""cocotb testbench of the AXI4-Lite RegisterFile, driven through cocotbext-axi's AxiLiteMaster.

Parameters come in ``MENSA_TB`` (JSON): ``rows``, ``cols``, ``dataflow``, ``addr_bits``,
``data_bits`` (the accelerator config the map is built from), ``header`` (the path of the
C header written by :func:`mensa.contract.header.header`), ``gap`` (probability of a pause
on every AXI channel, per cycle).

Every register is reached at the offset the *header* gives, and its effect is checked
on the RTL's hardware-side field of the register of that name: so the header's offsets
are the RTL's. ``rw`` registers read back what was written (byte strobes honoured,
signed ones sign-extended) and drive their field; ``ro`` ones read the hardware's value
and ignore writes; constants read the header's value; ``wo`` ones pulse their field for
exactly one cycle and read zero; ``w1c`` ones are set by the hardware and cleared by a
written 1. An address with no register answers SLVERR.
"""

import re

import cocotb
from cocotb.triggers import Combine, RisingEdge
from cocotbext.axi import AxiResp

from mensa.core.config import AcceleratorConfig, ArrayConfig, Dataflow, MemoryConfig
from mensa.contract.regs import Access, register_map
from mensa.hw.regs import _layout
from mensa.sim.testbench import TB


def parse_header(text):
    """{register name: offset}, {register name: constant value} from a generated header."""
    defines = dict(re.findall(r"^#define\s+(\w+)\s+(\S+)", text, re.M))
    prefix = next(k for k in defines if k.endswith("_REGS_SIZE"))[:-len("REGS_SIZE")]
    offsets = {k[len(prefix):-len("_OFFSET")]: int(v.rstrip("u"), 0)
               for k, v in defines.items() if k.endswith("_OFFSET")}
    values = {k[len(prefix):-len("_VALUE")]: int(v.rstrip("u"), 0)
              for k, v in defines.items() if k.endswith("_VALUE")}
    return offsets, values


def _uint(value):
    """A resolved port value as an int (1-bit ports are Logic, wider ones LogicArray)."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


class Field:
    """A register's field inside one of the RegisterFile's struct ports."""

    def __init__(self, port, layout, reg):
        f = layout[reg.port]
        self.port, self.offset, self.width = port, f.offset, f.width

    def get(self):
        return (_uint(self.port.value) >> self.offset) & ((1 << self.width) - 1)

    def set(self, value):
        word = _uint(self.port.value) if self.port.value.is_resolvable else 0
        mask = ((1 << self.width) - 1) << self.offset
        self.port.value = (word & ~mask) | ((value << self.offset) & mask)


def _read_value(reg, raw):
    """What a 32-bit read of ``reg`` holding ``raw`` returns (sign-extended if signed)."""
    if reg.signed and raw >> (reg.width - 1):
        raw |= ((1 << 32) - 1) & ~((1 << reg.width) - 1)
    return raw


@cocotb.test()
async def registers_through_axi4lite(dut):
    """Every register at its header offset behaves as its access kind says."""
    tb = TB(dut)
    p = tb.params
    config = AcceleratorConfig(name="dut", array=ArrayConfig(rows=p["rows"], cols=p["cols"],
                                                             dataflow=Dataflow(p["dataflow"])),
                               memory=MemoryConfig(addr_bits=p["addr_bits"], data_bits=p["data_bits"]))
    regmap = register_map(config)
    with open(p["header"]) as f:
        offsets, values = parse_header(f.read())
    assert sorted(offsets) == sorted(r.name for r in regmap), "header and map name different registers"
    rnd = tb.random()       # the pauses and the test's draws, interleaved: one generator

    dut.inputs.value = 0
    dut.events.value = 0
    master = tb.axil_master("s_axil", pause=p["gap"], rnd=rnd)
    await tb.reset(cycles=3, settle=2)

    fields = {}
    for access, port in ((Access.RW, dut.regs), (Access.RO, dut.inputs), (Access.WO, dut.strobes),
                         (Access.W1C, dut.pending)):
        layout = _layout(regmap.of(access))
        for reg in regmap.of(access):
            fields[reg.name] = Field(port, layout, reg)
    events = {r.name: Field(dut.events, _layout(regmap.of(Access.W1C)), r) for r in regmap.of(Access.W1C)}

    strobes_seen = []

    async def watch_strobes():
        cycle = 0
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            v = dut.strobes.value
            if v.is_resolvable and _uint(v):
                strobes_seen.append((cycle, _uint(v)))
    cocotb.start_soon(watch_strobes())

    async def read(offset):
        resp = await master.read(offset, 4)
        return int.from_bytes(resp.data, "little"), resp.resp

    async def write(offset, value, nbytes=4, at=0):
        resp = await master.write(offset + at, (value >> (8 * at)).to_bytes(4, "little")[:nbytes])
        return resp.resp

    checked = 0
    for reg in rnd.sample(list(regmap), len(regmap)):
        off = offsets[reg.name]
        mask = (1 << reg.width) - 1
        if reg.const is not None:
            assert values[reg.name] == reg.const, f"{reg.name}: header value {values[reg.name]:#x}"
            got, resp = await read(off)
            assert resp == AxiResp.OKAY and got == reg.const, f"{reg.name}: read {got:#x}, expected {reg.const:#x}"
            assert await write(off, ~reg.const & 0xFFFFFFFF) == AxiResp.OKAY
            assert (await read(off))[0] == reg.const, f"{reg.name}: a write changed a constant"
        elif reg.access is Access.RW:
            for _ in range(3):
                value = rnd.getrandbits(32)
                assert await write(off, value) == AxiResp.OKAY
                assert fields[reg.name].get() == value & mask, f"{reg.name}: field {fields[reg.name].get():#x}"
                got, resp = await read(off)
                assert resp == AxiResp.OKAY and got == _read_value(reg, value & mask), \
                    f"{reg.name}: wrote {value:#x}, read {got:#x}"
            # one byte through the strobes: only that byte changes
            before = fields[reg.name].get()
            at = rnd.randrange(4)
            value = rnd.getrandbits(32)
            assert await write(off, value, nbytes=1, at=at) == AxiResp.OKAY
            byte = 0xFF << (8 * at)
            expect = ((before & ~byte) | (value & byte)) & mask
            assert fields[reg.name].get() == expect, f"{reg.name}: byte {at} write gave {fields[reg.name].get():#x}"
        elif reg.access is Access.RO:
            for _ in range(2):
                value = rnd.getrandbits(reg.width)
                fields[reg.name].set(value)
                got, resp = await read(off)
                assert resp == AxiResp.OKAY and got == _read_value(reg, value), \
                    f"{reg.name}: hardware {value:#x}, read {got:#x}"
                assert await write(off, rnd.getrandbits(32)) == AxiResp.OKAY
                assert (await read(off))[0] == _read_value(reg, value), f"{reg.name}: a write changed it"
        elif reg.access is Access.WO:
            value = rnd.getrandbits(reg.width) | 1
            strobes_seen.clear()
            assert await write(off, value) == AxiResp.OKAY
            await tb.cycles(2)
            layout_field = fields[reg.name]
            pulses = [(c, (v >> layout_field.offset) & mask) for c, v in strobes_seen]
            assert [v for _, v in pulses] == [value], f"{reg.name}: strobes {pulses}, expected one {value:#x}"
            assert (await read(off))[0] == 0, f"{reg.name}: a write-only register read non-zero"
        elif reg.access is Access.W1C:
            bits = rnd.getrandbits(reg.width) | 1
            events[reg.name].set(bits)
            await RisingEdge(dut.clk)
            events[reg.name].set(0)
            assert (await read(off))[0] == bits, f"{reg.name}: events {bits:#x} not pending"
            assert await write(off, 0) == AxiResp.OKAY
            assert (await read(off))[0] == bits, f"{reg.name}: writing 0 cleared bits"
            clear = bits & (rnd.getrandbits(reg.width) | 1)
            assert await write(off, clear) == AxiResp.OKAY
            assert (await read(off))[0] == bits & ~clear, f"{reg.name}: writing {clear:#x} left the wrong bits"
            assert fields[reg.name].get() == bits & ~clear
        checked += 1

    # addresses with no register behind them
    used = {r.offset for r in regmap}
    for off in [o for o in range(0, regmap.size, 4) if o not in used][:4]:
        got, resp = await read(off)
        assert resp == AxiResp.SLVERR, f"{off:#x}: read answered {resp}"
        assert await write(off, 0x12345678) == AxiResp.SLVERR, f"{off:#x}: write did not answer SLVERR"

    # back-to-back traffic with pauses: concurrent writes to every rw register, then reads
    rw = regmap.of(Access.RW)
    expect = {r.name: rnd.getrandbits(32) & ((1 << r.width) - 1) for r in rw}
    await Combine(*[cocotb.start_soon(write(offsets[r.name], expect[r.name])) for r in rw])
    for r in rw:
        assert (await read(offsets[r.name]))[0] == _read_value(r, expect[r.name]), f"{r.name}: concurrent write lost"
    tb.log.info(f"{checked} registers checked at their header offsets ({len(rw)} read-write)")
