"""The AXI4-Lite register file (:class:`mensa.hw.regs.RegisterFile`), proven against the AXI4-Lite rules and
its register map with SymbiYosys (bounded model checks).

Any master that keeps AWVALID/WVALID/ARVALID and their payloads until ready, and drives
BREADY/RREADY (and the hardware's ``inputs``/``events``) as it likes. Then:

* BVALID and RVALID, once raised, stay until BREADY/RREADY, with BRESP, RDATA and RRESP
  unchanged;
* one B per accepted AW and W pair and one R per accepted AR: never a response without a
  request, and every request answered within two cycles of its arrival (the register file
  takes one write and one read at a time);
* a write to a mapped address answers OKAY, to an unmapped one SLVERR; the same for reads;
* for an ``rw`` register at any address (an ``AnyConst``): a read taken while no write is in
  flight returns the value the writes answered so far left, byte strobes applied (sign-extended
  for a signed register), and the hardware sees that value on ``regs``; constant registers
  read their constant and ``wo`` registers zero, whatever was written.

A small map with every access kind (and unmapped words among the mapped ones) is proven for
14 cycles; the accelerator's own map (46 registers) for 8 cycles in the slow suite. A register
file that drops BVALID after one cycle, one that answers OKAY everywhere, one that ignores the
byte strobes and one whose RDATA bit 31 reads zero fail, each on the assertion it breaks.

k-induction (``mode="prove"``) does not close: the spec's counters are not tied to the
block's internal state, which the spec cannot see, so an unreachable start state breaks the
induction step; the proofs are bounded.
"""

import pytest
from amaranth.hdl import Assert, Assume, Cat, Module, Mux, Signal, Value
from amaranth.hdl._ast import AnyConst, AnySeq
from amaranth.lib.wiring import In

from mensa.contract.regs import DATA_BITS, RESP_OKAY, RESP_SLVERR, Access, Register, RegisterMap, register_map
from mensa.core.config import AcceleratorConfig
from mensa.hw.regs import RegisterFile
from mensa.sim.formal import LONG_PROOF_SECONDS, ProofFailed, Spec, prove

pytestmark = pytest.mark.formal
COUNT_BITS = 5          # requests stay below 2**COUNT_BITS within the bound
# every access kind, signed and narrow registers, and unmapped words (0x4, 0x1c, 0x24 up) among the mapped ones
SMALL = RegisterMap((
    Register("ID", 0, 32, Access.RO, "a constant", const=0x4D4E5341),
    Register("CTRL", 8, 1, Access.WO, "a strobe"),
    Register("STATUS", 12, 2, Access.RO, "driven by the hardware"),
    Register("SIZE", 16, 16, Access.RW, "a narrow rw register"),
    Register("ZERO_POINT", 20, 8, Access.RW, "a signed rw register", signed=True),
    Register("ADDR", 24, 32, Access.RW, "a full-width rw register"),
    Register("IRQ_STATUS", 32, 1, Access.W1C, "an event"),
))


def _request(m, valid, ready, *payload):
    """Drive a master's ``valid`` and ``payload`` (any values), held until ``ready``."""
    held = Signal()
    m.d.comb += valid.eq(held | AnySeq(1))
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


def _answered_soon(m, pending, valid):
    """Assert that a request ``pending`` sees ``valid`` within two cycles."""
    waiting = Signal(2)
    m.d.sync += waiting.eq((pending & ~valid) * (waiting + 1))
    m.d.comb += Assert(waiting < 2)


class RegisterFileContract(Spec):
    """The register file behind any AXI4-Lite master; see the module docstring."""


    def contract(self, m):
        dut = self.dut
        rm = dut.regmap
        ax = lambda name: getattr(dut, f"s_axil_{name}")        # noqa: E731
        _request(m, ax("awvalid"), ax("awready"), ax("awaddr"), ax("awprot"))
        _request(m, ax("wvalid"), ax("wready"), ax("wdata"), ax("wstrb"))
        _request(m, ax("arvalid"), ax("arready"), ax("araddr"), ax("arprot"))
        m.d.comb += [ax("bready").eq(AnySeq(1)), ax("rready").eq(AnySeq(1)),
                     dut.inputs.eq(AnySeq(len(dut.inputs.as_value()))),
                     dut.events.eq(AnySeq(len(dut.events.as_value())))]

        aw_go, w_go, ar_go = (ax(f"{ch}valid") & ax(f"{ch}ready") for ch in ("aw", "w", "ar"))
        b_go, r_go = ax("bvalid") & ax("bready"), ax("rvalid") & ax("rready")
        aws, ws, bs, ars, rs = (Signal(COUNT_BITS, name=n) for n in ("aws", "ws", "bs", "ars", "rs"))
        m.d.sync += [aws.eq(aws + aw_go), ws.eq(ws + w_go), bs.eq(bs + b_go), ars.eq(ars + ar_go), rs.eq(rs + r_go)]
        m.d.comb += [Assume(aws != (1 << COUNT_BITS) - 1), Assume(ws != (1 << COUNT_BITS) - 1),
                     Assume(ars != (1 << COUNT_BITS) - 1)]

        # the handshake rules: responses held until taken, one per request, none without one
        _held_until_ready(m, ax("bvalid"), ax("bready"), ax("bresp"))
        _held_until_ready(m, ax("rvalid"), ax("rready"), ax("rdata"), ax("rresp"))
        m.d.comb += [Assert(aws - bs <= 1), Assert(ws - bs <= 1), Assert(ars - rs <= 1)]
        with m.If(ax("bvalid")):
            m.d.comb += Assert((bs != aws) & (bs != ws))
        with m.If(ax("rvalid")):
            m.d.comb += Assert(rs != ars)
        _answered_soon(m, (bs != aws) & (bs != ws), ax("bvalid"))
        _answered_soon(m, rs != ars, ax("rvalid"))

        # the write in flight (one at a time) and the reads' expected answers
        def word(addr):
            return addr[2:]

        def mapped(addr):
            return Cat(*(word(addr) == r.offset // 4 for r in rm)).any()

        aw_addr, w_data, w_strb = Signal.like(ax("awaddr")), Signal(DATA_BITS), Signal(DATA_BITS // 8)
        with m.If(aw_go):
            m.d.sync += aw_addr.eq(ax("awaddr"))
        with m.If(w_go):
            m.d.sync += [w_data.eq(ax("wdata")), w_strb.eq(ax("wstrb"))]
        with m.If(ax("bvalid")):
            m.d.comb += Assert(ax("bresp") == Mux(mapped(aw_addr), RESP_OKAY, RESP_SLVERR))

        # one rw register, at any address: the spec keeps its value
        rw = rm.of(Access.RW)
        chosen = AnyConst(len(word(ax("awaddr"))))
        m.d.comb += Assume(Cat(*(chosen == r.offset // 4 for r in rw)).any())
        value = Signal(DATA_BITS)
        mask = Cat(*(b.replicate(8) for b in w_strb))
        with m.If(b_go & (word(aw_addr) == chosen)):
            m.d.sync += value.eq((value & ~mask) | (w_data & mask))
        quiet = (aws == bs) & (ws == bs)                # every write accepted has been answered
        reads_as = Signal(DATA_BITS)
        with m.Switch(chosen):
            for r in rw:
                with m.Case(r.offset // 4):
                    bits = value[:r.width]
                    m.d.comb += reads_as.eq(bits.as_signed() if r.signed else bits)
                    with m.If(quiet):                    # the hardware sees the value
                        m.d.comb += Assert(Value.cast(dut.regs[r.port]).as_unsigned() == bits)

        ar_addr, ar_quiet, ar_expected = Signal.like(ax("araddr")), Signal(), Signal(DATA_BITS)
        with m.If(ar_go):
            m.d.sync += [ar_addr.eq(ax("araddr")), ar_quiet.eq(quiet), ar_expected.eq(reads_as)]
        with m.If(ax("rvalid")):
            m.d.comb += Assert(ax("rresp") == Mux(mapped(ar_addr), RESP_OKAY, RESP_SLVERR))
            with m.If(ar_quiet & (word(ar_addr) == chosen)):
                m.d.comb += Assert(ax("rdata") == ar_expected)
            for r in rm:
                if r.const is not None or r.access is Access.WO:
                    with m.If(word(ar_addr) == r.offset // 4):
                        m.d.comb += Assert(ax("rdata") == (r.const or 0))


class _Wrapped(RegisterFile):
    """A register file passing every port through to a real one, except those :meth:`corrupt` drives."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = RegisterFile(self.regmap)
        corrupted = self.corrupt(m, inner)
        for name, member in self.signature.members.items():
            if name in corrupted:
                continue
            outer, real = getattr(self, name), getattr(inner, name)
            m.d.comb += real.eq(outer) if member.flow == In else outer.eq(real)
        return m


class DroppingResponse(_Wrapped):
    """A deliberately broken register file: BVALID falls after one cycle, taken or not."""

    def corrupt(self, m, inner):
        m.d.comb += inner.s_axil_bready.eq(1)
        return {"s_axil_bready"}


class AlwaysOkay(_Wrapped):
    """A deliberately broken register file: every response is OKAY, unmapped addresses too."""

    def corrupt(self, m, inner):
        m.d.comb += [self.s_axil_bresp.eq(RESP_OKAY), self.s_axil_rresp.eq(RESP_OKAY)]
        return {"s_axil_bresp", "s_axil_rresp"}


class IgnoringStrobes(_Wrapped):
    """A deliberately broken register file: it writes every byte, whatever WSTRB says."""

    def corrupt(self, m, inner):
        m.d.comb += [inner.s_axil_wstrb.eq(0b1111)]
        return {"s_axil_wstrb"}


class TopBitZero(_Wrapped):
    """A deliberately broken register file: RDATA's bit 31 always reads zero (no sign extension)."""

    def corrupt(self, m, inner):
        m.d.comb += self.s_axil_rdata.eq(inner.s_axil_rdata[:31])
        return {"s_axil_rdata"}


def test_the_register_file_keeps_axi4_lite_and_its_map():
    spec = RegisterFileContract(RegisterFile(SMALL))
    prove(spec, "regs_small", depth=14)


@pytest.mark.slow
def test_the_accelerator_register_file_keeps_axi4_lite_and_its_map():
    spec = RegisterFileContract(RegisterFile(register_map(AcceleratorConfig(name="formal"))))
    prove(spec, "regs_accelerator", depth=8, timeout=LONG_PROOF_SECONDS)


@pytest.mark.parametrize("broken, reason", [
    (DroppingResponse, "Assert(valid)"),
    (AlwaysOkay, "RESP_SLVERR"),
    (IgnoringStrobes, "== bits"),
    (TopBitZero, "ar_expected"),
], ids=["dropping-response", "always-okay", "ignoring-strobes", "top-bit-zero"])
def test_a_broken_register_file_fails_the_proof(broken, reason):
    spec = RegisterFileContract(broken(SMALL))
    with pytest.raises(ProofFailed, match="FAIL") as failure:
        prove(spec, f"regs_{broken.__name__}", depth=14)
    assert any(reason in line for line in failure.value.sources()), failure.value.sources()
