"""``mensa study nasbench101|blocks``: the Edge TPU study (Seshadri et al. 2021), run openly.

``nasbench101`` sweeps every NAS-Bench-101 network (or ``--limit`` of them, spread evenly) over
the Edge TPU classes through the cost model into ``OUT/nasbench101.parquet`` (resumable; local
processes, or Ray with ``--ray-address``); ``--report`` then writes ``OUT/report/`` and trains the
learned model into ``OUT/perf_model/`` (``mensa predict`` reads it). ``blocks`` answers the
EfficientNet-EdgeTPU question: a depthwise or a fused inverted bottleneck, stage by stage, on
each class and on Mensa-G.
"""

import json
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mensa.core.config import load
from mensa.core.errors import UserError
from mensa.gen.args import out_dir, positive_int
from mensa.model.study import CLASSES, class_system

__all__ = ["add_arguments", "run"]


class UsageError(UserError):
    """Options that do not go together."""


def _classes(text):
    import argparse
    names = [c.strip().lower() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in CLASSES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed: a comma-separated list of {', '.join(CLASSES)}")
    return tuple(dict.fromkeys(names))


def add_arguments(parser):
    parser.add_argument("study", choices=("nasbench101", "blocks"),
                        help="nasbench101: the NAS-Bench-101 sweep; blocks: depthwise against fused inverted "
                             "bottlenecks at EfficientNet-EdgeTPU-S's shapes")
    parser.add_argument("--classes", type=_classes, default=tuple(CLASSES),
                        help=f"Edge TPU classes, comma-separated (default: {','.join(CLASSES)})")
    parser.add_argument("--limit", type=positive_int(10**7), default=None,
                        help="nasbench101: this many networks, spread evenly over the space (default: all 423,624)")
    parser.add_argument("--ray-address", default=None,
                        help="run the sweep on this Ray cluster (default: local processes)")
    parser.add_argument("--workers", type=positive_int(1024), default=None,
                        help="local processes (default: one per core)")
    parser.add_argument("--report", action="store_true",
                        help="nasbench101: after the sweep, write OUT/report/ and train OUT/perf_model/")
    parser.add_argument("--out", type=out_dir, default="study", help="output folder (default: study)")


def _progress(console):
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _nasbench(args, console):
    from mensa.gen.parallel import check_address
    from mensa.gen.study import run_sweep
    if args.ray_address is not None:
        check_address(args.ray_address)         # before any output: a mistake is one line
    from mensa.gen.study_report import write_report
    stages = {"enumerate": "enumerate the space (vertices)", "sweep": "networks x "
              + ",".join(c.upper() for c in args.classes), "join": "join the parts"}
    t0 = time.perf_counter()
    with _progress(console) as bar:
        tasks = {}

        def progress(stage, done, total):
            if stage not in tasks:
                tasks[stage] = bar.add_task(stages[stage], total=total)
            bar.update(tasks[stage], completed=done, total=total)
        table = run_sweep(args.out, classes=args.classes, limit=args.limit, ray_address=args.ray_address,
                          workers=args.workers, progress=progress)
    console.print(f"{table} ({time.perf_counter() - t0:.1f} s)")
    if args.report:
        with _progress(console) as bar:
            task = bar.add_task("report", total=6)

            def step(stage):
                bar.update(task, description=f"report: {stage}", advance=1)
            path = write_report(args.out, progress=step)
            bar.update(task, completed=6)
        console.print(path)
    return 0


def _blocks(args, console):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from mensa.model.blocks import compare_blocks, stage_totals
    systems = [class_system(c) for c in args.classes] + [load("mensa-g")]
    with console.status("scheduling the blocks"):
        rows = compare_blocks(systems)
    stages = stage_totals(rows)
    table = Table(title="EfficientNet-EdgeTPU-S: depthwise (IBN) against fused inverted bottlenecks, per stage")
    for col in ("stage", "in model", "system", "IBN ms", "fused ms", "IBN uJ", "fused uJ", "faster", "less energy"):
        table.add_column(col, justify="right")
    for s in stages:
        table.add_row(str(s["stage"]), "fused" if s["fused_in_model"] else "IBN", s["system"], f"{s['ibn_ms']:.4f}",
                      f"{s['fused_ms']:.4f}", f"{s['ibn_uj']:.1f}", f"{s['fused_uj']:.1f}",
                      "fused" if s["fused_ms"] < s["ibn_ms"] else "IBN",
                      "fused" if s["fused_uj"] < s["ibn_uj"] else "IBN")
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "blocks.json").write_text(json.dumps({"blocks": rows, "stages": stages}, indent=1) + "\n")
    names = [s.name for s in systems]
    stage_ids = sorted({s["stage"] for s in stages})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(names)
    for ax, unit, label in ((axes[0], "ms", "latency"), (axes[1], "uj", "energy")):
        for k, name in enumerate(names):
            ratio = [next(s[f"fused_{unit}"] / s[f"ibn_{unit}"] for s in stages
                          if s["stage"] == st and s["system"] == name) for st in stage_ids]
            ax.bar(np.arange(len(stage_ids)) + k * width, ratio, width, label=name)
        ax.axhline(1.0, color="black", linewidth=0.7)
        ax.set_xticks(np.arange(len(stage_ids)) + 0.4 - width / 2, [f"stage {s}" for s in stage_ids])
        ax.set_ylabel(f"fused / IBN {label}")
        ax.set_yscale("log")
        ax.set_title(f"{label}: below 1, the fused block wins")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "blocks.png", dpi=120)
    plt.close(fig)
    console.print(f"{args.out / 'blocks.json'}, {args.out / 'blocks.png'}")
    return 0


def run(args):
    console = Console(stderr=True)
    if args.study == "blocks":
        given = [f for f, v in (("--limit", args.limit), ("--ray-address", args.ray_address),
                                ("--workers", args.workers), ("--report", args.report)) if v]
        if given:
            raise UsageError(f"{', '.join(given)}: not used by `study blocks`; allowed: --classes and --out")
        return _blocks(args, Console())
    return _nasbench(args, console)
