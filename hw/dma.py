"""An AXI4 master DMA: bursts in both directions between DRAM and on-chip streams.

:class:`DMA` has a read engine and a write engine that run independently. A command
names a bus-word-aligned byte address and a number of bus words (beats); the engine
splits it into INCR bursts of at most ``max_burst`` beats that never cross a 4 KiB
boundary (the AXI4 rule), and keeps up to ``outstanding`` bursts in flight per
direction, so DRAM latency is hidden behind the following bursts' requests.

Reads return the words on ``rd_data`` in order, ``last`` on a command's final word.
Writes take the words from ``wr_data`` (with byte strobes, so a tensor that does not
fill its last word leaves the bytes after it untouched) and report each command on
``wr_done`` once every burst of it has been answered.

The AXI4 ports are named ``<prefix>_awaddr`` and so on, the names AXI tools expect
(cocotbext-axi's ``AxiBus.from_prefix(dut, prefix)``). One transaction ID (0) is used,
so responses come back in request order.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.numeric import BURST_INCR, PAGE_BYTES, READS_IN_FLIGHT
from mensa.core.config import MemoryConfig

__all__ = ["DMA", "axi4_master_members", "engine_members", "command_layout", "read_layout", "write_layout"]



def axi4_master_members(prefix, addr_bits, data_bits, id_bits=1):
    """Signature members of an AXI4 *master* port, named ``<prefix>_awaddr`` and so on."""
    strb = data_bits // 8
    members = {}
    for ch in ("aw", "ar"):
        members.update({
            f"{ch}id": Out(id_bits), f"{ch}addr": Out(addr_bits), f"{ch}len": Out(8), f"{ch}size": Out(3),
            f"{ch}burst": Out(2), f"{ch}lock": Out(1), f"{ch}cache": Out(4), f"{ch}prot": Out(3),
            f"{ch}valid": Out(1), f"{ch}ready": In(1),
        })
    members.update({
        "wdata": Out(data_bits), "wstrb": Out(strb), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })
    return {f"{prefix}_{name}": member for name, member in members.items()}


def engine_members(config, desc_layout):
    """Signature members of an engine the :class:`DMA` serves (the GEMM sequencer, the vector unit):
    its descriptor and run control, and the DMA's client streams, for ``config`` (a
    :class:`~mensa.core.config.MemoryConfig`)."""
    a, d = config.addr_bits, config.data_bits
    return {
        "desc": In(desc_layout), "start": In(1),
        "done": Out(1), "running": Out(1), "busy": Out(1), "mem_stall": Out(1),
        "rd_cmd": Out(stream.Signature(command_layout(a, d))), "rd_data": In(stream.Signature(read_layout(d))),
        "wr_cmd": Out(stream.Signature(command_layout(a, d))), "wr_data": Out(stream.Signature(write_layout(d))),
        "wr_done": In(stream.Signature(2)),
    }


def command_layout(addr_bits, data_bits):
    """``addr``: byte address (its low bits below a bus word are ignored); ``count``: beats - 1."""
    offset_bits = (data_bits // 8 - 1).bit_length()
    return data.StructLayout({"addr": addr_bits, "count": addr_bits - offset_bits})


def read_layout(data_bits):
    return data.StructLayout({"data": data_bits, "last": 1, "resp": 2})


def write_layout(data_bits):
    return data.StructLayout({"data": data_bits, "strb": data_bits // 8})


class DMA(wiring.Component):
    """AXI4 master moving bursts between DRAM and on-chip streams.

    Parameters
    ----------
    config : :class:`~mensa.core.config.MemoryConfig`
        AXI data width, address width and the longest burst.
    outstanding : int
        Bursts in flight per direction (requested, not yet fully answered).
    prefix : str
        Prefix of the AXI4 port names.

    Members
    -------
    rd_cmd : ``In(stream.Signature(command_layout))``
        Read ``count + 1`` bus words from ``addr``.
    rd_data : ``Out(stream.Signature(read_layout))``
        The words read, in order; ``last`` on each command's final word; ``resp`` the AXI
        response of the beat (0 OKAY, 2 SLVERR, 3 DECERR).
    wr_cmd : ``In(stream.Signature(command_layout))``
        Write ``count + 1`` bus words to ``addr``.
    wr_data : ``In(stream.Signature(write_layout))``
        The words to write, in command order, each with its byte strobes.
    wr_done : ``Out(stream.Signature(2))``
        One beat per write command once DRAM has answered all of its bursts; the payload is
        the first error response among them, or OKAY (0).
    busy : ``Out(1)``
        A command is being split, a burst is in flight or a completion is waiting.
    """

    def __init__(self, config, *, outstanding=READS_IN_FLIGHT, prefix="m_axi"):
        if not isinstance(config, MemoryConfig):
            raise TypeError(f"config must be a MemoryConfig, not {config!r}")
        if not isinstance(outstanding, int) or isinstance(outstanding, bool) or not 1 <= outstanding <= 64:
            raise ValueError(f"outstanding must be an integer in 1..64, not {outstanding!r}")
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ValueError(f"prefix must be an identifier, not {prefix!r}")
        self._config = config
        self._outstanding = outstanding
        self._prefix = prefix
        c = config
        super().__init__({
            **axi4_master_members(prefix, c.addr_bits, c.data_bits),
            "rd_cmd": In(stream.Signature(command_layout(c.addr_bits, c.data_bits))),
            "rd_data": Out(stream.Signature(read_layout(c.data_bits))),
            "wr_cmd": In(stream.Signature(command_layout(c.addr_bits, c.data_bits))),
            "wr_data": In(stream.Signature(write_layout(c.data_bits))),
            "wr_done": Out(stream.Signature(2)),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def outstanding(self):
        return self._outstanding

    def _axi(self, name):
        return getattr(self, f"{self._prefix}_{name}")

    def _splitter(self, m, name, cmd, ch, room):
        """Split commands from ``cmd`` into bursts on AXI channel ``ch`` ("ar"/"aw").

        A burst is issued only when ``room`` (its bookkeeping FIFOs have space). Returns
        (handshake, burst beats - 1, last burst of its command, active).
        """
        c = self._config
        word_bytes = c.data_bits // 8
        offset_bits = (word_bytes - 1).bit_length()
        page_beats = PAGE_BYTES // word_bytes
        count_bits = c.addr_bits - offset_bits

        addr = Signal(c.addr_bits, name=f"{name}_addr")
        remaining = Signal(count_bits + 1, name=f"{name}_remaining")     # beats still to request
        active = Signal(name=f"{name}_active")
        # beats to the 4 KiB page's end, kept in a register beside addr (page_beats - its
        # page offset), so the burst's size is comparisons of registers and a mux
        to_page = Signal(range(page_beats + 1), name=f"{name}_to_page")
        m.d.comb += cmd.ready.eq(~active)
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += [
                addr.eq(cmd.payload.addr & ~(word_bytes - 1)),
                to_page.eq(page_beats - cmd.payload.addr[offset_bits:12]),
                remaining.eq(cmd.payload.count + 1),
                active.eq(1),
            ]

        limit = min(c.max_burst, page_beats)
        # beats = min(to_page, remaining, limit)
        r_lt_l, t_lt_r, l_lt_r = Signal(), Signal(), Signal()
        m.d.comb += [r_lt_l.eq(remaining < limit), t_lt_r.eq(to_page < remaining), l_lt_r.eq(limit < remaining)]
        wanted = Mux(r_lt_l, remaining, limit)
        beats = Signal(range(limit + 1), name=f"{name}_beats")
        m.d.comb += beats.eq(Mux(Mux(r_lt_l, t_lt_r, to_page < limit), to_page, wanted))

        last = Signal(name=f"{name}_last")
        handshake = Signal(name=f"{name}_handshake")
        m.d.comb += [
            last.eq(~t_lt_r & ~l_lt_r),
            self._axi(f"{ch}valid").eq(active & room),
            handshake.eq(self._axi(f"{ch}valid") & self._axi(f"{ch}ready")),
            self._axi(f"{ch}id").eq(0),
            self._axi(f"{ch}addr").eq(addr),
            self._axi(f"{ch}len").eq(beats - 1),
            self._axi(f"{ch}size").eq(offset_bits),
            self._axi(f"{ch}burst").eq(BURST_INCR),
            self._axi(f"{ch}lock").eq(0),
            self._axi(f"{ch}cache").eq(0b0011),       # normal, non-cacheable, bufferable
            self._axi(f"{ch}prot").eq(0),
        ]
        with m.If(handshake):
            m.d.sync += [
                addr.eq(addr + (beats << offset_bits)),
                remaining.eq(remaining - beats),
                to_page.eq(Mux(beats == to_page, page_beats, to_page - beats)),
            ]
            with m.If(last):
                m.d.sync += active.eq(0)
        return handshake, beats - 1, last, active

    def elaborate(self, platform):
        m = Module()
        ax = self._axi
        n = self._outstanding

        # -- read: AR bursts, and per burst whether it ends its command --------------------
        m.submodules.r_book = r_book = fifo.SyncFIFOBuffered(width=1, depth=n)
        ar_go, _, ar_last, ar_active = self._splitter(m, "rd", self.rd_cmd, "ar", r_book.w_rdy)
        m.d.comb += [r_book.w_en.eq(ar_go), r_book.w_data.eq(ar_last)]
        r_take = Signal()
        m.d.comb += [
            self.rd_data.valid.eq(ax("rvalid") & r_book.r_rdy),
            self.rd_data.payload.data.eq(ax("rdata")),
            self.rd_data.payload.last.eq(ax("rlast") & r_book.r_data[0]),
            self.rd_data.payload.resp.eq(ax("rresp")),
            ax("rready").eq(self.rd_data.ready & r_book.r_rdy),
            r_take.eq(ax("rvalid") & ax("rready")),
            r_book.r_en.eq(r_take & ax("rlast")),
        ]

        # -- write: AW bursts; their lengths to the W side, their ends to the B side -------
        m.submodules.w_book = w_book = fifo.SyncFIFOBuffered(width=8, depth=n)
        m.submodules.b_book = b_book = fifo.SyncFIFOBuffered(width=1, depth=n)
        aw_go, aw_len, aw_last, aw_active = self._splitter(m, "wr", self.wr_cmd, "aw",
                                                           w_book.w_rdy & b_book.w_rdy)
        m.d.comb += [
            w_book.w_en.eq(aw_go), w_book.w_data.eq(aw_len),
            b_book.w_en.eq(aw_go), b_book.w_data.eq(aw_last),
        ]
        beat = Signal(8)
        w_go = Signal()
        m.d.comb += [
            ax("wvalid").eq(self.wr_data.valid & w_book.r_rdy),
            ax("wdata").eq(self.wr_data.payload.data),
            ax("wstrb").eq(self.wr_data.payload.strb),
            ax("wlast").eq(beat == w_book.r_data),
            self.wr_data.ready.eq(ax("wready") & w_book.r_rdy),
            w_go.eq(ax("wvalid") & ax("wready")),
            w_book.r_en.eq(w_go & ax("wlast")),
        ]
        with m.If(w_go):
            m.d.sync += beat.eq(Mux(ax("wlast"), 0, beat + 1))

        done_valid = Signal()
        done_resp = Signal(2)
        resp_so_far = Signal(2)         # the command's first error response, or OKAY
        b_go = Signal()
        m.d.comb += [
            ax("bready").eq(b_book.r_rdy & ~done_valid),
            b_go.eq(ax("bvalid") & ax("bready")),
            b_book.r_en.eq(b_go),
            self.wr_done.valid.eq(done_valid),
            self.wr_done.payload.eq(done_resp),
        ]
        with m.If(self.wr_done.valid & self.wr_done.ready):
            m.d.sync += done_valid.eq(0)
        with m.If(b_go):
            resp = Mux(resp_so_far != 0, resp_so_far, ax("bresp"))
            with m.If(b_book.r_data[0]):
                m.d.sync += done_valid.eq(1), done_resp.eq(resp), resp_so_far.eq(0)
            with m.Else():
                m.d.sync += resp_so_far.eq(resp)

        m.d.comb += self.busy.eq(ar_active | r_book.r_rdy | aw_active | w_book.r_rdy | b_book.r_rdy | done_valid)
        return m
