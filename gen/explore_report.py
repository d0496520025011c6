"""What ``mensa explore`` and ``bench/explore.py`` write: best-so-far curves, the Pareto front, the plots."""

import csv
import math
import warnings

import numpy as np

from mensa.model.explore import hypervolume, pareto_front

__all__ = ["best_so_far", "front_of", "convergence_plot", "write_trials_csv"]


def best_so_far(evaluations, budget=None):
    """The best feasible value after each evaluation (``inf`` until the first feasible one)."""
    best, out = math.inf, []
    for e in evaluations:
        if e.feasible and e.value < best:
            best = e.value
        out.append(best)
    if budget is not None and out:
        out += [out[-1]] * (budget - len(out))
    return np.array(out, dtype=float)


def front_of(evaluations):
    """The Pareto front (latency ms, energy mJ, area mm^2) of the feasible evaluations, and its
    hypervolume: each objective divided by a reference of 1.1 x its worst feasible value, so the
    figure is a fraction of the unit cube (1 would be a point at zero on every axis)."""
    feasible = [e for e in evaluations if e.feasible]
    if not feasible:
        return {"points": [], "hypervolume": 0.0, "reference": None}
    costs = np.array([[e.latency_ms, e.energy_mj, e.area_mm2] for e in feasible])
    ref = 1.1 * costs.max(axis=0)
    keep = pareto_front(costs)
    hv = hypervolume(costs[keep] / ref, np.ones(3))
    points = [{"point": list(feasible[i].point), "latency_ms": feasible[i].latency_ms,
               "energy_mj": feasible[i].energy_mj, "area_mm2": feasible[i].area_mm2, "value": feasible[i].value}
              for i in keep]
    return {"points": points, "hypervolume": hv, "reference": ref.tolist(),
            "objectives": ["latency_ms", "energy_mj", "area_mm2"]}


def convergence_plot(curves, path, *, ylabel, title, optimum=None):
    """Best found against evaluations, one line per optimiser: the mean over seeds, and their spread
    (min to max) shaded. ``curves``: ``{optimiser: [one array per seed]}``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        n = min(len(r) for r in runs)
        data = np.array([r[:n] for r in runs], dtype=float)
        data = np.where(np.isfinite(data), data, np.nan)
        x = np.arange(1, n + 1)
        with warnings.catch_warnings():       # a column all nan (no feasible point yet) stays nan
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, lo, hi = np.nanmean(data, 0), np.nanmin(data, 0), np.nanmax(data, 0)
        label = name if len(runs) == 1 else f"{name} (mean, min-max of {len(runs)} seeds)"
        line, = ax.plot(x, mean, label=label, linewidth=1.2)
        if len(runs) > 1:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if optimum is not None:
        ax.axhline(optimum, color="black", linestyle=":", linewidth=1, label="true optimum")
    ax.set_xscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_trials_csv(path, space, evaluations):
    """Every distinct point evaluated, in order: parameter values, figures, feasibility and why not."""
    names = [p.name for p in space.params]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["evaluation", *names, "value", "latency_ms", "energy_mj", "area_mm2", "feasible", "reason"])
        for k, e in enumerate(evaluations, 1):
            w.writerow([k, *space.values(e.point).values(), e.value, e.latency_ms, e.energy_mj, e.area_mm2,
                        e.feasible, e.reason])
