"""Design-space exploration: what a point of a space costs for a task, and the optimisers that pick points.

A *task* is the workload and its bounds: zoo models, an objective (latency, energy or their
product, each the geometric mean over the models, so no model dominates by its size), an
area budget and an optional latency bound (on every model). A point that breaks a bound is
*infeasible*: it still has a cost, and a ``violation`` (the relative excess over each bound,
summed) that the optimisers use as a constraint; it is never an error. Bounds: area, latency,
the space's FPGA resources (DSP blocks, one per int8 MAC; block-RAM KiB, the on-chip memories),
the Edge TPU template's array beyond the config's largest, and a network that does not run
(a layer no accelerator of the point can run).

Evaluation is batched: a one-accelerator system (the monolith) is costed for a whole batch of
points in one vectorised :func:`mensa.model.cost.evaluate` call per model, with the scheduler's
arithmetic for one accelerator (:func:`evaluate_points` is checked against
:func:`mensa.model.schedule.schedule` point for point); a heterogeneous system is scheduled point
by point.

The optimisers share one loop (:func:`search`) and one record, an optuna study (SQLite storage
makes a run resumable): random sampling, a grid (exhaustive when the budget covers the space),
regularised evolution (Real et al. 2019), and optuna's TPE, CMA-ES (with margin, for integer
spaces) and NSGA-II. The budget counts distinct points evaluated; an optimiser that proposes a
point again gets its cached cost; one that proposes mostly known points is stopped after
:data:`PROPOSALS_PER_POINT` proposals per point of its budget.
"""

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from mensa.core.config import CoreKind
from mensa.core.errors import UserError
from mensa.model import zoo
from mensa.model.cost import AcceleratorTable, LayerTable, buffer_bytes, evaluate
from mensa.model.energy import EnergyTable, layer_energy, leakage_mw, system_area_mm2
from mensa.model.schedule import ScheduleError, schedule
from mensa.model.space import template_overflow

__all__ = ["OBJECTIVES", "OPTIMIZERS", "Task", "Evaluation", "evaluate_points", "evaluate_chunk", "search",
           "grid_levels", "pareto_front", "hypervolume", "PENALTY", "fpga_resources"]

OBJECTIVES = ("latency", "energy", "edp")
OPTIMIZERS = ("random", "grid", "evolution", "tpe", "cmaes", "nsga2")
PENALTY = 1e30          # what an optimiser is told for a point whose network does not run
PROPOSALS_PER_POINT = 5  # a search stops after this many proposals per point of its budget
_VIOLATION_WEIGHT = 10.0


@dataclass(frozen=True)
class Task:
    """What a search minimises and under which bounds."""
    models: tuple[str, ...]
    objective: str = "latency"
    area_mm2: float | None = None
    latency_ms: float | None = None
    dsp_max: int | None = None
    bram_kib_max: float | None = None


@dataclass(frozen=True)
class Evaluation:
    """One point's cost: objective ``value`` (ms, mJ or ms x mJ; geometric mean over the models),
    ``latency_ms`` and ``energy_mj`` (geometric means), ``area_mm2``, per-model figures, and the
    ``violation`` of the bounds with its ``reason`` (0 and "" when feasible)."""
    point: tuple
    value: float
    latency_ms: float
    energy_mj: float
    area_mm2: float
    violation: float = 0.0
    reason: str = ""
    models: dict = field(default_factory=dict)      # {model: (latency ms, energy mJ)}

    @property
    def feasible(self):
        return self.violation == 0 and math.isfinite(self.value)

    @property
    def penalised(self):
        """What an optimiser minimises: the value, raised by the violation; :data:`PENALTY` if no value."""
        if not math.isfinite(self.value):
            return PENALTY
        return self.value * (1 + _VIOLATION_WEIGHT * self.violation)

    def to_dict(self):
        return {"value": self.value if math.isfinite(self.value) else None, "latency_ms": _finite(self.latency_ms),
                "energy_mj": _finite(self.energy_mj), "area_mm2": self.area_mm2, "violation": self.violation,
                "reason": self.reason, "models": {m: [_finite(a), _finite(b)] for m, (a, b) in self.models.items()}}

    @classmethod
    def from_dict(cls, point, d):
        inf = math.inf
        return cls(point=tuple(point), value=inf if d["value"] is None else d["value"],
                   latency_ms=inf if d["latency_ms"] is None else d["latency_ms"],
                   energy_mj=inf if d["energy_mj"] is None else d["energy_mj"], area_mm2=d["area_mm2"],
                   violation=d["violation"], reason=d["reason"],
                   models={m: tuple(inf if x is None else x for x in v) for m, v in d["models"].items()})


def _finite(x):
    return x if math.isfinite(x) else None


@functools.lru_cache(maxsize=64)
def _network(name):
    net = zoo.get(name)
    names = {l.name for l in net.layers}
    # Bytes each layer reads from the host (the network's inputs), as the scheduler charges them.
    host = np.array([sum(float(math.prod(l.in_shape)) for s in l.inputs if s not in names) for l in net.layers])
    return net, LayerTable(net.layers), host


#: DSP blocks of a systolic accelerator beyond its array's MACs: per column and in all (the requantiser's and
#: the address arithmetic's multipliers), fitted to `mensa synth` on ECP5 (MULT18X18D): a 2x2 WS accelerator
#: took 36 (docs/synth.md), a 12x13 one (the edgetpu-fpga space's first best design) 218.
SYSTOLIC_DSP_PER_COL, SYSTOLIC_DSP_FIXED = 3, 27
#: DSP blocks of a near-memory unit beyond its lanes' MACs: a requantiser lane's (three, the Q31 product) and,
#: with the LSTM datapath, a cell lane's (four) (`python bench/fit.py`: pavlov and jacquard of mensa-g-fpga).
REQUANT_LANE_DSP, CELL_LANE_DSP = 3, 4


def nearmem_dsp(n):
    """DSP blocks of the near-memory unit of :class:`~mensa.core.config.NearMemConfig` ``n``: its lanes' MACs,
    its requantisers' lanes (``lanes / requant_passes`` each; two with the LSTM datapath, the hidden state's
    the second) and the LSTM cell's."""
    requants = 2 if n.lstm else 1
    return (n.vaults * n.lanes + requants * REQUANT_LANE_DSP * n.lanes // n.requant_passes
            + (CELL_LANE_DSP * n.lanes if n.lstm else 0))


def fpga_resources(system):
    """``(DSP blocks, block-RAM KiB)`` of a system on an FPGA: one DSP per int8 MAC plus a systolic
    accelerator's others (:data:`SYSTOLIC_DSP_PER_COL`, :data:`SYSTOLIC_DSP_FIXED`) and a near-memory unit's
    (:func:`nearmem_dsp`), the on-chip memories (for an Edge TPU template, its core, PE and accumulator
    memories) in block RAM."""
    dsp = kib = 0
    for a in system.accelerator:
        if a.kind is CoreKind.NEARMEM:
            dsp += nearmem_dsp(a.nearmem)
            kib += a.nearmem.vaults * a.nearmem.local_kib
        else:
            dsp += a.array.rows * a.array.cols + SYSTOLIC_DSP_PER_COL * a.array.cols + SYSTOLIC_DSP_FIXED
            kib += sum(buffer_bytes(a)) / 1024
    return dsp, kib


def _bounds(task, system, area, latencies_ms):
    """(violation, reason) of a point's bounds."""
    violation, reasons = 0.0, []
    if task.area_mm2 is not None and area > task.area_mm2:
        violation += area / task.area_mm2 - 1
        reasons.append(f"area {area:.3f} mm^2 > {task.area_mm2:g}")
    if task.latency_ms is not None and latencies_ms:
        worst = max(latencies_ms)
        if worst > task.latency_ms:
            violation += worst / task.latency_ms - 1
            reasons.append(f"latency {worst:.3f} ms > {task.latency_ms:g}")
    if task.dsp_max is not None or task.bram_kib_max is not None:
        dsp, kib = fpga_resources(system)
        if task.dsp_max is not None and dsp > task.dsp_max:
            violation += dsp / task.dsp_max - 1
            reasons.append(f"{dsp} DSP blocks > {task.dsp_max}")
        if task.bram_kib_max is not None and kib > task.bram_kib_max:
            violation += kib / task.bram_kib_max - 1
            reasons.append(f"{kib:.0f} KiB block RAM > {task.bram_kib_max:g}")
    over = template_overflow(system)
    if over:
        violation += 1.0
        reasons.append(f"{', '.join(over)}: template MACs beyond a 256 x 256 array")
    return violation, "; ".join(reasons)


def _value(objective, lat_ms, e_mj):
    lat, e = _geomean(lat_ms), _geomean(e_mj)
    return {"latency": lat, "energy": e, "edp": lat * e}[objective], lat, e


def _geomean(xs):
    xs = [float(x) for x in xs]
    if not all(math.isfinite(x) and x > 0 for x in xs):
        return math.inf
    return math.exp(math.fsum(math.log(x) for x in xs) / len(xs))


def _monolith(task, systems):
    """Per model, (latency s, energy pJ) of every one-accelerator system: the scheduler's sums, vectorised."""
    accs = [s.accelerator[0] for s in systems]
    at = AcceleratorTable(accs, [s.dram for s in systems])
    energy = EnergyTable()
    leak = np.array([leakage_mw(a) for a in accs])
    out = {}
    for m in task.models:
        _, lt, host = _network(m)
        cost = evaluate(lt, at)
        parts = layer_energy(cost)
        host_s = host.sum() / (at.bpc * at.clock_mhz * 1e6)
        lat = cost.seconds.sum(axis=0) + host_s
        pj = sum(p.sum(axis=0) for p in parts.values()) + host.sum() * energy.dram_pj_per_byte + host_s * leak * 1e9
        ok = cost.supported.all(axis=0)
        out[m] = (np.where(ok, lat, np.inf), np.where(ok, pj, np.inf), [_unsupported(cost, j) for j in range(len(accs))])
    return out


def _unsupported(cost, j):
    bad = np.flatnonzero(~cost.supported[:, j])
    return cost.reason(int(bad[0]), j) if len(bad) else ""


def _scheduled(task, system):
    """Per model, (latency s, energy pJ, reason) of a heterogeneous system, by the scheduler."""
    out = {}
    for m in task.models:
        net = _network(m)[0]
        try:
            if task.objective == "latency":
                runs = [schedule(net, system, objective="latency")]
            elif task.objective == "energy":
                runs = [schedule(net, system, objective="energy")]
            else:
                runs = [schedule(net, system, objective=o) for o in ("latency", "energy")]
            best = min(runs, key=lambda s: s.latency_s * s.energy_pj)
            out[m] = (best.latency_s, best.energy_pj, "")
        except ScheduleError as e:
            out[m] = (math.inf, math.inf, str(e))
    return out


def evaluate_points(space, task, points):
    """The :class:`Evaluation` of every point (tuples of value indices) of ``space`` for ``task``."""
    points = [tuple(int(i) for i in p) for p in points]
    if not points:
        return []
    systems = [space.config(p) for p in points]
    per_model = {}
    if len(space.base.accelerator) == 1:
        mono = _monolith(task, systems)
        for k in range(len(points)):
            per_model[k] = {m: (float(mono[m][0][k]), float(mono[m][1][k]), mono[m][2][k]) for m in task.models}
    else:
        for k, s in enumerate(systems):
            per_model[k] = _scheduled(task, s)
    out = []
    for k, (p, s) in enumerate(zip(points, systems)):
        area = system_area_mm2(s)
        runs = per_model[k]
        lat_ms = [runs[m][0] * 1e3 for m in task.models]
        e_mj = [runs[m][1] * 1e-9 for m in task.models]
        value, lat, e = _value(task.objective, lat_ms, e_mj)
        violation, reason = _bounds(task, s, area, [x for x in lat_ms if math.isfinite(x)])
        broken = [f"{m}: {runs[m][2]}" for m in task.models if not math.isfinite(runs[m][0])]
        if broken:
            violation += 1.0
            reason = "; ".join(([reason] if reason else []) + ["does not run " + broken[0]])
        out.append(Evaluation(point=p, value=value, latency_ms=lat, energy_mj=e, area_mm2=area,
                              violation=violation, reason=reason,
                              models={m: (l, x) for m, l, x in zip(task.models, lat_ms, e_mj)}))
    return out


def evaluate_chunk(job):
    """:func:`evaluate_points` of one ``(space, task, points)`` job: the unit of parallel work."""
    space, task, points = job
    return evaluate_points(space, task, points)


# ---------------------------------------------------------------------------------------------- optimisers

def grid_levels(shape, budget):
    """Value indices per parameter of the largest even grid of at most ``budget`` points (every value of
    every parameter when the space fits): the parameter with most levels loses one at a time."""
    levels = list(shape)
    while math.prod(levels) > budget and max(levels) > 1:
        k = int(np.argmax(levels))
        levels[k] -= 1
    return [tuple(sorted({int(round(x)) for x in np.linspace(0, n - 1, l)})) for n, l in zip(shape, levels)]


class _History:
    """The trials of a search in order, and the distinct points' evaluations."""

    def __init__(self):
        self.points = []            # every trial's point, in order (repeats included)
        self.values = []            # what the optimiser was told
        self.cache = {}             # point -> Evaluation

    def add(self, point, evaluation):
        self.points.append(point)
        self.values.append(evaluation.penalised)
        self.cache.setdefault(point, evaluation)


class _Random:
    def __init__(self, space, seed, budget):
        self.space, self.seed = space, seed

    def rng(self, history):
        return np.random.default_rng([self.seed, len(history.points)])

    def random_point(self, rng, history, taken):
        for _ in range(64):
            p = tuple(int(rng.integers(n)) for n in self.space.shape)
            if p not in history.cache and p not in taken:
                return p
        return p

    def ask(self, n, history):
        rng, taken = self.rng(history), set()
        for _ in range(n):
            taken.add(self.random_point(rng, history, taken))
        return list(taken)


class _Grid(_Random):
    def __init__(self, space, seed, budget):
        super().__init__(space, seed, budget)
        levels = grid_levels(space.shape, budget)
        grids = np.meshgrid(*(np.array(l) for l in levels), indexing="ij")
        pts = np.stack([g.ravel() for g in grids], axis=1)
        order = np.random.default_rng(seed).permutation(len(pts))
        self.order = [tuple(int(i) for i in pts[k]) for k in order]

    def ask(self, n, history):
        out = [p for p in self.order if p not in history.cache][:n]
        return out


class _Evolution(_Random):
    """Regularised evolution (Real et al., AAAI 2019): the population is the last ``P`` evaluated points;
    a child mutates the best of ``S`` of them drawn at random; the oldest dies."""

    def __init__(self, space, seed, budget):
        super().__init__(space, seed, budget)
        self.population = int(min(50, max(8, budget // 20)))
        self.sample = max(2, self.population // 4)

    def mutate(self, rng, parent):
        child = list(parent)
        d = len(child)
        while tuple(child) == parent:
            for k in range(d):
                if rng.random() < 1.0 / d or k == d - 1 and tuple(child) == parent:
                    n = self.space.shape[k]
                    if n == 1:
                        continue
                    if rng.random() < 0.7:          # a step to a neighbouring value: the spaces are ordinal
                        child[k] = int(np.clip(child[k] + rng.choice([-2, -1, 1, 2]), 0, n - 1))
                    else:
                        child[k] = int(rng.integers(n))
            if all(n == 1 for n in self.space.shape):
                break
        return tuple(child)

    def ask(self, n, history):
        if len(history.points) < self.population:
            return super().ask(min(n, self.population - len(history.points)), history)
        rng = self.rng(history)
        pop = list(zip(history.points[-self.population:], history.values[-self.population:]))
        out = []
        for _ in range(n):
            for _ in range(16):
                picks = rng.choice(len(pop), size=self.sample, replace=False)
                parent = min((pop[i] for i in picks), key=lambda pv: pv[1])[0]
                child = self.mutate(rng, parent)
                if child not in history.cache and child not in out:
                    break
            out.append(child)
        return out


def _sampler(kind, seed, budget):
    import optuna
    startup = min(10, max(budget // 10, 1))
    # Constraints reach TPE and NSGA-II as the trials' own (Trial.set_constraint); CMA-ES sees only the
    # penalised value.
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, with_margin=True, n_startup_trials=startup,
                                            warn_independent_sampling=False)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    return optuna.samplers.RandomSampler(seed=seed)


def _quiet_optuna():
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_record(storage, name="explore"):
    """The optuna study on ``storage`` (``sqlite:///path``) that records a search, created or loaded."""
    import optuna
    _quiet_optuna()
    return optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)


def _distributions(space):
    from optuna.distributions import IntDistribution
    return {p.name: IntDistribution(0, len(p.values) - 1) for p in space.params}


def search(space, task, kind, budget, evaluate, *, seed=0, storage=None, batch=8, warm=(), on_batch=None):
    """Run (or resume) a search of ``budget`` distinct points; return its distinct evaluations in order.

    The optimiser samples from an in-memory optuna study; every batch is then added to the record on
    ``storage`` (one transaction per batch: SQLite commits per trial would cost more than the cost
    model). A resumed search replays the record into the optimiser first.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(points) -> list of Evaluation`` (:func:`evaluate_points`, or a parallel or cached one).
    storage : str, optional
        An optuna storage URL (``sqlite:///path``); a record found there is resumed.
    warm : sequence of points
        Points evaluated first (transfer from a related search), told to the optimiser as its first trials.
    on_batch : callable, optional
        ``on_batch(evaluations done, best Evaluation or None)`` after every batch.
    """
    import optuna
    from optuna.trial import TrialState, create_trial
    if kind not in OPTIMIZERS:
        raise UserError(f"optimizer {kind!r} is not known; allowed: {', '.join(OPTIMIZERS)}")
    _quiet_optuna()
    study = optuna.create_study(direction="minimize", sampler=_sampler(kind, seed, budget))
    record = open_record(storage) if storage else None
    dists = _distributions(space)
    names = [p.name for p in space.params]
    history = _History()

    constrained = kind != "cmaes"        # optuna's CMA-ES warns of constraints it cannot use

    def frozen(p, e, repeat):
        return create_trial(params=dict(zip(names, p)), distributions=dists, value=e.penalised,
                            user_attrs={"evaluation": e.to_dict(), "violation": e.violation, "repeat": repeat},
                            constraints={"violation": e.violation} if constrained else None)
    if record is not None:
        done = [t for t in record.get_trials(deepcopy=False) if t.state is TrialState.COMPLETE
                and "evaluation" in t.user_attrs and set(t.params) == set(names)]
        for t in done:
            point = tuple(t.params[n] for n in names)
            history.add(point, Evaluation.from_dict(point, t.user_attrs["evaluation"]))
        study.add_trials([frozen(p, history.cache[p], False) for p in history.points])
    own = {"random": _Random, "grid": _Grid, "evolution": _Evolution}.get(kind)
    optimiser = own(space, seed, budget) if own else None
    warm = [tuple(p) for p in warm if tuple(p) not in history.cache]
    best = min((e for e in history.cache.values() if e.feasible), key=lambda e: e.value, default=None)
    stale = 0
    while len(history.cache) < budget:
        n = min(batch, budget - len(history.cache))
        trials = None
        if warm:
            points, warm = warm[:n], warm[n:]
        elif optimiser is not None:
            points = optimiser.ask(n, history)
        else:
            trials = [study.ask(dists) for _ in range(n)]
            points = [tuple(t.params[k] for k in names) for t in trials]
        new = list(dict.fromkeys(p for p in points if p not in history.cache))
        for e in evaluate(new):
            history.cache[e.point] = e
            if e.feasible and (best is None or e.value < best.value):
                best = e
        told = []
        for k, p in enumerate(points):
            e = history.cache[p]
            history.points.append(p)
            history.values.append(e.penalised)
            told.append(frozen(p, e, p not in new))
            if trials is not None:
                for key, v in told[-1].user_attrs.items():
                    trials[k].set_user_attr(key, v)
                if constrained:
                    trials[k].set_constraint("violation", e.violation)
                study.tell(trials[k], e.penalised)
        if trials is None:
            study.add_trials(told)
        if record is not None:
            record.add_trials(told)
        stale = 0 if new else stale + 1
        if on_batch:
            on_batch(len(history.cache), best)
        # The optimiser proposes nothing new (the space is exhausted), or mostly points it has seen (a
        # converged population): stop rather than ask without end.
        if stale >= 50 or not points or len(history.points) >= PROPOSALS_PER_POINT * budget:
            break
    seen, out = set(), []
    for p in history.points:
        if p not in seen:
            seen.add(p)
            out.append(history.cache[p])
    return out


# ---------------------------------------------------------------------------------------------- Pareto front

def pareto_front(costs):
    """Indices of the non-dominated rows of ``costs`` (``(n, k)``, every column minimised)."""
    costs = np.asarray(costs, dtype=float)
    order = np.lexsort(costs.T[::-1])
    keep = []
    for i in order:
        c = costs[i]
        if not any(np.all(costs[j] <= c) and np.any(costs[j] < c) for j in keep):
            keep.append(int(i))
    # a later row can dominate none of the kept ones (lexicographic order), so keep is the front
    return sorted(keep)


def hypervolume(front, reference):
    """Hypervolume dominated by ``front`` (``(n, 3)``, minimised) up to ``reference``: exact, by slicing
    along the first objective and sweeping the other two."""
    pts = np.asarray(front, dtype=float)
    ref = np.asarray(reference, dtype=float)
    pts = pts[np.all(pts < ref, axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.argsort(pts[:, 0])]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, 0] if i + 1 < len(pts) else ref[0]
        width = upper - pts[i, 0]
        if width <= 0:
            continue
        slab = pts[: i + 1, 1:]
        slab = slab[np.argsort(slab[:, 0])]
        area, z = 0.0, ref[2]
        for y, zz in slab:
            if zz < z:
                area += (ref[1] - y) * (z - zz)
                z = zz
        total += width * area
    return float(total)
