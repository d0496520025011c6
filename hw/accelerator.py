"""The systolic accelerator top: registers, run control, DMA and the GEMM sequencer, from one config.

Software writes a layer's descriptor (:mod:`mensa.contract.gemm_program` computes it) over the
AXI4-Lite slave ``s_axil``, writes ``CTRL.START``, and waits for ``STATUS.DONE`` or the
``irq`` line. The accelerator reads the layer's input, weights and quantisation records
from DRAM over the AXI4 master ``m_axi`` (each M tile's input window once, into a ping-pong
activation scratchpad; the weights once if they fit the weight buffer), computes on the
weight-stationary array (:class:`~mensa.hw.sequencer.GemmSequencer`) and writes the int8
output back. The
performance counters count the run's cycles, the cycles the array held work, and the
cycles the sequencer waited on DRAM data.

It runs conv2d (kernels of any size, stride 1 or 2, padding, dilation), depthwise conv,
pointwise conv and fully connected layers, of any size whose one output pixel's input
window fits the scratchpad's half (M tiles sized to the accumulator and the scratchpad).

With a vector unit (``config.vector``), the opcodes it runs (depthwise conv, add, mul, max,
average and global average pool) start it instead of the sequencer: the engine is chosen at
START, and the DMA's client ports follow that choice until the next START.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mensa.core.config import AcceleratorConfig
from mensa.hw.dma import DMA, axi4_master_members
from mensa.hw.dsp import lut_product
from mensa.contract.regs import OPCODES, register_map
from mensa.contract.vector_program import KERNEL_MAX, VECTOR_UNIT_OPS
from mensa.hw.regs import RegisterFile, RunControl, axi4lite_members, connect_run_control
from mensa.contract.gemm import GemmGeometry
from mensa.hw.requant import Requantizer
from mensa.hw.sequencer import GemmSequencer
from mensa.hw.vector import VectorUnit
from mensa.core.ir import Op

__all__ = ["Accelerator", "accelerator_members", "forward"]


def forward(m, outer, inner, members):
    """Wire ``inner``'s flat port members to ``outer``'s of the same names."""
    for name, member in members.items():
        a, b = getattr(outer, name), getattr(inner, name)
        if member.flow is In:
            m.d.comb += b.eq(a)
        else:
            m.d.comb += a.eq(b)


def accelerator_members(config):
    """The signature members of the accelerator of ``config``: its AXI4-Lite slave, AXI4 master and interrupt."""
    mem = config.memory
    return {**axi4lite_members("s_axil", register_map(config).addr_bits),
            **axi4_master_members("m_axi", mem.addr_bits, mem.data_bits), "irq": Out(1)}


class Accelerator(wiring.Component):
    """A systolic-array accelerator that runs a layer from DRAM, sized from one config.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`

    Members
    -------
    s_axil_* : AXI4-Lite slave of :func:`~mensa.hw.regs.register_map`.
    m_axi_* : AXI4 master to DRAM, ``memory.data_bits`` wide.
    irq : ``Out(1)``
        IRQ_STATUS.DONE and IRQ_ENABLE.DONE.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._geometry = GemmGeometry.of(config)
        self._config = config
        self._regmap = register_map(config)
        mem = config.memory
        self._lite = axi4lite_members("s_axil", self._regmap.addr_bits)
        self._axi = axi4_master_members("m_axi", mem.addr_bits, mem.data_bits)
        super().__init__(accelerator_members(config))

    @property
    def config(self):
        return self._config

    @property
    def regmap(self):
        return self._regmap

    def elaborate(self, platform):
        m = Module()
        rm = self._regmap
        m.submodules.regs = regs = RegisterFile(rm, prefix="s_axil")
        m.submodules.run = run = RunControl()
        m.submodules.dma = dma = DMA(self._config.memory, prefix="m_axi")
        m.submodules.seq = seq = GemmSequencer(self._config)
        forward(m, self, regs, self._lite)
        forward(m, self, dma, self._axi)

        r = regs.regs

        wide = regs.value
        desc = seq.desc
        m.d.comb += [
            desc.m.eq(r.out_h * r.out_w), desc.k.eq(r.in_c), desc.n.eq(r.out_c),
            desc.depthwise.eq(r.op == OPCODES[Op.DEPTHWISE]),
            desc.tile_rows.eq(r.tile_rows), desc.tile_cols.eq(r.tile_cols),
            desc.weights_resident.eq(r.weights_resident),
            desc.in_h.eq(r.in_h), desc.in_w.eq(r.in_w), desc.out_h.eq(r.out_h), desc.out_w.eq(r.out_w),
            desc.kernel_h.eq(r.kernel_h), desc.kernel_w.eq(r.kernel_w),
            desc.stride_h.eq(r.stride_h), desc.stride_w.eq(r.stride_w),
            desc.dilation_h.eq(r.dilation_h), desc.dilation_w.eq(r.dilation_w),
            desc.pad_top.eq(r.pad_top), desc.pad_left.eq(r.pad_left),
            desc.in_zero_point.eq(r.in_zero_point), desc.out_zero_point.eq(r.out_zero_point),
            desc.qmin.eq(r.qmin), desc.qmax.eq(r.qmax),
            desc.input_addr.eq(wide("INPUT_ADDR")), desc.weight_addr.eq(wide("WEIGHT_ADDR")),
            desc.quant_addr.eq(wide("QUANT_ADDR")), desc.output_addr.eq(wide("OUTPUT_ADDR")),
            desc.table.eq(r.act_table), desc.table_addr.eq(wide("TABLE_ADDR")),
        ]
        connect_run_control(m, regs, run, self.irq)
        start = regs.strobes.ctrl[0]
        if self._config.vector is None:
            m.d.comb += [seq.start.eq(start), run.done.eq(seq.done), run.busy.eq(seq.busy),
                         run.mem_stall.eq(seq.mem_stall)]
            for port in ("rd_cmd", "rd_data", "wr_cmd", "wr_data", "wr_done"):
                wiring.connect(m, getattr(seq, port), getattr(dma, port))
            m.submodules.requant = requant = Requantizer(lanes=self._config.array.cols)
            wiring.connect(m, seq.rq_quant, requant.quant)
            wiring.connect(m, seq.rq_accs, requant.accs)
            wiring.connect(m, requant.outs, seq.rq_outs)
        else:
            self._vector(m, r, wide, seq, dma, run, start)
        return m

    def _vector(self, m, r, wide, seq, dma, run, start):
        """The vector unit beside the sequencer: the opcode picks the engine at START."""
        m.submodules.vector = vec = VectorUnit(self._config)
        for port in ("quant", "accs", "outs"):         # the vector unit's requantiser is the sequencer's too
            wiring.connect(m, getattr(seq, f"rq_{port}"), getattr(vec, f"seq_{port}"))
        desc = vec.desc
        kbits = KERNEL_MAX.bit_length()     # the vector compiler takes kernels of KERNEL_MAX at most
        m.d.comb += [
            desc.op.eq(r.op), desc.in_h.eq(r.in_h), desc.in_w.eq(r.in_w), desc.out_h.eq(r.out_h),
            desc.out_w.eq(r.out_w),
            desc.tiles.eq((r.in_c + vec.geometry.lanes - 1) >> (vec.geometry.lanes - 1).bit_length()),
            desc.taps.eq(lut_product(r.kernel_h[:kbits], r.kernel_w[:kbits])), desc.m.eq(r.out_h * r.out_w),
            desc.kernel_h.eq(r.kernel_h), desc.kernel_w.eq(r.kernel_w),
            desc.stride_h.eq(r.stride_h), desc.stride_w.eq(r.stride_w),
            desc.dilation_h.eq(r.dilation_h), desc.dilation_w.eq(r.dilation_w),
            desc.pad_top.eq(r.pad_top), desc.pad_bottom.eq(r.pad_bottom), desc.pad_left.eq(r.pad_left),
            desc.line_rows.eq(r.line_rows),
            desc.in_zero_point.eq(r.in_zero_point), desc.in2_zero_point.eq(r.in2_zero_point),
            desc.out_zero_point.eq(r.out_zero_point), desc.qmin.eq(r.qmin), desc.qmax.eq(r.qmax),
            desc.in_multiplier.eq(r.in_multiplier), desc.in_shift.eq(r.in_shift),
            desc.in2_multiplier.eq(r.in2_multiplier), desc.in2_shift.eq(r.in2_shift),
            desc.table.eq(r.act_table), desc.table_addr.eq(wide("TABLE_ADDR")),
            desc.input_addr.eq(wide("INPUT_ADDR")), desc.input2_addr.eq(wide("INPUT2_ADDR")),
            desc.weight_addr.eq(wide("WEIGHT_ADDR")), desc.quant_addr.eq(wide("QUANT_ADDR")),
            desc.output_addr.eq(wide("OUTPUT_ADDR")),
        ]
        is_vector = Signal()
        m.d.comb += is_vector.eq(Cat(*[r.op == OPCODES[op] for op in VECTOR_UNIT_OPS]).any())
        sel = Signal()              # 1: the vector unit owns the DMA, from its START on
        with m.If(start & ~run.running):
            m.d.sync += sel.eq(is_vector)
        m.d.comb += [
            seq.start.eq(start & ~run.running & ~is_vector), vec.start.eq(start & ~run.running & is_vector),
            run.done.eq(seq.done | vec.done), run.busy.eq(seq.busy | vec.busy),
            run.mem_stall.eq(seq.mem_stall | vec.mem_stall),
        ]
        for port in ("rd_cmd", "wr_cmd", "wr_data"):           # engine -> DMA
            a, b, to = getattr(seq, port), getattr(vec, port), getattr(dma, port)
            m.d.comb += [to.valid.eq(Mux(sel, b.valid, a.valid)),
                         to.payload.eq(Mux(sel, b.payload.as_value(), a.payload.as_value())),
                         a.ready.eq(to.ready & ~sel), b.ready.eq(to.ready & sel)]
        for port in ("rd_data", "wr_done"):                     # DMA -> engine
            a, b, frm = getattr(seq, port), getattr(vec, port), getattr(dma, port)
            m.d.comb += [a.valid.eq(frm.valid & ~sel), b.valid.eq(frm.valid & sel), a.payload.eq(frm.payload),
                         b.payload.eq(frm.payload), frm.ready.eq(Mux(sel, b.ready, a.ready))]
