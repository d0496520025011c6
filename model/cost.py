"""The analytical cost model: cycles and bytes moved for (layer, accelerator) pairs.

Every layer is lowered once to at most two matrix products per *step*
(:class:`LayerTable`): ``M x K`` activations times ``K x N`` weights, repeated
over ``G`` independent groups (depthwise channels) within a step and over ``R``
dependent steps (LSTM time steps, each waiting for the previous one), plus an
element-wise part (add, multiply, pooling, concatenation, LSTM gates). Every
accelerator is reduced to a row of numbers (:class:`AcceleratorTable`). The
model is closed-form numpy over the whole ``layers x accelerators`` grid
(:func:`evaluate`), so sweeps evaluate hundreds of thousands of pairs per second.

The structure follows the RTL, so that its constants (:class:`Calibration`) are
measured cycles of it; each part lives where it is modelled:

- :mod:`mensa.model.systolic`: the systolic arrays' cycles (weight- and
  output-stationary), fed at full rate;
- :mod:`mensa.model.tiling`: a weight-stationary product's M tiles and input windows;
- :mod:`mensa.model.ws_stream`: the DRAM read stream of a weight-stationary array fed
  by its sequencer, and what of it the array waits for; :mod:`mensa.model.bursts`: the
  reads in flight;
- :mod:`mensa.model.nearmem`: the near-memory unit's cycles and bytes.

DRAM is shared: bytes per cycle are the smaller of the AXI width and the DRAM
bandwidth at the accelerator's clock; reads and writes have their own AXI channels
and share the DRAM's bandwidth. A core other than a weight-stationary array exposes
only its first tile's transfer (plus the DRAM latency), and stalls when the layer's
DRAM time exceeds its compute time. A WS array fed by its sequencer keeps pace with a
DRAM slower than its bus M tile by M tile (:mod:`mensa.model.ws_stream`, "the DRAM's
pace"): its final K tiles wait for their output writes, the next window's reads take
turns with those writes and stand behind the weights read again or behind each N tile's
quantisation record, and what of a window is left when its M tile begins is waited for.

Activations: on an accelerator mensa builds, every layer streams its input from DRAM
and writes its output there (as the RTL and the network compiler do); on a modelled
array, a layer whose input and output fit together in the activation buffer keeps them
on chip. A WS array reads the input once per M tile window: the input once,
plus the kernel's halo rows (columns) that neighbouring tiles share
(:attr:`Cost.dram_act_bytes`); an OS array (no sequencer in the RTL yet) reads it
again for every N tile when it does not fit half the buffer. Moving an activation
between accelerators is charged by the scheduler (:mod:`mensa.model.schedule`), not
here. Weights are read from DRAM once per inference when they fit the weight buffer,
else once per M tile (CNN layers) or once per time step (LSTM); the RTL keeps them when
its padded weight tiles fit, which differs at the edge.

Units: cycles of the accelerator's clock, bytes.
"""

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from mensa.contract.compiler import in_hardware, refusal
from mensa.contract.gemm_program import tap_packed
from mensa.contract.numeric import TABLE_ENTRIES
from mensa.contract.regs import line_depth
from mensa.contract.vector_program import VECTOR_UNIT_OPS, planar, window
from mensa.core.golden import TABLE_ACTIVATIONS
from mensa.core.config import CoreKind, Dataflow, DramConfig
from mensa.core.ir import Op, conv_transpose_pads
from mensa.model.nearmem import nearmem_dma, nearmem_gemm, nearmem_lstm
from mensa.model.systolic import systolic_gemm
from mensa.model.tiling import Tiling, Window, accumulator_tiles, cdiv, ws_tiling
from mensa.model.vector import vector_terms
from mensa.model.ws_stream import ws_stream

__all__ = ["Calibration", "LayerTable", "AcceleratorTable", "Cost", "evaluate", "SUPPORTED_OPS",
           "dram_bytes_per_cycle", "buffer_bytes", "cycle_errors", "modelled"]

_OPS = list(Op)
_OP_CODE = {op: i for i, op in enumerate(_OPS)}

#: Ops a *modelled* accelerator runs: one mensa builds no RTL top for (an output-stationary
#: array, or the Edge TPU template's baselines, whose figures are modelled on the Coral), so
#: the model's own op set stands in for a compiler. An accelerator mensa builds runs a layer
#: that some mensa hardware runs (:func:`mensa.contract.compiler.in_hardware`) exactly where
#: its compiler accepts it (:func:`mensa.contract.compiler.refusal`); the other layers, whose
#: op or fused activation no mensa hardware runs yet, by these sets.
SUPPORTED_OPS = {
    CoreKind.SYSTOLIC: frozenset(Op),
    CoreKind.NEARMEM: frozenset({Op.FC, Op.LSTM, Op.ADD, Op.MUL, Op.CONCAT, Op.GLOBAL_AVGPOOL}),
}


_SUPPORTED_ROW = {kind: [op in ops for op in _OPS] for kind, ops in SUPPORTED_OPS.items()}


def modelled(acc):
    """True for an accelerator mensa models but does not build (:data:`SUPPORTED_OPS`)."""
    return acc.kind is CoreKind.SYSTOLIC and (acc.array.dataflow is Dataflow.OUTPUT_STATIONARY
                                              or acc.edgetpu is not None)


@functools.lru_cache(maxsize=1 << 16)
def _refusal(acc, layer):
    return refusal(acc, layer)


def _compiled(acc, layer):
    """True where the compiler of ``acc`` decides whether it runs ``layer``."""
    return in_hardware(layer, acc) and not modelled(acc)


def _accepted(layers, accelerators, rows):
    """``(L, A)``: where a layer may run: where its compiler accepts it (:func:`_compiled`),
    elsewhere where the op sets (``rows``, ``(L, A)``) hold its op."""
    out = rows.copy()
    for j, acc in enumerate(accelerators):
        if not modelled(acc):
            for i, layer in enumerate(layers):
                if in_hardware(layer, acc):
                    out[i, j] = not _refusal(acc, layer)
    return out


def _layouts(layers, accelerators):
    """``(L, A)``: the concats that are a layout (their producers write side by side, nothing runs)."""
    out = np.zeros((len(layers), len(accelerators)), dtype=bool)
    for i, layer in enumerate(layers):
        if layer.op is Op.CONCAT:
            for j, acc in enumerate(accelerators):
                out[i, j] = _compiled(acc, layer) and not _refusal(acc, layer)
    return out


@dataclass(frozen=True)
class Calibration:
    """The model's per-microarchitecture constants: cycles the RTL spends beyond what the
    model's structure counts, fitted to RTL cycle counts.

    The defaults are measured on the RTL's systolic arrays, near-memory unit and whole WS
    accelerator (gen/validate.py runs the RTL; tests/rtl/test_cost_vs_rtl.py bounds the
    error with them).
    """
    ws_fill_extra: float = 6.0        # cycles beyond rows + cols per WS step (fill and drain): the PEs'
    #                                   4 multiplier register stages and the output FIFO's 2 cycles
    ws_retire_extra: float = 0.0      # cycles beyond rows + cols - 1 before a WS weight bank is free again
    os_fill_extra: float = 4.0        # cycles beyond rows + cols from an OS step's last beat to its last result
    #                                   (the PEs' 4 multiplier register stages)
    os_drain_extra: float = 4.0       # cycles beyond rows + cols + 1 from an OS tile's last beat to the next's
    #                                   (the same 4 stages)
    nearmem_pipeline: float = 11.0    # cycles beyond the vault latency to the first MAC, plus the last result's
    #                                   (6 of them the lanes' pipeline, mensa.hw.vault.LANE_STAGES)
    nearmem_input: float = 9.0        # the same beyond the first vector's input beats, when they are slower
    nearmem_cell: float = 21.0        # LSTM: cycles from h_t's (m8_t's) last block out of the cell to the vaults'
    #                                   next phase (the lanes' pipeline, the hidden requantiser, the write-back,
    #                                   the vault's restart)
    nearmem_handover: float = 2.0     # LSTM: cycles of a later vault's x groups' gather that overlap the cell's
    #                                   last block of the vault before (model.nearmem.cell_tail)
    nearmem_read: float = 9.0         # near-memory accelerator: cycles from START to the first input read's
    #                                   address (the reader's command, the DMA's burst; then the DRAM latency),
    #                                   plus the last result's pipeline as in nearmem_pipeline
    nearmem_write: float = 19.0       # the same from the last result to DONE beyond the last burst's beats: the
    #                                   requantiser, the writer's word and command, the write response, DONE
    vector_pipeline: float = 2.0      # element-wise unit stages
    vector_fill: float = 12.0         # the vector unit (mensa.model.vector): cycles beyond the DRAM latency and
    #                                   the first transfer to the last write's response (tap, MAC, writer)
    vector_requant: float = 8.0       # the same, further, through the requantiser (depthwise, global pool)
    vector_pool: float = 1.0          # the same, further, through the pool reducer (max and average pool): its
    #                                   product's stage (mensa.hw.vector_pool)
    vector_boundary: float = 3.0      # a tile boundary whose first rows wait for the ring: beyond latency and rows
    vector_table: float = 1.0         # a table activation's lookup stage
    vector_stream_tail: float = 15.0  # a streaming op (global pool, add, mul): cycles beyond vector_fill after
    #                                   its last input word (the last row's pixels, the output's last write)
    dma_setup: float = 30.0           # DMA-fed layer, beyond the DRAM latency and the array's fill: the first
    #                                   read's issue, the requantiser, the activation table's stage (a register
    #                                   without a table), the last output write and its response;
    #                                   11 of them the timing pipeline: the M tile walker's 8 cycles from
    #                                   start to its first window (7 more than combinational), the loader's
    #                                   2 cycles sizing it, the accumulator's read and output registers
    dram_turnaround: float = 2.0      # cycles beyond the DRAM latency that a read keeps its slot in flight
    #                                   (address and data handshakes, the slot's bookkeeping FIFO)
    ws_loader_slots: float = 0.5      # DMA read slots a WS loader gets beyond those its walk's queued K
    #                                   tiles leave, on average (the queue drains as the banks take weights)
    ws_table_lead: float = 9.0        # cycles a table activation's table command leads the first window's
    #                                   (the loader issues it at start, while the M tile walker sets up)


def _memory_bytes_per_cycle(acc, dram):
    """Bytes per accelerator cycle the DRAM (and the Edge TPU template's I/O) delivers, reads and writes together."""
    gbps = dram.bandwidth_gbps
    if acc.edgetpu is not None:
        gbps = min(gbps, acc.edgetpu.io_gbps)
    return gbps * 1e3 / acc.clock_mhz


def dram_bytes_per_cycle(acc, dram):
    """Bytes per accelerator cycle from the shared DRAM: AXI width and DRAM (and I/O) bandwidth."""
    return min(acc.memory.data_bits / 8, _memory_bytes_per_cycle(acc, dram))


def buffer_bytes(acc):
    """(weight, activation, accumulator) buffer bytes; the Edge TPU template's memories when given."""
    b = acc.buffers
    if acc.edgetpu is not None:
        t = acc.edgetpu
        pes = t.pe_rows * t.pe_cols
        return t.core_mem_kib * 1024 * t.cores_per_pe * pes, t.pe_mem_kib * 1024 * pes, b.acc_kib * 1024
    return b.weight_kib * 1024, b.act_kib * 1024, b.acc_kib * 1024


def _act_depth(act_bytes, rows):
    """Activation vectors of ``rows`` bytes in one half of a ping-pong scratchpad of ``act_bytes``:
    the largest power of two that fits, as the RTL sizes it (:func:`mensa.contract.gemm.act_depth`)."""
    vectors = int(act_bytes) // (2 * rows)
    return vectors and 1 << (vectors.bit_length() - 1)


VECTOR_FIELDS = ("vec_op", "vec_c", "vec_m", "vec_taps", "vec_wtaps", "vec_quant", "vec_in_h", "vec_in_w",
                 "vec_first_rows", "vec_held", "vec_inputs", "vec_stream", "vec_table")


def _vector_walk(l):
    """The layer as the vector unit walks it (:mod:`mensa.model.vector`): zeros for other ops."""
    l = planar(l)
    if l.op not in VECTOR_UNIT_OPS or len(l.in_shape) != 4:
        return (0,) * len(VECTOR_FIELDS)
    (kh, kw), (sh, _), (dh, _), (top, _, _, _) = window(l)
    _, h, w, c = l.in_shape
    _, oh, ow, _ = l.out_shape
    span = (kh - 1) * dh + 1
    stream = l.op in (Op.GLOBAL_AVGPOOL, Op.ADD, Op.MUL)      # one input row at a time
    first = 1 if stream else min(h, span - top)
    lo = (oh - 1) * sh - top
    held = min(h - 1, lo + span - 1) - max(0, lo) + 1
    inputs = 2 if l.op is Op.ADD else 1
    return (1, c, 1 if l.op is Op.GLOBAL_AVGPOOL else oh * ow, kh * kw,
            kh * kw if l.op in (Op.DEPTHWISE, Op.MUL) else 0,      # a mul's gate: one tap vector a tile
            int(l.op not in (Op.MAXPOOL, Op.AVGPOOL)), h, w, first, held, inputs, int(stream),
            int(l.activation in TABLE_ACTIVATIONS))


class LayerTable:
    """Layers lowered to the numbers the model needs, one numpy array per quantity (shape ``(L,)``).

    Parameters
    ----------
    layers : sequence of :class:`~mensa.core.ir.Layer`
    """

    _FIELDS = ("op", "m1", "k1", "n1", "g", "r", "m2", "k2", "n2", "ew_elems", "ew_ops",
               "in_bytes", "out_bytes", "w_bytes", "param_bytes", "macs", "out_elems",
               "images", "in_h", "in_w", "out_h", "out_w", "span_h", "span_w", "stride_h", "stride_w",
               "pad_top", "pad_left", "pad_w", "in_c", "taps", "table", *VECTOR_FIELDS)

    def __init__(self, layers, *, pack=True):
        layers = tuple(layers)
        table = np.array([self._lower(l, pack) for l in layers],
                         dtype=np.float64).reshape(len(layers), len(self._FIELDS))
        # a few-channel conv runs over its im2col rows on a WS array mensa builds (tap_packed)
        self.packed = np.array([pack and tap_packed(l) is not None for l in layers], dtype=bool)
        self.layers = layers
        self.names = tuple(l.name for l in layers)
        for name, column in zip(self._FIELDS, table.T.copy()):
            setattr(self, name, column)
        self.ops = tuple(l.op for l in layers)
        # Parameter bytes of this layer and every one before it: what a parameter cache that keeps a
        # network's parameters in layer order must hold for this layer's to stay on chip.
        self.param_upto = np.cumsum(self.param_bytes)

    def __len__(self):
        return len(self.layers)

    @staticmethod
    def _lower(l, pack):
        if pack:
            l = tap_packed(l) or l
        op = l.op
        out_elems = math.prod(l.out_shape)
        in_bytes = math.prod(l.in_shape) + sum(math.prod(s) for s in l.extra_in_shapes)
        m1 = k1 = n1 = m2 = k2 = n2 = 0
        g = r = 1
        ew_elems = ew_ops = 0
        w_bytes = math.prod(l.weight_shape) if l.weight_shape else 0
        if op is Op.CONV2D:
            n, oh, ow, oc = l.out_shape
            kh, kw = l.kernel
            m1, k1, n1 = n * oh * ow, kh * kw * l.in_channels // l.groups, oc // l.groups
            g = l.groups
        elif op is Op.CONV_TRANSPOSE:
            # A convolution over the zero-inserted input (mensa.core.golden.conv_transpose_acc): every output
            # pixel takes the whole kernel, the zeros included; ``macs`` counts only the useful products.
            n, oh, ow, oc = l.out_shape
            kh, kw = l.kernel
            m1, k1, n1 = n * oh * ow, kh * kw * l.in_channels, oc
        elif op is Op.DEPTHWISE:
            # Channel by channel, as the Edge TPU and SCALE-Sim map it: each channel is its own product.
            n, oh, ow, oc = l.out_shape
            kh, kw = l.kernel
            m1, k1, n1, g = n * oh * ow, kh * kw, oc // l.in_channels, l.in_channels
        elif op is Op.FC:
            m1, k1, n1 = math.prod(l.out_shape[:-1]), l.in_channels, l.out_channels
        elif op is Op.LSTM:
            n, t = l.in_shape[0], l.in_shape[1]
            m1, k1, n1, r = n, l.in_channels + l.out_channels, 4 * l.hidden, t
            if l.projection:
                m2, k2, n2 = n, l.hidden, l.projection
                w_bytes += l.hidden * l.projection
            # gates: 3 sigmoids, 2 tanh, 3 multiplies, 1 add per unit and step, by table and lanes
            ew_elems, ew_ops = n * t * l.hidden, 9
        elif op in (Op.AVGPOOL, Op.MAXPOOL):
            ew_elems, ew_ops = out_elems, l.kernel[0] * l.kernel[1]
        elif op is Op.RESIZE:
            ew_elems, ew_ops = out_elems, 1        # one copy per output element
        elif op is Op.GLOBAL_AVGPOOL:
            ew_elems, ew_ops = out_elems, math.prod(l.in_shape[1:-1])
        elif op in (Op.ADD, Op.MUL):
            ew_elems, ew_ops = out_elems, 1 + len(l.extra_in_shapes)
        elif op is Op.CONCAT:
            ew_elems, ew_ops = out_elems, 1    # one pass through the vector unit to re-lay the channels
        else:   # pragma: no cover - a new Op must be given a lowering here
            raise NotImplementedError(f"cost model has no lowering for {op}")
        bias = 4 * (4 * l.hidden if op is Op.LSTM else l.out_channels) if l.bias and w_bytes else 0
        # The first product's input window, as the WS sequencer walks it (mensa.contract.gemm.LayerWalk):
        # images of in_h x in_w pixels of in_c channels, the kernel tap by tap (``taps`` K walks of k1 / taps,
        # each tap's channels in tiles of the array's rows). An FC, LSTM or pointwise (1x1, stride 1, no
        # padding) product is one row of m1 pixels.
        window = (0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1)
        pointwise = op is Op.CONV2D and (l.kernel, l.stride, tuple(l.padding)) == ((1, 1), (1, 1), (0, 0, 0, 0))
        if op in (Op.CONV2D, Op.DEPTHWISE) and not pointwise:
            n, ih, iw, c = l.in_shape
            _, oh, ow, _ = l.out_shape
            (kh, kw), (dh, dw) = l.kernel, l.dilation
            window = (n, ih, iw, oh, ow, (kh - 1) * dh + 1, (kw - 1) * dw + 1, *l.stride, l.padding[0],
                      l.padding[2], l.padding[2] + l.padding[3], c, kh * kw if op is Op.CONV2D else 1)
        elif op is Op.CONV_TRANSPOSE:
            n, ih, iw, c = l.in_shape
            _, oh, ow, _ = l.out_shape
            (kh, kw), (dh, dw), (sh, sw) = l.kernel, l.dilation, l.stride
            t, _, left, right = conv_transpose_pads(l)
            window = (n, (ih - 1) * sh + 1, (iw - 1) * sw + 1, oh, ow, (kh - 1) * dh + 1, (kw - 1) * dw + 1, 1, 1,
                      t, left, left + right, c, kh * kw)
        elif m1:
            window = (1, 1, m1, 1, m1, 1, 1, 1, 1, 0, 0, 0, k1, 1)
        return (_OP_CODE[op], m1, k1, n1, g, r, m2, k2, n2, ew_elems, ew_ops, in_bytes, out_elems,
                w_bytes, w_bytes + bias, l.macs, out_elems, *window, int(l.activation in TABLE_ACTIVATIONS),
                *_vector_walk(l))


class AcceleratorTable:
    """Accelerators reduced to the numbers the model needs, one array per quantity (shape ``(A,)``).

    Parameters
    ----------
    accelerators : sequence of :class:`~mensa.core.config.AcceleratorConfig`
    dram : :class:`~mensa.core.config.DramConfig` or a sequence of them (one per accelerator)
    arbitrated : bool or a sequence of them (one per accelerator)
        The accelerator's DMA reaches the DRAM through the system top's arbiter, which buffers its
        read data (:func:`mensa.contract.network.arbitrated`: a system of more than one accelerator).
    """

    def __init__(self, accelerators, dram=DramConfig(), *, arbitrated=False):
        accs = tuple(accelerators)
        drams = tuple(dram) if isinstance(dram, (tuple, list)) else (dram,) * len(accs)
        if len(drams) != len(accs):
            raise ValueError(f"dram: {len(drams)} DRAM configs for {len(accs)} accelerators")
        self.accelerators = accs
        self.names = tuple(a.name for a in accs)
        def numbers(x, d):
            n = x.nearmem
            w, act, accb = buffer_bytes(x)
            return (x.array.rows, x.array.cols, x.clock_mhz, w, act, accb, x.array.acc_bits / 8,
                    dram_bytes_per_cycle(x, d), d.latency_cycles,
                    n.vaults if n else 0, n.lanes if n else 0, n.vault_bits / 8 if n else 0,
                    n.vaults * n.vault_kib * 1024 if n else 0, n.local_kib * 1024 if n else 0,
                    x.memory.data_bits / 8, x.memory.max_burst, _memory_bytes_per_cycle(x, d),
                    _act_depth(act, x.array.rows), n.requant_passes if n else 1)
        table = np.array([numbers(x, d) for x, d in zip(accs, drams)], dtype=np.float64).reshape(len(accs), 19)
        (self.rows, self.cols, self.clock_mhz, self.wbuf, self.abuf, self.accbuf, self.acc_bytes, self.bpc,
         self.latency, self.vaults, self.lanes, self.vault_bpc, self.vault_cap, self.local,
         self.word_bytes, self.max_burst, self.mem_bpc, self.act_depth, self.requant_passes) = table.T.copy()
        self.nearmem = np.array([x.kind is CoreKind.NEARMEM for x in accs], dtype=bool)
        self.arbitrated = np.broadcast_to(np.asarray(arbitrated, dtype=bool), (len(accs),)).copy()
        self.os = np.array([x.array.dataflow is Dataflow.OUTPUT_STATIONARY for x in accs], dtype=bool)
        # Element-wise lanes: the post-processing row of a systolic array, or every near-memory lane.
        self.vec_lanes = np.where(self.nearmem, self.vaults * self.lanes, self.cols)
        self.peak_macs = np.where(self.nearmem, self.vaults * self.lanes, self.rows * self.cols)
        # A systolic accelerator's vector unit (mensa.model.vector): its lanes, 0 without one.
        self.modelled = np.array([modelled(x) for x in accs], dtype=bool)
        self.vector_lanes = np.array([x.vector.lanes if x.vector is not None else 0 for x in accs], dtype=np.float64)
        self.line_depth = np.array([line_depth(x) for x in accs], dtype=np.float64)
        self.supported = np.array([_SUPPORTED_ROW[x.kind] for x in accs], dtype=bool).reshape(len(accs), len(_OPS))
        # The Edge TPU template's own terms (EdgeTpuTemplate): off, and efficiency 1, elsewhere.
        templates = [x.edgetpu if x.kind is CoreKind.SYSTOLIC else None for x in accs]
        self.param_cache = np.array([t is not None and t.param_cache for t in templates], dtype=bool)
        self.dw_lanes = np.array([t is not None and t.depthwise_lanes for t in templates], dtype=bool)
        self.efficiency = np.array([t.efficiency if t is not None else 1.0 for t in templates], dtype=np.float64)
        self.any_template = bool(self.param_cache.any() or self.dw_lanes.any() or (self.efficiency < 1).any())

    def __len__(self):
        return len(self.accelerators)


_COST_FIELDS = ("cycles", "core_cycles", "compute", "load", "fill", "dma", "stall", "seconds", "macs",
                "utilisation", "dram_bytes", "dram_weight_bytes", "dram_act_bytes", "wbuf_bytes", "abuf_bytes",
                "accbuf_bytes", "vault_bytes", "local_bytes", "vector_ops", "requant_ops", "m_tile",
                "params_fit", "supported")


@dataclass
class Cost:
    """The model's answer for a ``layers x accelerators`` grid; every field is an ``(L, A)`` array.

    Cycles: ``cycles = compute + load + fill + dma + stall`` where ``compute`` is
    cycles streaming operands, ``load`` weight loading not hidden by double
    buffering (systolic) or vault-port-bound streaming (near-memory), ``fill``
    pipeline fill and drain, ``dma`` the exposed first DRAM transfer and
    latency, ``stall`` the cycles the core waits for DRAM beyond those (for a WS
    array, its read stream and its pace at the DRAM's bandwidth: :mod:`mensa.model.ws_stream`). ``cycles`` is ``inf`` where the
    layer is not supported (``supported`` False; :meth:`reason` says why).
    ``core_cycles = compute + load + fill``: the compute core alone, fed at full
    rate with no DRAM or DMA term (what the RTL validation measures on the
    cores; ``inf`` where unsupported).

    Bytes: ``dram_bytes`` (``= dram_weight_bytes + dram_act_bytes``) off-stack
    DRAM traffic; ``wbuf_bytes``, ``abuf_bytes``, ``accbuf_bytes`` bytes read and
    written in the weight, activation and accumulator buffers (systolic);
    ``vault_bytes`` and ``local_bytes`` in the vaults and vault-local buffers
    (near-memory). ``m_tile``: output pixels of a full M tile (systolic: what the accumulator,
    and for a weight-stationary array streaming its input, the input window, allow; 0 elsewhere).
    ``params_fit``: the layer's parameters fit its weight store.
    """
    layers: LayerTable
    accelerators: AcceleratorTable
    cycles: np.ndarray
    core_cycles: np.ndarray
    compute: np.ndarray
    load: np.ndarray
    fill: np.ndarray
    dma: np.ndarray
    stall: np.ndarray
    seconds: np.ndarray
    macs: np.ndarray
    utilisation: np.ndarray
    dram_bytes: np.ndarray
    dram_weight_bytes: np.ndarray
    dram_act_bytes: np.ndarray
    wbuf_bytes: np.ndarray
    abuf_bytes: np.ndarray
    accbuf_bytes: np.ndarray
    vault_bytes: np.ndarray
    local_bytes: np.ndarray
    vector_ops: np.ndarray
    requant_ops: np.ndarray
    m_tile: np.ndarray
    params_fit: np.ndarray
    supported: np.ndarray

    def reason(self, i, j):
        """Why layer ``i`` cannot run on accelerator ``j`` (``""`` when it can)."""
        if self.supported[i, j]:
            return ""
        layer, acc = self.layers.layers[i], self.accelerators.accelerators[j]
        if _compiled(acc, layer):
            return f"{acc.name}: {_refusal(acc, layer)}"
        if layer.op not in SUPPORTED_OPS[acc.kind]:
            allowed = ", ".join(sorted(op.value for op in SUPPORTED_OPS[acc.kind]))
            return f"{acc.name}: a {acc.kind.value} accelerator cannot run {layer.op.value}; it runs {allowed}"
        return (f"{acc.name}: the layer's {int(self.layers.param_bytes[i])} parameter bytes exceed the vaults' "
                f"{int(self.accelerators.vault_cap[j])} bytes")

    def row(self, i, j):
        """Layer ``i`` on accelerator ``j`` as a plain dict of numbers."""
        return {f: (bool(getattr(self, f)[i, j]) if getattr(self, f).dtype == bool else float(getattr(self, f)[i, j]))
                for f in _COST_FIELDS}


def evaluate(layers, accelerators, dram=DramConfig(), *, calibration=Calibration()):
    """Cycles and bytes of every layer on every accelerator.

    Parameters
    ----------
    layers : :class:`LayerTable` or sequence of :class:`~mensa.core.ir.Layer`
    accelerators : :class:`AcceleratorTable` or sequence of :class:`~mensa.core.config.AcceleratorConfig`
    dram : :class:`~mensa.core.config.DramConfig`
        Used only when ``accelerators`` is a sequence of configs.
    calibration : :class:`Calibration`

    Returns
    -------
    :class:`Cost` with ``(L, A)`` arrays.
    """
    lt = layers if isinstance(layers, LayerTable) else LayerTable(layers)
    acc = accelerators if isinstance(accelerators, AcceleratorTable) else AcceleratorTable(accelerators, dram)
    cal = calibration
    ew = _col(lt.ew_elems * lt.ew_ops)
    macs = _col(lt.macs)
    nm = acc.nearmem
    # Branches no accelerator or layer needs are skipped (their terms stay 0).
    any_nm, any_sys, any_g2 = bool(nm.any()), not bool(nm.all()), bool((lt.m2 > 0).any())
    vec = cdiv(ew, acc.vec_lanes)
    vec_fill = np.where(ew > 0, cal.vector_pipeline, 0.0)
    s = _systolic(lt, acc, cal, vec, vec_fill, any_sys, any_g2)
    unpacked = _col(lt.packed) & acc.modelled
    if unpacked.any():      # a modelled array runs a few-channel conv tap by tap, as it was fitted
        u = _systolic(LayerTable(lt.layers, pack=False), acc, cal, vec, vec_fill, any_sys, any_g2)
        for f in dataclasses.fields(_Terms):
            setattr(s, f.name, np.where(unpacked, getattr(u, f.name), getattr(s, f.name)))
    n = _nearmem(lt, acc, cal, vec, vec_fill, any_nm)

    def pick(a, b):
        if not any_nm:
            return a
        return b if not any_sys else np.where(nm, b, a)
    dram_w = pick(s.dram_w, n.dram_w)
    dram_a = pick(s.dram_a, n.dram_a)
    dram = dram_w + dram_a
    compute = pick(s.compute, n.compute)
    load = pick(s.load, n.load)
    fill = pick(s.fill, n.fill)
    first = pick(s.first, n.first)
    written = pick(s.written, n.written)
    abuf = pick(s.abuf, n.abuf)
    # Layers on a vector unit (mensa.model.vector) take its terms.
    on_vector = _col(lt.vec_op > 0) & (acc.vector_lanes > 0)
    setup, waits = cal.dma_setup, 0.0
    if on_vector.any():
        v = vector_terms({f: _col(getattr(lt, f)) for f in VECTOR_FIELDS}, acc, cal)

        def over(a, key):
            return np.where(on_vector, v[key] if isinstance(key, str) else key, a)
        compute, load, fill, first = over(compute, "compute"), over(load, 0.0), over(fill, "fill"), over(first, "first")
        dram_w, dram_a, written, abuf = over(dram_w, "dram_w"), over(dram_a, "dram_a"), over(written, "written"), \
            over(abuf, "local")
        dram = dram_w + dram_a
        setup = np.where(on_vector, 0.0, setup)
    busy = compute + load + fill
    # A WS array waits for its read stream (mensa.model.ws_stream); other cores expose the first
    # transfer, then stall wherever the DRAM's bytes outlast the work.
    ws = ~acc.os & ~nm & ~on_vector
    window = pick(s.window, n.window)
    bus = np.maximum(cdiv(dram - written, acc.word_bytes), cdiv(written, acc.word_bytes))
    volume = np.maximum(bus, cdiv(dram, acc.mem_bpc))
    hidden = 0.0
    if on_vector.any():     # the vector unit's tile boundaries, and its streaming rows' round trips
        waits = np.where(on_vector, v["boundary"] + np.maximum(v["row_trip"] - np.maximum(compute, volume), 0), 0.0)
        # A streaming op (global pool, add, mul) on a DRAM slower than the bus: its pipeline's tail runs
        # while its last outputs wait for their turns at the DRAM, hidden up to the cycles the DRAM's pace
        # adds to the bus's.
        hidden = np.where(on_vector & (_col(lt.vec_stream) > 0), np.minimum(fill, volume - bus), 0.0)
    dma = np.where(dram > 0, acc.latency + setup + np.where(ws, window, cdiv(first, acc.bpc)), 0.0)
    dma = pick(dma, n.dma)            # the near-memory accelerator's own (mensa.model.nearmem.nearmem_dma)
    stall = np.where(ws, np.maximum(np.maximum(pick(s.stream, n.stream), volume) - compute - load - window,
                                    pick(s.boundary, n.boundary)),
                     np.maximum(volume - cdiv(first, acc.bpc) - np.where(on_vector, compute + hidden, busy), 0.0)
                     + waits)
    stall = np.where(dram > 0, stall, 0.0)
    supported = _accepted(lt.layers, acc.accelerators, acc.supported[:, lt.op.astype(int)].T
                          & pick(np.ones_like(s.fit), n.fit))
    layout = _layouts(lt.layers, acc.accelerators) if (lt.op == _OP_CODE[Op.CONCAT]).any() else False
    if np.any(layout):      # a concat its producers lay out costs nothing
        zero = lambda x: np.where(layout, 0.0, x)       # noqa: E731
        compute, load, fill, dma, stall = zero(compute), zero(load), zero(fill), zero(dma), zero(stall)
        dram, dram_w, dram_a, abuf, ew = zero(dram), zero(dram_w), zero(dram_a), zero(abuf), zero(ew)
    core = compute + load + fill
    cycles = np.where(supported, core + dma + stall, np.inf)
    seconds = cycles / (acc.clock_mhz * 1e6)
    peak = acc.peak_macs
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where(supported & (cycles > 0), macs / (cycles * peak), 0.0)
    shape = cycles.shape
    zeros = np.zeros(shape)
    full = lambda x: zeros + x          # a fresh (L, A) float array, cheaper than broadcast_to().copy()
    return Cost(
        layers=lt, accelerators=acc, cycles=cycles, core_cycles=np.where(supported, core, np.inf),
        compute=full(compute), load=full(load), fill=full(fill),
        dma=full(dma), stall=full(stall), seconds=seconds, macs=full(macs), utilisation=util,
        dram_bytes=full(dram), dram_weight_bytes=full(dram_w), dram_act_bytes=full(dram_a),
        wbuf_bytes=full(pick(s.wbuf, n.wbuf)), abuf_bytes=full(abuf),
        accbuf_bytes=full(pick(s.accbuf, n.accbuf)), vault_bytes=full(pick(s.vault, n.vault)),
        local_bytes=full(pick(s.local, n.local)), vector_ops=full(ew), requant_ops=full(np.where(layout, 0.0, _col(lt.out_elems))),
        m_tile=full(pick(s.m_tile, n.m_tile)),
        params_fit=(zeros + pick(s.fit, n.fit)).astype(bool), supported=supported,
    )


def _col(x):
    """A layer quantity as an ``(L, 1)`` column of the grid."""
    return x[:, None]


@dataclass
class _Terms:
    """One core kind's terms of :func:`evaluate` (``(L, A)`` arrays; 0 where the kind is not evaluated)."""
    fit: object                   # the layer's parameters fit the weight store
    compute: object = 0.0         # cycles, as in Cost
    load: object = 0.0
    fill: object = 0.0
    first: object = 0.0           # bytes of the first transfer, exposed (a core other than a WS array)
    written: object = 0.0         # DRAM bytes written
    dram_w: object = 0.0          # DRAM bytes, as in Cost
    dram_a: object = 0.0
    wbuf: object = 0.0            # buffer bytes, as in Cost
    abuf: object = 0.0
    accbuf: object = 0.0
    vault: object = 0.0
    local: object = 0.0
    m_tile: object = 0.0
    stream: object = 0.0          # a WS array's read stream (mensa.model.ws_stream): its cycles,
    window: object = 0.0          # its first window's exposed cycles,
    boundary: object = 0.0        # and its later windows'
    dma: object = 0.0             # near-memory: the accelerator's DMA cycles beyond its unit's


def _systolic(lt, acc, cal, vec, vec_fill, any_sys, any_g2):
    """The systolic arrays' terms: the products' cycles, buffer and DRAM bytes, the WS read stream."""
    M1, K1, N1, G, R = _col(lt.m1), _col(lt.k1), _col(lt.n1), _col(lt.g), _col(lt.r)
    in_b, out_b, w_b, p_b = _col(lt.in_bytes), _col(lt.out_bytes), _col(lt.w_bytes), _col(lt.param_bytes)
    # mensa's RTL reads every layer's input from DRAM and writes its output there (the network
    # compiler passes tensors through DRAM); a modelled array keeps what fits on chip.
    spill = ((in_b + out_b) > acc.abuf) | ~acc.modelled
    t = _Terms(fit=p_b <= acc.wbuf, written=np.where(spill, out_b, 0.0))
    if not any_sys:
        return t
    # A WS product streaming its input takes the compiler's M tiles; one whose input stays on chip,
    # those of the accumulator buffer alone.
    tiling = ws_tiling(Window(lt, _col), acc)
    if not bool(acc.os.all()):
        onchip = Tiling(*np.broadcast_arrays(*accumulator_tiles(M1, acc), tiling.vectors, tiling.first,
                                             tiling.commands, tiling.halo, tiling.segments,
                                             tiling.run, tiling.run_short))
        tiling = Tiling(*(np.where(spill, d, o) for d, o in zip(vars(tiling).values(), vars(onchip).values())))
    taps = _col(lt.taps)
    # mensa's WS RTL keeps a layer's weights on chip when its padded weight tiles fit the weight buffer
    # (mensa.contract.gemm_program's WEIGHTS_RESIDENT); a modelled array, when its parameter bytes do
    padded = G * taps * cdiv(K1 / taps, acc.rows) * cdiv(N1, acc.cols) * acc.rows * acc.cols
    t.fit = np.where(~acc.modelled & ~acc.os, padded <= acc.wbuf, t.fit)
    c1, l1, f1, wr1, ar1, acc1, mt1 = systolic_gemm(M1, K1, N1, G, R, acc, cal, tiling, taps)
    t.m_tile = np.where(acc.os, np.minimum(M1, acc.rows), tiling.pixels) * (M1 > 0)
    c2 = l2 = f2 = wr2 = ar2 = acc2 = 0.0
    if any_g2:
        c2, l2, f2, wr2, ar2, acc2, _ = systolic_gemm(_col(lt.m2), _col(lt.k2), _col(lt.n2), 1, R, acc, cal)
    resident = False
    if acc.any_template:
        c1, l1, c2, resident = _template(lt, acc, c1, l1, c2)
    refetch = np.where(R > 1, R, mt1)                    # LSTM: every step; CNN: every M tile
    w_fetches = w_b * np.where(t.fit, 1, refetch)
    # a table activation's table: read once, at the layer's start (mensa.model.ws_stream.table_delay)
    t.dram_w = np.where(resident, 0.0, w_fetches + (p_b - w_b)) + _col(lt.table) * TABLE_ENTRIES
    # The input crosses the bus once per M tile window (WS: the windows' halo rows again); an
    # OS array re-reads it for every N tile when it does not fit half the activation buffer.
    in_reads = np.where(acc.os, np.where(in_b > acc.abuf / 2, np.maximum(cdiv(N1, acc.cols), 1), 1),
                        tiling.halo)
    t.dram_a = np.where(spill, in_b * in_reads + out_b, 0.0)
    t.compute, t.load, t.fill = c1 + c2 + vec, l1 + l2, f1 + f2 + vec_fill
    if not bool(acc.os.all()):
        t.stream, t.window, t.boundary = ws_stream(M1, K1, N1, G, R, t.fit, spill, tiling, taps, c1 + l1,
                                                   _col(lt.table), acc, cal)
    t.first = np.minimum(t.dram_w + t.dram_a,
                         acc.rows * acc.cols + np.where(spill, acc.rows * np.minimum(M1, acc.rows), 0))
    t.wbuf = wr1 + wr2 + w_fetches
    t.abuf = ar1 + ar2 + np.where(spill, in_b * in_reads, in_b) + out_b
    t.accbuf = acc1 + acc2
    return t


def _template(lt, acc, c1, l1, c2):
    """The Edge TPU template's own terms (:class:`~mensa.core.config.EdgeTpuTemplate`): depthwise layers on
    the SIMD lanes (every MAC lane busy, no weight loads), the products at the template's sustained
    ``efficiency``, and the layers whose parameters the parameter cache keeps (no weight reads)."""
    dw = (_col(lt.op) == _OP_CODE[Op.DEPTHWISE]) & acc.dw_lanes
    lanes = cdiv(_col(lt.macs), acc.rows * acc.cols)
    c1 = np.where(dw, lanes, c1 / acc.efficiency)
    l1 = np.where(dw, 0.0, l1)
    c2 = c2 / acc.efficiency
    resident = acc.param_cache & (_col(lt.param_upto) <= acc.wbuf)
    return c1, l1, c2, resident


def _nearmem(lt, acc, cal, vec, vec_fill, any_nm):
    """The near-memory units' terms: the products' cycles, vault and local buffer bytes, and the
    accelerator's DMA of the input and output vectors (the weights stay in the vaults)."""
    w_b, p_b = _col(lt.w_bytes), _col(lt.param_bytes)
    t = _Terms(fit=p_b <= acc.vault_cap)
    if not any_nm:
        return t
    M, K, N, R = _col(lt.m1) * _col(lt.g), _col(lt.k1), _col(lt.n1), _col(lt.r)
    compute, load, fill, vault, local = nearmem_gemm(M, K, N, R, acc, cal)
    lstm = _col(lt.op == _OP_CODE[Op.LSTM])
    H, P = N / 4, _col(lt.n2)       # an LSTM's cells (four gates each) and projection outputs
    C = K - np.where(P > 0, P, H)   # its inputs
    if lstm.any():
        lc, ll, lf, lv, llo = nearmem_lstm(M, C, H, P, R, acc, cal)
        compute, load, fill = np.where(lstm, lc, compute), np.where(lstm, ll, load), np.where(lstm, lf, fill)
        vault, local = np.where(lstm, lv, vault), np.where(lstm, llo, local)
    # The LSTM's cell runs beside the lanes (its cycles are nearmem_lstm's); other element-wise ops
    # take the vector lanes' terms.
    t.compute, t.load, t.fill = compute + np.where(lstm, 0.0, vec), load, fill + np.where(lstm, 0.0, vec_fill)
    # weights, biases and activations live in the stack
    t.vault = vault + (p_b - w_b) + _col(lt.in_bytes) + _col(lt.out_bytes)
    t.local = local
    # The accelerator reads every input vector (an LSTM's x_t) from DRAM and writes every output
    # vector (h_t) back; the unit's output beats are whole groups of lanes.
    product = M > 0
    vectors = M * R
    out_beats = acc.vaults * cdiv(np.where(lstm, np.where(P > 0, P, H), N), acc.vaults * acc.lanes)
    t.written = np.where(product, _col(lt.out_bytes), 0.0)
    t.dram_a = np.where(product, _col(lt.in_bytes), 0.0) + t.written
    # the last vector's beats the gather sends after the vaults' last MAC: the later vaults' groups
    # (an LSTM's h_t leaves the cell a block at a time, its projection's groups through the gather)
    late = (acc.vaults - 1) * cdiv(np.where(lstm, np.where(P > 0, P, 0), N), acc.vaults * acc.lanes)
    t.dma = np.where(product, nearmem_dma(vectors, np.where(lstm, C, K), out_beats, late, acc, cal), 0.0)
    return t


def cycle_errors(records, *, calibration=Calibration(), core=False):
    """Relative error of the model against measured cycles: the hook for RTL validation.

    Parameters
    ----------
    records : sequence of ``(layer, accelerator config, dram config, measured cycles)``
        One per RTL run (the layer's whole run, DMA included, as the
        accelerator's cycle counter reports it; with ``core``, the compute core's).
    core : bool
        Compare ``core_cycles`` (no DMA or DRAM term) instead of ``cycles``.

    Returns
    -------
    ``(model cycles, relative errors)`` as arrays; error = model / measured - 1.
    """
    field = "core_cycles" if core else "cycles"
    model = np.array([getattr(evaluate([l], [a], d, calibration=calibration), field)[0, 0]
                      for l, a, d, _ in records])
    measured = np.array([float(m) for *_, m in records])
    return model, model / measured - 1
