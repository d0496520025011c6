"""The AXI4-Lite register file of an accelerator, built from its :class:`~mensa.contract.regs.RegisterMap`.

The map (names, offsets, widths, access kinds) is described once, in
:mod:`mensa.contract.regs`; this module is its hardware.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.regs import COUNTER_BITS, DATA_BITS, RESP_OKAY, RESP_SLVERR, Access, RegisterMap

__all__ = ["RegisterFile", "RunControl", "axi4lite_members", "register_shape"]


def register_shape(register):
    """The Amaranth shape of a :class:`~mensa.contract.regs.Register`'s value."""
    return signed(register.width) if register.signed else unsigned(register.width)


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
    return data.StructLayout({r.port: register_shape(r) for r in registers})


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

    def value(self, name):
        """The read-write quantity ``name``: one register, or a ``_LO``/``_HI`` pair joined."""
        if name in self._regmap:
            return getattr(self.regs, name.lower())
        return Cat(getattr(self.regs, f"{name.lower()}_lo"), getattr(self.regs, f"{name.lower()}_hi"))

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
                            value = Const(r.const, register_shape(r))
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


def connect_run_control(m, regs, run, irq):
    """Wire ``run`` (:class:`RunControl`) to the register file ``regs``: START, IRQ_ENABLE and
    IRQ_STATUS in, STATUS, the DONE event and the counters (``_LO``/``_HI`` halves where the map
    splits them) out, and the interrupt line to ``irq``."""
    rm = regs.regmap
    m.d.comb += [
        run.start.eq(regs.strobes.ctrl[0]),
        run.irq_enable.eq(regs.regs.irq_enable[0]),
        run.irq_pending.eq(regs.pending.irq_status[0]),
        regs.events.irq_status.eq(run.irq_event),
        regs.inputs.status.eq(run.status),
        irq.eq(run.irq),
    ]
    for name in ("CYCLES_TOTAL", "CYCLES_BUSY", "CYCLES_STALL"):
        value = getattr(run, name.lower())
        if name in rm:
            m.d.comb += getattr(regs.inputs, name.lower()).eq(value)
        else:
            m.d.comb += [getattr(regs.inputs, f"{name.lower()}_lo").eq(value[:32]),
                         getattr(regs.inputs, f"{name.lower()}_hi").eq(value[32:COUNTER_BITS])]


def _bits(view, name):
    """The raw bits of field ``name`` of a struct view (assignable, whatever its shape)."""
    f = view.shape()[name]
    return view.as_value()[f.offset:f.offset + f.width]
