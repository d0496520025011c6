"""The cost model against the RTL: layers lowered to a core's stream workload, run on its Verilog.

The complete accelerators (DMA, sequencer) do not exist yet, so what is validated is
each accelerator kind's *compute core* running a layer exactly as the cost model
lowers it (:class:`mensa.model.cost.LayerTable`), fed at full rate (no handshake gaps,
no DRAM stalls), against the model's ``core_cycles`` (``compute + load + fill``):

systolic array (:class:`mensa.hw.systolic.SystolicArray`, ``sim/tb_systolic.py``)
    conv / pointwise / FC as a GEMM through im2col, ``M = N*OH*OW``, ``K =
    KH*KW*C_in/groups``, ``N = C_out/groups``, repeated over the groups; depthwise
    channel by channel (``G = C_in`` products of ``M x KH*KW x multiplier``). All of a
    layer's products stream back to back as one workload; on a weight-stationary
    array A is tiled by the rows the accumulator buffer holds for one N tile, as the
    model tiles it. Measured: first input beat taken (weights included) to last
    output beat taken.
near-memory unit (:class:`mensa.hw.nearmem.NearMemoryUnit`, ``sim/tb_nearmem.py``)
    FC layers (a pointwise convolution as the FC layer over its pixels) as ``M``
    matrix-vector products of ``K x N`` weights streamed from the vaults, every vault answering after the DRAM config's
    ``latency_cycles`` (the model's vault latency). Measured: descriptor taken to
    last output taken.

One cocotb run (one build, one simulation) per accelerator measures all its layers.

The whole systolic accelerator (:class:`mensa.hw.accelerator.Accelerator`, ``sim/tb_accelerator.py``)
    FC, pointwise and 3x3 conv layers from AXI DRAM through the DMA (a read latency of
    ``L`` cycles per burst, no backpressure), against the model's ``cycles`` (core, the
    exposed latency and first input window, and the read stream's stalls,
    :func:`mensa.model.ws_stream.ws_stream`). Measured: the run's cycle counter,
    ``CTRL.START`` to the last output write's response. The accelerator loads each M
    tile's input window into its ping-pong activation scratchpad; the configs have a
    4 KiB one, so the compiler cuts layers into one M tile or several, of whole rows or
    part of a row, bound by the accumulator or by the window, and the layers are ones
    whose input and output do not fit it (the model streams them from DRAM, as the RTL
    always does). A 2 KiB weight buffer keeps some layers' weights across M tiles and not
    others'; the RTL keeps them when its padded weight tiles fit, the model when the
    parameters do, so a layer of several M tiles where the two differ is left out. Every
    fourth layer has a table activation (its table read at the layer's start, ahead of the
    first window). One run per (config, latency).
"""

import dataclasses
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mensa.core.config import (AcceleratorConfig, ArrayConfig, BufferConfig, CoreKind, Dataflow, DramConfig,
                             MemoryConfig, NearMemConfig, to_dict)
from mensa.model.cost import Calibration, LayerTable, cycle_errors, evaluate
from mensa.core.golden import TABLE_ACTIVATIONS
from mensa.core.ir import Layer, Op, conv_out_size, same_padding
from mensa.sim.runner import run
from mensa.hw.systolic import SystolicArray
from mensa.hw.nearmem import NearMemoryUnit
from mensa.contract.nearmem import NearMemGeometry
from mensa.model.zoo.mobilenet import mobilenet_v2
from mensa.contract.gemm import GemmGeometry, LayerWalk
from mensa.hw.accelerator import Accelerator
from mensa.sim.tb_accelerator import accelerator_config, make_layer
from mensa.gen.layer_spec import parse_layer, simulate_layers

__all__ = ["Record", "CONFIGS", "systolic_workload", "nearmem_workload", "suite", "measure", "validate",
           "summary", "ACCELERATORS", "LATENCIES", "accelerator_suite", "measure_accelerator",
           "validate_accelerator", "VECTOR_LAYERS", "VECTOR_FAST", "VECTOR_CONFIG", "validate_vector"]

#: The validated accelerators: three systolic arrays (the same arrays as tests/rtl/test_systolic.py, so
#: their Verilator builds are shared; 8x8 WS with a 1 KiB accumulator buffer tiles M by 32 rows) and two
#: near-memory units (as tests/rtl/test_nearmem.py: a lane word per vault word, and a vault port a
#: quarter of the lane word wide), each with the vault latency its DRAM config gives.
CONFIGS = {
    "ws4x4": (AcceleratorConfig(name="ws4x4", array=ArrayConfig(rows=4, cols=4)), DramConfig()),
    "ws8x8": (AcceleratorConfig(name="ws8x8", array=ArrayConfig(rows=8, cols=8), buffers=BufferConfig(acc_kib=1)),
              DramConfig()),
    "os4x8": (AcceleratorConfig(name="os4x8", array=ArrayConfig(rows=4, cols=8, dataflow=Dataflow.OUTPUT_STATIONARY)),
              DramConfig()),
    "nm2x4w32": (AcceleratorConfig(name="nm2x4w32", kind=CoreKind.NEARMEM, nearmem=NearMemConfig(
        vaults=2, lanes=4, vault_bits=32, vault_kib=16, local_kib=1)), DramConfig(latency_cycles=20)),
    "nm2x8w16": (AcceleratorConfig(name="nm2x8w16", kind=CoreKind.NEARMEM, nearmem=NearMemConfig(
        vaults=2, lanes=8, vault_bits=16, vault_kib=16, local_kib=1)), DramConfig(latency_cycles=10)),
}


#: Whole accelerators validated with DRAM: 4x4 and 8x8 on a 64-bit bus, 6x4 on a 32-bit bus (activation
#: vectors of two words); each holds 64 pixels of partial sums, and 4 KiB of activation scratchpad (512,
#: 256 and 256 vectors a half) and 2 KiB of weight buffer: see the module docstring.
ACCELERATORS = {
    name: AcceleratorConfig(name=name, array=ArrayConfig(rows=r, cols=c),
                            buffers=BufferConfig(weight_kib=2, acc_kib=kib, act_kib=4),
                            memory=MemoryConfig(data_bits=bits))
    for name, (r, c, bits, kib) in {"acc4x4d64": (4, 4, 64, 1), "acc8x8d64": (8, 8, 64, 2),
                                    "acc6x4d32": (6, 4, 32, 1)}.items()
}
#: DRAM read latencies (cycles per burst): a fast SRAM-like memory, typical DRAM, a slow one.
LATENCIES = (1, 20, 50)


@dataclass(frozen=True)
class Record:
    """One validated (layer, accelerator) pair: the model's and the RTL's core cycles."""
    layer: str
    op: str
    accelerator: str
    workload: tuple
    model: float
    measured: int

    @property
    def error(self):
        """(model - RTL) / RTL."""
        return self.model / self.measured - 1


def systolic_workload(layer, acc):
    """``(M, K, N, G, m_tile)`` of ``layer`` on systolic accelerator ``acc``, as the cost model lowers it.

    ``m_tile`` is the rows of A per M tile on a weight-stationary array (the partial sums
    of one N tile that the accumulator buffer holds, and, for an input streamed from DRAM, whose
    input window fits a half of the activation scratchpad), ``M`` on an output-stationary one.
    A weight-stationary conv's ``K`` is its taps times its channels padded to the array's rows.
    """
    t = LayerTable([layer])
    if t.r[0] != 1 or t.m2[0] or t.ew_elems[0]:
        raise ValueError(f"layer {layer.name}: {layer.op.value} is not a single GEMM workload")
    M, K, N, G = (int(v[0]) for v in (t.m1, t.k1, t.n1, t.g))
    m_tile = M
    if acc.array.dataflow is Dataflow.WEIGHT_STATIONARY:
        # K tap by tap, each tap's channels padded to the array's rows (as the sequencer walks it)
        taps, rows = int(t.taps[0]), acc.array.rows
        if taps > 1:
            K = taps * -(-(K // taps) // rows) * rows
        m_tile = int(evaluate([layer], [acc]).m_tile[0, 0])
    return M, K, N, G, m_tile


def nearmem_workload(layer):
    """``(K, N, M)`` of an FC ``layer`` on the near-memory unit: M vectors of K inputs, N outputs.

    A pointwise convolution runs there as the FC layer over its pixels (``M = N*H*W``), which is
    how the cost model takes it (it does not place CONV2D near memory).
    """
    if layer.op is not Op.FC:
        raise ValueError(f"layer {layer.name}: the near-memory validation runs FC layers (pointwise "
                         f"convolutions as FC over their pixels), not {layer.op.value}")
    t = LayerTable([layer])
    return int(t.k1[0]), int(t.n1[0]), int(t.m1[0])


def measure(layers, acc, *, dram=DramConfig(), sim="verilator"):
    """Core cycles of every layer on the RTL of accelerator ``acc``, from one cocotb run.

    Parameters
    ----------
    layers : sequence of :class:`~mensa.core.ir.Layer`
    acc : :class:`~mensa.core.config.AcceleratorConfig`
    dram : :class:`~mensa.core.config.DramConfig`
        Near-memory: its ``latency_cycles`` is every vault read's latency.
    sim : str

    Returns
    -------
    ``(workloads, cycles)``: the stream workload of each layer and its measured cycles.
    """

    layers = tuple(layers)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "figures.json"
        if acc.kind is CoreKind.SYSTOLIC:
            workloads = [systolic_workload(l, acc) for l in layers]
            params = dict(to_dict(acc.array), shapes=[list(w) for w in workloads], gap=0.0, result=str(result))
            run(SystolicArray(acc.array), name="systolic_array", key=acc.array, sim=sim,
                test_module="mensa.sim.tb_systolic", test_name=f"validate-{acc.name}",
                extra_env={"MENSA_TB": json.dumps(params)})
            key = "core_cycles"
        else:
            workloads = [nearmem_workload(l) for l in layers]
            lat = dram.latency_cycles
            params = dict(to_dict(acc.nearmem), layers=[list(w) for w in workloads], latency=[lat, lat],
                          gap=0.0, outstanding=2 * lat + 8, raw=True, result=str(result))
            run(NearMemoryUnit(acc.nearmem), name="nearmem", key=acc.nearmem, sim=sim,
                test_module="mensa.sim.tb_nearmem", test_name=f"validate-{acc.name}",
                extra_env={"MENSA_TB": json.dumps(params)})
            key = "cycles"
        figures = json.loads(result.read_text())
    if len(figures) != len(layers):
        raise RuntimeError(f"{acc.name}: the testbench reported {len(figures)} figures for {len(layers)} layers")
    return workloads, [int(f[key]) for f in figures]


def validate(layers, acc, *, dram=DramConfig(), sim="verilator", calibration=Calibration()):
    """Model ``core_cycles`` against the RTL for ``layers`` on ``acc``: a list of :class:`Record`."""
    layers = tuple(layers)
    workloads, measured = measure(layers, acc, dram=dram, sim=sim)
    model, _ = cycle_errors([(l, acc, dram, c) for l, c in zip(layers, measured)], calibration=calibration,
                            core=True)
    return [Record(l.name, l.op.value, acc.name, tuple(w), float(m), c)
            for l, w, m, c in zip(layers, workloads, model, measured)]


# MobileNetV2 (width 0.35) layers at 32x32 input: the zoo's shapes, spatially reduced.
_MOBILENET_SMALL = ("b0_0_project", "b1_0_project", "b2_0_dw", "b2_1_expand", "b3_0_project",
                    "b5_0_dw", "b6_0_project")


def _conv(name, hw, cin, cout, kernel, stride=1, groups=1):
    oh = -(-hw // stride)
    pad = kernel // 2
    op = Op.DEPTHWISE if groups == cin and cout % cin == 0 and groups > 1 else Op.CONV2D
    return Layer(name, op, (1, hw, hw, cin), (1, oh, oh, cout), kernel=(kernel, kernel), stride=(stride, stride),
                 padding=(pad, pad, pad, pad), groups=groups)


def _random_systolic(rng, count, max_hw, max_c):
    out = []
    for i in range(count):
        kind = ("conv", "pointwise", "depthwise", "fc", "conv5")[i % 5]
        hw = int(rng.integers(1, max_hw + 1))
        cin, cout = (int(c) for c in rng.integers(1, max_c + 1, size=2))
        if kind == "conv":
            out.append(_conv(f"rand{i}_conv", hw, cin, cout, int(rng.choice([1, 3])), int(rng.choice([1, 2]))))
        elif kind == "pointwise":
            out.append(_conv(f"rand{i}_pw", hw, cin, cout, 1))
        elif kind == "depthwise":
            out.append(_conv(f"rand{i}_dw", hw, cin, cin, 3, int(rng.choice([1, 2])), groups=cin))
        elif kind == "fc":
            m = int(rng.integers(1, max_hw + 1))
            out.append(Layer(f"rand{i}_fc", Op.FC, (m, cin * 2), (m, cout * 2)))
        else:       # a wider window (a grouped conv is no layer the accelerator runs)
            out.append(_conv(f"rand{i}_conv5", hw, cin, cout, 5, 1))
    return out


def _random_nearmem(rng, count, acc, max_k, max_pixels):
    geom = NearMemGeometry.of(acc.nearmem)
    max_n = geom.max_groups * geom.lanes * geom.vaults
    out = []
    for i in range(count):
        k, n = int(rng.integers(1, min(max_k, geom.max_in) + 1)), int(rng.integers(1, max_n + 1))
        m = int(rng.integers(1, 4)) if i % 2 else int(rng.integers(4, max_pixels + 1))   # FC batch; pixels
        out.append(Layer(f"rand{i}_{'fc' if i % 2 else 'pw'}", Op.FC, (m, k), (m, n)))
    return out


def suite(name, *, large=False, seed=8):
    """The validation layers of accelerator ``CONFIGS[name]``.

    Systolic: MobileNetV2 layers (width 0.35, 32x32 input) and random conv, pointwise, depthwise,
    FC and grouped layers; near-memory: FC layers of random shape and small batches, and
    pointwise-shaped ones (a batch of pixels), within the unit's input buffer and result queue.
    ``large``: every conv, depthwise and FC layer of MobileNetV2 (width 0.35, 32x32 input, 100
    classes) and more, bigger random layers (a slow sweep).
    """
    acc, _ = CONFIGS[name]
    rng = np.random.default_rng([seed, *name.encode()])
    if acc.kind is CoreKind.NEARMEM:
        return _random_nearmem(rng, 16, acc, 1 << 16, 16) if large else _random_nearmem(rng, 6, acc, 64, 8)
    if large:
        net = mobilenet_v2(resolution=32, width=0.35, classes=100)
        zoo = [l for l in net.layers if l.op in (Op.CONV2D, Op.DEPTHWISE, Op.FC)]
        return zoo + _random_systolic(rng, 20, 12, 48)
    net = mobilenet_v2(resolution=32, width=0.35)
    zoo = [l for l in net.layers if l.name in _MOBILENET_SMALL]
    return zoo + _random_systolic(rng, 5, 5, 12)


def summary(records):
    """Error distribution of ``records`` (relative errors): count, max and mean of ``|error|``, worst layer."""
    err = np.array([abs(r.error) for r in records])
    worst = records[int(err.argmax())]
    edges = (0.005, 0.01, 0.02, 0.05)
    hist = {f"<={100 * e:g}%": int(((err <= e) & (err > lo)).sum()) for lo, e in zip((-1, *edges), edges)}
    hist[f">{100 * edges[-1]:g}%"] = int((err > edges[-1]).sum())
    return {"layers": len(records), "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
            "median_abs_error": float(np.median(err)), "exact": int((err == 0).sum()),
            "histogram": hist, "worst": f"{worst.accelerator}/{worst.layer}"}


def accelerator_suite(name, *, large=False, seed=8):
    """FC, pointwise and 3x3 conv layers for the whole accelerator ``ACCELERATORS[name]``, random and
    reproducible.

    Shapes whose input and output exceed the validated configs' activation scratchpad (the model
    streams them from DRAM, as the RTL does), from one M tile to several; an M tile of whole rows
    or of part of a row, limited by the accumulator or by the input window (a conv's with its
    kernel's halo rows); channel counts mostly not multiples of the array; every fourth layer with
    a table activation, the four in turn. ``large``: more and bigger layers (the slow sweep).
    """
    acc = ACCELERATORS[name]
    g = GemmGeometry.of(acc)
    rng = np.random.default_rng([seed, 1 + large, *name.encode()])
    count, budget = (12, 30000) if large else (4, 6000)
    max_k = g.act_depth * g.rows            # one pixel's window fits a scratchpad half
    weight_bytes = acc.buffers.weight_kib * 1024
    layers = []
    while len(layers) < count:
        i = len(layers)
        kind = ("fc", "pointwise", "conv")[i % 3]
        n = int(rng.integers(1, 65))
        if kind == "conv":
            h, w = (int(v) for v in rng.integers(3, 13, size=2))
            k = int(rng.integers(1, 33))
            stride = int(rng.choice([1, 2]))
            layer = _conv_hw(f"a{i}_conv", h, w, k, n, 3, stride)
            _, oh, ow, _ = layer.out_shape
            walk = LayerWalk(k=k, in_h=h, in_w=w, out_h=oh, out_w=ow, kernel=(3, 3), stride=(stride, stride),
                             pad_top=1, pad_left=1)
        else:
            m = int(rng.integers(1, 9)) if i % 2 else int(rng.integers(8, 2 * g.acc_depth + 1))
            k = int(rng.integers(max(1, g.rows), max_k + 1)) if m < 8 else int(rng.integers(g.rows, max_k // 4 + 1))
            if kind == "pointwise" and any(m % d == 0 and m // d <= d for d in range(2, 17)):
                h = min(d for d in range(2, 17) if m % d == 0 and m // d <= d)
                layer = Layer(f"a{i}_pw", Op.CONV2D, (1, h, m // h, k), (1, h, m // h, n))
                walk = LayerWalk(k=k, in_h=1, in_w=m, out_h=1, out_w=m)       # one row, as an FC layer
            else:
                layer = Layer(f"a{i}_fc", Op.FC, (m, k), (m, n))
                walk = LayerWalk(k=k, in_h=1, in_w=m, out_h=1, out_w=m)
        m = layer.macs // (layer.in_channels * layer.out_channels * math.prod(layer.kernel or (1, 1)))
        try:
            tiles = len(list(walk.m_tiles(*g.tiling(walk))))
        except ValueError:
            continue
        cycles = m * -(-k // g.rows) * -(-n // g.cols) * math.prod(layer.kernel or (1, 1))
        io = math.prod(layer.in_shape) + math.prod(layer.out_shape)
        # the model keeps weights on chip when the parameters fit the weight buffer; the RTL when its
        # padded weight tiles do: a layer of several M tiles where the two differ is left out
        params = k * n * math.prod(layer.kernel or (1, 1)) + 4 * n
        padded = math.prod(layer.kernel or (1, 1)) * -(-k // g.rows) * -(-n // g.cols) * g.rows * g.cols
        if io <= acc.buffers.act_kib * 1024 or cycles > budget or (
                tiles > 1 and (params <= weight_bytes) != (padded <= weight_bytes)):
            continue
        if i % 4 == 3:
            layer = dataclasses.replace(layer, activation=TABLE_ACTIVATIONS[i // 4 % len(TABLE_ACTIVATIONS)])
        layers.append(layer)
    return layers


def _conv_hw(name, h, w, cin, cout, kernel, stride):
    """A conv of ``kernel`` x ``kernel`` with 'same' padding on an ``h`` x ``w`` input."""
    pads = [same_padding(size, kernel, stride) for size in (h, w)]
    oh, ow = (conv_out_size(size, kernel, stride, *pad, 1) for size, pad in zip((h, w), pads))
    return Layer(name, Op.CONV2D, (1, h, w, cin), (1, oh, ow, cout), kernel=(kernel, kernel), stride=(stride, stride),
                 padding=(*pads[0], *pads[1]))


def _accelerator_spec(layer, index):
    """The testbench's spec of ``layer`` (``sim/tb_accelerator.py``): quantisation drawn per layer; a table
    activation's output in 1/64 steps (requantised to the table's input at the drawn output scale)."""
    k, n = layer.in_channels, layer.out_channels
    spec = {"op": "fc" if layer.op is Op.FC else "conv", "in_shape": list(layer.in_shape),
            "out_channels": n, "activation": ("none", "relu", "relu6")[index % 3],
            "zp_in": (7 * index) % 21 - 10, "zp_out": (5 * index) % 11 - 5,
            "in_scale": 0.05, "out_scale": 0.3 * (k * math.prod(layer.kernel or (1, 1))) ** 0.5}
    if layer.op is Op.CONV2D:
        spec.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=list(layer.padding))
    if layer.activation in TABLE_ACTIVATIONS:
        spec.update(activation=layer.activation.value, pre_scale=spec["out_scale"], zp_pre=spec["zp_out"],
                    out_scale=1 / 64)
    return spec


def measure_accelerator(layers, acc, *, latency, sim="verilator"):
    """Cycles of every layer on the whole accelerator ``acc`` with DRAM latency ``latency``, one cocotb run.

    The testbench's cycle counter (``CYCLES_TOTAL``): start to the last output write's response.
    """

    layers = tuple(layers)
    cfg = {"rows": acc.array.rows, "cols": acc.array.cols, "data_bits": acc.memory.data_bits,
           "acc_kib": acc.buffers.acc_kib, "act_kib": acc.buffers.act_kib, "weight_kib": acc.buffers.weight_kib}
    built = accelerator_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "cycles.json"
        params = {"config": cfg, "layers": [_accelerator_spec(l, i) for i, l in enumerate(layers)],
                  "pause": 0.0, "latency": [latency, latency], "result": str(result)}
        run(Accelerator(built), name="accelerator", key=("accelerator", built), sim=sim,
            test_module="mensa.sim.tb_accelerator", test_name=f"validate-{acc.name}-l{latency}",
            extra_env={"MENSA_TB": json.dumps(params)})
        figures = json.loads(result.read_text())
    if len(figures) != len(layers):
        raise RuntimeError(f"{acc.name}: the testbench reported {len(figures)} figures for {len(layers)} layers")
    return [int(f["cycles"]) for f in figures]


def validate_accelerator(layers, acc, *, latency, sim="verilator", calibration=Calibration()):
    """Model ``cycles`` against the whole accelerator at DRAM latency ``latency``: a list of :class:`Record`.

    ``Record.accelerator`` is ``"<name>@L<latency>"``; ``workload`` is ``(M, K, N)``.
    """
    layers = tuple(layers)
    measured = measure_accelerator(layers, acc, latency=latency, sim=sim)
    dram = DramConfig(latency_cycles=latency)
    model, _ = cycle_errors([(l, acc, dram, c) for l, c in zip(layers, measured)], calibration=calibration)
    t = LayerTable(layers)
    return [Record(l.name, l.op.value, f"{acc.name}@L{latency}", (int(mm), int(k), int(n)), float(x), c)
            for l, mm, k, n, x, c in zip(layers, t.m1, t.k1, t.n1, model, measured)]


# -- the vector unit: depthwise, pools, add, mul from AXI DRAM -------------------------------------

#: Vector-unit layers (``mensa run-layer`` specs) of MobileNetV2, MobileNetV3-Large and ResNet-50's kinds,
#: spatially reduced, on the config ``VECTOR_CONFIG``; the default run takes the first ``VECTOR_FAST``.
VECTOR_LAYERS = (
    "depthwise:in=14x14x40,kernel=3,padding=same,act=relu6",
    "depthwise:in=15x15x24,kernel=5,stride=2,padding=same,act=relu",
    "maxpool:in=16x16x20,kernel=3,stride=2,padding=same",
    "add:in=14x14x24",
    "mul:in=14x14x40",
    "global_avgpool:in=7x7x96",
    # the slow sweep
    "depthwise:in=28x28x32,kernel=3,padding=same,act=relu6",
    "depthwise:in=28x28x96,kernel=3,stride=2,padding=same,act=relu6",
    "depthwise:in=14x14x144,kernel=3,padding=same,act=relu6",
    "depthwise:in=14x14x120,kernel=5,padding=same,act=hard_swish",
    "depthwise:in=14x14x24,kernel=5,stride=2,padding=same,act=hard_swish",
    "mul:in=14x14x32,act=hard_sigmoid",
    "depthwise:in=7x7x160,kernel=3,padding=same,act=relu6",
    "depthwise:in=9x11x13,kernel=7,stride=2,padding=same",
    "maxpool:in=28x28x64,kernel=3,stride=2,padding=same",
    "avgpool:in=14x14x32,kernel=3,padding=same",
    "global_avgpool:in=14x14x120",
    "global_avgpool:in=7x7x320",
    "add:in=28x28x32",
    "add:in=14x14x64,act=relu",
    "add:in=7x7x160",
    "mul:in=28x28x72",
    "mul:in=14x14x120",
    "mul:in=7x7x160",
)
VECTOR_FAST = 6
VECTOR_CONFIG = "pascal-fpga"


def validate_vector(texts, acc, *, latency, sim="verilator", calibration=Calibration()):
    """Model ``cycles`` against the accelerator ``acc``'s vector unit at DRAM latency ``latency``.

    ``texts``: layer specs as ``mensa run-layer --layer`` takes them; one cocotb run. Returns a list
    of :class:`Record` (``workload``: channels, output pixels, taps).
    """
    specs = [parse_layer(text) for text in texts]
    measured, _ = simulate_layers(acc, specs, latency=(latency, latency), sim=sim, seed=1,
                                  test_name=f"validate-vector-l{latency}")
    layers = [make_layer(spec, i) for i, spec in enumerate(specs)]
    dram = DramConfig(latency_cycles=latency)
    model, _ = cycle_errors([(l, acc, dram, r["cycles"]) for l, r in zip(layers, measured)], calibration=calibration)
    t = LayerTable(layers)
    return [Record(text, l.op.value, f"{acc.name}@L{latency}", (int(c), int(mm), int(taps)), float(x), r["cycles"])
            for text, l, c, mm, taps, x, r in zip(texts, layers, t.vec_c, t.vec_m, t.vec_taps, model, measured)]
