"""The system top: the accelerators of a system behind one AXI4-Lite slave and one AXI4 master.

:class:`SystemTop` instantiates every accelerator of a :class:`~mensa.core.config.SystemConfig`
(:func:`mensa.contract.network.peripherals`: the systolic :class:`~mensa.hw.accelerator.Accelerator`
and the :class:`~mensa.hw.nearmem_accelerator.NearMemAccelerator`) and joins them:

registers
    one AXI4-Lite slave ``s_axil``; accelerator ``i``'s registers answer at ``i * WINDOW``
    (:func:`mensa.contract.network.address_map`), ``WINDOW`` the largest register map's size. One
    transaction at a time: the address (and, for a write, the data) is taken, passed to the
    accelerator it decodes to, and its response returned; an address beyond the last window
    answers DECERR (reads return 0).
DRAM
    one AXI4 master ``m_axi`` behind :class:`AxiArbiter`: the accelerators' DMA masters take turns
    per burst (round robin) on the read and on the write address channel; a write burst's data
    follows the order its addresses were granted in; responses go back by ID (the master's
    index above the master's own ID bits) into each master's own buffer. With one accelerator
    its DMA is the top's master as it is (no arbiter, no added cycle).
interrupts
    ``irq``: one line per accelerator, bit ``i`` accelerator ``i``'s.
vaults
    a near-memory accelerator ``i``'s vault ports are the top's ``u<i>_vault_req`` and
    ``u<i>_vault_resp`` (a request and a response stream per vault), not memories inside it: a
    vault is the memory the unit sits next to, megabytes each (mensa-g-fpga: slices of the
    board's SDRAM behind ports of their own), so the top leaves it to the board or to the
    simulation (the network harness serves them from memories loaded by backdoor).
"""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.network import address_map, arbitrated, peripherals
from mensa.contract.numeric import READS_IN_FLIGHT
from mensa.contract.regs import register_map
from mensa.core.config import CoreKind, SystemConfig
from mensa.hw.accelerator import Accelerator, accelerator_members
from mensa.hw.dma import axi4_master_members
from mensa.hw.nearmem_accelerator import NearMemAccelerator, nearmem_accelerator_members
from mensa.hw.regs import axi4lite_members

__all__ = ["SystemTop", "AxiArbiter", "RESP_DECERR", "unit_component"]

RESP_DECERR = 3
_AX = ("addr", "len", "size", "burst", "lock", "cache", "prot")


def unit_component(config):
    """The peripheral of accelerator ``config`` that the system top instantiates: an
    :class:`~mensa.hw.accelerator.Accelerator` or a :class:`~mensa.hw.nearmem_accelerator.NearMemAccelerator`."""
    return (NearMemAccelerator if config.kind is CoreKind.NEARMEM else Accelerator)(config)


def _clog2(n):
    return max((n - 1).bit_length(), 0)


class AxiArbiter(wiring.Component):
    """``n`` AXI4 masters (slave ports ``s<i>_*``) onto one AXI4 master port ``m_axi``, per burst, round robin.

    The DRAM answers in the order it took the addresses, so one master slow to take its read data (or
    write responses) would hold up every other's, and two masters each waiting on the other through the
    shared channels would deadlock. Each master therefore has its own read data and write response
    buffer, and is granted a burst only when its buffer has room for all of it: the shared channels
    never wait on a master.

    Parameters
    ----------
    n : int
    addr_bits, data_bits, id_bits : int
        The masters' address, data and ID widths; ``m_axi``'s IDs are ``id_bits + ceil(log2 n)`` wide.
    bursts, max_burst : int
        Bursts a master keeps in flight, and beats per burst: its buffers' sizes.
    """

    def __init__(self, n, *, addr_bits, data_bits, id_bits=1, bursts=READS_IN_FLIGHT, max_burst=16):
        self._n, self._id, self._data = n, id_bits, data_bits
        self._sel = max(_clog2(n), 1)
        self._r_depth, self._b_depth = bursts * max_burst, bursts
        members = {}
        for i in range(n):
            members.update({name: member.flip() for name, member in
                            axi4_master_members(f"s{i}", addr_bits, data_bits, id_bits).items()})
        members.update(axi4_master_members("m_axi", addr_bits, data_bits, id_bits + self._sel))
        super().__init__(members)

    def _port(self, i, name):
        return getattr(self, f"s{i}_{name}")

    def _grant(self, m, ch, eligible):
        """Round-robin choice among the masters presenting an address on channel ``ch`` (``ar``/``aw``) that
        are ``eligible``, held from the cycle it is presented until it is taken (AXI keeps a presented
        address stable); returns the chosen index and the handshake."""
        n = self._n
        last = Signal(range(n), name=f"{ch}_last")
        free = Signal(range(n), name=f"{ch}_free")
        pick = Signal(range(n), name=f"{ch}_pick")
        locked = Signal(name=f"{ch}_locked")
        held = Signal(range(n), name=f"{ch}_held")
        valid = Cat(*[self._port(i, f"{ch}valid") & eligible[i] for i in range(n)])
        for prev in range(n):
            with (m.If(last == prev) if prev == 0 else m.Elif(last == prev) if prev < n - 1 else m.Else()):
                for i in reversed([(prev + k) % n for k in range(1, n + 1)]):
                    with m.If(valid[i]):
                        m.d.comb += free.eq(i)          # the first requester after the last grant wins
        m.d.comb += pick.eq(Mux(locked, held, free))
        present = Signal(name=f"{ch}_present")
        m.d.comb += present.eq(locked | valid.any())
        m.d.comb += getattr(self, f"m_axi_{ch}valid").eq(present)
        for field in _AX:
            m.d.comb += getattr(self, f"m_axi_{ch}{field}").eq(_select(pick, [self._port(i, f"{ch}{field}")
                                                                               for i in range(n)]))
        m.d.comb += getattr(self, f"m_axi_{ch}id").eq(
            Cat(_select(pick, [self._port(i, f"{ch}id") for i in range(n)]), pick.as_unsigned()[:self._sel]))
        fire = Signal(name=f"{ch}_fire")
        m.d.comb += fire.eq(present & getattr(self, f"m_axi_{ch}ready"))
        for i in range(n):
            m.d.comb += self._port(i, f"{ch}ready").eq(fire & (pick == i))
        with m.If(fire):
            m.d.sync += [last.eq(pick), locked.eq(0)]
        with m.Elif(present):
            m.d.sync += [locked.eq(1), held.eq(pick)]
        return pick, fire

    def _buffer(self, m, name, i, width, depth):
        buf = fifo.SyncFIFOBuffered(width=width, depth=depth)
        m.submodules[f"{name}{i}"] = buf
        return buf

    def _credits(self, m, name, i, depth, take, give):
        """Room left in master ``i``'s ``name`` buffer: ``take`` reserved at a grant, ``give`` back per entry read."""
        room = Signal(range(depth + 1), name=f"{name}{i}_room", init=depth)
        m.d.sync += room.eq(room - take + give)
        return room

    def elaborate(self, platform):
        m = Module()
        n, idb, d = self._n, self._id, self._data
        # reads: a burst is granted when its master's buffer has room for all its beats
        r_bufs = [self._buffer(m, "r", i, d + 2 + 1 + idb, self._r_depth) for i in range(n)]
        r_room = []
        ar_pick_sig = Signal(range(n))
        ar_fire_sig = Signal()
        for i, buf in enumerate(r_bufs):
            beats = self._port(i, "arlen") + 1
            take = Mux(ar_fire_sig & (ar_pick_sig == i), beats, 0)
            give = buf.r_en & buf.r_rdy
            r_room.append((self._credits(m, "r", i, self._r_depth, take, give), beats))
        pick, fire = self._grant(m, "ar", [room >= beats for room, beats in r_room])
        m.d.comb += [ar_pick_sig.eq(pick), ar_fire_sig.eq(fire)]
        rsel = self.m_axi_rid[idb:idb + self._sel]
        m.d.comb += self.m_axi_rready.eq(1)          # every beat has its room reserved
        for i, buf in enumerate(r_bufs):
            m.d.comb += [buf.w_en.eq(self.m_axi_rvalid & (rsel == i)),
                         buf.w_data.eq(Cat(self.m_axi_rdata, self.m_axi_rresp, self.m_axi_rlast,
                                           self.m_axi_rid[:idb])),
                         self._port(i, "rvalid").eq(buf.r_rdy), buf.r_en.eq(self._port(i, "rready")),
                         Cat(self._port(i, "rdata"), self._port(i, "rresp"), self._port(i, "rlast"),
                             self._port(i, "rid")).eq(buf.r_data)]
        # writes: granted when the master's response buffer has room; the data follows the grants' order
        b_bufs = [self._buffer(m, "b", i, 2 + idb, self._b_depth) for i in range(n)]
        m.submodules.order = order = fifo.SyncFIFOBuffered(width=self._sel, depth=n * self._b_depth)
        aw_pick_sig = Signal(range(n))
        aw_fire_sig = Signal()
        b_room = []
        for i, buf in enumerate(b_bufs):
            take = Mux(aw_fire_sig & (aw_pick_sig == i), 1, 0)
            b_room.append(self._credits(m, "b", i, self._b_depth, take, buf.r_en & buf.r_rdy))
        pick, fire = self._grant(m, "aw", [(room > 0) & order.w_rdy for room in b_room])
        m.d.comb += [aw_pick_sig.eq(pick), aw_fire_sig.eq(fire), order.w_data.eq(pick), order.w_en.eq(fire)]
        wsel = order.r_data
        for name in ("wdata", "wstrb", "wlast"):
            m.d.comb += getattr(self, f"m_axi_{name}").eq(_select(wsel, [self._port(i, name) for i in range(n)]))
        m.d.comb += self.m_axi_wvalid.eq(order.r_rdy & _select(wsel, [self._port(i, "wvalid") for i in range(n)]))
        for i in range(n):
            m.d.comb += self._port(i, "wready").eq(order.r_rdy & (wsel == i) & self.m_axi_wready)
        m.d.comb += order.r_en.eq(self.m_axi_wvalid & self.m_axi_wready & self.m_axi_wlast)
        bsel = self.m_axi_bid[idb:idb + self._sel]
        m.d.comb += self.m_axi_bready.eq(1)          # every response has its room reserved
        for i, buf in enumerate(b_bufs):
            m.d.comb += [buf.w_en.eq(self.m_axi_bvalid & (bsel == i)),
                         buf.w_data.eq(Cat(self.m_axi_bresp, self.m_axi_bid[:idb])),
                         self._port(i, "bvalid").eq(buf.r_rdy), buf.r_en.eq(self._port(i, "bready")),
                         Cat(self._port(i, "bresp"), self._port(i, "bid")).eq(buf.r_data)]
        return m


def _select(index, values):
    """``values[index]`` as a mux chain (values of one width)."""
    out = values[-1]
    for i in reversed(range(len(values) - 1)):
        out = Mux(index == i, values[i], out)
    return out


class _LiteDecoder(wiring.Component):
    """One AXI4-Lite slave onto ``n`` AXI4-Lite masters (ports ``m<i>_*``) by ``window``-byte windows."""

    def __init__(self, n, *, window, addr_bits, sub_bits):
        self._n, self._window, self._sub = n, window, sub_bits
        members = dict(axi4lite_members("s_axil", addr_bits))
        for i in range(n):
            members.update({name: member.flip() for name, member in
                            axi4lite_members(f"m{i}", sub_bits).items()})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n, sub = self._n, self._sub
        shift = (self._window - 1).bit_length()
        addr = Signal.like(self.s_axil_awaddr)
        data = Signal(32)
        strb = Signal(4)
        target = Signal(range(n + 1))
        rdata = Signal(32)
        resp = Signal(2)

        def port(i, name):
            return getattr(self, f"m{i}_{name}")

        state = Signal(range(6))
        idle, write, write_out, write_resp, read, read_resp = range(6)
        # an if chain, not a switch: a switch leaves the cases of the signals the default sets out
        with m.If(state == idle):
            m.d.comb += self.s_axil_arready.eq(1)
            with m.If(self.s_axil_arvalid):
                m.d.sync += [addr.eq(self.s_axil_araddr),
                             target.eq(Mux(self.s_axil_araddr[shift:] < n, self.s_axil_araddr[shift:], n))]
                m.d.sync += state.eq(read)
            with m.Elif(self.s_axil_awvalid):
                m.d.sync += state.eq(write)
        with m.Elif(state == write):       # take the address and the data, in either order
            have_a, have_w = Signal(), Signal()
            m.d.comb += [self.s_axil_awready.eq(~have_a), self.s_axil_wready.eq(~have_w)]
            with m.If(self.s_axil_awvalid & ~have_a):
                m.d.sync += [have_a.eq(1), addr.eq(self.s_axil_awaddr),
                             target.eq(Mux(self.s_axil_awaddr[shift:] < n, self.s_axil_awaddr[shift:], n))]
            with m.If(self.s_axil_wvalid & ~have_w):
                m.d.sync += [have_w.eq(1), data.eq(self.s_axil_wdata), strb.eq(self.s_axil_wstrb)]
            with m.If((have_a | self.s_axil_awvalid) & (have_w | self.s_axil_wvalid)):
                m.d.sync += [have_a.eq(0), have_w.eq(0)]
                m.d.sync += state.eq(write_out)
        with m.Elif(state == write_out):
            for i in range(n):
                m.d.comb += [port(i, "awaddr").eq(addr[:sub]), port(i, "wdata").eq(data), port(i, "wstrb").eq(strb),
                             port(i, "awvalid").eq(target == i), port(i, "wvalid").eq(target == i)]
            sent_a, sent_w = Signal(), Signal()
            with m.If(target == n):
                m.d.sync += resp.eq(RESP_DECERR)
                m.d.sync += state.eq(write_resp)
            for i in range(n):
                with m.If(target == i):
                    m.d.comb += [port(i, "awvalid").eq(~sent_a), port(i, "wvalid").eq(~sent_w),
                                 port(i, "bready").eq(1)]
                    with m.If(port(i, "awready")):
                        m.d.sync += sent_a.eq(1)
                    with m.If(port(i, "wready")):
                        m.d.sync += sent_w.eq(1)
                    with m.If(port(i, "bvalid")):
                        m.d.sync += [resp.eq(port(i, "bresp")), sent_a.eq(0), sent_w.eq(0)]
                        m.d.sync += state.eq(write_resp)
        with m.Elif(state == write_resp):
            m.d.comb += [self.s_axil_bvalid.eq(1), self.s_axil_bresp.eq(resp)]
            with m.If(self.s_axil_bready):
                m.d.sync += resp.eq(0)
                m.d.sync += state.eq(idle)
        with m.Elif(state == read):
            for i in range(n):
                m.d.comb += port(i, "araddr").eq(addr[:sub])
            sent = Signal()
            with m.If(target == n):
                m.d.sync += [rdata.eq(0), resp.eq(RESP_DECERR)]
                m.d.sync += state.eq(read_resp)
            for i in range(n):
                with m.If(target == i):
                    m.d.comb += [port(i, "arvalid").eq(~sent), port(i, "rready").eq(1)]
                    with m.If(port(i, "arready")):
                        m.d.sync += sent.eq(1)
                    with m.If(port(i, "rvalid")):
                        m.d.sync += [rdata.eq(port(i, "rdata")), resp.eq(port(i, "rresp")), sent.eq(0)]
                        m.d.sync += state.eq(read_resp)
        with m.Else():                 # the read's response
            m.d.comb += [self.s_axil_rvalid.eq(1), self.s_axil_rdata.eq(rdata), self.s_axil_rresp.eq(resp)]
            with m.If(self.s_axil_rready):
                m.d.sync += resp.eq(0)
                m.d.sync += state.eq(idle)
        return m


class SystemTop(wiring.Component):
    """The accelerators of ``system`` behind one AXI4-Lite slave, one AXI4 master and one interrupt each.

    Each accelerator is an instance of its own Verilog module (``modules[accelerator name]``, written
    beside the top from :class:`~mensa.hw.accelerator.Accelerator`), so no accelerator is elaborated
    twice; with ``modules`` None, each is elaborated inside the top (:func:`unit_component`), one design
    for a board's build.

    Members
    -------
    s_axil_* : AXI4-Lite slave of the whole address map (:func:`address_map`).
    m_axi_* : AXI4 master to DRAM; IDs carry the accelerator's index.
    irq : ``Out(n)``
    u<i>_vault_req, u<i>_vault_resp
        Near-memory accelerator ``i``'s vault ports (:class:`~mensa.hw.nearmem_accelerator.NearMemAccelerator`).
    """

    def __init__(self, system, modules=None):
        if not isinstance(system, SystemConfig):
            raise TypeError(f"system must be a SystemConfig, not {system!r}")
        accs = peripherals(system)
        missing = [a.name for a in accs if modules is not None and a.name not in modules]
        if missing:
            raise ValueError(f"no Verilog module name for the accelerators {missing}")
        self._modules = None if modules is None else dict(modules)
        if not accs:
            raise ValueError(f"system {system.name!r} has no accelerator with registers and DMA")
        widths = {(a.memory.addr_bits, a.memory.data_bits) for a in accs}
        if len(widths) > 1:
            raise ValueError(f"system {system.name!r}: its accelerators' AXI widths differ ({sorted(widths)})")
        self._system, self._accs = system, accs
        (self._addr, self._data), = widths
        self._window, _ = address_map(system)
        self._sub = (self._window - 1).bit_length()
        self._lite_bits = self._sub + max(_clog2(len(accs)), 1)
        self._sel = max(_clog2(len(accs)), 1)
        vaults = {}
        for i, a in enumerate(accs):
            if a.kind is CoreKind.NEARMEM:
                members = nearmem_accelerator_members(a)
                vaults.update({f"u{i}_{name}": members[name] for name in ("vault_req", "vault_resp")})
        super().__init__({**axi4lite_members("s_axil", self._lite_bits),
                          **axi4_master_members("m_axi", self._addr, self._data, 1 + self._sel),
                          "irq": Out(len(accs)), **vaults})

    @property
    def system(self):
        return self._system

    def elaborate(self, platform):
        m = Module()
        n = len(self._accs)
        m.submodules.lite = lite = _LiteDecoder(n, window=self._window, addr_bits=self._lite_bits, sub_bits=self._sub)
        for name in axi4lite_members("s_axil", self._lite_bits):
            _forward(m, self, lite, name)
        if arbitrated(self._system):     # one accelerator's DMA is the top's master as it is: its timing unchanged
            m.submodules.arbiter = arb = AxiArbiter(n, addr_bits=self._addr, data_bits=self._data,
                                                    max_burst=max(a.memory.max_burst for a in self._accs))
            for name in axi4_master_members("m_axi", self._addr, 1 + self._sel):
                _forward(m, self, arb, name)
        for i, acc in enumerate(self._accs):
            if self._modules is None:
                core = m.submodules[f"acc{i}_{acc.name}"] = unit_component(acc)
            else:
                members = (nearmem_accelerator_members if acc.kind is CoreKind.NEARMEM else accelerator_members)(acc)
                core = wiring.Signature(members).create(path=(f"acc{i}",))
                m.submodules[f"acc{i}_{acc.name}"] = Instance(
                    self._modules[acc.name], i_clk=ClockSignal(), i_rst=ResetSignal(),
                    **{("i_" if member.flow is In else "o_") + "__".join(map(str, path)): value
                       for path, member, value in core.signature.flatten(core)})
            if acc.kind is CoreKind.NEARMEM:
                for v in range(acc.nearmem.vaults):
                    wiring.connect(m, core.vault_req[v], wiring.flipped(getattr(self, f"u{i}_vault_req")[v]))
                    wiring.connect(m, wiring.flipped(getattr(self, f"u{i}_vault_resp")[v]), core.vault_resp[v])
            for name in axi4lite_members("s_axil", register_map(acc).addr_bits):
                _join(m, core, name, lite, f"m{i}_{name[len('s_axil_'):]}")
            for name in axi4_master_members("m_axi", self._addr, self._data):
                if n > 1:
                    _join(m, core, name, arb, f"s{i}_{name[len('m_axi_'):]}")
                else:
                    _forward(m, self, core, name)
            m.d.comb += self.irq[i].eq(core.irq)
        return m


def _flow(port, name):
    """The direction of member ``name`` of ``port`` (a component, or an interface a signature created)."""
    return port.signature.members[name].flow


def _forward(m, outer, inner, name):
    """``inner``'s port ``name`` is ``outer``'s (outer holds inner): the direction ``outer``'s signature gives
    (widths may differ: an ID zero-extends outwards and is cut inwards)."""
    if _flow(outer, name) is In:
        m.d.comb += getattr(inner, name).eq(getattr(outer, name))
    else:
        m.d.comb += getattr(outer, name).eq(getattr(inner, name))


def _join(m, a, a_name, b, b_name):
    """Sibling ports of opposite directions: ``a``'s output drives ``b``'s input, or the other way."""
    if _flow(a, a_name) is Out:
        m.d.comb += getattr(b, b_name).eq(getattr(a, a_name))
    else:
        m.d.comb += getattr(a, a_name).eq(getattr(b, b_name))
