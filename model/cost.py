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
    The reduction K is tiled by ``rows``, the output channels N by ``cols``, and
    M by what the accumulator buffer holds for one N tile. Per weight tile the
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
    accelerator at several DRAM latencies): per N tile a quantisation record,
    per K tile the weight vectors and the activation vectors in whole bus words,
    in bursts of at most ``memory.max_burst`` beats with :data:`READS_IN_FLIGHT`
    of them in flight. The first read's latency is exposed (``dma``); the array
    then waits (``stall``) wherever the read stream -- bound by the bus, by the
    reads in flight (each burst holds a slot for the latency, a longest path
    through the bursts) or by the weight banks' turnaround with the weights on
    the same bus -- is slower than the array alone. Other cores: only the first
    tile's transfer (plus the DRAM latency) is exposed, and a stall is added when
    the layer's DRAM time exceeds its compute time.

Activations: a layer whose input and output fit together in the activation
buffer keeps them on chip; one that does not streams its input from DRAM
(again for every N tile when the input does not fit half the buffer) and writes
its output there. Moving an activation between accelerators is charged by the
scheduler (:mod:`mensa.model.schedule`), not here. Weights are read from DRAM
once per inference when they fit the weight buffer, else once per M tile (CNN
layers) or once per time step (LSTM).

Units: cycles of the accelerator's clock, bytes.
"""

import math
from dataclasses import dataclass

import numpy as np

import inspect

from mensa.hw.config import CoreKind, Dataflow, DramConfig
from mensa.hw.dma import DMA
from mensa.hw.nearmem import HEADER_WORDS
from mensa.hw.requant import ACC_BITS
from mensa.model.ir import Op

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

#: DRAM reads (AXI bursts) in flight: the accelerator top builds its DMA with the default.
READS_IN_FLIGHT = inspect.signature(DMA).parameters["outstanding"].default
#: Bytes of one output channel's quantisation record, read once per N tile: int32 bias,
#: int32 multiplier, int8 shift (mensa.gen.program packs them so).
QUANT_RECORD_BYTES = ACC_BITS // 8 + 4 + 1


@dataclass(frozen=True)
class Calibration:
    """The model's per-microarchitecture constants, to be fitted to RTL cycle counts.

    Defaults are the RTL's measured behaviour, systolic arrays and near-memory
    unit (model/validate.py runs the RTL; tests/test_cost_vs_rtl.py asserts the
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


class LayerTable:
    """Layers lowered to the numbers the model needs, one numpy array per quantity (shape ``(L,)``).

    Parameters
    ----------
    layers : sequence of :class:`~mensa.model.ir.Layer`
    """

    _FIELDS = ("op", "m1", "k1", "n1", "g", "r", "m2", "k2", "n2", "ew_elems", "ew_ops",
               "in_bytes", "out_bytes", "w_bytes", "param_bytes", "macs", "out_elems")

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
        return (_OP_CODE[op], m1, k1, n1, g, r, m2, k2, n2, ew_elems, ew_ops, in_bytes, out_elems,
                w_bytes, w_bytes + bias, l.macs, out_elems)


class AcceleratorTable:
    """Accelerators reduced to the numbers the model needs, one array per quantity (shape ``(A,)``).

    Parameters
    ----------
    accelerators : sequence of :class:`~mensa.hw.config.AcceleratorConfig`
    dram : :class:`~mensa.hw.config.DramConfig` or a sequence of them (one per accelerator)
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
                    x.memory.data_bits / 8, x.memory.max_burst, _memory_bytes_per_cycle(x, d))
        table = np.array([numbers(x, d) for x, d in zip(accs, drams)], dtype=np.float64).reshape(len(accs), 17)
        (self.rows, self.cols, self.clock_mhz, self.wbuf, self.abuf, self.accbuf, self.acc_bytes, self.bpc,
         self.latency, self.vaults, self.lanes, self.vault_bpc, self.vault_cap, self.local,
         self.word_bytes, self.max_burst, self.mem_bpc) = table.T.copy()
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
                "accbuf_bytes", "vault_bytes", "local_bytes", "vector_ops", "requant_ops",
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
    (near-memory). ``params_fit``: the layer's parameters fit its weight store.
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


def _systolic_gemm(M, K, N, G, R, acc, cal):
    """Cycles and buffer bytes of ``G x R`` products ``M x K @ K x N`` on the systolic arrays.

    Only the dataflows present are computed (a single pair is evaluated often).
    """
    rows, cols = acc.rows, acc.cols
    live = M > 0
    nt = _cdiv(N, cols)
    any_os, any_ws = bool(acc.os.any()), not bool(acc.os.all())
    ws = os_ = None
    if any_ws:
        kt = _cdiv(K, rows)
        # M tile: the partial sums of one N tile held in the accumulator buffer.
        Mt = np.minimum(M, np.maximum(np.floor(acc.accbuf / (cols * acc.acc_bytes)), 1))
        mt = _cdiv(M, Mt)
        # One activation vector per cycle per (K, N) tile, M tile by M tile (the last may be
        # short), each M tile through every group and (N, K) tile; weight waits by _ws_exposed.
        Mp = M - (mt - 1) * Mt
        per_m = kt * nt * G
        ws = (kt * nt * M * G * R,
              R * (rows + _ws_exposed((mt - 1) * per_m, Mt, per_m, Mp, rows, cols, cal)),
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


def _ws_stream(M, K, N, G, R, fit, spill, acc, cal):
    """Cycles of the DRAM read stream of a DMA-fed WS array (hw/sequencer.py), and its bursts.

    Per N tile the sequencer reads the tile's quantisation record, then per K tile ``rows``
    weight vectors and (``spill``: activations from DRAM) the M tile's activation vectors,
    every vector in whole bus words, each read one command split into bursts of at most
    ``max_burst`` beats. Three bounds, the largest wins:

    bus
        every word over the bus, ``word_bytes / bytes per cycle`` cycles each;
    reads in flight
        a burst holds one of :data:`READS_IN_FLIGHT` slots from its issue to its last
        beat (the DRAM latency, ``Calibration.dram_turnaround``, its beats), so the stream
        takes at least ``(beats + (bursts - F) * latency') / F`` (the first ``F`` bursts'
        latency is the exposed first latency, :attr:`Cost.dma`);
    weight banks
        weights come over the same bus as the activations: a K tile's weights load only
        into a retired bank, ``rows + cols - 1`` cycles after the last activation of the
        tile two before, so two K tiles take at least that plus one tile's words.

    ``fit``: the weights stay on chip after their first pass (read once), else every pass
    over M tiles, groups and steps reads them again.
    """
    rows, cols, wb = acc.rows, acc.cols, acc.word_bytes
    burst = acc.max_burst
    cpw = np.maximum(wb / np.maximum(acc.bpc, 1e-9), 1.0)      # cycles per bus word
    kt, nt = _cdiv(K, rows), _cdiv(N, cols)
    Mt = np.minimum(M, np.maximum(np.floor(acc.accbuf / (cols * acc.acc_bytes)), 1))
    mt = _cdiv(M, Mt)
    Mp = M - (mt - 1) * Mt
    passes = mt * G * R
    fw = np.where(fit, 1 / np.maximum(passes, 1), 1.0)          # share of K tiles that read weights
    tiles = nt * passes                                         # N tiles, one quantisation record each
    slots = kt * tiles                                          # K tiles
    aw, w_words, qw = _cdiv(rows, wb), rows * _cdiv(cols, wb), _cdiv(QUANT_RECORD_BYTES * cols, wb)
    a_words = np.where(spill, kt * nt * G * R * M * aw, 0.0)
    a_bursts = np.where(spill, kt * nt * G * R * ((mt - 1) * _cdiv(Mt * aw, burst) + _cdiv(Mp * aw, burst)), 0.0)
    words = tiles * qw + slots * fw * w_words + a_words
    bursts = tiles * _cdiv(qw, burst) + slots * fw * _cdiv(w_words, burst) + a_bursts
    bus = words * cpw
    held = acc.latency + cal.dram_turnaround
    # Reads in flight: a K tile's bursts repeat from tile to tile, so its rate is the longest
    # path per tile through them (:func:`_burst_chain`); the quantisation records ride on the bus.
    # The first latency is in Cost.dma.
    fw1 = fw >= 1
    per_tile = _burst_chain(np.where(fw1, w_words, 0.0), np.where(spill, Mt * aw, 0.0), burst, held, cpw)
    inflight = np.where(fw1, tiles * qw * cpw + slots * per_tile,
                        (bus + np.maximum(bursts - READS_IN_FLIGHT, 0) * held) / READS_IN_FLIGHT)
    # A short layer is far from that steady state (no slot is reused before its first bursts end):
    # its whole sequence of bursts, records included, is solved exactly.
    short = fw1 & (mt == 1) & (bursts <= _SHORT_BURSTS) & (M > 0)
    if short.any():
        inflight = np.where(short, _short_stream(short, np.where(spill, Mt * aw, 0.0), w_words, qw, kt, tiles,
                                                 burst, held, cpw), inflight)
    act_cycles = np.where(spill, a_words * cpw, M * kt * nt * G * R)     # on chip: a vector per cycle
    retire = rows + cols - 1 + cal.ws_retire_extra
    # Two K tiles per bank turnaround; an N tile's quantisation record delays the next tile's
    # weights on the bus beyond that when it is longer than half a turnaround.
    tile = w_words * cpw + act_cycles / np.maximum(slots, 1)
    turn = retire + tile
    bank = fw * tiles * (kt * turn / 2 + np.maximum(qw * cpw + tile - turn / 2, 0))
    live = M > 0
    return np.where(live, np.maximum(np.maximum(bus, inflight), bank), 0.0), np.where(live, bursts, 0.0)


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
    layers : :class:`LayerTable` or sequence of :class:`~mensa.model.ir.Layer`
    accelerators : :class:`AcceleratorTable` or sequence of :class:`~mensa.hw.config.AcceleratorConfig`
    dram : :class:`~mensa.hw.config.DramConfig`
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
    if any_sys:
        c1, l1, f1, wr1, ar1, acc1, mt1 = _systolic_gemm(M1, K1, N1, G, R, acc, cal)
        c2 = l2 = f2 = wr2 = ar2 = acc2 = 0.0
        if any_g2:
            c2, l2, f2, wr2, ar2, acc2, _ = _systolic_gemm(M2, K2, N2, 1, R, acc, cal)
        refetch = np.where(R > 1, R, mt1)                    # LSTM: every step; CNN: every M tile
        w_fetches = w_b * np.where(s_fit, 1, refetch)
        s_dram_w = w_fetches + (p_b - w_b)
        in_rereads = np.where(in_b > acc.abuf / 2, np.maximum(_cdiv(N1, acc.cols), 1), 1)
        s_dram_a = np.where(spill, in_b * in_rereads + out_b, 0.0)
        s_compute, s_load, s_fill = c1 + c2 + vec, l1 + l2, f1 + f2 + vec_fill
        if not bool(acc.os.all()):
            s_stream, _ = _ws_stream(M1, K1, N1, G, R, s_fit, spill, acc, cal)
        s_first = np.minimum(s_dram_w + s_dram_a,
                             acc.rows * acc.cols + np.where(spill, acc.rows * np.minimum(M1, acc.rows), 0))
        s_wbuf = wr1 + wr2 + w_fetches
        s_abuf = ar1 + ar2 + np.where(spill, in_b * in_rereads, in_b) + out_b
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
    # A WS array is fed by the DMA's read stream (:func:`_ws_stream`): the first latency is
    # exposed, then the array waits wherever the stream is slower than the array alone. Other
    # cores: the first transfer is exposed, then DRAM stalls wherever its bytes outlast the work.
    ws = ~acc.os & ~nm
    # Reads and writes have their own AXI channels and share the DRAM's bandwidth.
    written = pick(np.where(spill, out_b, 0.0), 0.0)
    volume = np.maximum(np.maximum(_cdiv(dram - written, acc.word_bytes), _cdiv(written, acc.word_bytes)),
                        _cdiv(dram, acc.mem_bpc))
    dma = np.where(dram > 0, acc.latency + cal.dma_setup + np.where(ws, 0.0, _cdiv(first, acc.bpc)), 0.0)
    stall = np.where(ws, np.maximum(np.maximum(pick(s_stream, 0.0), volume) - compute - load, 0.0),
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
