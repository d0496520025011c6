"""The register map of an accelerator, described once, and the AXI4-Lite slave built from it.

:func:`register_map` turns an accelerator config into a :class:`RegisterMap`: every
register's name, byte offset, width, access and meaning. The same object elaborates
:class:`RegisterFile` (the AXI4-Lite slave), writes the C header
(:mod:`mensa.gen.header`) and drives the program compiler, so the RTL, the header and
the software never disagree about an offset.

Registers are 32-bit words at consecutive offsets; a register narrower than 32 bits
reads its unused high bits as zero (a signed one, as copies of its sign bit). A
quantity wider than 32 bits (a 64-bit cycle counter, a DRAM address when
``memory.addr_bits > 32``) is two registers, ``NAME_LO`` and ``NAME_HI``.

Access kinds:

``rw``
    Software writes, reads back; the hardware sees the value (the layer descriptor).
``ro``
    The hardware drives the value; writes are ignored. A register with ``const`` set
    holds that constant (identification, the configuration the RTL was built for).
``wo``
    A write hands the written bits to the hardware for one cycle (``CTRL.START``); reads
    return zero.
``w1c``
    The hardware sets bits; software clears a bit by writing 1 to it (interrupt status).
"""

import enum
from dataclasses import dataclass, field

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mensa.hw.config import AcceleratorConfig, Dataflow
from mensa.hw.sequencer import act_depth, weight_depth
from mensa.model.ir import Op

__all__ = ["Access", "Register", "RegisterMap", "register_map", "OPCODES", "MAGIC",
           "RegisterFile", "RunControl", "axi4lite_members", "RESP_OKAY", "RESP_SLVERR", "COUNTER_BITS"]

MAGIC = 0x4D4E5341            # "MNSA": the ID register
COUNTER_BITS = 64             # performance counters: no wrap in centuries at any clock
DATA_BITS = 32                # AXI4-Lite data width of the register interface
RESP_OKAY = 0
RESP_SLVERR = 2               # an address with no register behind it

# The layer kinds the systolic accelerator runs (pointwise is CONV2D with a 1x1 kernel).
OPCODES = {Op.CONV2D: 0, Op.DEPTHWISE: 1, Op.FC: 2}


class Access(enum.Enum):
    RW = "rw"
    RO = "ro"
    WO = "wo"
    W1C = "w1c"


@dataclass(frozen=True)
class Register:
    """One 32-bit register of the map.

    ``bits`` names single-bit flags (name -> bit index); ``values`` names the codes an
    enumerated register takes (name -> value); ``const`` is the value of a constant
    read-only register.
    """
    name: str
    offset: int
    width: int
    access: Access
    doc: str
    signed: bool = False
    const: int | None = None
    bits: tuple[tuple[str, int], ...] = ()
    values: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if not self.name.isidentifier() or self.name.upper() != self.name:
            raise ValueError(f"register name must be an upper-case identifier, not {self.name!r}")
        if self.offset % 4:
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not word-aligned")
        if not 1 <= self.width <= DATA_BITS:
            raise ValueError(f"register {self.name}: width must be in 1..{DATA_BITS}, not {self.width}")
        if self.const is not None and self.access is not Access.RO:
            raise ValueError(f"register {self.name}: only a read-only register can be constant")

    @property
    def port(self):
        """The name of the register's field on the hardware side."""
        return self.name.lower()

    @property
    def shape(self):
        return signed(self.width) if self.signed else unsigned(self.width)


@dataclass(frozen=True)
class RegisterMap:
    """An ordered, named collection of registers."""
    registers: tuple[Register, ...]
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names, offsets = {}, {}
        for r in self.registers:
            if r.name in names:
                raise ValueError(f"register {r.name} is described twice")
            if r.offset in offsets:
                raise ValueError(f"registers {offsets[r.offset]} and {r.name} share offset {r.offset:#x}")
            names[r.name] = r
            offsets[r.offset] = r.name
        object.__setattr__(self, "_by_name", names)

    def __iter__(self):
        return iter(self.registers)

    def __len__(self):
        return len(self.registers)

    def __getitem__(self, name):
        return self._by_name[name]

    def __contains__(self, name):
        return name in self._by_name

    def of(self, *access, const=False):
        """The registers of the given access kinds (constants only if ``const``)."""
        return [r for r in self.registers if r.access in access and (r.const is not None) == const]

    @property
    def size(self):
        """Bytes of address space the map decodes (a power of two)."""
        end = max(r.offset for r in self.registers) + 4
        return 1 << (end - 1).bit_length()

    @property
    def addr_bits(self):
        return (self.size - 1).bit_length()


class _Builder:
    def __init__(self):
        self.registers = []

    def add(self, name, width, access, doc, **kwargs):
        self.registers.append(Register(name, 4 * len(self.registers), width, access, doc, **kwargs))

    def wide(self, name, width, access, doc):
        """A quantity of ``width`` bits: one register, or a _LO/_HI pair above 32 bits."""
        if width <= DATA_BITS:
            self.add(name, width, access, doc)
        else:
            self.add(f"{name}_LO", DATA_BITS, access, f"{doc} (bits 31..0)")
            self.add(f"{name}_HI", width - DATA_BITS, access, f"{doc} (bits {width - 1}..32)")


def register_map(config):
    """The register map of the accelerator ``config`` (an :class:`AcceleratorConfig`)."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    a = config.array
    RW, RO, WO, W1C = Access.RW, Access.RO, Access.WO, Access.W1C
    b = _Builder()
    # identification and the configuration the RTL was generated for
    b.add("ID", 32, RO, "identification, the ASCII 'MNSA'", const=MAGIC)
    b.add("ROWS", 16, RO, "systolic array rows (PEs along the reduction)", const=a.rows)
    b.add("COLS", 16, RO, "systolic array columns (output channels per pass)", const=a.cols)
    b.add("DATAFLOW", 1, RO, "0: weight-stationary, 1: output-stationary",
          const=int(a.dataflow is Dataflow.OUTPUT_STATIONARY))
    b.add("BUS_BITS", 16, RO, "AXI4 data width of the DRAM interface", const=config.memory.data_bits)
    b.add("ACT_DEPTH", 32, RO, "activation vectors in each half of the activation scratchpad",
          const=act_depth(config))
    b.add("WEIGHT_DEPTH", 32, RO, "weight vectors the weight buffer holds",
          const=weight_depth(config))
    # control, status, interrupt
    b.add("CTRL", 1, WO, "write START to run the layer described by the descriptor", bits=(("START", 0),))
    b.add("STATUS", 2, RO, "BUSY while a layer runs; DONE once it has finished, until the next START",
          bits=(("BUSY", 0), ("DONE", 1)))
    b.add("IRQ_ENABLE", 1, RW, "interrupt enables", bits=(("DONE", 0),))
    b.add("IRQ_STATUS", 1, W1C, "pending interrupts, write 1 to clear", bits=(("DONE", 0),))
    # performance counters, cleared by START
    for name, doc in (("CYCLES_TOTAL", "cycles from START to DONE"),
                      ("CYCLES_BUSY", "cycles the array computed"),
                      ("CYCLES_STALL", "cycles the accelerator waited on DRAM")):
        b.wide(name, COUNTER_BITS, RO, doc)
    # the layer descriptor
    b.add("OP", 4, RW, "layer kind", values=tuple((op.name, code) for op, code in OPCODES.items()))
    for name, doc in (("IN_H", "input height"), ("IN_W", "input width"), ("IN_C", "input channels"),
                      ("OUT_H", "output height"), ("OUT_W", "output width"), ("OUT_C", "output channels"),
                      ("TILE_ROWS", "output rows per M tile (1 unless TILE_COLS is OUT_W)"),
                      ("TILE_COLS", "output columns per M tile; TILE_ROWS x TILE_COLS at most the accumulator "
                                    "depth, and the tile's input window at most ACT_DEPTH vectors")):
        b.add(name, 16, RW, doc)
    for name, doc in (("KERNEL_H", "kernel height"), ("KERNEL_W", "kernel width"),
                      ("STRIDE_H", "vertical stride"), ("STRIDE_W", "horizontal stride"),
                      ("DILATION_H", "vertical dilation"), ("DILATION_W", "horizontal dilation"),
                      ("PAD_TOP", "zero-point rows above the input"),
                      ("PAD_BOTTOM", "zero-point rows below the input"),
                      ("PAD_LEFT", "zero-point columns left of the input"),
                      ("PAD_RIGHT", "zero-point columns right of the input")):
        b.add(name, 8, RW, doc)
    b.add("WEIGHTS_RESIDENT", 1, RW, "1: the layer's weights fit the weight buffer; the first M tile reads them "
                                     "from DRAM and stores them, the others read the buffer")
    for name, doc in (("IN_ZERO_POINT", "input zero point"), ("OUT_ZERO_POINT", "output zero point"),
                      ("QMIN", "lower clamp of the output (ReLU: the zero point)"),
                      ("QMAX", "upper clamp of the output (ReLU6: zero point + 6 / scale)")):
        b.add(name, 8, RW, doc, signed=True)
    addr = config.memory.addr_bits
    for name, doc in (("INPUT_ADDR", "DRAM byte address of the input, NHWC int8"),
                      ("WEIGHT_ADDR", "DRAM byte address of the weights"),
                      ("BIAS_ADDR", "DRAM byte address of the int32 biases"),
                      ("QUANT_ADDR", "DRAM byte address of the per-channel multipliers and shifts"),
                      ("OUTPUT_ADDR", "DRAM byte address of the output, NHWC int8")):
        b.wide(name, addr, RW, doc)
    return RegisterMap(tuple(b.registers))


def axi4lite_members(prefix, addr_bits, data_bits=DATA_BITS):
    """Signature members of an AXI4-Lite *slave* port, named ``<prefix>_awaddr`` and so on.

    Flat names give the Verilog ports the names every AXI tool expects (Vivado's interface
    inference, cocotbext-axi's ``AxiLiteBus.from_prefix(dut, prefix)``); a nested
    signature would be flattened with ``__``.
    """
    strb = data_bits // 8
    members = {
        "awaddr": In(addr_bits), "awprot": In(3), "awvalid": In(1), "awready": Out(1),
        "wdata": In(data_bits), "wstrb": In(strb), "wvalid": In(1), "wready": Out(1),
        "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
        "araddr": In(addr_bits), "arprot": In(3), "arvalid": In(1), "arready": Out(1),
        "rdata": Out(data_bits), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
    }
    return {f"{prefix}_{name}": member for name, member in members.items()}


def _layout(registers):
    return data.StructLayout({r.port: r.shape for r in registers})


class RegisterFile(wiring.Component):
    """An AXI4-Lite slave holding the registers of a :class:`RegisterMap`.

    Writes take the address and the data in any order and answer once both have arrived;
    reads answer the cycle after the address. Byte strobes apply to ``rw`` registers and to
    the bits written to ``wo`` and ``w1c`` ones. An address with no register answers
    SLVERR; a write to a read-only register is ignored and answers OKAY.

    Parameters
    ----------
    regmap : :class:`RegisterMap`
    prefix : str
        Prefix of the AXI4-Lite port names.

    Members
    -------
    s_axil_* : AXI4-Lite slave, ``regmap.addr_bits`` address bits, 32 data bits.
    regs : ``Out(StructLayout)``
        The ``rw`` registers, one field per register (lower-case name).
    strobes : ``Out(StructLayout)``
        The ``wo`` registers: the written bits for one cycle, zero otherwise.
    inputs : ``In(StructLayout)``
        The non-constant ``ro`` registers, driven by the hardware.
    events : ``In(StructLayout)``
        The ``w1c`` registers: a 1 sets the bit (and wins over a clear in the same cycle).
    pending : ``Out(StructLayout)``
        The ``w1c`` registers' current bits.
    """

    def __init__(self, regmap, *, prefix="s_axil"):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, not {regmap!r}")
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ValueError(f"prefix must be an identifier, not {prefix!r}")
        self._regmap = regmap
        self._prefix = prefix
        super().__init__({
            **axi4lite_members(prefix, regmap.addr_bits),
            "regs": Out(_layout(regmap.of(Access.RW))),
            "strobes": Out(_layout(regmap.of(Access.WO))),
            "inputs": In(_layout(regmap.of(Access.RO))),
            "events": In(_layout(regmap.of(Access.W1C))),
            "pending": Out(_layout(regmap.of(Access.W1C))),
        })

    @property
    def regmap(self):
        return self._regmap

    def _axi(self, name):
        return getattr(self, f"{self._prefix}_{name}")

    def elaborate(self, platform):
        m = Module()
        rm = self._regmap
        ax = self._axi
        regs = Signal(_layout(rm.of(Access.RW)))
        pending = Signal(_layout(rm.of(Access.W1C)))
        m.d.comb += self.regs.eq(regs), self.pending.eq(pending)

        # -- write channel: address and data held until both are here ----------------------
        aw_held, w_held = Signal(), Signal()
        awaddr = Signal(rm.addr_bits)
        wdata, wstrb = Signal(DATA_BITS), Signal(DATA_BITS // 8)
        bvalid, bresp = Signal(), Signal(2)
        m.d.comb += [
            ax("awready").eq(~aw_held & ~bvalid),
            ax("wready").eq(~w_held & ~bvalid),
            ax("bvalid").eq(bvalid),
            ax("bresp").eq(bresp),
        ]
        with m.If(ax("awvalid") & ax("awready")):
            m.d.sync += aw_held.eq(1), awaddr.eq(ax("awaddr"))
        with m.If(ax("wvalid") & ax("wready")):
            m.d.sync += w_held.eq(1), wdata.eq(ax("wdata")), wstrb.eq(ax("wstrb"))
        with m.If(bvalid & ax("bready")):
            m.d.sync += bvalid.eq(0)

        mask = Signal(DATA_BITS)
        m.d.comb += mask.eq(Cat(*(b.replicate(8) for b in wstrb)))
        do_write = Signal()
        m.d.comb += do_write.eq(aw_held & w_held)
        word = awaddr[2:]
        strobe_values = {r.port: Signal(r.width, name=f"strobe_{r.port}") for r in rm.of(Access.WO)}
        cleared = {r.port: Signal(r.width, name=f"clear_{r.port}") for r in rm.of(Access.W1C)}
        with m.If(do_write):
            # (one address comparison per register rather than a case statement: a case
            # over the partly used word addresses is an incomplete case to Verilator's lint)
            m.d.sync += aw_held.eq(0), w_held.eq(0), bvalid.eq(1)
            m.d.sync += bresp.eq(Mux(Cat(*(word == r.offset // 4 for r in rm)).any(), RESP_OKAY, RESP_SLVERR))
            for r in rm:
                with m.If(word == r.offset // 4):
                    if r.access is Access.RW:
                        cur = _bits(regs, r.port)
                        m.d.sync += cur.eq((cur & ~mask[:r.width]) | (wdata[:r.width] & mask[:r.width]))
                    elif r.access is Access.WO:
                        m.d.comb += strobe_values[r.port].eq(wdata[:r.width] & mask[:r.width])
                    elif r.access is Access.W1C:
                        m.d.comb += cleared[r.port].eq(wdata[:r.width] & mask[:r.width])
        for r in rm.of(Access.WO):
            m.d.sync += _bits(self.strobes, r.port).eq(strobe_values[r.port])
        for r in rm.of(Access.W1C):
            cur = _bits(pending, r.port)
            m.d.sync += cur.eq((cur & ~cleared[r.port]) | _bits(self.events, r.port))

        # -- read channel: one cycle from address to data ---------------------------------
        rvalid, rdata, rresp = Signal(), Signal(DATA_BITS), Signal(2)
        m.d.comb += [
            ax("arready").eq(~rvalid),
            ax("rvalid").eq(rvalid),
            ax("rdata").eq(rdata),
            ax("rresp").eq(rresp),
        ]
        with m.If(rvalid & ax("rready")):
            m.d.sync += rvalid.eq(0)
        with m.If(ax("arvalid") & ax("arready")):
            m.d.sync += rvalid.eq(1)
            with m.Switch(ax("araddr")[2:]):
                for r in rm:
                    with m.Case(r.offset // 4):
                        m.d.sync += rresp.eq(RESP_OKAY)
                        if r.const is not None:
                            value = Const(r.const, r.shape)
                        elif r.access is Access.RW:
                            value = _bits(regs, r.port)
                        elif r.access is Access.RO:
                            value = _bits(self.inputs, r.port)
                        elif r.access is Access.W1C:
                            value = _bits(pending, r.port)
                        else:
                            value = Const(0, 1)
                        if r.signed and r.const is None:
                            value = value.as_signed()
                        m.d.sync += rdata.eq(value)
                with m.Default():
                    m.d.sync += rresp.eq(RESP_SLVERR), rdata.eq(0)
        return m


class RunControl(wiring.Component):
    """The run state behind CTRL, STATUS, IRQ_STATUS and the performance counters.

    ``start`` (the CTRL.START strobe) begins a run unless one is running: the counters
    clear and ``running`` rises in the next cycle. Every cycle with ``running`` high counts
    in ``cycles_total``, and in ``cycles_busy`` / ``cycles_stall`` when ``busy`` /
    ``mem_stall`` are high. ``done`` (from the sequencer) ends the run: ``running`` falls,
    STATUS.DONE rises and stays until the next start, and ``irq_event`` pulses once (wire
    it to the IRQ_STATUS.DONE event). ``irq`` is the interrupt line: a pending, enabled
    interrupt.

    Members
    -------
    start, done, busy, mem_stall : ``In(1)``
    irq_enable, irq_pending : ``In(1)``
        IRQ_ENABLE.DONE and IRQ_STATUS.DONE as the register file holds them.
    running : ``Out(1)``
    status : ``Out(2)``
        The STATUS register: bit 0 BUSY (``running``), bit 1 DONE.
    cycles_total, cycles_busy, cycles_stall : ``Out(COUNTER_BITS)``
    irq_event, irq : ``Out(1)``
    """

    def __init__(self):
        super().__init__({
            "start": In(1), "done": In(1), "busy": In(1), "mem_stall": In(1),
            "irq_enable": In(1), "irq_pending": In(1),
            "running": Out(1), "status": Out(2),
            "cycles_total": Out(COUNTER_BITS), "cycles_busy": Out(COUNTER_BITS),
            "cycles_stall": Out(COUNTER_BITS),
            "irq_event": Out(1), "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        finished = Signal()
        counters = (self.cycles_total, self.cycles_busy, self.cycles_stall)
        with m.If(self.running):
            m.d.sync += [
                self.cycles_total.eq(self.cycles_total + 1),
                self.cycles_busy.eq(self.cycles_busy + self.busy),
                self.cycles_stall.eq(self.cycles_stall + self.mem_stall),
            ]
            with m.If(self.done):
                m.d.sync += self.running.eq(0), finished.eq(1)
        with m.Elif(self.start):
            m.d.sync += [self.running.eq(1), finished.eq(0)] + [c.eq(0) for c in counters]
        m.d.comb += [
            self.status.eq(Cat(self.running, finished)),
            self.irq_event.eq(self.running & self.done),
            self.irq.eq(self.irq_enable & self.irq_pending),
        ]
        return m


def _bits(view, name):
    """The raw bits of field ``name`` of a struct view (assignable, whatever its shape)."""
    f = view.shape()[name]
    return view.as_value()[f.offset:f.offset + f.width]
