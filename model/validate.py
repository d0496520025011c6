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
    FC and pointwise layers as ``M`` matrix-vector products of ``K x N`` weights
    streamed from the vaults, every vault answering after the DRAM config's
    ``latency_cycles`` (the model's vault latency). Measured: descriptor taken to
    last output taken.

One cocotb run (one build, one simulation) per accelerator measures all its layers.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mensa.hw.config import CoreKind, Dataflow, DramConfig, to_dict
from mensa.model.cost import Calibration, LayerTable, evaluate
from mensa.model.ir import Op

__all__ = ["Record", "systolic_workload", "nearmem_workload", "measure", "validate"]


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
    """``(K, N, M)`` of an FC or pointwise ``layer`` on the near-memory unit: M vectors of K, N outputs."""
    if layer.op is Op.CONV2D and tuple(layer.kernel) == (1, 1) and layer.groups == 1 \
            and tuple(layer.stride) == (1, 1):
        pass
    elif layer.op is not Op.FC:
        raise ValueError(f"layer {layer.name}: the near-memory unit runs FC and pointwise layers, not this "
                         f"{layer.op.value}")
    t = LayerTable([layer])
    return int(t.k1[0]), int(t.n1[0]), int(t.m1[0] * t.g[0])


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
    model = evaluate(layers, [acc], dram, calibration=calibration).core_cycles[:, 0]
    return [Record(l.name, l.op.value, acc.name, tuple(w), float(m), c)
            for l, w, m, c in zip(layers, workloads, model, measured)]
