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
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mensa.hw.config import (AcceleratorConfig, ArrayConfig, BufferConfig, CoreKind, Dataflow, DramConfig,
                             NearMemConfig, to_dict)
from mensa.model.cost import Calibration, LayerTable, cycle_errors
from mensa.model.ir import Layer, Op

__all__ = ["Record", "CONFIGS", "systolic_workload", "nearmem_workload", "suite", "measure", "validate",
           "summary"]

#: The validated accelerators: three systolic arrays (the same arrays as tests/test_systolic_rtl.py, so
#: their Verilator builds are shared; 8x8 WS with a 1 KiB accumulator buffer tiles M by 32 rows) and two
#: near-memory units (as tests/test_nearmem_rtl.py: a lane word per vault word, and a vault port a
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
    of one N tile that the accumulator buffer holds), ``M`` on an output-stationary one.
    """
    t = LayerTable([layer])
    if t.r[0] != 1 or t.m2[0] or t.ew_elems[0]:
        raise ValueError(f"layer {layer.name}: {layer.op.value} is not a single GEMM workload")
    M, K, N, G = (int(v[0]) for v in (t.m1, t.k1, t.n1, t.g))
    m_tile = M
    if acc.array.dataflow is Dataflow.WEIGHT_STATIONARY:
        per_row = acc.array.cols * acc.array.acc_bits / 8
        m_tile = min(M, max(int(acc.buffers.acc_kib * 1024 // per_row), 1))
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
    layers : sequence of :class:`~mensa.model.ir.Layer`
    acc : :class:`~mensa.hw.config.AcceleratorConfig`
    dram : :class:`~mensa.hw.config.DramConfig`
        Near-memory: its ``latency_cycles`` is every vault read's latency.
    sim : str

    Returns
    -------
    ``(workloads, cycles)``: the stream workload of each layer and its measured cycles.
    """
    from mensa.sim.runner import run

    layers = tuple(layers)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "figures.json"
        if acc.kind is CoreKind.SYSTOLIC:
            from mensa.hw.systolic import SystolicArray
            workloads = [systolic_workload(l, acc) for l in layers]
            params = dict(to_dict(acc.array), shapes=[list(w) for w in workloads], gap=0.0, result=str(result))
            run(SystolicArray(acc.array), name="systolic_array", key=acc.array, sim=sim,
                test_module="mensa.sim.tb_systolic", test_name=f"validate-{acc.name}",
                extra_env={"MENSA_TB": json.dumps(params)})
            key = "core_cycles"
        else:
            from mensa.hw.nearmem import NearMemoryUnit
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
        kind = ("conv", "pointwise", "depthwise", "fc", "grouped")[i % 5]
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
        else:
            g = 2
            out.append(_conv(f"rand{i}_group", hw, 2 * cin, 2 * cout, 3, 1, groups=g))
    return out


def _random_nearmem(rng, count, acc, max_k, max_pixels):
    from mensa.hw.nearmem import NearMemGeometry
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
    from mensa.model.zoo.mobilenet import mobilenet_v2
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
    return {"layers": len(records), "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
            "exact": int((err == 0).sum()), "worst": f"{worst.accelerator}/{worst.layer}"}
