"""The Edge TPU study: NAS-Bench-101 networks through the cost model on the Edge TPU classes.

A network's figures on a one-accelerator system are those :func:`mensa.model.schedule.schedule`
gives it (every layer on the one accelerator, in order; the stem reads the input from DRAM).
Walking 423,624 networks through the scheduler would take hours, so :class:`Sweep` takes the
short road that gives the same numbers: a network's layers are reduced to keys
(:class:`mensa.model.nasbench.CellShapes`), each distinct key is built and costed once
(:func:`mensa.model.cost.evaluate`, :func:`mensa.model.energy.layer_energy`), and a network's
totals are sums over its keys. tests/model/test_study.py checks the sums against
``schedule`` network by network.
"""

from dataclasses import dataclass

import numpy as np

from mensa.core.config import load
from mensa.model.cost import AcceleratorTable, LayerTable, evaluate
from mensa.model.energy import EnergyTable, AreaTable, layer_energy, leakage_mw
from mensa.model.nasbench import INPUT_SIZE, OPS, CellShapes

__all__ = ["CLASSES", "class_system", "Sweep", "COLUMNS", "graph_features", "GRAPH_FEATURES", "network_figures"]

#: The Edge TPU classes of the study (Seshadri et al. 2021) and their presets.
CLASSES = {"v1": "edgetpu-v1", "v2": "edgetpu-v2", "v3": "edgetpu-v3"}

_INPUT_BYTES = INPUT_SIZE * INPUT_SIZE * 3


def class_system(name):
    """The :class:`~mensa.core.config.SystemConfig` of a class (``v1``, ``v2``, ``v3``) or any config."""
    return load(CLASSES.get(name, name))


#: Per-network columns of a sweep, besides the cell's own (hash, vertices, edges, ops, matrix).
COLUMNS = ("latency_ms", "energy_uj", "utilisation", "dram_bytes")

#: Class-independent figures of a network, from its layers.
_SHAPE_FIGURES = ("macs", "params", "layers", "act_bytes")


@dataclass
class _Keys:
    """Distinct layer keys seen so far and their figures: ``shape`` (K, 4) class-independent
    (MACs, parameters, 1, output bytes), ``cost`` (K, classes, 4) seconds, pJ, DRAM bytes, MACs."""
    index: dict
    shape: np.ndarray
    cost: np.ndarray


class Sweep:
    """Costs NAS-Bench-101 networks on a set of one-accelerator systems.

    Parameters
    ----------
    systems : sequence of :class:`~mensa.core.config.SystemConfig`, each of one accelerator
    """

    def __init__(self, systems, *, energy=EnergyTable(), area=AreaTable()):
        self.systems = tuple(systems)
        for s in self.systems:
            if len(s.accelerator) != 1:
                raise ValueError(f"{s.name}: the study runs one-accelerator systems, not {len(s.accelerator)}")
        accs = [s.accelerator[0] for s in self.systems]
        self._energy, self._area = energy, area
        self._table = AcceleratorTable(accs, [s.dram for s in self.systems])
        self._peak = self._table.peak_macs * self._table.clock_mhz * 1e6           # MACs per second
        leak = np.array([leakage_mw(a, energy, area) for a in accs])
        # the stem reads the network input from DRAM (mensa.model.schedule: "inputs from the host")
        host_s = _INPUT_BYTES / (self._table.bpc * self._table.clock_mhz * 1e6)
        self._host = np.stack([host_s, _INPUT_BYTES * energy.dram_pj_per_byte + host_s * leak * 1e9], axis=1)
        self._keys = _Keys({}, np.zeros((0, 4)), np.zeros((0, len(accs), 4)))

    def _add_keys(self, keys):
        layers = [CellShapes.layer(k, f"k{len(self._keys.index) + i}") for i, k in enumerate(keys)]
        lt = LayerTable(layers)
        cost = evaluate(lt, self._table)
        pj = sum(layer_energy(cost, self._energy, self._area).values())
        figs = np.stack([cost.seconds, pj, cost.dram_bytes, cost.macs], axis=2)
        shape = np.stack([lt.macs, lt.param_bytes, np.ones(len(lt)), lt.out_bytes], axis=1)
        for k in keys:
            self._keys.index[k] = len(self._keys.index)
        self._keys.shape = np.concatenate([self._keys.shape, shape])
        self._keys.cost = np.concatenate([self._keys.cost, figs])

    def run(self, cells):
        """Figures of every cell's network: a dict of arrays, ``{column}_{system name}`` for each
        of :data:`COLUMNS` and system, and the class-independent ``macs``, ``params``, ``layers``
        and ``act_bytes``."""
        rows, cols = [], []
        per_cell = [CellShapes.network_keys(cell) for cell in cells]
        new = {k for keys in per_cell for k in keys if k not in self._keys.index}
        if new:
            self._add_keys(sorted(new, key=repr))
        index = self._keys.index
        for i, keys in enumerate(per_cell):
            cols.extend(index[k] for k in keys)
            rows.extend([i] * len(keys))
        rows, cols = np.asarray(rows), np.asarray(cols)
        n = len(per_cell)
        shape = np.zeros((n, 4))
        np.add.at(shape, rows, self._keys.shape[cols])
        cost = np.zeros((n,) + self._keys.cost.shape[1:])
        np.add.at(cost, rows, self._keys.cost[cols])
        out = dict(zip(_SHAPE_FIGURES, shape.T))
        for j, s in enumerate(self.systems):
            seconds = cost[:, j, 0] + self._host[j, 0]
            out[f"latency_ms_{s.name}"] = seconds * 1e3
            out[f"energy_uj_{s.name}"] = (cost[:, j, 1] + self._host[j, 1]) * 1e-6
            out[f"utilisation_{s.name}"] = cost[:, j, 3] / (seconds * self._peak[j])
            out[f"dram_bytes_{s.name}"] = cost[:, j, 2]
        return out


# -- graph features (the learned model's inputs) ----------------------------------------------------

#: Features of a cell's graph, in :func:`graph_features`' column order.
GRAPH_FEATURES = ("vertices", "edges", *(f"n_{op}" for op in OPS), "input_edges", "output_fan_in", "depth",
                  *(f"{op}_on_output" for op in OPS), "truncations")


def graph_features(cell):
    """The cell's graph as numbers: size, op counts, the input's and the output's degree, the
    longest input-to-output path, the ops feeding the output, and the vertices truncated."""
    m, v = cell.matrix, cell.vertices
    counts = [sum(op == name for op in cell.ops[1:-1]) for name in OPS]
    depth = [0] * v
    for u in range(1, v):
        depth[u] = 1 + max(depth[s] for s in range(u) if m[s][u])
    ch = cell.vertex_channels(128, 128)
    on_out = [sum(cell.ops[u] == name and m[u][v - 1] for u in range(1, v - 1)) for name in OPS]
    trunc = sum(1 for t in range(1, v - 1) for s in range(1, t) if m[s][t] and ch[s] > ch[t])
    return [v, cell.edges, *counts, sum(m[0][1:]), sum(m[u][v - 1] for u in range(v - 1)), depth[-1],
            *on_out, trunc]


_FIGURES_OF_KEY = {}


def network_figures(cell):
    """MACs, parameters, layers and activation bytes of a cell's network (class-independent)."""
    total = np.zeros(4)
    for k in CellShapes.network_keys(cell):
        f = _FIGURES_OF_KEY.get(k)
        if f is None:
            lt = LayerTable([CellShapes.layer(k, "k")])
            f = _FIGURES_OF_KEY[k] = np.array([lt.macs[0], lt.param_bytes[0], 1.0, lt.out_bytes[0]])
        total += f
    return dict(zip(_SHAPE_FIGURES, total))
