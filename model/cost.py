"""The analytical cost model: cycles and bytes moved for (layer, accelerator) pairs.

Every layer is lowered once to at most two matrix products per *step*
(:class:`LayerTable`): ``M x K`` activations times ``K x N`` weights, repeated
over ``G`` independent groups (depthwise channels) within a step and over ``R``
dependent steps (LSTM time steps, each waiting for the previous one), plus an
element-wise part (add, multiply, pooling, concatenation, LSTM gates). Every
accelerator is reduced to a row of numbers (:class:`AcceleratorTable`). The
model is then closed-form numpy over the whole ``layers x accelerators`` grid,
so sweeps evaluate hundreds of thousands of pairs per second.

The structure follows the RTL so that its constants can be calibrated against
measured cycles (:class:`Calibration`):

weight-stationary systolic array (``rows`` x ``cols``)
    The reduction K is tiled by ``rows`` (a conv's tap by tap, each tap's input
    channels padded to whole tiles, as the sequencer walks it), the output channels
    N by ``cols``, and M as the compiler tiles it
    (:meth:`mensa.hw.sequencer.GemmGeometry.tiling`): the most whole output rows
    whose partial sums fit the accumulator buffer and, for an input streamed from
    DRAM, whose input window fits a half of the activation scratchpad, else the
    longest part of a row (:func:`_ws_tiling`). Per weight tile the
    array takes ``rows`` weight beats into its second weight bank, then one
    activation vector per cycle. A bank is free to reload only when the last
    activation of its tile has left the far corner PE (``rows + cols - 1``
    cycles after it entered), so a tile's first activation waits until
    ``2 rows + cols - 1`` cycles after the last activation of the tile two
    before it: tiles shorter than that expose the difference, split between
    consecutive tiles (see :func:`_ws_exposed`). The pipeline runs across
    tiles, so the first weight load (``rows``) and the fill and drain
    (``rows + cols`` plus the PEs' multiplier stages and the output FIFO,
    ``Calibration.ws_fill_extra``) are paid once per step.
output-stationary systolic array
    M is tiled by ``rows``, N by ``cols``; per tile K operand beats, then the
    ``rows`` result rows drain while the next tile computes, but a tile's last
    beat waits until the previous tile's last result row is out, ``rows + cols
    + 1`` cycles (plus the PEs' multiplier stages, ``Calibration.os_drain_extra``)
    after its last beat: a tile costs ``max(K, rows + cols + 1 + os_drain_extra)``
    cycles, and the last tile's results leave ``rows + cols + os_fill_extra``
    cycles after its last beat.
near-memory unit (``vaults`` x ``lanes``)
    Weights live in the vaults: vault ``v`` holds ``groups = ceil(N / (vaults
    lanes))`` groups of ``lanes`` output channels, each a header of
    ``HEADER_WORDS`` lane words (bias, requantisation) and K weight lane words.
    Every input vector is broadcast to every vault (ping-pong, the next loads
    while the current computes) and streams the whole image again: one lane
    word per cycle (one input element times ``lanes`` weights), or ``lanes /
    (vault_bits / 8)`` cycles per lane word when the vault port is narrower.
    The results of every vault leave through one gather, vault by vault; the
    vault read latency (the DRAM config's ``latency_cycles``) is paid once.
DRAM (shared)
    Bytes per cycle are the smaller of the AXI width and the DRAM bandwidth at
    the accelerator's clock; reads and writes have their own AXI channels and
    share the DRAM's bandwidth. A weight-stationary array is fed as the RTL's
    sequencer feeds it (:func:`_ws_stream`, validated against the whole
    accelerator at several DRAM latencies): per M tile the loader reads the
    tile's input window (its input rows, or for part of a row its columns, every
    channel tile) into a half of the ping-pong activation scratchpad, one command
    per channel tile (per row and channel tile for part of a row); the walk reads
    per N tile a quantisation record and per K tile the weight vectors, and the
    array takes its activations from the scratchpad at a vector per cycle. Every
    vector is in whole bus words, in bursts of at most ``memory.max_burst`` beats
    with :data:`READS_IN_FLIGHT` of them in flight. The walk streams a window behind
    the loader (it reads only words already written, each K tile's weights requested
    once its channel tile's plane is), so of the first window what the bus takes
    beyond the first tap's K tiles is exposed, with the first read's latency
    (``dma``); the array then waits (``stall``) wherever the rest of the read stream
    -- bound by the bus, by the reads in flight (each burst holds a slot for the
    latency, a longest path through the bursts) or by the weight banks' turnaround
    with the weights on the bus -- is slower than the array alone, or, at every later
    M tile, for what is left of its window, streamed the same way: while the tile
    before computes, the walk keeps ``ROUTE_DEPTH`` segments of K tiles queued,
    their weight reads holding read slots until the array's banks take them, and
    the loader gets the slots they leave. A window's bursts are cut per command (a
    full tile's and a short tile's commands apart), and the loader alone bounds the
    stream: it asks for a window only once the one before is all in, so per window its
    reads drain (a burst's hold) and the next tile's quantisation record, asked behind
    them and taken once the record buffer is free, adds a hold; with weights re-read, each
    N tile's record, answered in order, blocks the read slots until the N tile before is
    requantised. Other cores: only the first tile's
    transfer (plus the DRAM latency) is exposed, and a stall is added when the
    layer's DRAM time exceeds its compute time.

Activations: a layer whose input and output fit together in the activation
buffer keeps them on chip; one that does not streams its input from DRAM and
writes its output there. A WS array reads the input once per M tile window:
the input once, plus the kernel's halo rows (columns) that neighbouring tiles
share (:attr:`Cost.dram_act_bytes`); an OS array (no sequencer in the RTL yet)
reads it again for every N tile when it does not fit half the buffer. Moving an
activation between accelerators is charged by the scheduler
(:mod:`mensa.model.schedule`), not here. Weights are read from DRAM once per
inference when they fit the weight buffer, else once per M tile (CNN layers) or
once per time step (LSTM) (the RTL keeps them when its padded weight tiles fit).

Units: cycles of the accelerator's clock, bytes.
"""

import math
from dataclasses import dataclass

import numpy as np

from mensa.contract.gemm import ROUTE_DEPTH
from mensa.contract.nearmem import HEADER_WORDS
from mensa.contract.numeric import ACC_BITS, READS_IN_FLIGHT
from mensa.core.config import CoreKind, Dataflow, DramConfig
from mensa.core.ir import Op

__all__ = ["Calibration", "LayerTable", "AcceleratorTable", "Cost", "evaluate", "SUPPORTED_OPS",
           "dram_bytes_per_cycle", "buffer_bytes", "cycle_errors"]

_OPS = list(Op)
_OP_CODE = {op: i for i, op in enumerate(_OPS)}

#: Ops each core kind can run. A near-memory unit has no window (im2col) addressing.
SUPPORTED_OPS = {
    CoreKind.SYSTOLIC: frozenset(Op),
    CoreKind.NEARMEM: frozenset({Op.FC, Op.LSTM, Op.ADD, Op.MUL, Op.CONCAT, Op.GLOBAL_AVGPOOL}),
}


_SUPPORTED_ROW = {kind: [op in ops for op in _OPS] for kind, ops in SUPPORTED_OPS.items()}

#: Bytes of one output channel's quantisation record, read once per N tile: int32 bias,
#: int32 multiplier, int8 shift (mensa.contract.gemm_program packs them so).
QUANT_RECORD_BYTES = ACC_BITS // 8 + 4 + 1


@dataclass(frozen=True)
class Calibration:
    """The model's per-microarchitecture constants, to be fitted to RTL cycle counts.

    Defaults are the RTL's measured behaviour, systolic arrays and near-memory
    unit (gen/validate.py runs the RTL; tests/rtl/test_cost_vs_rtl.py asserts the
    error bound with them).
    """
    ws_fill_extra: float = 6.0        # cycles beyond rows + cols per WS step (fill and drain): the PEs'
    #                                   4 multiplier register stages and the output FIFO's 2 cycles
    ws_retire_extra: float = 0.0      # cycles beyond rows + cols - 1 before a WS weight bank is free again
    os_fill_extra: float = 4.0        # cycles beyond rows + cols from an OS step's last beat to its last result
    #                                   (the PEs' 4 multiplier register stages)
    os_drain_extra: float = 4.0       # cycles beyond rows + cols + 1 from an OS tile's last beat to the next's
    #                                   (the same 4 stages)
    nearmem_pipeline: float = 5.0     # cycles beyond the vault latency to the first MAC, plus the last result's
    nearmem_input: float = 3.0        # the same beyond the first vector's input beats, when they are slower
    vector_pipeline: float = 2.0      # element-wise unit stages
    dma_setup: float = 18.0           # DMA-fed layer, beyond the DRAM latency and the array's fill: the first
    #                                   read's issue, the requantiser, the last output write and its response
    dram_turnaround: float = 2.0      # cycles beyond the DRAM latency that a read keeps its slot in flight
    #                                   (address and data handshakes, the slot's bookkeeping FIFO)
    ws_loader_slots: float = 0.5      # DMA read slots a WS loader gets beyond those its walk's queued K
    #                                   tiles leave, on average (the queue drains as the banks take weights)


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
    the largest power of two that fits, as the RTL sizes it (:func:`mensa.hw.sequencer.act_depth`)."""
    vectors = int(act_bytes) // (2 * rows)
    return vectors and 1 << (vectors.bit_length() - 1)


class LayerTable:
    """Layers lowered to the numbers the model needs, one numpy array per quantity (shape ``(L,)``).

    Parameters
    ----------
    layers : sequence of :class:`~mensa.core.ir.Layer`
    """

    _FIELDS = ("op", "m1", "k1", "n1", "g", "r", "m2", "k2", "n2", "ew_elems", "ew_ops",
               "in_bytes", "out_bytes", "w_bytes", "param_bytes", "macs", "out_elems",
               "images", "in_h", "in_w", "out_h", "out_w", "span_h", "span_w", "stride_h", "stride_w",
               "pad_top", "pad_left", "pad_w", "in_c", "taps")

    def __init__(self, layers):
        layers = tuple(layers)
        table = np.array([self._lower(l) for l in layers], dtype=np.float64).reshape(len(layers), len(self._FIELDS))
        self.layers = layers
        self.names = tuple(l.name for l in layers)
        for name, column in zip(self._FIELDS, table.T.copy()):
            setattr(self, name, column)
        self.ops = tuple(l.op for l in layers)

    def __len__(self):
        return len(self.layers)

    @staticmethod
    def _lower(l):
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
        elif op is Op.GLOBAL_AVGPOOL:
            ew_elems, ew_ops = out_elems, math.prod(l.in_shape[1:-1])
        elif op in (Op.ADD, Op.MUL):
            ew_elems, ew_ops = out_elems, 1 + len(l.extra_in_shapes)
        elif op is Op.CONCAT:
            ew_elems, ew_ops = out_elems, 1    # one pass through the vector unit to re-lay the channels
        else:   # pragma: no cover - a new Op must be given a lowering here
            raise NotImplementedError(f"cost model has no lowering for {op}")
        bias = 4 * (4 * l.hidden if op is Op.LSTM else l.out_channels) if l.bias and w_bytes else 0
        # The first product's input window geometry, as the WS sequencer walks it
        # (mensa.hw.sequencer.LayerWalk, laid out by mensa.contract.gemm_program): an image of in_h x in_w
        # pixels of in_c channels per image; an FC, LSTM or pointwise product is one row of m1
        # pixels.
        # A WS conv walks its kernel tap by tap, each tap's input channels in tiles of the
        # array's rows (``taps`` K walks of k1 / taps).
        # A pointwise conv (1x1, stride 1, no padding) is one row of all its pixels, as an FC layer.
        window = (0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1)
        pointwise = op is Op.CONV2D and (l.kernel, l.stride, tuple(l.padding)) == ((1, 1), (1, 1), (0, 0, 0, 0))
        if op in (Op.CONV2D, Op.DEPTHWISE) and not pointwise:
            n, ih, iw, c = l.in_shape
            _, oh, ow, _ = l.out_shape
            (kh, kw), (dh, dw) = l.kernel, l.dilation
            window = (n, ih, iw, oh, ow, (kh - 1) * dh + 1, (kw - 1) * dw + 1, *l.stride, l.padding[0],
                      l.padding[2], l.padding[2] + l.padding[3], c, kh * kw if op is Op.CONV2D else 1)
        elif m1:
            window = (1, 1, m1, 1, m1, 1, 1, 1, 1, 0, 0, 0, k1, 1)
        return (_OP_CODE[op], m1, k1, n1, g, r, m2, k2, n2, ew_elems, ew_ops, in_bytes, out_elems,
                w_bytes, w_bytes + bias, l.macs, out_elems, *window)


class AcceleratorTable:
    """Accelerators reduced to the numbers the model needs, one array per quantity (shape ``(A,)``).

    Parameters
    ----------
    accelerators : sequence of :class:`~mensa.core.config.AcceleratorConfig`
    dram : :class:`~mensa.core.config.DramConfig` or a sequence of them (one per accelerator)
    """

    def __init__(self, accelerators, dram=DramConfig()):
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
                    _act_depth(act, x.array.rows))
        table = np.array([numbers(x, d) for x, d in zip(accs, drams)], dtype=np.float64).reshape(len(accs), 18)
        (self.rows, self.cols, self.clock_mhz, self.wbuf, self.abuf, self.accbuf, self.acc_bytes, self.bpc,
         self.latency, self.vaults, self.lanes, self.vault_bpc, self.vault_cap, self.local,
         self.word_bytes, self.max_burst, self.mem_bpc, self.act_depth) = table.T.copy()
        self.nearmem = np.array([x.kind is CoreKind.NEARMEM for x in accs], dtype=bool)
        self.os = np.array([x.array.dataflow is Dataflow.OUTPUT_STATIONARY for x in accs], dtype=bool)
        # Element-wise lanes: the post-processing row of a systolic array, or every near-memory lane.
        self.vec_lanes = np.where(self.nearmem, self.vaults * self.lanes, self.cols)
        self.peak_macs = np.where(self.nearmem, self.vaults * self.lanes, self.rows * self.cols)
        self.supported = np.array([_SUPPORTED_ROW[x.kind] for x in accs], dtype=bool).reshape(len(accs), len(_OPS))

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
    latency, ``stall`` DRAM-bandwidth stalls. ``cycles`` is ``inf`` where the
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
        if layer.op not in SUPPORTED_OPS[acc.kind]:
            allowed = ", ".join(sorted(op.value for op in SUPPORTED_OPS[acc.kind]))
            return f"{acc.name} ({acc.kind.value}) cannot run {layer.op.value}; it runs {allowed}"
        return (f"{acc.name}: the layer's {int(self.layers.param_bytes[i])} parameter bytes exceed the vaults' "
                f"{int(self.accelerators.vault_cap[j])} bytes")

    def row(self, i, j):
        """Layer ``i`` on accelerator ``j`` as a plain dict of numbers."""
        return {f: (bool(getattr(self, f)[i, j]) if getattr(self, f).dtype == bool else float(getattr(self, f)[i, j]))
                for f in _COST_FIELDS}


def _cdiv(a, b):
    return np.ceil(a / np.maximum(b, 1))


def _alternating(n, prev, x, lo):
    """Sum and last of ``n`` terms ``e_i = max(x - e_(i-1), lo, 0)`` from ``e_0 = prev``.

    From the third term on the sequence repeats with period two (``a, max(x - a,
    lo, 0), a, ...``), so four terms fix the whole sum.
    """
    lo = np.maximum(lo, 0)
    t1 = np.maximum(x - prev, lo)
    t2 = np.maximum(x - t1, lo)
    t3 = np.maximum(x - t2, lo)
    t4 = np.maximum(x - t3, lo)
    rest = np.maximum(n - 2, 0)
    odd = np.ceil(rest / 2)
    total = np.minimum(n, 1) * t1 + (n >= 2) * t2 + odd * t3 + (rest - odd) * t4
    last = np.where(n <= 2, np.where(n == 0, prev, np.where(n == 1, t1, t2)), np.where(rest % 2 == 1, t3, t4))
    return total, last


def _ws_exposed(n_a, m_a, n_b, m_b, rows, cols, cal):
    """Cycles a WS array waits for weights: ``n_a`` tiles of ``m_a`` vectors, then ``n_b`` of ``m_b``.

    Tile ``i``'s first vector enters no earlier than ``span = 2 rows + cols - 1``
    cycles after tile ``i - 2``'s last (its bank retires, then reloads ``rows``
    beats), and no earlier than ``rows`` cycles after tile ``i - 1``'s load (one
    weight port), so it waits ``e_i = max(span - m_(i-1) - e_(i-1), rows -
    m_(i-1), 0)``. The first load is not counted here; ``e_0 = rows + cols - 1``
    makes ``e_1 = max(0, rows - m_0)`` (tile 1's weights load while tile 0 runs).
    """
    retire = rows + cols - 1 + cal.ws_retire_extra
    span = retire + rows
    # Only tiles shorter than the span wait (m_b <= m_a): evaluate those pairs alone.
    n_a, m_a, n_b, m_b, retire, span, rows = np.broadcast_arrays(n_a, m_a, n_b, m_b, retire, span, rows)
    out = np.zeros(m_b.shape)
    short = m_b < span
    if short.any():
        n_a, m_a, n_b, m_b, retire, span, rows = (v[short] for v in (n_a, m_a, n_b, m_b, retire, span, rows))
        # Tiles 1 .. n_a follow an m_a tile (tile n_a is the first m_b tile when n_a > 0).
        sum_a, last_a = _alternating(n_a, retire, span - m_a, rows - m_a)
        sum_b, _ = _alternating(np.maximum(n_b - 1, 0), last_a, span - m_b, rows - m_b)
        out[short] = sum_a + sum_b
    return out


@dataclass
class _Tiling:
    """The M tiles of a WS product (:func:`_ws_tiling`), every field ``(L, A)`` or broadcastable."""
    pixels: object        # output pixels of a full M tile
    tiles: object         # M tiles of the product (all images)
    short: object         # pixels of a short tile (the last rows of an image, the last part of a row)
    shorts: object        # how many tiles are short
    vectors: object       # input vectors (rows bytes) all the windows read, every channel tile
    first: object         # input vectors of the first tile's window
    commands: object      # DMA commands reading the windows: one per channel tile, per row for part rows
    halo: object          # window pixels read over input pixels (>= 1 with halo rows shared by tiles)
    segments: object      # activation segments the walk queues per K tile (a row's read and its padding)
    run: object           # input vectors of one DMA command of a full tile's window (one channel tile's
    #                       rows, or one row's columns)
    run_short: object     # the same of a short tile's window


class _Columns:
    """The :class:`LayerTable`'s window columns as ``(L, 1)`` arrays (``col`` makes one)."""

    def __init__(self, lt, col):
        for name in ("images", "in_h", "in_w", "out_h", "out_w", "span_h", "span_w", "stride_h", "stride_w",
                     "pad_top", "pad_left", "pad_w", "in_c", "taps"):
            setattr(self, name, col(getattr(lt, name)))


def _systolic_tiles(M, acc):
    """``(pixels, tiles, short, shorts)``: M tiles of what the accumulator buffer holds alone."""
    Mt = np.minimum(M, np.maximum(np.floor(acc.accbuf / (acc.cols * acc.acc_bytes)), 1))
    mt = np.where(M > 0, _cdiv(M, Mt), 1.0)
    Mp = M - (mt - 1) * Mt
    return Mt, mt, Mp, np.where(Mp < Mt, 1.0, 0.0)


def _clipped(pad, step, last=None):
    """Window rows lost to ``pad`` rows of padding by tiles ``step`` rows apart from the edge:
    ``sum max(pad - j step, 0)``; ``last``: the tile at the edge is ``last`` rows (not ``step``) long."""
    if last is not None:
        return np.maximum(pad, 0) + _clipped(pad - last, step)
    pad = np.maximum(pad, 0)
    n = np.ceil(pad / step)
    return n * pad - step * n * (n - 1) / 2


def _ws_tiling(w, acc):
    """The WS sequencer's M tiles (:meth:`mensa.hw.sequencer.GemmGeometry.tiling`), vectorised.

    The most whole output rows whose partial sums fit the accumulator buffer (``cols`` int32
    lanes a pixel) and whose input window -- the input rows under their kernels, every
    channel tile of ``rows`` channels -- fits a half of the activation scratchpad; else the
    longest part of a row that fits both. A pixel whose window alone overflows the half is
    taken as a one-pixel tile (the compiler refuses it). ``w``: the :class:`LayerTable`'s
    window columns, ``(L, 1)``.
    """
    ct = np.maximum(_cdiv(w.in_c, acc.rows), 1)                         # channel tiles
    ih, iw, oh, ow = (np.maximum(v, 1) for v in (w.in_h, w.in_w, w.out_h, w.out_w))
    sh, sw, kh, kw = w.stride_h, w.stride_w, w.span_h, w.span_w
    acc_px = np.maximum(np.floor(acc.accbuf / (acc.cols * acc.acc_bytes)), 1)
    depth = acc.act_depth
    # whole rows: input rows a window may hold, then output rows whose kernels they cover
    h_max = np.floor(depth / (ct * iw))
    r_win = np.where(h_max >= ih, oh, np.floor((h_max - kh) / sh) + 1)
    r = np.minimum(np.minimum(oh, np.floor(acc_px / ow)), r_win)
    whole = r >= 1
    # part of a row: the kernel's rows, input columns a window may hold
    in_rows = np.minimum(ih, kh)
    c_max = np.floor(depth / (ct * in_rows))
    c_win = np.where(c_max >= iw, ow, np.floor((c_max - kw) / sw) + 1)
    c = np.maximum(np.minimum(np.minimum(ow, acc_px), c_win), 1)
    t_rows, t_cols = np.where(whole, r, 1), np.where(whole, ow, c)
    per_row = np.where(whole, 1, _cdiv(ow, t_cols))                     # tiles across an output row
    per_image = np.where(whole, _cdiv(oh, t_rows), oh * per_row)
    pixels = t_rows * t_cols
    short = np.where(whole, (oh - (per_image - 1) * t_rows) * ow, ow - (per_row - 1) * t_cols)
    shorts = np.where(short < pixels, w.images * np.where(whole, 1, oh), 0)
    # Windows, clipped to the input: neighbouring tiles share their kernels' halo rows (columns);
    # the tiles nearest an edge lose the padding rows (columns) their windows reach into. A tile
    # of several rows reads whole input rows; one of a single row only the columns under it.
    pad_h = np.maximum((oh - 1) * sh + kh - ih, 0)
    pad_w = np.maximum((ow - 1) * sw + kw - iw, 0)
    row_step, last_rows = np.where(whole, t_rows, 1) * sh, np.where(whole, oh - (per_image - 1) * t_rows, 1)
    rows_read = (np.where(whole, (oh - per_image) * sh + per_image * kh, oh * kh)
                 - _clipped(w.pad_top, row_step) - _clipped(pad_h - w.pad_top, row_step, last_rows * sh))
    col_step, last_cols = t_cols * sw, ow - (per_row - 1) * t_cols
    cols_read = np.where(t_rows > 1, iw, (ow - per_row) * sw + per_row * kw
                         - _clipped(w.pad_left, col_step) - _clipped(pad_w - w.pad_left, col_step, last_cols * sw))
    windows = np.where(whole, per_image, oh)                            # row windows per image
    pixels_read = w.images * np.maximum(rows_read, windows) * cols_read
    first_rows = np.clip((t_rows - 1) * sh + kh - w.pad_top, 0, ih)
    first_cols = np.where(t_rows > 1, iw, np.clip((t_cols - 1) * sw + kw - w.pad_left, 0, iw))
    # A row is a scratchpad read and, under the taps that reach into the left or right
    # padding, a zero-point segment besides.
    pads = (np.minimum(w.pad_left, kw - 1) + np.minimum(w.pad_w - w.pad_left, kw - 1)) / kw
    segments = t_rows * (1 + pads)
    # One command's vectors (bursts are cut from each command alone): a full tile's window,
    # interior, and a short tile's.
    run = np.where(whole, np.minimum((t_rows - 1) * sh + kh, ih) * iw, np.minimum((t_cols - 1) * sw + kw, iw))
    s_px = np.where(whole, last_rows, last_cols)
    run_short = np.where(whole, np.minimum((s_px - 1) * sh + kh, ih) * iw, np.minimum((s_px - 1) * sw + kw, iw))
    live = w.in_h > 0
    tiles = np.where(live, w.images * per_image, 1.0)
    return _Tiling(run=run, run_short=run_short, pixels=pixels, tiles=tiles, short=short, shorts=shorts,
                   vectors=np.where(live, pixels_read * ct, 0.0),
                   first=np.where(live, first_rows * first_cols * ct, 0.0),
                   commands=np.where(live, tiles * ct * np.where(whole, 1, in_rows), 0.0),
                   halo=np.where(live, pixels_read / np.maximum(w.images * ih * iw, 1), 1.0), segments=segments)


def _systolic_gemm(M, K, N, G, R, acc, cal, tiling=None, taps=1):
    """Cycles and buffer bytes of ``G x R`` products ``M x K @ K x N`` on the systolic arrays.

    ``tiling``: a WS product's M tiles (:func:`_ws_tiling`); without it, the tiles the
    accumulator buffer holds (a product whose input stays on chip). ``taps``: a WS array
    walks K as ``taps`` kernel taps of ``K / taps`` channels each, tiled by ``rows``. Only the dataflows
    present are computed (a single pair is evaluated often).
    """
    rows, cols = acc.rows, acc.cols
    live = M > 0
    nt = _cdiv(N, cols)
    any_os, any_ws = bool(acc.os.any()), not bool(acc.os.all())
    ws = os_ = None
    if any_ws:
        kt = taps * _cdiv(K / taps, rows)
        per_m = kt * nt * G
        if tiling is None:
            # M tile: the partial sums of one N tile held in the accumulator buffer.
            Mt = np.minimum(M, np.maximum(np.floor(acc.accbuf / (cols * acc.acc_bytes)), 1))
            mt = _cdiv(M, Mt)
            Mp, shorts = M - (mt - 1) * Mt, 1
        else:
            Mt, mt, Mp, shorts = tiling.pixels, tiling.tiles, tiling.short, np.maximum(tiling.shorts, 1)
            Mp = np.where(tiling.shorts > 0, Mp, Mt)
        # One activation vector per cycle per (K, N) tile, M tile by M tile (the short ones
        # last, as if together), each M tile through every group and (N, K) tile; weight waits
        # by _ws_exposed.
        ws = (kt * nt * M * G * R,
              R * (rows + _ws_exposed((mt - shorts) * per_m, Mt, shorts * per_m, Mp, rows, cols, cal)),
              R * (rows + cols + cal.ws_fill_extra),
              mt, 2 * kt)
    if any_os:
        # K operand beats per (M, N) tile; a tile's last beat waits for the previous tile's drain.
        os_mt = _cdiv(M, rows)
        os_tiles = os_mt * nt * G
        os_ = (os_tiles * K * R,
               R * (os_tiles - 1) * np.maximum(rows + cols + 1 + cal.os_drain_extra - K, 0),
               R * (rows + cols + cal.os_fill_extra),
               os_mt, 2)
    if ws is None or os_ is None:
        compute, load, fill, m_tiles, acc_passes = ws or os_
    else:
        compute, load, fill, m_tiles, acc_passes = (np.where(acc.os, o, w) for o, w in zip(os_, ws))
    # Buffer traffic: weights into the array once per M tile, activations once per N tile.
    w_reads = K * N * G * R * m_tiles
    a_reads = M * K * G * R * nt
    acc_rw = M * N * G * R * acc.acc_bytes * acc_passes
    return compute, np.where(live, load, 0.0), np.where(live, fill, 0.0), w_reads, a_reads, acc_rw, m_tiles


def _ws_stream(M, K, N, G, R, fit, spill, tiling, taps, busy, acc, cal):
    """Cycles of the DRAM read stream of a DMA-fed WS array (hw/sequencer.py), of its first window
    and of its later windows' exposed rest: ``(stream, first, later)``.

    Per M tile the sequencer's loader reads the tile's input window (``spill``: activations
    from DRAM) into a half of the activation scratchpad, one command per channel tile (per
    window row and channel tile for part of a row); the walk then reads, per N tile, the
    tile's quantisation record and per K tile ``rows`` weight vectors, while the array takes
    the activations from the scratchpad at a vector per cycle. Every vector is in whole bus
    words, each read one command split into bursts of at most ``max_burst`` beats. The walk
    streams a window behind the loader: of the first window, what the bus takes beyond the
    first tap's K tiles is exposed (returned apart); of every later one, what the loader could
    not read while the tile before computed (returned apart too). The whole stream --
    windows, records and weights -- overlaps the compute otherwise. Four bounds on it, the
    largest wins:

    bus
        every word over the bus, ``word_bytes / bytes per cycle`` cycles each;
    reads in flight
        a burst holds one of :data:`READS_IN_FLIGHT` slots from its issue to its last
        beat (the DRAM latency, ``Calibration.dram_turnaround``, its beats), so the stream
        takes at least ``(beats + (bursts - F) * latency') / F`` (the first ``F`` bursts'
        latency is the exposed first latency, :attr:`Cost.dma`); a K tile's weight bursts
        repeat from tile to tile (:func:`_burst_chain`);
    weight banks
        a K tile's weights load only into a retired bank, ``rows + cols - 1`` cycles after the
        last activation of the tile two before, so two K tiles take at least that plus one
        tile's weight words and activations;
    loader
        the loader asks for a window only once every word of the one before is in, so its
        bursts alone take the windows' reads-in-flight time plus, per later window, its
        drain (a hold) and the next tile's quantisation record (asked behind the window,
        taken once the record buffer is free: another hold and its words). With the
        weights re-read, each N tile's record blocks the read slots (the DMA answers in
        order) through the last :data:`READS_IN_FLIGHT` K tiles of the N tile before and
        the array's drain, beyond the hold the slots take anyway.

    A window's bursts are cut per command: a full tile's commands of ``tiling.run``
    vectors, a short tile's of ``tiling.run_short``.

    ``fit``: the weights stay on chip after their first pass (read once), else every pass
    over M tiles, groups and steps reads them again.
    """
    rows, cols, wb = acc.rows, acc.cols, acc.word_bytes
    burst = acc.max_burst
    F = READS_IN_FLIGHT
    cpw = np.maximum(wb / np.maximum(acc.bpc, 1e-9), 1.0)      # cycles per bus word
    kt, nt = taps * _cdiv(K / taps, rows), _cdiv(N, cols)
    mt = tiling.tiles
    passes = mt * G * R
    fw = np.where(fit, 1 / np.maximum(passes, 1), 1.0)          # share of K tiles that read weights
    tiles = nt * passes                                         # N tiles, one quantisation record each
    slots = kt * tiles                                          # K tiles
    aw, w_words, qw = _cdiv(rows, wb), rows * _cdiv(cols, wb), _cdiv(QUANT_RECORD_BYTES * cols, wb)
    # The windows: every step reads its own; a command's words in bursts.
    # A command is cut into bursts on its own: a full tile's commands of ``run`` vectors, a short
    # tile's of ``run_short`` (a command one word over a burst takes two).
    per_tile = np.maximum(tiling.commands, 1) / np.maximum(mt, 1)   # commands of one window
    shorts = np.minimum(tiling.shorts, mt)
    win_words = np.where(spill, R * tiling.vectors * aw, 0.0)
    win_bursts = np.where(spill, R * per_tile * ((mt - shorts) * _cdiv(tiling.run * aw, burst)
                                                 + shorts * _cdiv(tiling.run_short * aw, burst)), 0.0)
    first_words = np.where(spill, tiling.first * aw, 0.0)
    first_bursts = np.where(spill, per_tile * _cdiv(first_words / per_tile, burst), 0.0)
    burst_words = np.maximum(win_words / np.maximum(win_bursts, 1), 1)   # words of a window burst
    held = acc.latency + cal.dram_turnaround
    rest_words = win_words - first_words
    words = tiles * qw + slots * fw * w_words + win_words
    bursts = tiles * _cdiv(qw, burst) + slots * fw * _cdiv(w_words, burst) + win_bursts
    bus = words * cpw
    # Reads in flight: a K tile's weight bursts repeat from tile to tile, so their rate is the
    # longest path per tile through them (:func:`_burst_chain`); the quantisation records ride on
    # the bus; the windows' bursts take their slots besides. The first latency is in Cost.dma.
    fw1 = fw >= 1
    per_tile = _burst_chain(w_words, 0.0, burst, held, cpw)
    windows = (win_words * cpw + np.maximum(win_bursts - F, 0) * held) / F
    inflight = np.where(fw1, tiles * qw * cpw + slots * per_tile + windows,
                        (bus + np.maximum(bursts - F, 0) * held) / F)
    # The loader asks for the next window only once every word of this one is in (it commits the
    # half first), so the loader alone drains its reads once per window: the last burst's hold; and
    # the next tile's quantisation record, asked behind those words and taken only once the record
    # buffer is free (the tile before requantised), adds a read's hold and its words.
    drain = np.maximum(mt * R - 1, 0) * (2 * held + qw * cpw)
    inflight = np.maximum(inflight, np.where(spill, windows + drain, 0.0))
    # The DMA answers in order, and a quantisation record's words are taken only once the record
    # buffer is free (the N tile before requantised): the next N tile's record, asked behind the
    # last K tiles' weights, blocks the read slots -- itself and the bursts behind it -- through
    # those ``F`` K tiles and the array's drain, beyond the hold they take anyway.
    k_px = np.maximum(tiling.pixels, 1.0)                      # cycles of a K tile's activations
    inflight = inflight + np.where(fw1 & spill, tiles * np.maximum(F * k_px + rows + cols + cal.ws_fill_extra
                                                                   - held, 0), 0.0)
    # A short layer is far from that steady state (no slot is reused before its first bursts end):
    # its sequence of record and weight bursts is solved exactly.
    short = fw1 & (mt == 1) & (bursts <= _SHORT_BURSTS) & (M > 0)
    if short.any():
        inflight = np.where(short, _short_stream(short, 0.0, w_words, qw, kt, tiles, burst, held, cpw) + windows,
                            inflight)
    act_cycles = M * kt * nt * G * R                            # from the scratchpad: a vector per cycle
    retire = rows + cols - 1 + cal.ws_retire_extra
    # Two K tiles per bank turnaround; an N tile's quantisation record delays the next tile's
    # weights on the bus beyond that when it is longer than half a turnaround.
    tile = w_words * cpw + act_cycles / np.maximum(slots, 1)
    turn = retire + tile
    bank = fw * tiles * (kt * turn / 2 + np.maximum(qw * cpw + tile - turn / 2, 0))
    # A window the walk streams behind the loader, K tile by K tile, each K tile's weights
    # requested once its channel tile's plane is: the first tap's channel tiles need every
    # plane, so what the bus takes for the window's ``words`` (``bursts``) and their weights
    # beyond those K tiles' compute is exposed (at least the first plane and its weights).
    per_m = kt * nt * G                                         # K tiles of an M tile
    k_time = np.maximum(tiling.pixels, busy / np.maximum(per_m * mt * R, 1))    # cycles per K tile
    ct = np.maximum(_cdiv(K / taps, rows), 1)

    def streamed(words, bursts, weights=1.0, latency=0.0):
        lead = words + weights * ct * w_words
        lead_bursts = bursts + weights * ct * _cdiv(w_words, burst)
        t_lead = np.maximum(lead * cpw, (lead * cpw + np.maximum(lead_bursts - F, 0) * held) / F)
        return np.where(words > 0, latency + np.maximum(t_lead - (ct - 1) * k_time,
                                                        (words / ct + weights * w_words) * cpw), 0.0)

    first = streamed(first_words, first_bursts)
    # The later windows load while the tile before computes. The walk keeps ``ROUTE_DEPTH /
    # segments`` K tiles queued, their weight reads holding read slots until the array's banks
    # take them; the loader's bursts get the slots left (and ``Calibration.ws_loader_slots``, on
    # average), and the DMA answers in order, so its words pass only behind weights the array
    # took. What is left of a window when its tile begins streams as the first one does (without
    # weights to read when they stay in the weight buffer), a read latency after the loader asks.
    ahead = ROUTE_DEPTH / (1 + tiling.segments)
    free = np.clip(F + cal.ws_loader_slots - ahead, 0, F)
    per_window = rest_words / np.maximum(mt - 1, 1)
    during = np.maximum(per_m - ahead, 0) * free * burst_words
    left = np.maximum(per_window - during, 0)                   # words, and their bursts
    later = streamed(left, left / burst_words, fw1, held)
    # Weights kept in the weight buffer are read in the first M tile only, so only the second
    # window competes with weights: its reads go out between them once the walk's queue is full
    # (a tile of more K tiles than its first tap's and the queue), ahead of the weights after.
    second = np.where(per_m > ct + ahead, np.maximum(per_window * cpw - ahead * k_time, 0) + held, 0.0)
    # and the first M tile reads them at the reads in flight's pace, which its K tiles may outrun.
    first_tile = per_m * np.maximum(per_tile - k_time, 0)
    boundary = R * np.where(fw1, (mt - 1) * later, np.minimum(mt - 1, 1) * (second + first_tile))
    live = M > 0
    return (np.where(live, np.maximum(np.maximum(bus, inflight), bank), 0.0), np.where(live, first, 0.0),
            np.where(live & spill, boundary, 0.0))


#: Longest K-tile burst pattern whose read rate is solved exactly; longer ones (hundreds of
#: activation rows per tile) take the average bound, within a burst of the exact one.
_CHAIN_BURSTS = 16


def _burst_chain(w_words, a_words, burst, held, cpw):
    """Cycles per K tile of a repeating pattern of reads with :data:`READS_IN_FLIGHT` in flight.

    A K tile reads ``w_words`` then ``a_words`` bus words, each in bursts of ``burst`` beats
    (the last one short). Burst ``j``'s data starts no earlier than the end of burst ``j - 1``
    (one bus) and than ``held`` cycles after the data of burst ``j - F`` ended (its slot is
    reused), so the stream's rate is the longest path per tile through edges ``j -> j + 1``
    (``b_j`` cycles) and ``j -> j + F`` (``b_j + held``): a dynamic programme over the pattern
    repeated (states: bursts still skipped by the last ``j -> j + F`` edge).
    """
    F = READS_IN_FLIGHT
    w_words, a_words, burst, held, cpw = np.broadcast_arrays(w_words, a_words, burst, held, cpw)
    nw, na = _cdiv(w_words, burst) * (w_words > 0), _cdiv(a_words, burst) * (a_words > 0)
    p = nw + na
    total = (w_words + a_words) * cpw
    out = np.maximum(total, (total + p * held) / F)        # the average bound: every burst's slot
    # Exact where the pattern is short and some j -> j + F edge can beat the bus (its latency
    # exceeds the three bursts it skips), once per distinct pattern.
    last_w = np.where(w_words > 0, w_words - (nw - 1) * burst, burst)       # the short last bursts
    last_a = np.where(a_words > 0, a_words - (na - 1) * burst, burst)
    least = np.where(p >= 3, np.minimum(np.minimum(last_w, last_a), burst), 0.0) * cpw
    exact = (p > 0) & (p <= _CHAIN_BURSTS) & (held > 3 * least)
    if exact.any():
        # w_words, burst, held and cpw are the accelerator's (the last axis); a_words the layer's
        col = np.broadcast_to(np.arange(p.shape[-1] if p.ndim else 1), p.shape)
        key = ((a_words[exact].astype(np.int64) * 2 + (w_words[exact] > 0)) * (col.max() + 1) + col[exact])
        _, first, back = np.unique(key, return_index=True, return_inverse=True)
        w_words, a_words, burst, held, cpw = (v[exact][first] for v in (w_words, a_words, burst, held, cpw))
        nw, na = _cdiv(w_words, burst) * (w_words > 0), _cdiv(a_words, burst) * (a_words > 0)
        p = nw + na
        rw, ra = w_words - (nw - 1) * burst, a_words - (na - 1) * burst
        periods = 8
        value = [np.zeros(p.shape)] + [np.full(p.shape, -np.inf)] * (F - 1)
        at = {periods // 2: np.zeros(p.shape), periods: np.zeros(p.shape)}
        for t in range(int(p.max()) * periods):
            i = t % p
            b = np.where(i < nw, np.where(i < nw - 1, burst, rw),
                         np.where(i - nw < na - 1, burst, ra)) * cpw
            v0 = value[0]
            value = [np.maximum(v0 + b, value[1]), *value[2:], v0 + b + held]
            for k in at:
                hit = t + 1 == k * p
                if hit.any():
                    at[k] = np.where(hit, np.maximum.reduce(value), at[k])
        out[exact] = ((at[periods] - at[periods // 2]) / (periods - periods // 2))[back.reshape(-1)]
    return out


#: Layers of at most this many bursts get their read stream solved burst by burst.
_SHORT_BURSTS = 128


def _short_stream(where, a_words, w_words, q_words, kt, tiles, burst, held, cpw):
    """Cycles of a whole read stream of few bursts: the longest path of :func:`_burst_chain` through
    the actual sequence (per N tile its record, then per K tile weights and activations), from the
    first burst's data to the last's end. Evaluated where ``where``, once per distinct layer shape.
    """
    F = READS_IN_FLIGHT
    shape = where.shape
    col = np.broadcast_to(np.arange(shape[-1] if len(shape) else 1), shape)
    fields = [np.broadcast_to(v, shape)[where] for v in (a_words, w_words, q_words, kt, tiles, burst, held, cpw)]
    # q, w, burst, held and cpw are the accelerator's (the last axis); a, kt and tiles the layer's,
    # each below 2**13 in a stream of at most _SHORT_BURSTS (<= 512) bursts
    a, kt, tiles = (f.astype(np.int64) for f in fields[0:1] + fields[3:5])
    key = ((a << 26) + (kt << 13) + tiles) * (int(col.max()) + 1) + col[where]
    _, first, back = np.unique(key, return_index=True, return_inverse=True)
    a, w, q, kt, tiles, burst, held, cpw = (v[first] for v in fields)
    na, nw, nq = (_cdiv(v, burst) * (v > 0) for v in (a, w, q))
    per_k = nw + na
    per_n = nq + kt * per_k
    n = tiles * per_n
    last = lambda v, k: v - (k - 1) * burst                 # the short last burst of v words
    if n.size <= 8:
        # a few layers (a lone evaluation): the same recurrence on Python floats, without numpy's
        # per-call overhead on every burst
        total = np.array([_stream_path(*(float(x[i]) for x in (q, w, a, kt, tiles, burst, held, cpw)))
                          for i in range(n.size)])
        out = np.zeros(shape)
        out[where] = total[back.reshape(-1)]
        return out
    value = [np.zeros(n.shape)] + [np.full(n.shape, -np.inf)] * (F - 1)
    total = np.zeros(n.shape)
    for t in range(int(n.max())):
        u = t % np.maximum(per_n, 1)
        v = (u - nq) % np.maximum(per_k, 1)
        b = np.where(u < nq, np.where(u < nq - 1, burst, last(q, nq)),
                     np.where(v < nw, np.where(v < nw - 1, burst, last(w, nw)),
                              np.where(v - nw < na - 1, burst, last(a, na)))) * cpw
        v0 = value[0]
        total = np.where(t == n - 1, v0 + b, total)         # the last burst's end (no slot reuse after it)
        value = [np.maximum(v0 + b, value[1]), *value[2:], v0 + b + held]
    out = np.zeros(shape)
    out[where] = total[back.reshape(-1)]
    return out


def _stream_path(q, w, a, kt, tiles, burst, held, cpw):
    """:func:`_short_stream` of one layer, on Python floats."""
    def bursts(words):
        full, rest = divmod(words, burst) if words > 0 else (0, 0)
        return [burst * cpw] * int(full) + ([rest * cpw] if rest else [])
    tile = bursts(w) + bursts(a)
    sizes = (bursts(q) + tile * int(kt)) * int(tiles)
    value = [0.0] + [-math.inf] * (READS_IN_FLIGHT - 1)
    total = 0.0
    for b in sizes:
        v0 = value[0]
        total = v0 + b
        value = [max(v0 + b, value[1]), *value[2:], v0 + b + held]
    return total


def _nearmem_gemm(M, K, N, R, acc, cal):
    """Cycles and vault/local bytes of ``R`` sets of ``M`` matrix-vector products on the near-memory unit."""
    V, L = np.maximum(acc.vaults, 1), np.maximum(acc.lanes, 1)
    port = np.maximum(acc.vault_bpc, 1)                     # bytes per vault word
    groups = _cdiv(N, V * L)                                # lane groups of output channels per vault
    lane_words = groups * (HEADER_WORDS + K)                # one vault's image of the layer
    narrow = np.maximum(L / port, 1)                        # cycles per lane word: vault words it takes
    per_vector = np.maximum(lane_words * narrow, V * groups)   # lanes or port; the gather's beats
    compute = M * groups * K
    load = M * per_vector - compute                         # headers, a narrow port, a slow gather
    # The first MAC waits for the vault latency or the first vector's input beats; a narrow port's
    # first lane word assembles while the inputs load.
    start = np.maximum(acc.latency + cal.nearmem_pipeline, _cdiv(K, L) + cal.nearmem_input + 1 - narrow)
    fill = np.where(M > 0, start + (V - 1) * groups, 0.0)   # the last vector's other vaults gathered
    vault_rd = M * V * _cdiv(lane_words * L, port) * port   # every vector reads the image again
    local_rw = M * K * V + M * groups * K * V               # broadcast writes; a read per element and group
    return compute * R, load * R, fill * R, vault_rd * R, local_rw * R


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
    col = lambda x: x[:, None]
    M1, K1, N1, G, R = col(lt.m1), col(lt.k1), col(lt.n1), col(lt.g), col(lt.r)
    M2, K2, N2 = col(lt.m2), col(lt.k2), col(lt.n2)
    in_b, out_b, w_b, p_b = col(lt.in_bytes), col(lt.out_bytes), col(lt.w_bytes), col(lt.param_bytes)
    ew = col(lt.ew_elems * lt.ew_ops)
    macs = col(lt.macs)
    nm = acc.nearmem

    # Branches no accelerator or layer needs are skipped (their terms stay 0).
    any_nm, any_sys, any_g2 = bool(nm.any()), not bool(nm.all()), bool((lt.m2 > 0).any())
    vec = _cdiv(ew, acc.vec_lanes)
    vec_fill = np.where(ew > 0, cal.vector_pipeline, 0.0)

    # -- systolic ---------------------------------------------------------------------------
    spill = (in_b + out_b) > acc.abuf
    s_fit = p_b <= acc.wbuf
    s_compute = s_load = s_fill = s_wbuf = s_abuf = s_accbuf = s_first = s_dram_w = s_dram_a = s_stream = 0.0
    s_m_tile = 0.0
    ws_window = ws_boundary = 0.0
    if any_sys:
        # A WS product's M tiles fit the accumulator and (its input streamed from DRAM) its input
        # window fits a half of the activation scratchpad.
        window = _Columns(lt, col)
        tiling = _ws_tiling(window, acc)
        if not bool(acc.os.all()):
            onchip = _Tiling(*np.broadcast_arrays(*_systolic_tiles(M1, acc), tiling.vectors, tiling.first,
                                                  tiling.commands, tiling.halo, tiling.segments,
                                                  tiling.run, tiling.run_short))
            tiling = _Tiling(*(np.where(spill, t, o) for t, o in zip(vars(tiling).values(), vars(onchip).values())))
        taps = col(lt.taps)
        c1, l1, f1, wr1, ar1, acc1, mt1 = _systolic_gemm(M1, K1, N1, G, R, acc, cal, tiling, taps)
        s_m_tile = np.where(acc.os, np.minimum(M1, acc.rows), tiling.pixels) * (M1 > 0)
        c2 = l2 = f2 = wr2 = ar2 = acc2 = 0.0
        if any_g2:
            c2, l2, f2, wr2, ar2, acc2, _ = _systolic_gemm(M2, K2, N2, 1, R, acc, cal)
        refetch = np.where(R > 1, R, mt1)                    # LSTM: every step; CNN: every M tile
        w_fetches = w_b * np.where(s_fit, 1, refetch)
        s_dram_w = w_fetches + (p_b - w_b)
        # The input crosses the bus once per M tile window (WS: the windows' halo rows again); an
        # OS array re-reads it for every N tile when it does not fit half the activation buffer.
        in_reads = np.where(acc.os, np.where(in_b > acc.abuf / 2, np.maximum(_cdiv(N1, acc.cols), 1), 1),
                            tiling.halo)
        s_dram_a = np.where(spill, in_b * in_reads + out_b, 0.0)
        s_compute, s_load, s_fill = c1 + c2 + vec, l1 + l2, f1 + f2 + vec_fill
        if not bool(acc.os.all()):
            s_stream, ws_window, ws_boundary = _ws_stream(M1, K1, N1, G, R, s_fit, spill, tiling, taps, c1 + l1,
                                                          acc, cal)
        s_first = np.minimum(s_dram_w + s_dram_a,
                             acc.rows * acc.cols + np.where(spill, acc.rows * np.minimum(M1, acc.rows), 0))
        s_wbuf = wr1 + wr2 + w_fetches
        s_abuf = ar1 + ar2 + np.where(spill, in_b * in_reads, in_b) + out_b
        s_accbuf = acc1 + acc2

    # -- near-memory ------------------------------------------------------------------------
    n_fit = p_b <= acc.vault_cap
    n_compute = n_load = n_fill = n_vault = n_local = 0.0
    if any_nm:
        nc1, nl1, nf1, v1, lo1 = _nearmem_gemm(M1 * G, K1, N1, R, acc, cal)
        nc2 = nl2 = nf2 = v2 = lo2 = 0.0
        if any_g2:
            nc2, nl2, nf2, v2, lo2 = _nearmem_gemm(M2, K2, N2, R, acc, cal)
        n_compute, n_load, n_fill = nc1 + nc2 + vec, nl1 + nl2, nf1 + nf2 + vec_fill
        n_vault = v1 + v2 + (p_b - w_b) + in_b + out_b       # weights, biases, activations live in the stack
        n_local = lo1 + lo2

    # -- combine ----------------------------------------------------------------------------
    def pick(a, b):
        if not any_nm:
            return a
        return b if not any_sys else np.where(nm, b, a)
    dram_w = pick(s_dram_w, 0.0)
    dram_a = pick(s_dram_a, 0.0)
    dram = dram_w + dram_a
    compute = pick(s_compute, n_compute)
    load = pick(s_load, n_load)
    fill = pick(s_fill, n_fill)
    first = pick(s_first, 0.0)
    busy = compute + load + fill
    # A WS array is fed by the DMA's read stream (:func:`_ws_stream`): the first latency and the
    # first M tile's input window are exposed, then the array waits wherever the rest of the
    # stream is slower than the array alone. Other cores: the first transfer is exposed, then
    # DRAM stalls wherever its bytes outlast the work.
    ws = ~acc.os & ~nm
    window = pick(ws_window, 0.0)
    # Reads and writes have their own AXI channels and share the DRAM's bandwidth.
    written = pick(np.where(spill, out_b, 0.0), 0.0)
    volume = np.maximum(np.maximum(_cdiv(dram - written, acc.word_bytes), _cdiv(written, acc.word_bytes)),
                        _cdiv(dram, acc.mem_bpc))
    dma = np.where(dram > 0, acc.latency + cal.dma_setup + np.where(ws, window, _cdiv(first, acc.bpc)), 0.0)
    stall = np.where(ws, np.maximum(np.maximum(pick(s_stream, 0.0), volume) - compute - load - window,
                                    pick(ws_boundary, 0.0)),
                     np.maximum(volume - _cdiv(first, acc.bpc) - busy, 0.0))
    stall = np.where(dram > 0, stall, 0.0)
    supported = acc.supported[:, lt.op.astype(int)].T & pick(np.ones_like(s_fit), n_fit)
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
        wbuf_bytes=full(pick(s_wbuf, 0.0)), abuf_bytes=full(pick(s_abuf, 0.0)),
        accbuf_bytes=full(pick(s_accbuf, 0.0)), vault_bytes=full(pick(0.0, n_vault)),
        local_bytes=full(pick(0.0, n_local)), vector_ops=full(ew), requant_ops=full(col(lt.out_elems)),
        m_tile=full(pick(s_m_tile, 0.0)),
        params_fit=(zeros + pick(s_fit, n_fit)).astype(bool), supported=supported,
    )


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
