"""The command-list replayer: the C runtime (``mensa_runtime.c``) in hardware, for a board with no CPU.

:class:`Replayer` holds a network's command list (:meth:`mensa.contract.network.NetworkProgram.command_list`,
the same words the C runtime replays) in a ROM and runs it on a system top over its AXI4-Lite
master, as ``mensa_run`` does:

- each accelerator (unit) runs its commands in list order, one at a time;
- a command is issued once every command it depends on is done: its descriptor's register writes,
  then ``IRQ_ENABLE.DONE`` and ``CTRL.START``, at the unit's window (``unit * window``);
- a unit's interrupt line marks its command done; the replayer clears it (``IRQ_STATUS.DONE``).

The units are visited in turn: a unit whose command finished is acknowledged, then a unit with
nothing running takes its next command if it is ready, so independent commands run at once on
different units. ``start`` runs the list; ``done`` rises when every command is done, with
``error`` set if a register write was answered with an error response. ``cycles`` counts from
``start`` to ``done``.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mensa.contract.regs import register_map
from mensa.hw.regs import axi4lite_members

__all__ = ["Replayer"]

HEAD, CMD = 3, 6        # words of the list's header and of a command's fixed part (see mensa.contract.network)


class Replayer(wiring.Component):
    """Runs a command list on the units of a system top.

    Parameters
    ----------
    program : :class:`~mensa.contract.network.NetworkProgram`
    window : int
        Bytes of each unit's register window (a power of two; :func:`mensa.contract.network.address_map`).
    addr_bits : int
        Width of the AXI4-Lite address.

    Members
    -------
    m_axil_* : AXI4-Lite master to the system top's register slave.
    irq : ``In(units)``
    start : ``In(1)``
        Run the list (while not ``busy``).
    busy, done, error : ``Out(1)``
        Running; the last run finished (until the next ``start``); it saw an error response.
    cycles : ``Out(40)``
        Cycles of the last run, from ``start`` to its last command done.
    """

    def __init__(self, program, *, window, addr_bits):
        if window & (window - 1):
            raise ValueError(f"window must be a power of two, not {window}")
        self._words = [int(w) for w in program.command_list()]
        self._units = len(program.accelerators)
        self._count = len(program.commands)
        if self._count == 0:
            raise ValueError("the command list has no command")
        self._window, self._addr_bits = window, addr_bits
        regs = {name: register_map(program.accelerators[0])[name] for name in ("IRQ_ENABLE", "CTRL", "IRQ_STATUS")}
        for acc in program.accelerators:        # the run-control head is the same on every kind
            assert all(register_map(acc)[n].offset == r.offset for n, r in regs.items())
        self._offsets = {name: r.offset for name, r in regs.items()}
        super().__init__({**{name: member.flip() for name, member in axi4lite_members("m_axil", addr_bits).items()},
                          "irq": In(self._units), "start": In(1), "busy": Out(1), "done": Out(1),
                          "error": Out(1), "cycles": Out(40)})

    def elaborate(self, platform):
        m = Module()
        words, units, count = self._words, self._units, self._count
        m.submodules.rom = rom = Memory(shape=32, depth=len(words), init=words)
        rd = rom.read_port()
        at = Array(Signal(range(len(words) + 1), name=f"at{u}", init=HEAD) for u in range(units))
        index = Array(Signal(range(count + 1), name=f"index{u}") for u in range(units))
        running = Array(Signal(name=f"running{u}") for u in range(units))
        running_index = Array(Signal(range(count), name=f"running_index{u}") for u in range(units))
        done = Signal(count)
        left = Signal(range(count + 1))
        unit = Signal(range(units))
        deps = Signal(32)
        writes = Signal(32)
        k = Signal(32)                  # the dependency or register write being looked at
        offset = Signal(32)
        # the register write in flight: address, data, whether address/data were taken
        waddr = Signal(self._addr_bits)
        wdata = Signal(32)
        aw_sent, w_sent = Signal(), Signal()
        error = Signal()
        cycles = Signal(40)

        base = unit << (self._window.bit_length() - 1)
        returns = Signal(range(4))
        AFTER_DESCRIPTOR, AFTER_ENABLE, AFTER_START, AFTER_ACK = range(4)
        finished = Signal()             # a run has finished, until the next start
        cmd_words = CMD + deps + 2 * writes
        m.d.comb += [self.m_axil_awaddr.eq(waddr), self.m_axil_wdata.eq(wdata), self.m_axil_wstrb.eq(0b1111),
                     self.m_axil_bready.eq(1), self.cycles.eq(cycles), self.error.eq(error)]

        def write(offset_value, data, then):
            """Go to the register write of ``data`` at ``offset_value`` in the unit's window, then to ``then``."""
            m.d.sync += [waddr.eq(base + offset_value), wdata.eq(data), aw_sent.eq(0), w_sent.eq(0)]
            m.d.sync += returns.eq(then)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [done.eq(0), left.eq(count), unit.eq(0), error.eq(0), cycles.eq(0), finished.eq(0)]
                    m.d.sync += [a.eq(HEAD) for a in at] + [i.eq(0) for i in index] + [r.eq(0) for r in running]
                    m.next = "VISIT"
                with m.Else():
                    m.d.comb += self.done.eq(finished)
            with m.State("VISIT"):          # the unit's command finished: acknowledge it
                m.d.comb += self.busy.eq(1)
                with m.If(running[unit] & (self.irq.bit_select(unit, 1))):
                    write(self._offsets["IRQ_STATUS"], 1, AFTER_ACK)
                    m.next = "WRITE"
                with m.Else():
                    m.next = "TRY"
            with m.State("TRY"):            # the unit's next command, if nothing runs on it
                m.d.comb += [self.busy.eq(1), rd.addr.eq(at[unit])]
                with m.If(running[unit] | (index[unit] == count)):
                    m.next = "NEXT"
                with m.Else():
                    m.next = "HEAD0"
            with m.State("HEAD0"):          # rd.data: the command's unit
                m.d.comb += [self.busy.eq(1), rd.addr.eq(at[unit] + 1)]
                m.d.sync += offset.eq(rd.data)
                m.next = "HEAD1"
            with m.State("HEAD1"):          # rd.data: its dependency count
                m.d.comb += [self.busy.eq(1), rd.addr.eq(at[unit] + 2)]
                m.d.sync += [deps.eq(rd.data), k.eq(0)]
                m.next = "HEAD2"
            with m.State("HEAD2"):          # rd.data: its register write count
                m.d.comb += self.busy.eq(1)
                m.d.sync += writes.eq(rd.data)
                with m.If(offset != unit):
                    m.next = "SKIP"
                with m.Else():
                    m.next = "DEPS"
            with m.State("SKIP"):           # another unit's command: the cursor moves past it
                m.d.comb += self.busy.eq(1)
                m.d.sync += [at[unit].eq(at[unit] + cmd_words), index[unit].eq(index[unit] + 1)]
                m.next = "TRY"
            with m.State("DEPS"):           # its dependencies, one a cycle
                m.d.comb += [self.busy.eq(1), rd.addr.eq(at[unit] + CMD + k)]
                with m.If(k == deps):
                    m.d.sync += k.eq(0)
                    m.next = "DESCRIPTOR"
                with m.Else():
                    m.next = "DEP"
            with m.State("DEP"):            # rd.data: a dependency's index
                m.d.comb += self.busy.eq(1)
                with m.If(done.bit_select(rd.data[:len(left)], 1)):
                    m.d.sync += k.eq(k + 1)
                    m.next = "DEPS"
                with m.Else():
                    m.next = "NEXT"         # not ready: the next unit's turn
            with m.State("DESCRIPTOR"):     # its register writes: offset, then value
                m.d.comb += [self.busy.eq(1), rd.addr.eq(at[unit] + CMD + deps + 2 * k)]
                with m.If(k == writes):
                    write(self._offsets["IRQ_ENABLE"], 1, AFTER_ENABLE)
                    m.next = "WRITE"
                with m.Else():
                    m.next = "OFFSET"
            with m.State("OFFSET"):
                m.d.comb += [self.busy.eq(1), rd.addr.eq(at[unit] + CMD + deps + 2 * k + 1)]
                m.d.sync += offset.eq(rd.data)
                m.next = "VALUE"
            with m.State("VALUE"):
                m.d.comb += self.busy.eq(1)
                write(offset, rd.data, AFTER_DESCRIPTOR)
                m.next = "WRITE"
            with m.State("WRITE"):          # one AXI4-Lite write: address and data in either order
                m.d.comb += [self.busy.eq(1), self.m_axil_awvalid.eq(~aw_sent), self.m_axil_wvalid.eq(~w_sent)]
                with m.If(self.m_axil_awready):
                    m.d.sync += aw_sent.eq(1)
                with m.If(self.m_axil_wready):
                    m.d.sync += w_sent.eq(1)
                with m.If((aw_sent | self.m_axil_awready) & (w_sent | self.m_axil_wready)):
                    m.next = "RESPONSE"
            with m.State("RESPONSE"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.m_axil_bvalid):
                    with m.If(self.m_axil_bresp != 0):
                        m.d.sync += error.eq(1)
                    with m.Switch(returns):
                        with m.Case(AFTER_DESCRIPTOR):
                            m.d.sync += k.eq(k + 1)
                            m.next = "DESCRIPTOR"
                        with m.Case(AFTER_ENABLE):
                            write(self._offsets["CTRL"], 1, AFTER_START)
                            m.next = "WRITE"
                        with m.Case(AFTER_START):       # issued: the cursor moves past it
                            m.d.sync += [running[unit].eq(1), running_index[unit].eq(index[unit]),
                                         at[unit].eq(at[unit] + cmd_words), index[unit].eq(index[unit] + 1)]
                            m.next = "NEXT"
                        with m.Case(AFTER_ACK):
                            m.d.sync += [running[unit].eq(0), done.bit_select(running_index[unit], 1).eq(1),
                                         left.eq(left - 1)]
                            m.next = "TRY"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                with m.If(left == 0):
                    m.d.sync += finished.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += unit.eq(Mux(unit == units - 1, 0, unit + 1))
                    m.next = "VISIT"
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
        return m
