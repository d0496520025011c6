"""The DMA (:class:`mensa.hw.dma.DMA`), proven against AXI4 and its command contract with SymbiYosys
(bounded model checks).

Any command sources (``rd_cmd``, ``wr_cmd``, ``wr_data`` keep valid and payload until ready), any
``rd_data``/``wr_done`` readers, and any AXI4 slave that follows the protocol: ready whenever it
likes, a read beat or a write response only for a burst it was asked for (the write response
after the burst's last data beat), RLAST on each burst's last beat, RVALID/BVALID and their
payloads held until taken. The slave remembers the bursts in flight, as a real one does
(their lengths, and for the checks whether each ends its command). Then:

* every AR and AW burst is INCR, of the bus width, bus-aligned, at most ``max_burst`` beats,
  and stays inside a 4 KiB page;
* the bursts of each command cover exactly its words, in order: the first starts at the
  command's address, each continues where the last ended, none goes past the command's last
  word, none is issued without a command, a command is taken only once the previous one is
  covered, and at most ``outstanding`` bursts are in flight per direction;
* AR, AW and W keep valid and their payload until ready;
* WLAST is high exactly on the last beat of each burst, and no W beat comes before its burst's AW;
* the read words reach ``rd_data`` one for one, in order, with ``last`` exactly on each
  command's final word; the write words go from ``wr_data`` to W one for one;
* ``wr_done`` answers each write command once, in order, after its last write response, with
  the first error response among its bursts (or OKAY), and is offered until taken.

The read and write engines share no state, so each is proven on its own (``outstanding=2``):
a 32-bit bus with 4-beat bursts (many bursts per command) for 10 cycles, and a 256-bit bus
whose ``max_burst`` (256 beats) is longer than a page (128 beats) for 7 cycles; the slow
suite goes to 13 and 10 cycles. A DMA whose splitter ignores the page boundary, one whose
WLAST comes a beat late, and one that ends a command at every burst fail, each on the
assertion it breaks.

k-induction (``mode="prove"``) does not close: the spec's counters are not tied to the
block's internal state, which the spec cannot see, so an unreachable start state breaks the
induction step; the proofs are bounded.
"""

import pytest
from amaranth.hdl import Array, Assert, Assume, Const, Mux, Signal, Value
from amaranth.hdl._ast import AnySeq

import mensa.hw.dma
from mensa.contract.numeric import BURST_INCR
from mensa.core.config import MemoryConfig
from mensa.hw.dma import DMA
from mensa.sim.formal import LONG_PROOF_SECONDS, ProofFailed, Spec, prove

pytestmark = pytest.mark.formal
CMD_BITS = 4            # write commands stay below 2**CMD_BITS within the bound
BURST_BITS = 4          # bursts per direction stay below 2**BURST_BITS within the bound
PAGE = 4096             # the AXI4 rule, written out here rather than taken from the DMA's constants
SLOTS = 4               # the slave's memory of bursts in flight (more than ``outstanding``)

NARROW = MemoryConfig(data_bits=32, addr_bits=16, max_burst=4)
WIDE = MemoryConfig(data_bits=256, addr_bits=16, max_burst=256)


def _source(m, port):
    """Drive stream ``port`` from any writer that keeps valid and payload until ready."""
    width = len(Value.cast(port.payload))
    held, held_payload = Signal(), Signal(width)
    m.d.comb += [port.valid.eq(held | AnySeq(1)),
                 port.payload.eq(Mux(held, held_payload, AnySeq(width)))]
    m.d.sync += [held.eq(port.valid & ~port.ready), held_payload.eq(port.payload)]


def _slave_channel(m, valid, ready, allowed, *payload):
    """Drive a slave's ``valid`` and ``payload`` (any values): raised only when ``allowed``, then held until ready."""
    held = Signal()
    m.d.comb += valid.eq(held | (AnySeq(1) & allowed))
    m.d.sync += held.eq(valid & ~ready)
    for p in payload:
        last = Signal(len(p))
        m.d.comb += p.eq(Mux(held, last, AnySeq(len(p))))
        m.d.sync += last.eq(p)


def _held_until_ready(m, valid, ready, *payload):
    """Assert that a valid not yet taken stays, with the same payload, in the next cycle."""
    stalled = Signal()
    m.d.sync += stalled.eq(valid & ~ready)
    for p in payload:
        last = Signal(len(p))
        m.d.sync += last.eq(p)
        with m.If(stalled):
            m.d.comb += Assert(p == last)
    with m.If(stalled):
        m.d.comb += Assert(valid)


class _Splitting:
    """The command being split on one direction's address channel, and the bursts issued for it.

    The command taken from ``cmd`` is held (its next word's address, its words not yet
    requested) until its bursts have covered it; each burst must start at that address and
    stay within those words, and a command is taken only once the previous one is covered.
    ``issued`` is a burst's handshake, ``beats`` its length, ``ends`` whether it is its
    command's last, ``bursts`` the bursts issued so far.
    """

    def __init__(self, m, dut, cmd, ch):
        c = dut.config
        word_bytes = c.data_bits // 8
        offset_bits = (word_bytes - 1).bit_length()
        ax = lambda name: getattr(dut, f"m_axi_{ch}{name}")     # noqa: E731
        _source(m, cmd)
        m.d.comb += ax("ready").eq(AnySeq(1))

        splitting, addr, left = Signal(), Signal(c.addr_bits), Signal(len(cmd.payload.count) + 1)
        with m.If(cmd.valid & cmd.ready):
            m.d.comb += Assert(~splitting)                                  # one command after the other
            m.d.sync += [splitting.eq(1), addr.eq(cmd.payload.addr & ~(word_bytes - 1)),
                         left.eq(cmd.payload.count + 1)]

        self.bursts = Signal(BURST_BITS)
        m.d.comb += Assume(self.bursts != (1 << BURST_BITS) - 1)
        self.issued = ax("valid") & ax("ready")
        self.beats = ax("len") + 1
        self.ends = self.beats == left
        with m.If(self.issued):
            m.d.comb += [
                Assert(ax("burst") == BURST_INCR), Assert(ax("size") == offset_bits),
                Assert(ax("addr")[:offset_bits] == 0), Assert(self.beats <= c.max_burst),
                Assert(ax("addr")[offset_bits:12] + self.beats <= PAGE // word_bytes),   # inside a 4 KiB page
                Assert(splitting & (ax("addr") == addr) & (self.beats <= left)),   # the command's next words
            ]
            m.d.sync += [self.bursts.eq(self.bursts + 1), addr.eq(addr + (self.beats << offset_bits)),
                         left.eq(left - self.beats), splitting.eq(~self.ends)]
        _held_until_ready(m, ax("valid"), ax("ready"), ax("addr"), ax("len"), ax("size"), ax("burst"), ax("id"))


class DMAContract(Spec):
    """The DMA between any command sources, stream readers and a legal AXI4 slave; see the module docstring."""

    def __init__(self, dut, reads=True, writes=True):
        super().__init__(dut)
        self.reads, self.writes = reads, writes

    def contract(self, m):
        dut = self.dut
        ax = lambda name: getattr(dut, f"m_axi_{name}")        # noqa: E731
        if self.reads:
            self._reads(m, dut, ax)
        else:
            m.d.comb += [dut.rd_cmd.valid.eq(0), ax("rvalid").eq(0)]
        if self.writes:
            self._writes(m, dut, ax)
        else:
            m.d.comb += [dut.wr_cmd.valid.eq(0), dut.wr_data.valid.eq(0), ax("bvalid").eq(0)]

    def _reads(self, m, dut, ax):
        rd = _Splitting(m, dut, dut.rd_cmd, "ar")
        # the slave remembers each burst asked for (its length, and for the checks whether it
        # ends its command) and answers them in order
        lens = Array(Signal(8, name=f"r_len{i}") for i in range(SLOTS))
        ends = Array(Signal(name=f"r_ends{i}") for i in range(SLOTS))
        r_done, r_beat = Signal(BURST_BITS), Signal(8)
        with m.If(rd.issued):
            m.d.sync += [lens[rd.bursts % SLOTS].eq(ax("arlen")), ends[rd.bursts % SLOTS].eq(rd.ends)]
        _slave_channel(m, ax("rvalid"), ax("rready"), r_done != rd.bursts, ax("rdata"), ax("rresp"))
        m.d.comb += [ax("rlast").eq(r_beat == lens[r_done % SLOTS]), ax("rid").eq(0)]
        r_go = ax("rvalid") & ax("rready")
        with m.If(r_go):
            m.d.sync += [r_beat.eq(Mux(ax("rlast"), 0, r_beat + 1)), r_done.eq(r_done + ax("rlast"))]
        m.d.comb += Assert(rd.bursts - r_done <= dut.outstanding)

        # rd_data: the read words one for one, `last` on the final word of each command
        out = dut.rd_data
        m.d.comb += [out.ready.eq(AnySeq(1)), Assert((out.valid & out.ready) == r_go)]
        with m.If(out.valid):
            m.d.comb += [
                Assert(ax("rvalid") & (out.payload.data == ax("rdata")) & (out.payload.resp == ax("rresp"))),
                Assert(out.payload.last == (ax("rlast") & ends[r_done % SLOTS])),
            ]
        _held_until_ready(m, out.valid, out.ready, out.payload.as_value())

    def _writes(self, m, dut, ax):
        wr = _Splitting(m, dut, dut.wr_cmd, "aw")
        lens = Array(Signal(8, name=f"w_len{i}") for i in range(SLOTS))
        ends = Array(Signal(name=f"b_ends{i}") for i in range(SLOTS))
        with m.If(wr.issued):
            m.d.sync += [lens[wr.bursts % SLOTS].eq(ax("awlen")), ends[wr.bursts % SLOTS].eq(wr.ends)]

        # W: the words of wr_data one for one, WLAST on the last beat of each burst, after its AW
        data = dut.wr_data
        _source(m, data)
        w_go = ax("wvalid") & ax("wready")
        w_bursts, w_beat = Signal(BURST_BITS), Signal(8)
        m.d.comb += [ax("wready").eq(AnySeq(1)), Assert(w_go == (data.valid & data.ready))]
        with m.If(ax("wvalid")):
            m.d.comb += [
                Assert(data.valid & (ax("wdata") == data.payload.data) & (ax("wstrb") == data.payload.strb)),
                Assert(w_bursts != wr.bursts),
                Assert(ax("wlast") == (w_beat == lens[w_bursts % SLOTS])),
            ]
        with m.If(w_go):
            m.d.sync += [w_beat.eq(Mux(ax("wlast"), 0, w_beat + 1)), w_bursts.eq(w_bursts + ax("wlast"))]
        _held_until_ready(m, ax("wvalid"), ax("wready"), ax("wdata"), ax("wstrb"), ax("wlast"))

        # B: the slave answers a burst once its address and its last data beat have arrived
        b_done = Signal(BURST_BITS)
        _slave_channel(m, ax("bvalid"), ax("bready"), (b_done != wr.bursts) & (b_done != w_bursts), ax("bresp"))
        m.d.comb += ax("bid").eq(0)
        b_go = ax("bvalid") & ax("bready")
        m.d.sync += b_done.eq(b_done + b_go)
        m.d.comb += Assert(wr.bursts - b_done <= dut.outstanding)

        # wr_done: once per command, in order, after its last response, with its first error
        done = dut.wr_done
        m.d.comb += done.ready.eq(AnySeq(1))
        done_go = done.valid & done.ready
        answered, dones, resp = Signal(CMD_BITS), Signal(CMD_BITS), Signal(2)
        expected = Array(Signal(2, name=f"done_resp{i}") for i in range(SLOTS))
        m.d.comb += Assume(answered != (1 << CMD_BITS) - 1)
        first_error = Mux(resp != 0, resp, ax("bresp"))
        with m.If(b_go):
            m.d.sync += resp.eq(Mux(ends[b_done % SLOTS], 0, first_error))
            with m.If(ends[b_done % SLOTS]):
                m.d.sync += [answered.eq(answered + 1), expected[answered % SLOTS].eq(first_error)]
        m.d.sync += dones.eq(dones + done_go)
        m.d.comb += Assert((answered == dones) | done.valid)             # an answered command is reported
        with m.If(done_go):
            m.d.comb += Assert((dones != answered) & (done.payload == expected[dones % SLOTS]))
        _held_until_ready(m, done.valid, done.ready, done.payload)


class PagelessDMA(DMA):
    """A deliberately broken DMA: its splitter believes pages are 8 KiB."""

    def _splitter(self, m, name, cmd, ch, room):
        saved, mensa.hw.dma.PAGE_BYTES = mensa.hw.dma.PAGE_BYTES, 8192
        try:
            return super()._splitter(m, name, cmd, ch, room)
        finally:
            mensa.hw.dma.PAGE_BYTES = saved


class LateWlastDMA(DMA):
    """A deliberately broken DMA: the W side counts each burst one beat longer than the AW it issued."""

    def _splitter(self, m, name, cmd, ch, room):
        handshake, length, last, active = super()._splitter(m, name, cmd, ch, room)
        return handshake, length + 1 if ch == "aw" else length, last, active


class EveryBurstLastDMA(DMA):
    """A deliberately broken DMA: every burst is booked as its command's last."""

    def _splitter(self, m, name, cmd, ch, room):
        handshake, length, _, active = super()._splitter(m, name, cmd, ch, room)
        return handshake, length, Const(1), active


def _contract(dut, direction):
    return DMAContract(dut, reads=direction == "read", writes=direction == "write")


@pytest.mark.parametrize("direction", ["read", "write"])
@pytest.mark.parametrize("name, config, depth", [("narrow", NARROW, 10), ("wide", WIDE, 7)], ids=["narrow", "wide"])
def test_the_dma_keeps_axi4_and_its_commands(name, config, depth, direction):
    spec = _contract(DMA(config, outstanding=2), direction)
    prove(spec, f"dma_{name}_{direction}", depth=depth)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["read", "write"])
@pytest.mark.parametrize("name, config, depth", [("narrow", NARROW, 13), ("wide", WIDE, 10)], ids=["narrow", "wide"])
def test_the_dma_keeps_axi4_and_its_commands_longer(name, config, depth, direction):
    spec = _contract(DMA(config, outstanding=2), direction)
    prove(spec, f"dma_{name}_{direction}_long", depth=depth, timeout=LONG_PROOF_SECONDS)


@pytest.mark.parametrize("broken, direction, reason", [
    (PagelessDMA, "read", "PAGE // word_bytes"),
    (LateWlastDMA, "write", 'ax("wlast") =='),
    (EveryBurstLastDMA, "read", "out.payload.last =="),
    (EveryBurstLastDMA, "write", "done.payload =="),
], ids=["pageless-read", "late-wlast-write", "every-burst-last-read", "every-burst-last-write"])
def test_a_broken_dma_fails_the_proof(broken, direction, reason):
    spec = _contract(broken(NARROW, outstanding=2), direction)
    with pytest.raises(ProofFailed, match="FAIL") as failure:
        prove(spec, f"dma_{broken.__name__}_{direction}", depth=10)
    assert any(reason in line for line in failure.value.sources()), failure.value.sources()
