"""The layer sequencer of the systolic accelerator: the loop nest of :mod:`mensa.contract.gemm` in hardware.

The top joins its parts: the loader (:class:`~mensa.hw.gemm_loader.WindowLoader`) and the
read issue (:class:`~mensa.hw.gemm_issue.SegmentIssuer`) share the DMA's read port
(:class:`~mensa.hw.gemm_reads.ReadArbiter`); the issue's segments queue up for the
:class:`~mensa.hw.gemm_feeds.WeightFeed` and the :class:`~mensa.hw.gemm_feeds.ActivationFeed`,
which feed the array; the :class:`~mensa.hw.gemm_accumulator.Accumulator` sums its K tiles
for the requantiser (the accelerator's, :class:`~mensa.hw.requant.Requantizer`, which the vector unit
shares: a layer runs on one of them), the :class:`~mensa.hw.vector_table.TableActivation` looks its outputs up
in a table activation's table (the loader reads it first; without one they pass through its
register), and the :class:`~mensa.hw.gemm_writer.OutputWriter` writes the output.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring

from mensa.contract.gemm import FLAG_DEPTH, ROUTE_DEPTH, GemmGeometry
from mensa.hw.buffers import Scratchpad
from mensa.hw.dma import engine_members
from mensa.hw.gemm_accumulator import Accumulator
from mensa.hw.gemm_feeds import ActivationFeed, WeightFeed
from mensa.hw.gemm_issue import SegmentIssuer
from mensa.hw.gemm_layer import descriptor_layout
from mensa.hw.gemm_loader import WindowLoader
from mensa.hw.gemm_reads import ReadArbiter
from mensa.hw.gemm_writer import OutputWriter
from mensa.hw.queue import Queue
from mensa.hw.requant import requant_members
from mensa.hw.systolic import SystolicArray
from mensa.hw.vector_table import TableActivation

__all__ = ["GemmSequencer", "descriptor_layout"]


class GemmSequencer(wiring.Component):
    """Runs one layer from DRAM on a weight-stationary array: reads, compute, requantise, writes.

    Conv2d (stride 1 or 2, any padding and dilation), depthwise conv, pointwise conv and
    fully connected layers, walked as :mod:`mensa.contract.gemm` says; no activation, ReLU,
    ReLU6 or a table activation (sigmoid, tanh, hard-swish, hard-sigmoid).

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`

    Members
    -------
    desc : ``In(descriptor_layout)``
        The layer, sampled at ``start``.
    start : ``In(1)``
        Begin a layer (ignored while one runs).
    done : ``Out(1)``
        One cycle, once DRAM has acknowledged the layer's last output write.
    running, busy, mem_stall : ``Out(1)``
        A layer runs; the array holds work; a DRAM read is awaited with nothing to stream.
    rd_cmd, rd_data, wr_cmd, wr_data, wr_done
        To the :class:`~mensa.hw.dma.DMA`'s client ports.
    rq_quant, rq_accs, rq_outs
        To a :class:`~mensa.hw.requant.Requantizer` of ``array.cols`` lanes or more
        (:func:`~mensa.hw.requant.requant_members`): each tile's parameters and accumulator vectors out,
        the requantised vectors back.
    """

    def __init__(self, config):
        self._geometry = GemmGeometry.of(config)
        self._config = config
        mem = config.memory
        super().__init__(engine_members(mem, descriptor_layout(mem.addr_bits)) | requant_members(config.array.cols))

    @property
    def geometry(self):
        return self._geometry

    def elaborate(self, platform):
        m = Module()
        g, cfg = self._geometry, self._config
        A, W = cfg.memory.addr_bits, cfg.memory.data_bits
        m.submodules.array = array = SystolicArray(cfg.array)
        m.submodules.spad = spad = Scratchpad(width=8 * g.rows, depth=g.act_depth)
        m.submodules.reads = reads = ReadArbiter(addr_bits=A, data_bits=W, depth=ROUTE_DEPTH)
        m.submodules.loader = loader = WindowLoader(geometry=g, addr_bits=A)
        m.submodules.issue = issue = SegmentIssuer(geometry=g, addr_bits=A)
        m.submodules.weight_feed = weight_feed = WeightFeed(geometry=g)
        m.submodules.act_feed = act_feed = ActivationFeed(geometry=g)
        m.submodules.acc = acc = Accumulator(geometry=g)
        m.submodules.table = table = TableActivation(lanes=g.cols, word_bytes=g.word_bytes)
        m.submodules.writer = writer = OutputWriter(geometry=g, addr_bits=A)
        # Segments and K tiles in flight between the walk and what it feeds: so the next K
        # tile's weights load into the array's free bank while this one's activations stream.
        m.submodules.weight_segs = weight_segs = Queue(issue.weight_seg.payload.shape(), depth=ROUTE_DEPTH)
        m.submodules.act_segs = act_segs = Queue(issue.act_seg.payload.shape(), depth=ROUTE_DEPTH)
        m.submodules.k_flags = k_flags = Queue(issue.k_flags.payload.shape(), depth=FLAG_DEPTH)

        d = Signal(descriptor_layout(A))        # the layer, latched at start
        go = Signal()
        m.d.comb += go.eq(self.start & ~self.running)
        with m.If(go):
            m.d.sync += d.eq(self.desc), self.running.eq(1)
        with m.If(writer.done):
            m.d.sync += self.running.eq(0)
        m.d.comb += self.done.eq(writer.done)

        for part in (loader, writer):
            m.d.comb += part.start.eq(go), part.desc.eq(self.desc), part.layer.eq(d)
        m.d.comb += [
            issue.start.eq(go), issue.layer.eq(d), issue.loaded.eq(loader.progress),
            act_feed.written.eq(loader.written), act_feed.zero_point.eq(d.in_zero_point),
            weight_feed.out_zero_point.eq(d.out_zero_point),
            weight_feed.qmin.eq(d.qmin), weight_feed.qmax.eq(d.qmax),
            writer.running.eq(self.running),
        ]
        wiring.connect(m, issue.rd_cmd, reads.walk_cmd)
        wiring.connect(m, loader.rd_cmd, reads.load_cmd)
        wiring.connect(m, reads.rd_cmd, wiring.flipped(self.rd_cmd))
        wiring.connect(m, wiring.flipped(self.rd_data), reads.rd_data)
        wiring.connect(m, reads.load_data, loader.rd_data)
        wiring.connect(m, reads.walk_data, weight_feed.rd_data)
        wiring.connect(m, loader.write, spad.write[0])
        wiring.connect(m, loader.commit, spad.commit)
        wiring.connect(m, issue.weight_seg, weight_segs.w)
        wiring.connect(m, issue.act_seg, act_segs.w)
        wiring.connect(m, issue.k_flags, k_flags.w)
        wiring.connect(m, weight_segs.r, weight_feed.seg)
        wiring.connect(m, act_segs.r, act_feed.seg)
        wiring.connect(m, weight_feed.weights, array.weights)
        wiring.connect(m, weight_feed.quant, wiring.flipped(self.rq_quant))
        wiring.connect(m, spad.read[0], act_feed.read)
        wiring.connect(m, spad.tile, act_feed.tile)
        wiring.connect(m, act_feed.acts, array.acts)
        wiring.connect(m, array.psums, acc.psums)
        wiring.connect(m, k_flags.r, acc.k_flags)
        wiring.connect(m, acc.sums, wiring.flipped(self.rq_accs))
        wiring.connect(m, wiring.flipped(self.rq_outs), table.ins)
        m.d.comb += [table.enable.eq(d.table), table.w_addr.eq(loader.table_addr),
                     table.w_data.eq(loader.table_data), table.w_en.eq(loader.table_en)]
        wiring.connect(m, table.outs, writer.outs)
        wiring.connect(m, writer.wr_cmd, wiring.flipped(self.wr_cmd))
        wiring.connect(m, writer.wr_data, wiring.flipped(self.wr_data))
        wiring.connect(m, wiring.flipped(self.wr_done), writer.wr_done)

        # waiting on DRAM: no activation to offer for want of the window, or one the array
        # cannot take for want of weights that are still on their way
        weights_due = weight_segs.r.valid & ~reads.walk_data.valid
        m.d.comb += [
            self.busy.eq(array.busy),
            self.mem_stall.eq(self.running & Mux(array.acts.valid, ~array.acts.ready & weights_due,
                                                 act_feed.starved)),
        ]
        return m
