"""An AXI4 slave RAM on block RAM: the DRAM stand-in of the on-board self-test.

:class:`AxiRam` answers an AXI4 master (the accelerator's DMA) from one
:class:`amaranth.lib.memory.Memory` with a write port and a read port, which Yosys maps to
true dual-port block RAM (DP16KD on ECP5). Reads and writes run independently; each side
serves one burst at a time and accepts the next address as soon as the current burst's
last beat has left (reads) or its response was taken (writes), so a master with several
bursts outstanding simply waits on ``arready``/``awready`` — the AXI4 handshake allows it.

Bursts: INCR, FIXED and WRAP, of 1..256 beats, narrow or full width (``axsize`` up to the
bus width); reads stream one beat per cycle while ``rready`` is high; writes take one beat
per cycle with byte strobes and end on ``wlast``. A beat outside the memory is answered
with DECERR (a read returns zeros, a write changes nothing). IDs are echoed.

A *peek* port lets logic beside the RAM (the self-tests' checkers) read and write words
while the AXI side is idle: with ``peek_sel`` high the memory's ports follow ``peek_addr``
(reads one cycle late on ``peek_data``; ``peek_write`` writes ``peek_wdata``), and the AXI side
must have no burst in flight.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mensa.hw.dma import axi4_master_members

__all__ = ["AxiRam", "ram_words", "axi4_slave_members", "RESP_OKAY", "RESP_DECERR", "BURST_FIXED", "BURST_WRAP"]

BURST_FIXED, BURST_WRAP = 0, 2
RESP_OKAY, RESP_DECERR = 0, 3


def axi4_slave_members(prefix, addr_bits, data_bits, id_bits=1):
    """Signature members of an AXI4 *slave* port: :func:`~mensa.hw.dma.axi4_master_members` flipped."""
    return {name: member.flip() for name, member in axi4_master_members(prefix, addr_bits, data_bits, id_bits).items()}


class _Burst:
    """Address state of one burst: the next beat's byte address after ``addr``."""

    def __init__(self, m, name, addr_bits):
        self.addr = Signal(addr_bits, name=f"{name}_addr")
        self.len = Signal(8, name=f"{name}_len")
        self.size = Signal(3, name=f"{name}_size")
        self.burst = Signal(2, name=f"{name}_burst")
        # WRAP: the address wraps within a (len + 1) * size aligned window (len + 1 = 2, 4,
        # 8, 16); kept from the address beat, as ``len`` counts the beats down.
        self.window = Signal(addr_bits, name=f"{name}_window")

    def load(self, addr, len_, size, burst):
        return [self.addr.eq(addr), self.len.eq(len_), self.size.eq(size), self.burst.eq(burst),
                self.window.eq(((len_ + 1) << size) - 1)]

    def next_addr(self, m):
        step = Signal.like(self.addr)
        m.d.comb += step.eq(Const(1, len(self.addr)) << self.size)
        # Beats after the first are aligned to the transfer size (an unaligned start address).
        incr = (self.addr & ~(step - 1)) + step
        wrap = (self.addr & ~self.window) | (incr & self.window)
        return Mux(self.burst == BURST_FIXED, self.addr, Mux(self.burst == BURST_WRAP, wrap, incr))


def ram_words(size, word):
    """The depth of an :class:`AxiRam` of ``word``-byte words that holds ``size`` bytes: at least 2."""
    return max(2, -(-size // word))


class AxiRam(wiring.Component):
    """AXI4 slave RAM of ``depth`` bus words, initialised from bytes.

    Parameters
    ----------
    data_bits : int
        Bus width, a power of two of at least 8.
    addr_bits : int
        AXI address width.
    depth : int
        Words of memory (any number: the block RAMs the image needs, not the next power of two); bytes
        ``0 .. depth * data_bits / 8 - 1`` are the RAM, a beat beyond them reads zeros with DECERR.
    init : bytes-like
        Initial contents from byte 0 (little-endian within a word), at most the RAM's size.
    id_bits : int
    prefix : str
        Prefix of the AXI4 port names (``<prefix>_awaddr`` and so on).

    Members
    -------
    <prefix>_* : AXI4 slave.
    peek_sel : ``In(1)``
        The memory follows the peek port (the AXI side must be idle).
    peek_addr : ``In(range(depth))``
        Word index.
    peek_data : ``Out(data_bits)``
        The word at the ``peek_addr`` of the previous cycle.
    peek_write : ``In(1)``
        With ``peek_sel``: write ``peek_wdata`` to the word at ``peek_addr``.
    peek_wdata : ``In(data_bits)``
    """

    def __init__(self, *, data_bits, addr_bits, depth, init=b"", id_bits=1, prefix="s_axi"):
        if not isinstance(data_bits, int) or data_bits < 8 or data_bits & (data_bits - 1):
            raise ValueError(f"data_bits must be a power of two of at least 8, not {data_bits!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
            raise ValueError(f"depth must be an integer of at least 2, not {depth!r}")
        word = data_bits // 8
        self._offset_bits = (word - 1).bit_length()
        self._depth_bits = (depth - 1).bit_length()
        if not isinstance(addr_bits, int) or not self._offset_bits + self._depth_bits <= addr_bits <= 64:
            raise ValueError(f"addr_bits must be an integer in {self._offset_bits + self._depth_bits}..64 "
                             f"for {depth} words of {word} bytes, not {addr_bits!r}")
        init = bytes(init)
        if len(init) > depth * word:
            raise ValueError(f"init has {len(init)} bytes; the RAM holds {depth * word}")
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ValueError(f"prefix must be an identifier, not {prefix!r}")
        padded = init + bytes(-len(init) % word)
        self._init = [int.from_bytes(padded[i:i + word], "little") for i in range(0, len(padded), word)]
        self._data_bits, self._addr_bits, self._depth, self._prefix = data_bits, addr_bits, depth, prefix
        super().__init__({
            **axi4_slave_members(prefix, addr_bits, data_bits, id_bits),
            "peek_sel": In(1), "peek_addr": In(range(depth)), "peek_data": Out(data_bits), "peek_write": In(1),
            "peek_wdata": In(data_bits),
        })

    @property
    def depth(self):
        return self._depth

    def _port(self, name):
        return getattr(self, f"{self._prefix}_{name}")

    def elaborate(self, platform):
        m = Module()
        p = self._port
        ob, db = self._offset_bits, self._depth_bits
        m.submodules.mem = mem = Memory(shape=self._data_bits, depth=self._depth, init=self._init)
        rp = mem.read_port()
        wp = mem.write_port(granularity=8)
        strb_bits = self._data_bits // 8

        def word(addr):
            return addr[ob:ob + db]

        def outside(addr):
            if self._depth & (self._depth - 1):
                return addr[ob:] >= self._depth
            return addr[ob + db:] != 0 if ob + db < len(addr) else Const(0)

        # -- reads: the read port's output register is the R channel's data register --------
        rd = _Burst(m, "rd", self._addr_bits)
        rd_busy = Signal()
        rd_id = Signal.like(p("arid"))
        rvalid, rlast, rresp, rid = Signal(), Signal(), Signal(2), Signal.like(p("rid"))
        advance = ~rvalid | p("rready")
        m.d.comb += [
            p("arready").eq(~rd_busy),
            p("rvalid").eq(rvalid), p("rlast").eq(rlast), p("rresp").eq(rresp), p("rid").eq(rid),
            # A beat outside the RAM reads zeros (DECERR); the word read is masked, not the address.
            p("rdata").eq(Mux(rresp == RESP_OKAY, rp.data, 0)),
            self.peek_data.eq(rp.data),
        ]
        with m.If(self.peek_sel):
            m.d.comb += [rp.addr.eq(self.peek_addr), rp.en.eq(1)]
        with m.Else():
            m.d.comb += [rp.addr.eq(word(rd.addr)), rp.en.eq(advance)]
        with m.If(p("arvalid") & ~rd_busy):
            m.d.sync += [*rd.load(p("araddr"), p("arlen"), p("arsize"), p("arburst")), rd_id.eq(p("arid")),
                         rd_busy.eq(1)]
        with m.If(advance):
            m.d.sync += [rvalid.eq(rd_busy), rlast.eq(rd.len == 0), rid.eq(rd_id),
                         rresp.eq(Mux(outside(rd.addr), RESP_DECERR, RESP_OKAY))]
            with m.If(rd_busy):
                m.d.sync += [rd.addr.eq(rd.next_addr(m)), rd.len.eq(rd.len - 1)]
                with m.If(rd.len == 0):
                    m.d.sync += rd_busy.eq(0)

        # -- writes: address, then data beats up to WLAST, then one response --------------
        wr = _Burst(m, "wr", self._addr_bits)
        wr_busy, wr_err = Signal(), Signal()
        bvalid, bid = Signal(), Signal.like(p("bid"))
        m.d.comb += [
            p("awready").eq(~wr_busy & ~bvalid),
            p("wready").eq(wr_busy),
            p("bvalid").eq(bvalid), p("bid").eq(bid), p("bresp").eq(Mux(wr_err, RESP_DECERR, RESP_OKAY)),
        ]
        with m.If(p("awvalid") & ~wr_busy & ~bvalid):
            m.d.sync += [*wr.load(p("awaddr"), p("awlen"), p("awsize"), p("awburst")), bid.eq(p("awid")),
                         wr_busy.eq(1), wr_err.eq(0)]
        with m.If(self.peek_sel):
            m.d.comb += [wp.addr.eq(self.peek_addr), wp.data.eq(self.peek_wdata),
                         wp.en.eq(Mux(self.peek_write, (1 << strb_bits) - 1, 0))]
        with m.Else():
            m.d.comb += [wp.addr.eq(word(wr.addr)), wp.data.eq(p("wdata"))]
            with m.If(p("wvalid") & wr_busy):
                m.d.comb += wp.en.eq(Mux(outside(wr.addr), 0, p("wstrb")))
                m.d.sync += [wr.addr.eq(wr.next_addr(m)), wr_err.eq(wr_err | outside(wr.addr))]
                with m.If(p("wlast")):
                    m.d.sync += [wr_busy.eq(0), bvalid.eq(1)]
        with m.If(bvalid & p("bready")):
            m.d.sync += bvalid.eq(0)
        return m
