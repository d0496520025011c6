"""The Mensa scheduler: put every layer of a network on the accelerator that suits it.

Layers run one at a time in topological order (as on the Edge TPU and in
Mensa's runtime). A schedule's cost is additive: each layer's cost on its
accelerator, plus for every producer -> consumer edge whose ends sit on
different accelerators the cost of moving the activation through the shared
DRAM (written by one, read by the other). The objective is either latency
(seconds) or energy (pJ; a layer's energy includes the leakage of every
accelerator of the system for as long as it runs, since idle accelerators
still leak).

The solver (:func:`solve`) works on plain arrays so it can be checked against
:func:`exhaustive`: a min-sum dynamic programme over a spanning tree of the
DAG (each layer keeps the edge to its largest producer), which is optimal when
the network is a chain or a tree, then iterated conditional modes over all
edges (each layer moved to its best accelerator given its neighbours, until
nothing changes), which never makes the schedule worse. Pinned layers have
every other accelerator removed before solving.

A reader reads its producer's output in place, so an edge from one accelerator
mensa builds to another, a near-memory one at either end, may join the two
only where the producer's output layout feeds the reader's input layout
(:func:`mensa.contract.compiler.layouts`, what the network compiler checks;
in practice a one-pixel tensor): elsewhere its cost is infinite, and a network
with no placement left is a :class:`ScheduleError`. (Between systolic
accelerators, and within one, the layouts are the config's, not the
placement's: the network compiler refuses a config whose array and vector
unit do not share one, in one line.)
"""

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from mensa.contract.compiler import layouts
from mensa.contract.network import arbitrated
from mensa.core.config import CoreKind
from mensa.core.errors import UserError
from mensa.core.ir import Op
from mensa.model.cost import Calibration, LayerTable, AcceleratorTable, evaluate, modelled
from mensa.model.energy import AreaTable, COMPONENTS, EnergyTable, layer_energy, leakage_mw, system_area_mm2

__all__ = ["ScheduleError", "OBJECTIVES", "solve", "exhaustive", "total_cost", "LayerPlacement",
           "Schedule", "schedule"]

OBJECTIVES = ("latency", "energy")


class ScheduleError(UserError):
    """No valid schedule: a bad pin, an unknown objective, or a layer no accelerator can run."""


def total_cost(node_cost, edges, assign):
    """Cost of an assignment: node costs plus the edge costs between assigned accelerators."""
    assign = np.asarray(assign)
    total = float(node_cost[np.arange(len(assign)), assign].sum())
    for u, v, mat in edges:
        total += float(mat[assign[u], assign[v]])
    return total


def exhaustive(node_cost, edges):
    """The optimal assignment by trying all of them (small instances only: tests)."""
    n, a = node_cost.shape
    every = np.array(list(itertools.product(range(a), repeat=n)), dtype=int).reshape(-1, n)
    costs = node_cost[np.arange(n)[None, :], every].sum(axis=1)
    for u, v, mat in edges:
        costs = costs + mat[every[:, u], every[:, v]]
    k = int(np.argmin(costs))
    return every[k], float(costs[k])


def solve(node_cost, edges, *, max_passes=50):
    """A minimum-cost assignment of nodes (in topological order) to accelerators.

    Parameters
    ----------
    node_cost : (n, A) array
        Cost of node ``i`` on accelerator ``a``; ``inf`` where it cannot run.
    edges : sequence of ``(u, v, (A, A) array)``, ``u < v``
        Cost of the edge when ``u`` is on ``a`` and ``v`` on ``b``.

    Returns
    -------
    (assignment array of length n, total cost). Optimal when the edges form a forest.
    """
    node_cost = np.asarray(node_cost, dtype=np.float64)
    n, na = node_cost.shape
    # Spanning forest: each node's tree parent is its producer with the costliest edge.
    parent = [-1] * n
    weight = [-1.0] * n
    for u, v, mat in edges:
        w = float(np.max(mat[np.isfinite(mat)])) if np.isfinite(mat).any() else math.inf
        if w > weight[v]:
            parent[v], weight[v] = u, w
    tree_edge = {}
    for u, v, mat in edges:
        if parent[v] == u and v not in tree_edge:
            tree_edge[v] = mat
    children = [[] for _ in range(n)]
    for v in range(n):
        if parent[v] >= 0:
            children[parent[v]].append(v)
    # Min-sum from the leaves up: f[v][a] = cost of v's subtree with v on a.
    f = node_cost.copy()
    best_child = {}
    for v in range(n - 1, -1, -1):
        for c in children[v]:
            table = tree_edge[c] + f[c][None, :]          # (a of v, b of c)
            best_child[c] = np.argmin(table, axis=1)
            f[v] += table[np.arange(na), best_child[c]]
    tree = np.zeros(n, dtype=int)
    for v in range(n):
        tree[v] = int(np.argmin(f[v])) if parent[v] < 0 else int(best_child[v][tree[parent[v]]])
    # Iterated conditional modes over every edge, from the tree optimum and from every
    # "all on one accelerator" start (non-tree edges can make co-location pay off); keep the best.
    touching = [[] for _ in range(n)]
    for u, v, mat in edges:
        touching[u].append((v, mat, True))
        touching[v].append((u, mat, False))
    starts = [tree] + [np.where(np.isfinite(node_cost[:, a]), a, tree) for a in range(na)]
    best, best_cost = None, math.inf
    for assign in starts:
        assign = assign.copy()
        for _ in range(max_passes):
            changed = False
            for v in range(n):
                local = node_cost[v].copy()
                for other, mat, v_is_src in touching[v]:
                    local += mat[:, assign[other]] if v_is_src else mat[assign[other], :]
                a = int(np.argmin(local))
                if np.isfinite(local[a]) and local[a] < local[assign[v]] - 1e-12 * abs(local[a]):
                    assign[v], changed = a, True
            if not changed:
                break
        c = total_cost(node_cost, edges, assign)
        if c < best_cost:
            best, best_cost = assign, c
    return (tree, math.inf) if best is None else (best, best_cost)   # inf: no assignment has a finite cost


@dataclass(frozen=True)
class LayerPlacement:
    """One layer's place in a schedule and what it costs there (transfers into it included separately)."""
    layer: str
    op: str
    accelerator: str
    pinned: bool
    cycles: float
    seconds: float
    utilisation: float
    energy_pj: dict                # by component, this accelerator's own
    idle_leakage_pj: float         # the other accelerators' leakage while this layer runs
    transfer_bytes: float          # activation bytes moved into this layer from another accelerator
    transfer_seconds: float
    transfer_pj: float
    dram_bytes: float
    params_fit: bool


@dataclass(frozen=True)
class Schedule:
    """A network's assignment to a system's accelerators, with its totals."""
    network: str
    system: str
    objective: str
    placements: tuple[LayerPlacement, ...]
    macs: float
    area_mm2: float = 0.0

    @property
    def latency_s(self):
        return math.fsum(p.seconds + p.transfer_seconds for p in self.placements)

    @property
    def energy_breakdown_pj(self):
        out = {k: 0.0 for k in COMPONENTS}
        out["idle_leakage"] = 0.0
        out["transfer"] = 0.0
        for p in self.placements:
            for k, v in p.energy_pj.items():
                out[k] += v
            out["idle_leakage"] += p.idle_leakage_pj
            out["transfer"] += p.transfer_pj
        return out

    @property
    def energy_pj(self):
        return math.fsum(self.energy_breakdown_pj.values())

    @property
    def throughput(self):
        """Inferences per second (one at a time)."""
        return 1.0 / self.latency_s

    @property
    def macs_per_joule(self):
        return self.macs / (self.energy_pj * 1e-12)

    def to_dict(self):
        return {
            "network": self.network, "system": self.system, "objective": self.objective,
            "latency_s": self.latency_s, "energy_pj": self.energy_pj, "macs": self.macs,
            "throughput_per_s": self.throughput, "macs_per_joule": self.macs_per_joule,
            "area_mm2": self.area_mm2, "energy_breakdown_pj": self.energy_breakdown_pj,
            "layers": [p.__dict__ for p in self.placements]}


@functools.lru_cache(maxsize=1 << 16)
def _layouts(acc, layer):
    return layouts(acc, layer)


def _reads_in_place(accs, layers, src, dst, node):
    """``(A, A)``: True where ``layers[dst]`` on accelerator ``c`` can read ``layers[src]``'s output written on
    accelerator ``a`` in place (both placements possible, ``node`` finite), for ``a != c`` with a near-memory
    accelerator at either end; True elsewhere, where an end is a concat (the network compiler lays those
    out) and where an accelerator is one mensa only models."""
    out = np.ones((len(accs), len(accs)), dtype=bool)
    producer, reader = layers[src], layers[dst]
    if Op.CONCAT in (producer.op, reader.op):
        return out
    region = ("input", "input2")[reader.inputs.index(producer.name)]
    for a, pa in enumerate(accs):
        for c, pc in enumerate(accs):
            if (a == c or CoreKind.NEARMEM not in (pa.kind, pc.kind) or modelled(pa) or modelled(pc)
                    or not (np.isfinite(node[src, a]) and np.isfinite(node[dst, c]))):
                continue
            out[a, c] = _layouts(pa, producer)["output"].feeds(_layouts(pc, reader)[region])
    return out


def _transfer_matrices(acc, energy, leak_total_mw):
    """Per-byte seconds and pJ of moving an activation from accelerator a to b (zero on the diagonal)."""
    rate = acc.bpc * acc.clock_mhz * 1e6                      # bytes per second of each DMA
    sec = 1.0 / rate[:, None] + 1.0 / rate[None, :]
    np.fill_diagonal(sec, 0.0)
    pj = np.full_like(sec, 2 * energy.dram_pj_per_byte)
    np.fill_diagonal(pj, 0.0)
    pj = pj + sec * leak_total_mw * 1e9
    return sec, pj


def _no_placement(network, system, node, edges, assign):
    """Raise the :class:`ScheduleError` of a network whose every placement has a tensor no reader can read in
    place: the first edge no pair of possible placements of its ends can join, else the first the solver's
    assignment cannot."""
    stuck = [(u, v) for u, v, mat in edges
             if not np.isfinite(mat + node[u][:, None] + node[v][None, :]).any()]
    stuck += [(u, v) for u, v, mat in edges if not np.isfinite(mat[assign[u], assign[v]])]
    if stuck:
        producer, reader = network.layers[stuck[0][0]], network.layers[stuck[0][1]]
        raise ScheduleError(
            f"layer {reader.name!r} reads {producer.name!r} in a layout no accelerator of {system.name} that may run "
            f"it shares with one that may run {producer.name!r} (a reader reads its producer's output in place: "
            f"across a near-memory accelerator, one pixel's channels); allowed: placements of one layout")
    raise ScheduleError(f"network {network.name!r}: no placement on {system.name} runs every layer")


def schedule(network, system, *, objective="latency", pins=None, energy=EnergyTable(), area=AreaTable(),
             calibration=Calibration()):
    """Assign every layer of ``network`` to an accelerator of ``system``.

    Parameters
    ----------
    network : :class:`~mensa.core.ir.Network`
    system : :class:`~mensa.core.config.SystemConfig`
    objective : ``"latency"`` or ``"energy"``
    pins : dict ``{layer name: accelerator name}``, optional
        Layers to place by hand.

    Returns
    -------
    :class:`Schedule`
    """
    if objective not in OBJECTIVES:
        raise ScheduleError(f"objective {objective!r} is not allowed; allowed: {', '.join(OBJECTIVES)}")
    pins = dict(pins or {})
    names = [l.name for l in network.layers]
    index = {n: i for i, n in enumerate(names)}
    acc_names = [a.name for a in system.accelerator]
    for layer_name, acc_name in pins.items():
        if layer_name not in index:
            raise ScheduleError(f"pin {layer_name}={acc_name}: no layer {layer_name!r} in {network.name}")
        if acc_name not in acc_names:
            raise ScheduleError(f"pin {layer_name}={acc_name}: no accelerator {acc_name!r}; "
                                f"allowed: {', '.join(acc_names)}")
    lt = LayerTable(network.layers)
    at = AcceleratorTable(system.accelerator, system.dram, arbitrated=arbitrated(system))
    cost = evaluate(lt, at, calibration=calibration)
    parts = layer_energy(cost, energy, area)
    leak = np.array([leakage_mw(a, energy, area) for a in system.accelerator])
    own_pj = sum(parts.values())
    with np.errstate(invalid="ignore"):       # inf seconds x zero idle leakage (a one-accelerator system)
        idle_pj = np.where(cost.supported, cost.seconds * (leak.sum() - leak)[None, :] * 1e9, np.inf)
    per_byte_s, per_byte_pj = _transfer_matrices(at, energy, leak.sum())
    node = cost.seconds.copy() if objective == "latency" else own_pj + idle_pj
    # Inputs from the host: the network input is read from DRAM by whichever accelerator runs the layer.
    input_bytes = np.zeros(len(names))
    edges, edge_bytes = [], []
    out_bytes = {l.name: float(math.prod(l.out_shape)) for l in network.layers}
    host_s = np.zeros(len(names))
    for v, layer in enumerate(network.layers):
        for src in layer.inputs:
            if src not in index:
                input_bytes[v] += float(math.prod(layer.in_shape))
    host_s = input_bytes[:, None] / (at.bpc * at.clock_mhz * 1e6)[None, :]
    host_pj = input_bytes[:, None] * energy.dram_pj_per_byte + host_s * leak.sum() * 1e9
    node = node + (host_s if objective == "latency" else host_pj)
    for layer_name, acc_name in pins.items():
        i, j = index[layer_name], acc_names.index(acc_name)
        if not cost.supported[i, j]:
            raise ScheduleError(f"pin {layer_name}={acc_name}: {cost.reason(i, j)}")
        keep = node[i, j]
        node[i, :] = np.inf
        node[i, j] = keep
    for i in range(len(names)):
        if not np.isfinite(node[i]).any():
            why = "; ".join(cost.reason(i, j) for j in range(len(acc_names)))
            raise ScheduleError(f"layer {names[i]!r} ({network.layers[i].op.value}): no accelerator of "
                                f"{system.name} can run it ({why})")
    for v, layer in enumerate(network.layers):
        for src in layer.inputs:
            if src in index:
                b = out_bytes[src]
                mat = b * (per_byte_s if objective == "latency" else per_byte_pj)
                fits = _reads_in_place(system.accelerator, network.layers, index[src], v, node)
                if not fits.all():
                    mat = np.where(fits, mat, np.inf)
                edges.append((index[src], v, mat))
                edge_bytes.append(b)
    assign, best = solve(node, edges)
    if not np.isfinite(best):
        _no_placement(network, system, node, edges, assign)

    # Report both figures whatever the objective.
    t_in = np.zeros(len(names))
    b_in = np.zeros(len(names))
    pj_in = np.zeros(len(names))
    for (u, v, _), b in zip(edges, edge_bytes):
        a, c = assign[u], assign[v]
        if a != c:
            b_in[v] += b
            t_in[v] += b * per_byte_s[a, c]
            pj_in[v] += b * per_byte_pj[a, c]
    placements = []
    for i, layer in enumerate(network.layers):
        j = assign[i]
        placements.append(LayerPlacement(
            layer=layer.name, op=layer.op.value, accelerator=acc_names[j], pinned=layer.name in pins,
            cycles=float(cost.cycles[i, j]), seconds=float(cost.seconds[i, j]),
            utilisation=float(cost.utilisation[i, j]),
            energy_pj={k: float(v[i, j]) for k, v in parts.items()},
            idle_leakage_pj=float(idle_pj[i, j]),
            transfer_bytes=float(b_in[i] + input_bytes[i]),
            transfer_seconds=float(t_in[i] + host_s[i, j]), transfer_pj=float(pj_in[i] + host_pj[i, j]),
            dram_bytes=float(cost.dram_bytes[i, j]), params_fit=bool(cost.params_fit[i, j])))
    return Schedule(network=network.name, system=system.name, objective=objective,
                    placements=tuple(placements), macs=float(network.macs),
                    area_mm2=system_area_mm2(system, area))
