"""The stream queue, proven against its contract with SymbiYosys: no loss, no duplication, order kept,
no deadlock; and a queue that drops a write fails the same proof."""

import pytest
from amaranth.hdl import Assert, Assume, Module, Mux, Signal
from amaranth.hdl._ast import AnyConst, AnySeq

from mensa.hw.queue import Queue
from mensa.sim.formal import ProofFailed, Spec, prove

pytestmark = pytest.mark.formal
INDEX_BITS = 6          # the bound stays below 2**INDEX_BITS beats


class QueueContract(Spec):
    """Any writer and reader (``AnySeq`` valid, payload and ready, within the stream rules).

    A scoreboard counts the beats written and read: reads never exceed writes, the queue
    never holds more than ``depth``; the beat written ``tag``-th (an ``AnyConst``) is the
    beat read ``tag``-th, with its payload; a queue that holds a beat offers one within two
    cycles, and one with room takes a beat within two cycles.
    """

    def __init__(self, dut, width):
        super().__init__(dut)
        self.width = width

    def contract(self, m):
        dut = self.dut
        w, r = dut.w, dut.r

        # the writer keeps valid and payload until the beat is taken (the stream rule)
        w_valid, w_payload, r_ready = AnySeq(1), AnySeq(self.width), AnySeq(1)
        held, held_payload = Signal(), Signal(self.width)
        m.d.comb += [w.valid.eq(held | w_valid), w.payload.eq(Mux(held, held_payload, w_payload)), r.ready.eq(r_ready)]
        m.d.sync += held.eq(w.valid & ~w.ready)
        with m.If(w.valid & ~w.ready):
            m.d.sync += held_payload.eq(w.payload)

        written, read = Signal(INDEX_BITS), Signal(INDEX_BITS)
        wrote, took = w.valid & w.ready, r.valid & r.ready
        m.d.sync += [written.eq(written + wrote), read.eq(read + took)]
        level = Signal(INDEX_BITS)
        m.d.comb += level.eq(written - read)
        m.d.comb += Assume(written != (1 << INDEX_BITS) - 1)       # the indices do not wrap within the bound

        tag = AnyConst(INDEX_BITS)
        tagged, tagged_payload = Signal(), Signal(self.width)
        with m.If(wrote & (written == tag)):
            m.d.sync += [tagged.eq(1), tagged_payload.eq(w.payload)]
        with m.If(took & (read == tag)):
            m.d.comb += Assert(tagged & (r.payload == tagged_payload))      # order kept, nothing lost

        m.d.comb += [Assert(read <= written), Assert(level <= dut.depth)]  # no duplication, no overflow
        m.d.comb += Assert(dut.level == level)

        waiting_out, waiting_in = Signal(2), Signal(2)
        m.d.sync += [waiting_out.eq(((level != 0) & ~r.valid) * (waiting_out + 1)),
                     waiting_in.eq(((level < dut.depth) & ~w.ready) * (waiting_in + 1))]
        m.d.comb += [Assert(waiting_out < 2), Assert(waiting_in < 2)]     # no deadlock


class DroppingQueue(Queue):
    """A deliberately broken queue: the third beat written is taken and never stored."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = Queue(self.shape, depth=self.depth)
        count = Signal(2)
        drop = count == 2
        m.d.comb += [inner.w.payload.eq(self.w.payload), inner.w.valid.eq(self.w.valid & ~drop),
                     self.w.ready.eq(inner.w.ready | drop)]
        with m.If(self.w.valid & self.w.ready & (count != 3)):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [self.r.payload.eq(inner.r.payload), self.r.valid.eq(inner.r.valid),
                     inner.r.ready.eq(self.r.ready), self.level.eq(inner.level)]
        return m


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_the_queue_keeps_its_contract(depth):
    spec = QueueContract(Queue(4, depth=depth), 4)
    prove(spec, f"queue_depth{depth}", depth=16)


def test_a_queue_that_drops_a_write_fails_the_proof():
    with pytest.raises(ProofFailed, match="FAIL"):
        spec = QueueContract(DroppingQueue(4, depth=2), 4)
        prove(spec, "queue_dropping", depth=16)
