"""The vector unit of a systolic accelerator: depthwise convs, one lane per channel, from a line buffer.

It shares the accelerator's DMA, registers and run control (:class:`~mensa.hw.accelerator.Accelerator`
starts it for the opcodes it runs) and walks a layer as :mod:`mensa.contract.vector_program`
lays it out. Its parts, joined by streams:

- :class:`~mensa.hw.vector_loader.VectorReadIssuer` asks for each channel tile's
  quantisation record, tap vectors and input rows, as far ahead as the buffers allow;
- :class:`~mensa.hw.vector_loader.VectorLoader` routes the words into the line buffer's ring,
  the weight banks and the requantiser's parameter stream;
- :class:`~mensa.hw.vector_walk.WindowWalker` walks tiles, output rows, pixels and taps, one
  tap per cycle;
- :class:`~mensa.hw.vector_lanes.OperandFetch` reads each tap's pixel and weight vectors,
  :class:`~mensa.hw.vector_lanes.LaneMacArray` multiplies and accumulates them (a mul: one
  tap per pixel, its channel's gate the weight, both zero points subtracted), or
  :class:`~mensa.hw.vector_add.AddLanes` rescales an add's two inputs and sums them;
- :class:`~mensa.hw.requant.Requantizer` (``lanes`` wide, or the array's columns if more)
  requantises the sums (depthwise, add, mul, global average pool) and :class:`~mensa.hw.vector_table.TableActivation` looks
  the result up in a table activation's table, or :class:`~mensa.hw.vector_pool.PoolReducer` takes the taps instead
  (max and average pool);
- :class:`~mensa.hw.vector_writer.VectorWriter` writes the output planes.

The requantiser is the accelerator's only one: while no vector layer runs, the GEMM sequencer's
tiles pass through it (``seq_quant``, ``seq_accs``, ``seq_outs``). A layer runs on one engine or the
other, so they never want it at once, and a lane of it is four DSP blocks and a thousand LUTs.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring

from mensa.contract.vector_program import TAPS_MAX, VectorGeometry
from mensa.hw.dma import engine_members
from mensa.hw.queue import Queue
from mensa.hw.requant import Requantizer, acc_layout, out_layout, quant_layout, requant_members, resize
from mensa.hw.vector_add import AddLanes
from mensa.hw.vector_lanes import LaneMacArray, OperandFetch
from mensa.hw.vector_layer import decode_mode, mode_layout, route_layout, vector_desc_layout
from mensa.hw.vector_pool import PoolReducer
from mensa.hw.vector_table import TableActivation
from mensa.hw.vector_loader import VectorLoader, VectorReadIssuer
from mensa.hw.vector_walk import WindowWalker
from mensa.hw.vector_writer import VectorWriter

__all__ = ["VectorUnit", "ROUTES"]

ROUTES = 8          # read commands in flight between the issue and the loader


class VectorUnit(wiring.Component):
    """Runs one depthwise, add, mul, pooling or global average pooling layer from DRAM on ``vector.lanes`` lanes.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`
        A systolic accelerator with a vector unit (``config.vector``).

    Members
    -------
    desc : ``In(vector_desc_layout(addr_bits))``
        The layer, sampled at ``start``.
    start : ``In(1)``
        Begin a layer (ignored while one runs).
    done : ``Out(1)``
        One cycle, once DRAM has acknowledged the layer's last output write.
    running, busy, mem_stall : ``Out(1)``
        A layer runs; the lanes take a tap (a MAC each, or a pool's tap); the walk waits on DRAM data.
    rd_cmd, rd_data, wr_cmd, wr_data, wr_done
        To the :class:`~mensa.hw.dma.DMA`'s client ports.
    seq_quant, seq_accs, seq_outs
        The GEMM sequencer's ``rq_quant``, ``rq_accs`` and ``rq_outs``: requantised while no vector layer runs.
    """

    def __init__(self, config):
        self._g = VectorGeometry.of(config)
        self._config = config
        mem = config.memory
        lent = {f"seq_{name[3:]}": member.flip() for name, member in requant_members(config.array.cols).items()}
        super().__init__(engine_members(mem, vector_desc_layout(mem.addr_bits)) | lent)

    @property
    def geometry(self):
        return self._g

    def elaborate(self, platform):
        m = Module()
        g, A = self._g, self._config.memory.addr_bits
        m.submodules.issue = issue = VectorReadIssuer(geometry=g, addr_bits=A)
        m.submodules.routes = routes = Queue(route_layout, depth=ROUTES)
        m.submodules.loader = loader = VectorLoader(geometry=g, weight_depth=TAPS_MAX, addr_bits=A)
        m.submodules.walk = walk = WindowWalker(line_depth=g.line_depth, weight_depth=TAPS_MAX, addr_bits=A)
        m.submodules.fetch = fetch = OperandFetch(lanes=g.lanes, line_depth=g.line_depth, weight_depth=TAPS_MAX)
        m.submodules.macs = macs = LaneMacArray(lanes=g.lanes)
        lanes = max(g.lanes, self._config.array.cols)
        m.submodules.requant = requant = Requantizer(lanes=lanes)
        m.submodules.pool = pool = PoolReducer(lanes=g.lanes)
        m.submodules.adder = adder = AddLanes(lanes=g.lanes)
        m.submodules.table = table = TableActivation(lanes=g.lanes, word_bytes=g.word_bytes)
        m.submodules.writer = writer = VectorWriter(geometry=g, addr_bits=A)

        # the layer is latched at start; the parts begin a cycle later, from the latched copy
        d = Signal(vector_desc_layout(A))
        go, begin = Signal(), Signal()
        m.d.comb += go.eq(self.start & ~self.running)
        m.d.sync += begin.eq(go)
        with m.If(go):
            m.d.sync += d.eq(self.desc), self.running.eq(1)
        # the opcode's flags and the values the lanes take from the layer, registers loaded with it (not
        # decoded behind the latched layer: the flags steer every part of the unit)
        mode = Signal(mode_layout, name="mode")
        x_offset, w_offset = Signal(signed(8), name="x_offset"), Signal(signed(8), name="w_offset")
        right, right2 = Signal(5, name="add_right"), Signal(5, name="add_right2")
        new_mode = decode_mode(m, self.desc.op)
        with m.If(go):
            m.d.sync += [mode.eq(new_mode),
                         x_offset.eq(Mux(new_mode.offsets, self.desc.in_zero_point, 0)),
                         w_offset.eq(Mux(new_mode.offsets, self.desc.in2_zero_point, 0)),
                         right.eq(-self.desc.in_shift.as_signed()), right2.eq(-self.desc.in2_shift.as_signed())]
        # done once the output is in DRAM and every input row has been read: rows below the last
        # window are read too (each pixel once), and none may arrive after the layer ends
        wrote, rows = Signal(), Signal(32)
        m.d.sync += rows.eq(d.tiles * d.in_h)
        with m.If(go):
            m.d.sync += wrote.eq(0)
        with m.Elif(writer.done):
            m.d.sync += wrote.eq(1)
        m.d.comb += self.done.eq(self.running & ~begin & (wrote | writer.done) & (loader.loaded_rows == rows))
        with m.If(self.done):
            m.d.sync += self.running.eq(0)
        for part in (issue, loader, walk, writer):
            m.d.comb += part.start.eq(begin), part.layer.eq(d)

        m.d.comb += [
            issue.freed.eq(walk.freed), issue.tile.eq(walk.tile),
            walk.loaded_rows.eq(loader.loaded_rows), walk.loaded_tiles.eq(loader.loaded_tiles),
            fetch.zero_point.eq(d.in_zero_point),
        ]
        for port in ("line_addr", "line_data", "line_en", "weight_addr", "weight_data", "weight_en"):
            m.d.comb += getattr(fetch, port).eq(getattr(loader, port))
        wiring.connect(m, issue.rd_cmd, wiring.flipped(self.rd_cmd))
        wiring.connect(m, issue.route, routes.w)
        wiring.connect(m, routes.r, loader.route)
        wiring.connect(m, wiring.flipped(self.rd_data), loader.rd_data)
        # the requantiser: this unit's while a layer of it runs, the sequencer's otherwise
        quant, accs = stream.Signature(quant_layout(lanes)).create(), stream.Signature(acc_layout(lanes)).create()
        seq_quant, seq_accs = stream.Signature(quant_layout(lanes)).create(), stream.Signature(acc_layout(lanes)).create()
        resize(m, loader.quant, quant)
        resize(m, self.seq_quant, seq_quant)
        _merge(m, ~self.running, quant, seq_quant, requant.quant)
        wiring.connect(m, walk.taps, fetch.taps)
        # the taps go to the lanes' MACs (or an add's rescalers) and the requantiser, or (a max or
        # average pool) to the pool reducer
        m.d.comb += [macs.plain.eq(mode.plain), pool.max.eq(mode.max), pool.qmin.eq(d.qmin), pool.qmax.eq(d.qmax),
                     macs.x_offset.eq(x_offset), macs.w_offset.eq(w_offset)]
        m.d.comb += [adder.zero_point.eq(d.in_zero_point), adder.zero_point2.eq(d.in2_zero_point),
                     adder.multiplier.eq(d.in_multiplier), adder.multiplier2.eq(d.in2_multiplier),
                     adder.right.eq(right), adder.right2.eq(right2)]
        taps = stream.Signature(fetch.operands.payload.shape()).create()
        _steer(m, mode.pool, fetch.operands, taps, pool.operands)
        _steer(m, mode.add, taps, macs.operands, adder.operands)
        sums = stream.Signature(acc_layout(g.lanes)).create()
        _merge(m, mode.add, macs.sums, adder.sums, sums)
        resize(m, sums, accs)
        resize(m, self.seq_accs, seq_accs)
        _merge(m, ~self.running, accs, seq_accs, requant.accs)
        outs, seq_outs = stream.Signature(out_layout(lanes)).create(), stream.Signature(out_layout(lanes)).create()
        _steer(m, ~self.running, requant.outs, outs, seq_outs)
        resize(m, outs, table.ins)
        resize(m, seq_outs, self.seq_outs)
        m.d.comb += [table.enable.eq(d.table), table.w_addr.eq(loader.table_addr), table.w_data.eq(loader.table_data),
                     table.w_en.eq(loader.table_en)]
        _merge(m, mode.pool, table.outs, pool.outs, writer.outs)
        wiring.connect(m, writer.wr_cmd, wiring.flipped(self.wr_cmd))
        wiring.connect(m, writer.wr_data, wiring.flipped(self.wr_data))
        wiring.connect(m, wiring.flipped(self.wr_done), writer.wr_done)
        m.d.comb += [self.busy.eq(walk.taps.valid & walk.taps.ready), self.mem_stall.eq(self.running & walk.waiting)]
        return m


def _steer(m, sel, src, a, b):
    """Stream ``src`` to ``a`` (``sel`` 0) or ``b`` (``sel`` 1)."""
    m.d.comb += [a.payload.eq(src.payload), b.payload.eq(src.payload),
                 a.valid.eq(src.valid & ~sel), b.valid.eq(src.valid & sel), src.ready.eq(Mux(sel, b.ready, a.ready))]


def _merge(m, sel, a, b, dst):
    """Stream ``a`` (``sel`` 0) or ``b`` (``sel`` 1) to ``dst``."""
    m.d.comb += [dst.payload.eq(Mux(sel, b.payload.as_value(), a.payload.as_value())),
                 dst.valid.eq(Mux(sel, b.valid, a.valid)), a.ready.eq(dst.ready & ~sel), b.ready.eq(dst.ready & sel)]
