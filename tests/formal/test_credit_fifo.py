"""The systolic array's credit FIFO (``_credit_fifo`` in :mod:`mensa.hw.systolic`), proven against its
contract with SymbiYosys (bounded model checks: 12 cycles at depths 1, 2, 3 and 5; 16 cycles at
depths 3 and 5 in the slow suite).

The contract (its docstring): the writer holds credits, so it never writes while the FIFO
holds ``depth`` entries; the FIFO has no full flag; the write enable comes a cycle ahead of
the entry it writes (each column registers its own copy). Given that, for any writer and any
reader: nothing is lost, nothing is duplicated, the order is kept, the output is a stream
(``valid`` and the payload held until ``ready``), and an entry waits at most one cycle
before it is offered (no deadlock). A FIFO that drops its third write, and one built for 2
entries behind a writer with 5 credits, fail on the order check.

k-induction (``mode="prove"``) does not close: the spec's counters are not tied to the
block's internal state, which the spec cannot see, so an unreachable start state breaks the
induction step; the proofs are bounded.
"""

import pytest
from amaranth.hdl import Assert, Cat, Signal
from amaranth.hdl._ast import AnyConst, AnySeq

from mensa.hw.systolic import _credit_fifo
from mensa.sim.formal import LONG_PROOF_SECONDS, ProofFailed, Spec, prove

pytestmark = pytest.mark.formal
INDEX_BITS = 6          # the bound stays below 2**INDEX_BITS entries
WIDTH = 4


class CreditFifoContract(Spec):
    """A writer that respects its ``depth`` credits and any reader, around ``build(m, platform, depth,
    w_en, columns, r_ready)``, ``w_en`` a cycle ahead of the entry.

    A scoreboard counts the entries written and read: reads never exceed writes; the entry
    written ``tag``-th (an ``AnyConst``) is the entry read ``tag``-th, with its payload.
    """

    def __init__(self, depth, build=_credit_fifo):
        super().__init__()
        self.depth, self.build = depth, build

    def contract(self, m):

        written, read = Signal(INDEX_BITS), Signal(INDEX_BITS)
        level = Signal(INDEX_BITS)
        m.d.comb += level.eq(written - read)

        # the writer writes only with a credit, taken a cycle ahead of the entry: fewer than `depth`
        # entries written (or about to be) and not read
        ahead, w_en, w_data, r_ready = Signal(), Signal(), AnySeq(WIDTH), AnySeq(1)
        m.d.comb += ahead.eq(AnySeq(1) & (level + w_en < self.depth) & (written + w_en < (1 << INDEX_BITS) - 1))
        m.d.sync += w_en.eq(ahead)
        # two columns, each a FIFO of its own with its own pointers: the entry is both, read back together
        valid, outs = self.build(m, None, self.depth, ahead, [w_data[:WIDTH // 2], w_data[WIDTH // 2:]], r_ready)
        payload = Cat(*outs)

        took = valid & r_ready
        m.d.sync += [written.eq(written + w_en), read.eq(read + took)]

        tag = AnyConst(INDEX_BITS)
        tagged, tagged_payload = Signal(), Signal(WIDTH)
        with m.If(w_en & (written == tag)):
            m.d.sync += [tagged.eq(1), tagged_payload.eq(w_data)]
        with m.If(took & (read == tag)):
            m.d.comb += Assert(tagged & (payload == tagged_payload))     # order kept, nothing lost
        m.d.comb += Assert(read <= written)                                  # no duplication

        # the output is a stream: an offered entry stays, unchanged, until it is taken
        stalled, stalled_payload = Signal(), Signal(WIDTH)
        m.d.sync += [stalled.eq(valid & ~r_ready), stalled_payload.eq(payload)]
        with m.If(stalled):
            m.d.comb += Assert(valid & (payload == stalled_payload))

        # an entry held is offered within a cycle (written in one cycle, readable two later)
        waiting = Signal(2)
        m.d.sync += waiting.eq(((level != 0) & ~valid) * (waiting + 1))
        m.d.comb += Assert(waiting < 2)


def _dropping_credit_fifo(m, platform, depth, w_en, columns, r_ready):
    """A deliberately broken credit FIFO: the third write is never stored."""
    count = Signal(2)
    with m.If(w_en & (count != 3)):
        m.d.sync += count.eq(count + 1)
    return _credit_fifo(m, platform, depth, w_en & (count != 2), columns, r_ready)


def _undersized_credit_fifo(m, platform, depth, w_en, columns, r_ready):
    """A deliberately broken credit FIFO: built for 2 entries, whatever the writer's credits."""
    return _credit_fifo(m, platform, 2, w_en, columns, r_ready)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_the_credit_fifo_keeps_its_contract(depth):
    spec = CreditFifoContract(depth)
    prove(spec, f"credit_fifo_depth{depth}", depth=12)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [3, 5])
def test_the_credit_fifo_keeps_its_contract_longer(depth):
    spec = CreditFifoContract(depth)
    prove(spec, f"credit_fifo_depth{depth}_long", depth=16, timeout=LONG_PROOF_SECONDS)


@pytest.mark.parametrize("name, build", [("dropping", _dropping_credit_fifo), ("undersized", _undersized_credit_fifo)],
                         ids=["dropping", "undersized"])
def test_a_broken_credit_fifo_fails_the_proof(name, build):
    spec = CreditFifoContract(5, build)
    with pytest.raises(ProofFailed, match="FAIL") as failure:
        prove(spec, f"credit_fifo_{name}", depth=12)
    assert any("tagged_payload" in line for line in failure.value.sources()), failure.value.sources()
