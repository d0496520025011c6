"""A first-in first-out queue between two blocks, with stream ports and a typed payload.

Where a FIFO joins two blocks, the blocks ``connect`` to a :class:`Queue` instead of
driving ``w_en``/``r_en`` and re-casting raw bits: the payload keeps its layout on
both sides, and the handshake is the stream contract (``valid`` does not wait on
``ready``; a beat moves when both are high).
"""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Queue", "count_credits"]


class Queue(wiring.Component):
    """A synchronous FIFO of ``depth`` beats of ``shape``, behind stream ports.

    The storage is :class:`amaranth.lib.fifo.SyncFIFOBuffered`: its read port is
    registered (a block RAM's output register, so the queue never adds a combinational
    path from its input to its output), and a beat written into an empty queue is
    readable two cycles later.

    Parameters
    ----------
    shape : shape-castable
        The payload: an int width, a ``data`` layout or any shape.
    depth : int
        Beats the queue holds, at least 1.

    Members
    -------
    w : ``In(stream.Signature(shape))``
        Beats in; ``w.ready`` while the queue has room.
    r : ``Out(stream.Signature(shape))``
        Beats out, in the order written.
    level : ``Out(range(depth + 1))``
        Beats held.
    """

    def __init__(self, shape, *, depth):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        super().__init__({
            "w": In(stream.Signature(shape)),
            "r": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @property
    def shape(self):
        return self._shape

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._shape).width
        m.submodules.storage = storage = fifo.SyncFIFOBuffered(width=width, depth=self._depth)
        wiring.connect(m, wiring.flipped(self.w), storage.w_stream)
        wiring.connect(m, storage.r_stream, wiring.flipped(self.r))
        m.d.comb += self.level.eq(storage.level)
        return m


def count_credits(m, outstanding, credit, accept, read, depth):
    """Keep ``credit`` (a registered ``outstanding < depth``) as ``outstanding`` (items taken by
    ``accept`` and not yet gone by ``read``) moves by at most one a cycle: each move's comparison
    of the register side by side, selected by the move, so no adder stands in front of it. The count's
    neighbours ``outstanding + 1`` and ``outstanding - 1`` are registers of their own too, so a move
    selects one (``accept`` and ``read`` steer muxes, not a carry chain)."""
    up = Signal.like(outstanding, name=f"{outstanding.name}_up", init=outstanding.init + 1)
    # (`down` wraps at 0, where no read comes: the count never goes below 0)
    down = Signal.like(outstanding, name=f"{outstanding.name}_down",
                       init=(outstanding.init - 1) % (1 << len(outstanding)))
    with m.If(accept & ~read):
        m.d.sync += [outstanding.eq(up), up.eq(up + 1), down.eq(outstanding), credit.eq(outstanding < depth - 1)]
    with m.Elif(read & ~accept):
        m.d.sync += [outstanding.eq(down), up.eq(outstanding), down.eq(down - 1), credit.eq(1)]
    with m.Else():
        m.d.sync += credit.eq(outstanding < depth)
