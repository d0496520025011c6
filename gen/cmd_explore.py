"""``mensa explore``: search a design space for the best configuration of a task (Apollo's problem).

The search (:func:`mensa.model.explore.search`) is recorded in ``OUT/study.db`` (optuna on
SQLite): a run killed part way resumes from it when started again with the same arguments.
Evaluations run in batches, split over local processes or a Ray cluster (``--ray-address``)
through :func:`mensa.gen.parallel.run_tasks` when a batch is worth splitting.
``--transfer-from RUN`` warm-starts the search with the best points of an earlier run (another
workload, another budget), as Apollo transfers between tasks.

Writes to ``--out``: ``best.toml`` (a config ``mensa verilog`` reads), ``trials.csv``,
``pareto.json`` (latency, energy, area front and its hypervolume), ``convergence.png``,
``summary.json`` and ``run.json`` (the arguments, for resuming and transfer).
"""

import dataclasses
import json
from dataclasses import dataclass
import time
from pathlib import Path

from mensa.core.config import to_toml, loads
from mensa.core.errors import UserError
from mensa.core.files import read_text_file, write_atomic, write_json
from mensa.gen import args as types
from mensa.gen.explore_report import best_so_far, convergence_plot, front_of, write_trials_csv
from mensa.gen.parallel import local_workers, run_tasks
from mensa.model import zoo
from mensa.model.explore import OBJECTIVES, OPTIMIZERS, Task, evaluate_chunk, evaluate_points, search
from mensa.model.space import load_space

__all__ = ["add_arguments", "run", "explore", "Run", "parse_models", "task_for", "parallel_evaluator", "warm_points",
           "write_best"]

BUDGET_MAX = 10_000_000
UNITS = {"latency": "ms", "energy": "mJ", "edp": "ms x mJ"}
_RUN_KEYS = ("space", "models", "objective", "area_mm2", "latency_ms", "optimizer", "seed")


def add_arguments(parser):
    parser.add_argument("--space", required=True,
                        help="a design space: a TOML file or a built-in space (edgetpu, edgetpu-small, edgetpu-fpga, "
                             "mensa-g)")
    parser.add_argument("--models", default="mobilenet_v2", help="comma-separated zoo models (default: mobilenet_v2)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="latency",
                        help="what to minimise, geometric mean over the models (default: latency)")
    parser.add_argument("--area-mm2", type=types.positive_float, help="area budget (default: the space's, or none)")
    parser.add_argument("--latency-ms", type=types.positive_float, help="latency bound on every model (default: none)")
    parser.add_argument("--budget", type=types.positive_int(BUDGET_MAX), default=300,
                        help="distinct points to evaluate (default: 300); a grid covering the space is exhaustive")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="tpe", help="search algorithm (default: tpe)")
    parser.add_argument("--transfer-from", type=Path, metavar="RUN",
                        help="an earlier run's --out folder whose best points start this search")
    parser.add_argument("--seed", type=types.seed, default=0, help="random seed (default: 0)")
    parser.add_argument("--batch", type=types.positive_int(4096), default=8,
                        help="points asked of the optimiser at a time (default: 8)")
    parser.add_argument("--workers", type=types.positive_int(1024), help="local processes (default: the cores)")
    parser.add_argument("--ray-address", help="evaluate on a Ray cluster ('auto', host:port, or 'local')")
    parser.add_argument("--out", type=types.out_dir, default=Path("build/explore"),
                        help="folder for the study, best.toml and the reports (default: build/explore)")
    parser.add_argument("--no-plots", action="store_true", help="skip the convergence plot")


def parse_models(text, *, allow_all=False):
    """Zoo model names from ``--models`` (``all``: the whole zoo, where ``allow_all``)."""
    if allow_all and text == "all":
        return tuple(zoo.names())
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    if not models:
        either = "'all' or " if allow_all else ""
        raise UserError(f"--models {text!r} names no model; allowed: {either}comma-separated zoo models "
                        f"({', '.join(zoo.names())})")
    for m in models:
        if m not in zoo.MODELS:
            raise zoo.UnknownModelError(f"--models: unknown model {m!r}; the zoo has: {', '.join(zoo.names())}")
    return models


def task_for(space, models, objective, area_mm2=None, latency_ms=None):
    c = space.constraints
    return Task(models=models, objective=objective, area_mm2=area_mm2 if area_mm2 is not None else c.area_mm2,
                latency_ms=latency_ms if latency_ms is not None else c.latency_ms, dsp_max=c.dsp_max,
                bram_kib_max=c.bram_kib_max)


def parallel_evaluator(space, task, *, workers=None, ray_address=None):
    """``evaluate(points)``: in this process for a small batch, split over processes (or Ray) for a large one."""
    workers = workers or local_workers()
    per_point_s = len(task.models) * (3e-4 if len(space.base.accelerator) == 1 else 2e-2)

    def evaluate(points):
        if not points:
            return []
        if ray_address is None and (workers == 1 or len(points) * per_point_s < 1.0):
            return evaluate_points(space, task, points)
        n = max(1, min(len(points), (workers if ray_address is None else 4 * workers)))
        chunks = [points[k::n] for k in range(n)]
        out = {}
        for _, evaluations in run_tasks(evaluate_chunk, [(space, task, c) for c in chunks], ray_address=ray_address,
                                        workers=workers):
            for e in evaluations:
                out[e.point] = e
        return [out[tuple(p)] for p in points]
    return evaluate


def _run_record(space_ref, space, task, optimizer, seed):
    return {"space": space_ref, "models": list(task.models), "objective": task.objective, "area_mm2": task.area_mm2,
            "latency_ms": task.latency_ms, "optimizer": optimizer, "seed": seed,
            "params": {p.name: list(p.values) for p in space.params}}


def warm_points(run_dir, space, budget):
    """The best points of an earlier run, as points of ``space`` (by parameter name and value; a parameter
    the earlier space lacks takes the base config's value): its feasible ones first, best first."""
    run_json, db = run_dir / "run.json", run_dir / "study.db"
    if not run_json.is_file() or not db.is_file():
        raise UserError(f"--transfer-from {run_dir}: no run.json and study.db there; allowed: the --out folder "
                        f"of an earlier mensa explore")
    try:
        record = json.loads(read_text_file(run_json, "run record", 1 << 24, UserError))
        params = record["params"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"--transfer-from {run_dir}: run.json is not an explore run record") from None
    import optuna
    from optuna.trial import TrialState
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name="explore", storage=f"sqlite:///{db}")
    except Exception as e:      # optuna raises KeyError or a SQLAlchemy error for a foreign file
        raise UserError(f"--transfer-from {run_dir}: study.db holds no explore study ({type(e).__name__})") from None
    ranked = sorted((t for t in study.get_trials(deepcopy=False) if t.state is TrialState.COMPLETE
                     and "evaluation" in t.user_attrs),
                    key=lambda t: (t.user_attrs["violation"] > 0, t.value))
    k = max(1, min(budget // 10, 32))
    out = []
    for t in ranked:
        values = {name: params[name][i] for name, i in t.params.items() if name in params}
        p = space.point(values)
        if p is not None and p not in out:
            out.append(p)
        if len(out) == k:
            break
    return out


def write_best(space, task, best, path, how):
    system = dataclasses.replace(space.config(best.point), name=f"{space.name}-best"[:64],
                                 description=f"the best point of space {space.name} found by mensa explore")
    values = ", ".join(f"{k} = {v}" for k, v in space.values(best.point).items())
    comment = (f"Found by mensa explore ({how}) in space {space.name}: {values}.\n"
               f"Task: {task.objective} over {', '.join(task.models)}"
               + (f", area <= {task.area_mm2:g} mm^2" if task.area_mm2 else "")
               + (f", latency <= {task.latency_ms:g} ms" if task.latency_ms else "") + ".\n"
               f"Predicted: {best.latency_ms:.4g} ms, {best.energy_mj:.4g} mJ (geometric means), "
               f"{best.area_mm2:.4g} mm^2 (45 nm).")
    text = to_toml(system, comment)
    loads(text, str(path))          # the file is a config mensa accepts, or nothing is written
    write_atomic(path, text)
    return system


@dataclass
class Run:
    """A finished (or resumed and finished) search: its evaluations, best one and best config."""
    space: object
    task: Task
    evaluations: list
    best: object            # Evaluation or None
    system: object          # SystemConfig of the best point, or None
    summary: dict


def explore(space, task, optimizer, budget, out, *, space_ref=None, seed=0, batch=8, workers=None, ray_address=None,
            warm=(), plots=True, label=None):
    """Search ``space`` for ``task`` into folder ``out`` (resuming a run recorded there) and write its reports."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out.mkdir(parents=True, exist_ok=True)
    record = _run_record(space_ref or space.name, space, task, optimizer, seed)
    run_json = out / "run.json"
    if run_json.exists():
        try:
            old = json.loads(run_json.read_text())
        except ValueError:
            old = {}
        differ = [k for k in _RUN_KEYS if old.get(k) != record[k]]
        if differ:
            raise UserError(f"--out {out}: holds a run with other arguments ({', '.join(differ)}); allowed: "
                            f"the same arguments to resume it, or another --out")
    write_json(run_json, record)
    storage = f"sqlite:///{out / 'study.db'}"
    evaluate = parallel_evaluator(space, task, workers=workers, ray_address=ray_address)
    batch = batch if optimizer not in ("random", "grid") else max(batch, 512)
    unit = UNITS[task.objective]
    start = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), console=Console(stderr=True),
                  transient=True) as progress:
        bar = progress.add_task(label or f"{optimizer} on {space.name}", total=min(budget, space.size), best="-")

        def on_batch(done, best):
            progress.update(bar, completed=done, best=f"{best.value:.4g} {unit}" if best else "none feasible")
        evaluations = search(space, task, optimizer, budget, evaluate, seed=seed, storage=storage, batch=batch,
                             warm=warm, on_batch=on_batch)
    elapsed = time.monotonic() - start
    feasible = [e for e in evaluations if e.feasible]
    front = front_of(evaluations)
    write_json(out / "pareto.json", {**front, "space": space.name, "params": [p.name for p in space.params],
                                     "values": [space.values(tuple(p["point"])) for p in front["points"]]})
    write_trials_csv(out / "trials.csv", space, evaluations)
    if plots and evaluations:
        convergence_plot({optimizer: [best_so_far(evaluations)]}, out / "convergence.png",
                         ylabel=f"best {task.objective} ({unit})",
                         title=f"{space.name}: {task.objective} over {', '.join(task.models)}")
    summary = {"space": space.name, "space_points": space.size, "task": record, "evaluations": len(evaluations),
               "feasible": len(feasible), "seconds": elapsed, "hypervolume": front["hypervolume"],
               "pareto_points": len(front["points"]), "best": None, "warm_points": len(warm)}
    best = system = None
    if feasible:
        best = min(feasible, key=lambda e: e.value)
        system = write_best(space, task, best, out / "best.toml", f"{optimizer}, {len(evaluations)} evaluations")
        summary["best"] = {"values": space.values(best.point), **best.to_dict(),
                           "found_at_evaluation": 1 + evaluations.index(best), "config": system.name}
    write_json(out / "summary.json", summary)
    return Run(space=space, task=task, evaluations=evaluations, best=best, system=system, summary=summary)


def run(args):
    space = load_space(args.space)
    models = parse_models(args.models)
    task = task_for(space, models, args.objective, args.area_mm2, args.latency_ms)
    space_ref = args.space if not Path(args.space).exists() else str(Path(args.space).resolve())
    warm = warm_points(args.transfer_from, space, args.budget) if args.transfer_from else []
    r = explore(space, task, args.optimizer, args.budget, args.out, space_ref=space_ref, seed=args.seed,
                batch=args.batch, workers=args.workers, ray_address=args.ray_address, warm=warm,
                plots=not args.no_plots)
    r.summary["transfer_from"] = str(args.transfer_from or "")
    write_json(args.out / "summary.json", r.summary)
    s = r.summary
    print(f"{space.name}: {s['evaluations']} of {space.size:,} points evaluated ({s['feasible']} feasible) by "
          f"{args.optimizer} in {s['seconds']:.1f} s; Pareto front {s['pareto_points']} points, hypervolume "
          f"{s['hypervolume']:.4f}")
    if r.best is None:
        print("no feasible point found: no best.toml written (see trials.csv for why each point is infeasible)")
        return 0
    best, unit = r.best, UNITS[args.objective]
    print(f"best {args.objective}: {best.value:.4g} {unit} at evaluation {s['best']['found_at_evaluation']} "
          f"(latency {best.latency_ms:.4g} ms, energy {best.energy_mj:.4g} mJ, area {best.area_mm2:.3f} mm^2): "
          + ", ".join(f"{k}={v}" for k, v in s["best"]["values"].items()))
    print(f"wrote {args.out / 'best.toml'}, trials.csv, pareto.json, summary.json"
          + ("" if args.no_plots else ", convergence.png"))
    return 0
