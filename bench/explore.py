"""How close each optimiser of ``mensa explore`` comes to the true optimum, and what transfer saves.

1. Exact: the space ``edgetpu-small`` (103,680 points of the Edge TPU template) is enumerated with the
   vectorised cost model for MobileNetV2 + the RNN-T transducer under one area budget (Mensa-G's own
   area), which gives the true optimum. Every optimiser then searches it (the enumeration as a lookup
   table) with 10 seeds: the gap between the best found and the optimum after 100, 300 and 1000
   evaluations (mean, min, max over seeds), and the evaluations each needs to come within 2% of the
   optimum, against random search's (measured, and its exact expectation (N + 1) / (K + 1) for K
   points within 2% among N feasible or not).
2. Transfer (5 seeds): TPE warm-started from the best points of a 300-evaluation TPE search of a related task
   (another area budget; another workload), against a cold start: evaluations to reach 2% (the warm
   searches stop at 500 evaluations).
3. The Edge TPU template (``edgetpu``, 1.2 x 10^8 points, 5 seeds): the best found after 1000 evaluations by each
   optimiser, as a percentage better than random search's, as Apollo reports it.

Prints and writes bench/out/explore.json and the convergence plots bench/out/explore_*.png.
``--seeds``, ``--budget`` and ``--parts`` make a quicker run.
"""

import argparse
import json
import math
import pickle
import time
from pathlib import Path

import numpy as np

from mensa.core.config import load
from mensa.gen.explore_report import best_so_far, convergence_plot
from mensa.gen.parallel import run_tasks
from mensa.model.energy import system_area_mm2
from mensa.model.explore import OPTIMIZERS, Task, evaluate_chunk, evaluate_points, search
from mensa.model.space import load_space

OUT = Path(__file__).resolve().parent / "out"
MODELS = ("mobilenet_v2", "rnnt")
CHECKPOINTS = (100, 300, 1000)
WITHIN = 0.02
_TABLES = {}        # task key -> {point: Evaluation}; inherited by forked workers


def enumerate_space(space, task, workers=2):
    cache = OUT / f"table-{space.name}-{'+'.join(task.models)}-{task.objective}-{task.area_mm2:.4f}.pkl"
    if cache.exists():
        table, seconds = pickle.loads(cache.read_bytes())
        return table, seconds
    start = time.monotonic()
    points = [tuple(int(i) for i in p) for p in space.points()]
    chunks = [points[k:k + 4096] for k in range(0, len(points), 4096)]
    table = {}
    for _, evaluations in run_tasks(evaluate_chunk, [(space, task, c) for c in chunks], workers=workers):
        for e in evaluations:
            table[e.point] = e
    seconds = time.monotonic() - start
    cache.write_bytes(pickle.dumps((table, seconds)))
    return table, seconds


def _lookup(key):
    table = _TABLES[key]
    return lambda points: [table[p] for p in points]


def _run(job):
    """One search: (space name, task key, task, optimiser, seed, budget, warm points) -> best-so-far curve.
    Cached in bench/out/runs/ by its arguments, so a bench stopped part way redoes only what is missing."""
    import hashlib
    name = hashlib.sha256(repr(job[:1] + job[2:]).encode()).hexdigest()[:16]
    cache = OUT / "runs" / f"{job[3]}-{job[4]}-{name}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    result = _search(job)
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def _search(job):
    space_name, key, task, kind, seed, budget, warm = job
    space = load_space(space_name)
    evaluate = _lookup(key) if key in _TABLES else (lambda points: evaluate_points(space, task, points))
    start = time.monotonic()
    found = search(space, task, kind, budget, evaluate, seed=seed, batch=8, warm=warm)
    return {"curve": best_so_far(found, budget).tolist(), "seconds": time.monotonic() - start,
            "points": [list(e.point) for e in sorted((e for e in found if e.feasible), key=lambda e: e.value)[:32]]}


def _reach(curve, target):
    hit = np.flatnonzero(np.asarray(curve) <= target)
    return int(hit[0]) + 1 if len(hit) else None


def _stats(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None
    return {"mean": float(np.mean(xs)), "min": float(np.min(xs)), "max": float(np.max(xs)), "n": len(xs)}


def exact(space_name, task, key, seeds, budget, workers, console):
    space = load_space(space_name)
    table, enum_s = enumerate_space(space, task, workers)
    _TABLES[key] = table
    values = np.array([e.value for e in table.values() if e.feasible])
    optimum = float(values.min())
    good = int((values <= optimum * (1 + WITHIN)).sum())
    console(f"{space_name}: {len(table):,} points enumerated in {enum_s:.1f} s ({len(table) / enum_s:,.0f} points/s), "
            f"{len(values):,} feasible, optimum {optimum:.4f} ms, {good} points within {WITHIN:.0%} of it")
    order = ("tpe", "random", "evolution", "nsga2", "cmaes", "grid")     # the slowest first
    jobs = [(space_name, key, task, kind, seed, budget, []) for seed in seeds for kind in order]   # seed by seed
    runs = {kind: [None] * len(seeds) for kind in OPTIMIZERS}
    for n, (i, result) in enumerate(run_tasks(_run, jobs, workers=workers), 1):
        runs[jobs[i][3]][seeds.index(jobs[i][4])] = result
        print(f"    run {n}/{len(jobs)}: {jobs[i][3]} seed {jobs[i][4]} in {result['seconds']:.0f} s", flush=True)
    out = {"space": space_name, "points": len(table), "feasible": len(values), "optimum_ms": optimum,
           "within_2pct_points": good, "enumeration_s": enum_s,
           "random_expected_evaluations_to_2pct": (len(table) + 1) / (good + 1), "optimizers": {}}
    for kind, results in runs.items():
        curves = [r["curve"] for r in results]
        gaps = {str(c): _stats([curve[c - 1] / optimum - 1 for curve in curves]) for c in CHECKPOINTS if c <= budget}
        reach = [_reach(curve, optimum * (1 + WITHIN)) for curve in curves]
        out["optimizers"][kind] = {
            "gap": gaps, "evaluations_to_2pct": _stats(reach), "reached_2pct": sum(r is not None for r in reach),
            "seeds": len(seeds), "seconds_per_run": float(np.mean([r["seconds"] for r in results])),
            "found_optimum": sum(min(curve) <= optimum * (1 + 1e-12) for curve in curves)}
        console(f"  {kind:9s} gap " + ", ".join(f"@{c} {100 * g['mean']:.2f}% [{100 * g['min']:.2f}, {100 * g['max']:.2f}]"
                                               for c, g in gaps.items() if g)
                + f"; within 2% in {sum(r is not None for r in reach)}/{len(seeds)} seeds"
                + (f", mean {out['optimizers'][kind]['evaluations_to_2pct']['mean']:.0f} evaluations" if any(reach) else ""))
    convergence_plot({k: [r["curve"] for r in v] for k, v in runs.items()}, OUT / "explore_exact.png",
                     ylabel="best latency found (ms, geomean MobileNetV2 + RNN-T)", optimum=optimum,
                     title=f"{space_name} ({len(table):,} points), area <= {task.area_mm2:.2f} mm^2, {len(seeds)} seeds")
    return out, runs


def transfer(space_name, target_key, target, cold, sources, seeds, budget, workers, console):
    optimum = min(e.value for e in _TABLES[target_key].values() if e.feasible)
    out = {"target_optimum_ms": optimum, "cold": None, "sources": {}}
    cold_reach = [_reach(r["curve"], optimum * (1 + WITHIN)) for r in cold]
    out["cold"] = {"evaluations_to_2pct": _stats(cold_reach), "reached": sum(r is not None for r in cold_reach),
                   "gap_at_100": _stats([r["curve"][99] / optimum - 1 for r in cold])}
    console(f"transfer to {', '.join(target.models)} at {target.area_mm2:.2f} mm^2 (TPE, {len(seeds)} seeds): cold start "
            f"reaches 2% in {out['cold']['reached']} seeds, mean "
            + (f"{out['cold']['evaluations_to_2pct']['mean']:.0f}" if out["cold"]["evaluations_to_2pct"] else "-")
            + " evaluations")
    for label, source in sources.items():
        src = [(space_name, None, source, "tpe", seed, 300, []) for seed in seeds]
        warm = {}
        for i, r in run_tasks(_run, src, workers=workers):
            warm[src[i][4]] = [tuple(p) for p in r["points"]]
        jobs = [(space_name, target_key, target, "tpe", seed, min(budget, 500), warm[seed]) for seed in seeds]
        runs = [None] * len(seeds)
        for i, r in run_tasks(_run, jobs, workers=workers):
            runs[i] = r
        reach = [_reach(r["curve"], optimum * (1 + WITHIN)) for r in runs]
        res = {"source": {"models": list(source.models), "area_mm2": source.area_mm2, "budget": 300},
               "warm_points": len(next(iter(warm.values()))), "evaluations_to_2pct": _stats(reach),
               "reached": sum(r is not None for r in reach),
               "gap_at_100": _stats([r["curve"][99] / optimum - 1 for r in runs])}
        c, w = out["cold"]["evaluations_to_2pct"], res["evaluations_to_2pct"]
        if c and w:
            res["evaluations_saved_mean"] = c["mean"] - w["mean"]
            res["evaluations_saved_pct"] = 100 * (1 - w["mean"] / c["mean"])
        out["sources"][label] = res
        console(f"  from {label}: reaches 2% in {res['reached']} seeds, mean "
                + (f"{w['mean']:.0f} evaluations ({res.get('evaluations_saved_pct', 0):.0f}% fewer than cold)" if w else "-")
                + f"; gap at 100: {100 * res['gap_at_100']['mean']:.2f}% vs cold {100 * out['cold']['gap_at_100']['mean']:.2f}%")
    return out


def template(task, seeds, budget, workers, console):
    jobs = [("edgetpu", None, task, kind, seed, budget, []) for kind in OPTIMIZERS for seed in seeds]
    runs = {kind: [None] * len(seeds) for kind in OPTIMIZERS}
    for n, (i, r) in enumerate(run_tasks(_run, jobs, workers=workers), 1):
        runs[jobs[i][3]][seeds.index(jobs[i][4])] = r
        print(f"    run {n}/{len(jobs)}: {jobs[i][3]} seed {jobs[i][4]} in {r['seconds']:.0f} s", flush=True)
    best = {k: [min(r["curve"]) for r in v] for k, v in runs.items()}
    rnd = float(np.mean(best["random"]))
    out = {"space": "edgetpu", "points": load_space("edgetpu").size, "budget": budget, "seeds": len(seeds),
           "optimizers": {}}
    for k, v in best.items():
        out["optimizers"][k] = {"best_ms": _stats(v), "better_than_random_pct": 100 * (1 - float(np.mean(v)) / rnd),
                                "seconds_per_run": float(np.mean([r["seconds"] for r in runs[k]]))}
        console(f"  {k:9s} best after {budget}: mean {np.mean(v):.4f} ms [{min(v):.4f}, {max(v):.4f}], "
                f"{out['optimizers'][k]['better_than_random_pct']:+.1f}% vs random")
    convergence_plot({k: [r["curve"] for r in v] for k, v in runs.items()}, OUT / "explore_template.png",
                     ylabel="best latency found (ms)", title=f"edgetpu template, {len(seeds)} seeds")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--transfer-seeds", type=int, default=5, help="seeds of the transfer part (default: 5)")
    parser.add_argument("--template-seeds", type=int, default=5, help="seeds of the template part (default: 5)")
    parser.add_argument("--parts", default="exact,transfer,template")
    parser.add_argument("--json", default="explore.json", help="file in bench/out (default: explore.json)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    parts = args.parts.split(",")
    area = system_area_mm2(load("mensa-g"))
    target = Task(models=MODELS, objective="latency", area_mm2=area)
    lines = []

    def console(text):
        print(text, flush=True)
        lines.append(text)
    result = {"models": list(MODELS), "objective": "latency (geometric mean over the models)", "area_mm2": area,
              "budget": args.budget, "seeds": args.seeds}
    cold = None
    path = OUT / args.json
    if path.exists():
        old = json.loads(path.read_text())
        result.update({k: old[k] for k in ("exact", "transfer", "template") if k in old and k not in parts})

    def save():
        result["printed"] = lines
        path.write_text(json.dumps(result, indent=1))
    if "exact" in parts:
        result["exact"], runs = exact("edgetpu-small", target, "target", seeds, args.budget, args.workers, console)
        cold = runs["tpe"]
        save()
    if "transfer" in parts:
        sources = {"another area budget (1.5x)": Task(models=MODELS, objective="latency", area_mm2=1.5 * area),
                   "another workload (EfficientNet-EdgeTPU-S + seq2seq)":
                       Task(models=("efficientnet_edgetpu_s", "seq2seq"), objective="latency", area_mm2=area)}
        few = seeds[:args.transfer_seeds]
        if cold is None:        # the exact part ran before: its table is cached, its cold TPE runs are rerun
            _TABLES["target"] = enumerate_space(load_space("edgetpu-small"), target, args.workers)[0]
            jobs = [("edgetpu-small", "target", target, "tpe", seed, args.budget, []) for seed in few]
            cold = [None] * len(few)
            for i, r in run_tasks(_run, jobs, workers=args.workers):
                cold[i] = r
        result["transfer"] = transfer("edgetpu-small", "target", target, cold[:len(few)], sources, few, args.budget,
                                      args.workers, console)
        save()
    if "template" in parts:
        console(f"edgetpu template ({load_space('edgetpu').size:,} points), {args.budget} evaluations:")
        result["template"] = template(target, list(range(args.template_seeds)), args.budget, args.workers, console)
    save()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
