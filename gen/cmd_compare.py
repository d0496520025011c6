"""``mensa compare``: the zoo on the best monolith, Mensa-G (as written and searched) and an Eyeriss-v2-like baseline.

Every model is scheduled (:func:`~mensa.model.schedule.schedule`) on each
system; the command prints per-model latency and energy, the throughput and
energy-efficiency ratios of Mensa-G over each baseline and their geometric
and arithmetic means, each system's silicon area, and the energy breakdown by
component that explains the ratios. It writes ``compare.json`` and two plots
(per-layer utilisation, energy breakdown) to ``--out``, and says which baseline
was used.

The monolithic baseline: by default the best design of the Edge TPU template
(``--baseline-space``, configs/spaces/edgetpu.toml: the template modelled on the
Coral chip, bench/coral.py) that ``mensa explore``'s search finds within the area
budget, for the same models and objective, at the heterogeneous system's clock and
DRAM (an equal-area, equal-clock comparison with the strongest monolith found, not a
shrunken preset). Mensa-G gets the same search for its own sizes (``--system-space``)
and both ratios are reported. The searches are explore runs in ``OUT/search-monolith``
and ``OUT/search-system``: a second compare resumes them. ``--baseline CONFIG`` compares
with that config instead, sized by its SRAM as below.

Equal area: by default every system is sized to one silicon budget, the
heterogeneous system's own area (``--area-mm2`` sets another; ``native`` compares
the presets as written). A preset is sized by :func:`fit_area`: its compute (arrays,
lanes, vaults) is kept and every on-chip SRAM of every accelerator (buffers, the Edge
TPU template's core and PE memories, the near-memory local buffers) is scaled by one
common factor, the largest whose area (model/energy.py's :class:`AreaTable`) is within
the budget. Vault capacity is DRAM, not logic-die silicon, and is not scaled. A budget
below a system's compute alone is a user error naming the smallest budget it allows.

The Eyeriss-v2-like baseline is built here, sized to the same budget: a square output-stationary array (the closest of mensa's dataflows to
Eyeriss's row-stationary one) with Eyeriss v2's 246 KiB of SRAM per 192 PEs,
at the baseline's clock and DRAM. It does not model Eyeriss v2's flexible
hierarchical-mesh network or its sparse processing, so it is a lower bound on
that design.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from mensa.core.config import BufferConfig, ConfigError, from_dict, load, to_dict

from mensa.core.errors import UserError
from mensa.model import zoo
from mensa.model.energy import AreaTable, system_area_mm2
from mensa.model.explore import OPTIMIZERS, Task
from mensa.model.schedule import OBJECTIVES, schedule
from mensa.model.space import load_space
from mensa.core.files import write_json
from mensa.gen import args as types
from mensa.gen.cmd_explore import explore, parse_models

__all__ = ["add_arguments", "run", "eyeriss_like", "compare", "fit_area", "sram_scaled", "at_clock_and_dram", "searched"]

EYERISS_SRAM_KIB_PER_PE = 246 / 192        # Eyeriss v2 (Chen et al., JETCAS 2019): 246 KB on chip, 192 PEs


def add_arguments(parser):
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a monolithic baseline config (TOML file or preset) sized to the budget by its SRAM; "
                             "default: the best design of --baseline-space searched at the budget")
    parser.add_argument("--baseline-space", default="edgetpu",
                        help="the space searched for the monolithic baseline (default: edgetpu, the Edge TPU "
                             "template)")
    parser.add_argument("--system", type=Path, default="mensa-g",
                        help="heterogeneous system: a TOML file or a preset name (default: mensa-g)")
    parser.add_argument("--system-space", default=None,
                        help="a space searched for the heterogeneous system's own sizes at the same budget "
                             "(default: mensa-g when --system is the mensa-g preset; 'none' skips it)")
    parser.add_argument("--search-budget", type=types.positive_int(100_000), default=500,
                        help="evaluations of each search (default: 500)")
    parser.add_argument("--search-optimizer", choices=OPTIMIZERS, default="tpe",
                        help="the searches' optimiser (default: tpe)")
    parser.add_argument("--seed", type=types.seed, default=0, help="the searches' seed (default: 0)")
    parser.add_argument("--workers", type=types.positive_int(1024), help="local processes (default: the cores)")
    parser.add_argument("--ray-address", help="evaluate the searches on a Ray cluster")
    parser.add_argument("--models", default="all",
                        help="comma-separated zoo models (default: the whole zoo)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="latency",
                        help="the scheduler's objective on the heterogeneous system (default: latency)")
    parser.add_argument("--out", type=types.out_dir, default=Path("build/compare"),
                        help="folder for compare.json and the plots (default: build/compare)")
    parser.add_argument("--no-plots", action="store_true", help="skip the matplotlib plots")
    parser.add_argument("--area-mm2", default="system",
                        help="silicon budget every system is sized to: a number of mm^2, 'system' (the "
                             "heterogeneous system's own area; default) or 'native' (the presets as written)")


def at_clock_and_dram(space, system):
    """``space`` with its base at ``system``'s clock and DRAM: a comparison at equal clock and memory."""
    clock = system.accelerator[0].clock_mhz
    base = dataclasses.replace(space.base, dram=system.dram, accelerator=tuple(
        dataclasses.replace(a, clock_mhz=clock) for a in space.base.accelerator))
    return dataclasses.replace(space, base=base)


def searched(space, models, objective, budget, out, args, label):
    """The best point of ``space`` for the models under the area budget, searched into ``out``."""
    task = Task(models=tuple(models), objective=objective, area_mm2=budget)
    ref = f"{space.name}@{space.base.accelerator[0].clock_mhz:g}MHz"
    run = explore(space, task, args.search_optimizer, args.search_budget, out, space_ref=ref, seed=args.seed,
                  workers=args.workers, ray_address=args.ray_address, plots=not args.no_plots, label=label)
    if run.best is None:
        raise UserError(f"--area-mm2: no design of space {space.name} found within {budget:.3f} mm^2 in "
                        f"{args.search_budget} evaluations; allowed: a larger budget")
    return run


def sram_scaled(system, factor):
    """``system`` with every on-chip SRAM size times ``factor`` (at least 1 KiB each); compute unchanged."""
    def kib(v):
        return max(1, int(round(v * factor)))
    accs = []
    for a in system.accelerator:
        b = a.buffers
        a = dataclasses.replace(a, buffers=dataclasses.replace(
            b, weight_kib=kib(b.weight_kib), act_kib=kib(b.act_kib), acc_kib=kib(b.acc_kib)))
        if a.edgetpu is not None:
            t = a.edgetpu
            a = dataclasses.replace(a, edgetpu=dataclasses.replace(
                t, core_mem_kib=kib(t.core_mem_kib), pe_mem_kib=kib(t.pe_mem_kib)))
        if a.nearmem is not None:
            a = dataclasses.replace(a, nearmem=dataclasses.replace(a.nearmem, local_kib=kib(a.nearmem.local_kib)))
        accs.append(a)
    return dataclasses.replace(system, accelerator=tuple(accs))


_KIB_MAX = {f.name: f.metadata["hi"] for f in dataclasses.fields(BufferConfig) if f.name.endswith("_kib")}


def _largest_factor(system):
    """The SRAM factor at which the first of ``system``'s buffers reaches the largest size a config allows."""
    return min(_KIB_MAX[name] / getattr(a.buffers, name) for a in system.accelerator for name in _KIB_MAX)


def fit_area(system, budget_mm2, area=AreaTable()):
    """``system`` sized to ``budget_mm2``: its SRAMs scaled by the largest common factor that fits.

    Returns ``(sized system, factor)``; the system itself (factor 1) when its area already
    equals the budget.
    """
    if math.isclose(system_area_mm2(system, area), budget_mm2, rel_tol=1e-9):
        return system, 1.0
    smallest = system_area_mm2(sram_scaled(system, 0.0), area)
    if smallest > budget_mm2:
        raise UserError(f"--area-mm2 {budget_mm2:g}: {system.name} needs at least {smallest:.3f} mm^2 "
                        f"(its compute with 1 KiB SRAMs); allowed: a budget of at least that")
    most = _largest_factor(system)
    largest = system_area_mm2(sram_scaled(system, most), area)
    if budget_mm2 > largest:
        raise UserError(f"--area-mm2 {budget_mm2:g}: {system.name} reaches at most {largest:.3f} mm^2 (its SRAMs "
                        f"scaled until one reaches {max(_KIB_MAX.values())} KiB, the most a config allows); allowed: "
                        f"a budget of at most that")
    lo, hi = 0.0, 1.0
    while hi < most and system_area_mm2(sram_scaled(system, hi), area) <= budget_mm2:
        lo, hi = hi, min(2 * hi, most)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if system_area_mm2(sram_scaled(system, mid), area) <= budget_mm2 else (lo, mid)
    return sram_scaled(system, lo), lo


def eyeriss_like(area_mm2, like, area=AreaTable()):
    """The largest square Eyeriss-v2-like system whose area does not exceed ``area_mm2``.

    ``like`` is the system whose clock, memory interface and DRAM it shares.
    """
    acc0 = like.accelerator[0]
    best = None
    for side in range(4, 257):
        pes = side * side
        kib = EYERISS_SRAM_KIB_PER_PE * pes
        table = {"name": "eyeriss-like", "dram": to_dict(like.dram),
                 "description": "Eyeriss-v2-like baseline sized by mensa compare to the baseline's area",
                 "accelerator": [{"name": "eyeriss", "kind": "systolic", "clock_mhz": acc0.clock_mhz,
                                  "array": {"rows": side, "cols": side, "dataflow": "os"},
                                  "buffers": {"weight_kib": max(1, round(0.5 * kib)),
                                              "act_kib": max(1, round(0.4 * kib)),
                                              "acc_kib": max(1, round(0.1 * kib))},
                                  "memory": to_dict(acc0.memory)}]}
        system = from_dict(table)
        if system_area_mm2(system, area) > area_mm2:
            break
        best = system
    if best is None:
        raise ConfigError(f"baseline area {area_mm2:.3f} mm^2 is too small for a 4x4 Eyeriss-like array")
    return best


def _geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def compare(models, systems, objective="latency"):
    """Schedule every model on every system; return ``{system label: {model: Schedule}}``."""
    out = {}
    for label, system in systems.items():
        out[label] = {m: schedule(zoo.get(m), system, objective=objective if len(system.accelerator) > 1 else "latency")
                      for m in models}
    return out


def _ratios(results, models, num, den):
    thr = [results[num][m].throughput / results[den][m].throughput for m in models]
    eff = [results[den][m].energy_pj / results[num][m].energy_pj for m in models]
    return thr, eff


def _plots(results, models, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = list(results)
    fig, axes = plt.subplots(len(models), 1, figsize=(12, 2.2 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models):
        for label in labels:
            util = [100 * p.utilisation for p in results[label][m].placements]
            ax.plot(util, marker=".", linewidth=0.8, label=label)
        ax.set_title(m, fontsize=9)
        ax.set_ylabel("PE util %")
        ax.set_ylim(0, 100)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("layer (topological order)")
    fig.tight_layout()
    util_path = out / "utilisation.png"
    fig.savefig(util_path, dpi=80)
    plt.close(fig)

    comps = list(next(iter(results[labels[0]].values())).energy_breakdown_pj)
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(models) * len(labels) / 2), 5))
    width = 0.8 / len(labels)
    x = np.arange(len(models))
    colours = plt.get_cmap("tab20").colors
    for k, label in enumerate(labels):
        bottom = np.zeros(len(models))
        for c, comp in enumerate(comps):
            norm = np.array([results[label][m].energy_breakdown_pj[comp] / results[labels[0]][m].energy_pj
                             for m in models])
            ax.bar(x + k * width, norm, width, bottom=bottom, color=colours[c % len(colours)],
                   label=comp if k == 0 else None, edgecolor="black" if k == 0 else "none", linewidth=0.2)
            bottom += norm
    ax.set_xticks(x + width * (len(labels) - 1) / 2)
    ax.set_xticklabels(models, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(f"energy / {labels[0]} energy (bars: " + ", ".join(labels) + ")")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    energy_path = out / "energy_breakdown.png"
    fig.savefig(energy_path, dpi=80)
    plt.close(fig)
    return util_path, energy_path


def _budget(args, baseline, mensa):
    if args.area_mm2 == "native":
        return None
    if args.area_mm2 == "system":
        return system_area_mm2(mensa)
    try:
        budget = float(args.area_mm2)
    except ValueError:
        budget = float("nan")
    if not budget > 0 or math.isinf(budget):
        raise UserError(f"--area-mm2 {args.area_mm2!r}: allowed: a positive number of mm^2, 'system' or 'native'")
    return budget


def _ratio_summary(thr, eff):
    return {"throughput_geomean": _geomean(thr), "throughput_mean": float(np.mean(thr)),
            "energy_efficiency_geomean": _geomean(eff), "energy_efficiency_mean": float(np.mean(eff))}


def run(args):
    from rich.console import Console
    from rich.table import Table

    models = parse_models(args.models, allow_all=True)
    search_monolith = args.baseline is None
    baseline, mensa = load(args.baseline or "edgetpu"), load(args.system)
    system_space = args.system_space or ("mensa-g" if str(args.system) == "mensa-g" else "none")
    spaces = {"baseline": at_clock_and_dram(load_space(args.baseline_space), mensa) if search_monolith else None,
              "system": None if system_space == "none" else load_space(system_space)}
    budget = _budget(args, baseline, mensa)
    search_budget = budget if budget is not None else system_area_mm2(mensa)
    sizing, how = {}, {}
    console = Console(width=None if Console().is_terminal else 160)
    searched_mensa = None
    if search_monolith:
        r = searched(spaces["baseline"], models, args.objective, search_budget, args.out / "search-monolith", args,
                     f"searching the monolith ({args.baseline_space})")
        baseline = r.system
        how[baseline.name] = {"kind": "searched", "space": spaces["baseline"].name, "points": spaces["baseline"].size,
                              "optimizer": args.search_optimizer, "evaluations": len(r.evaluations),
                              "area_budget_mm2": search_budget, "clock_mhz": mensa.accelerator[0].clock_mhz,
                              "values": r.summary["best"]["values"], "config": str(args.out / "search-monolith" / "best.toml")}
    elif budget is not None:
        baseline, sizing[baseline.name] = fit_area(baseline, budget)
        how[baseline.name] = {"kind": "preset", "config": str(args.baseline), "sram_scale": sizing[baseline.name]}
    else:
        how[baseline.name] = {"kind": "preset", "config": str(args.baseline), "sram_scale": 1.0}
    if budget is not None:
        mensa, sizing[mensa.name] = fit_area(mensa, budget)
    if spaces["system"] is not None:
        r = searched(spaces["system"], models, args.objective, search_budget, args.out / "search-system", args,
                     f"searching {spaces['system'].name}")
        searched_mensa = r.system
        how[searched_mensa.name] = {"kind": "searched", "space": spaces["system"].name, "points": spaces["system"].size,
                                    "optimizer": args.search_optimizer, "evaluations": len(r.evaluations),
                                    "area_budget_mm2": search_budget, "values": r.summary["best"]["values"]}
    eyeriss = eyeriss_like(budget if budget is not None else system_area_mm2(baseline), baseline)
    systems = {baseline.name: baseline, mensa.name: mensa}
    if searched_mensa is not None:
        systems[searched_mensa.name] = searched_mensa
    systems[eyeriss.name] = eyeriss
    if len({baseline.name, mensa.name, eyeriss.name}) != 3:
        raise UserError(f"--baseline and --system must name different systems, both are {baseline.name!r}")
    results = compare(models, systems, args.objective)
    b, g, e = baseline.name, mensa.name, eyeriss.name
    gs = searched_mensa.name if searched_mensa is not None else None
    heads = [g] + ([gs] if gs else [])

    table = Table(title=f"{' and '.join(heads)} vs {b} and {e} (per inference, one at a time)")
    pairs = [(h, b) for h in heads] + [(g, e)]
    for col in ("model", "MMACs", *(f"{s} ms" for s in systems), *(f"{s} mJ" for s in systems),
                *(f"{x} thr x vs {y}" for x, y in pairs), *(f"{x} eff x vs {y}" for x, y in pairs)):
        table.add_column(col, justify="left" if col == "model" else "right")
    ratios = {(x, y): _ratios(results, models, x, y) for x, y in pairs}
    for i, m in enumerate(models):
        r = [results[s][m] for s in systems]
        table.add_row(m, f"{r[0].macs / 1e6:,.0f}", *(f"{x.latency_s * 1e3:.3f}" for x in r),
                      *(f"{x.energy_pj / 1e9:.3f}" for x in r),
                      *(f"{ratios[p][0][i]:.2f}" for p in pairs), *(f"{ratios[p][1][i]:.2f}" for p in pairs))
    console.print(table)
    summary = {
        "area_mm2": {s: system_area_mm2(systems[s]) for s in systems},
        "area_budget_mm2": budget,
        "sram_scale": sizing,
        "baseline": {"name": b, **how[b]},
        "systems_how": how,
        "eyeriss_like_array": f"{eyeriss.accelerator[0].array.rows}x{eyeriss.accelerator[0].array.cols}",
        **{f"{x}_over_{y}": _ratio_summary(*ratios[(x, y)]) for x, y in pairs},
        "energy_breakdown_share": {}, "mean_utilisation": {}, "layers_per_accelerator": {},
    }
    for s in systems:
        tot = {}
        for m in models:
            for k, v in results[s][m].energy_breakdown_pj.items():
                tot[k] = tot.get(k, 0.0) + v
        total = sum(tot.values())
        summary["energy_breakdown_share"][s] = {k: v / total for k, v in tot.items()}
        summary["mean_utilisation"][s] = float(np.mean([
            results[s][m].macs / sum(p.cycles * _peak(systems[s], p.accelerator) for p in results[s][m].placements)
            for m in models]))
        counts = {}
        for m in models:
            for p in results[s][m].placements:
                counts[p.accelerator] = counts.get(p.accelerator, 0) + 1
        summary["layers_per_accelerator"][s] = counts
    h = how[b]
    if h["kind"] == "searched":
        console.print(f"baseline {b}: the best {h['space']} design ({h['points']:,} points) found by {h['optimizer']} in "
                      f"{h['evaluations']} evaluations at {h['area_budget_mm2']:.2f} mm^2 and {h['clock_mhz']:g} MHz: "
                      + ", ".join(f"{k}={v}" for k, v in h["values"].items()) + f" ({h['config']})")
    else:
        console.print(f"baseline {b}: the preset {h['config']}" + (f", SRAM scaled x{h['sram_scale']:.3g} to the budget"
                                                                   if budget is not None else ", as written"))
    if gs:
        hs = how[gs]
        console.print(f"{gs}: the best {hs['space']} design found by {hs['optimizer']} in {hs['evaluations']} "
                      f"evaluations at {hs['area_budget_mm2']:.2f} mm^2: " + ", ".join(f"{k}={v}" for k, v in hs["values"].items()))
    for x, y in pairs:
        key = f"{x}_over_{y}"
        r = summary[key]
        # Areas differ unless the presets were sized alike: also give throughput per mm^2.
        r["area_ratio"] = summary["area_mm2"][y] / summary["area_mm2"][x]
        r["throughput_per_mm2_geomean"] = r["throughput_geomean"] * r["area_ratio"]
        console.print(f"{key}: throughput x{r['throughput_geomean']:.2f} (geomean; mean x{r['throughput_mean']:.2f}), "
                      f"energy efficiency x{r['energy_efficiency_geomean']:.2f} (geomean; mean x{r['energy_efficiency_mean']:.2f}), "
                      f"throughput per mm^2 x{r['throughput_per_mm2_geomean']:.2f} ({x} is {1 / r['area_ratio']:.2f}x the area)")
    if budget is not None:
        console.print(f"equal area: every system within {budget:.2f} mm^2 ("
                      + ", ".join([f"{k} SRAM x{v:.3g}" for k, v in sizing.items()]
                                  + [f"{k} searched" for k, v in how.items() if v["kind"] == "searched"])
                      + f"; {e} array sized to fit)")
    for s in systems:
        share = summary["energy_breakdown_share"][s]
        console.print(f"{s}: area {summary['area_mm2'][s]:.2f} mm^2, mean PE utilisation "
                      f"{100 * summary['mean_utilisation'][s]:.1f}%, layers {summary['layers_per_accelerator'][s]}; energy: "
                      + ", ".join(f"{k} {100 * v:.1f}%" for k, v in sorted(share.items(), key=lambda kv: -kv[1]) if v > 0.005))
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"summary": summary, "objective": args.objective,
            "systems": {s: to_dict(systems[s]) for s in systems},
            "models": {m: {s: results[s][m].to_dict() for s in systems} for m in models}}
    write_json(args.out / "compare.json", data)
    console.print(f"wrote {args.out / 'compare.json'}")
    if not args.no_plots:
        for path in _plots(results, list(models), args.out):
            console.print(f"wrote {path}")
    return 0


def _peak(system, acc_name):
    acc = system[acc_name]
    if acc.nearmem is not None:
        return acc.nearmem.vaults * acc.nearmem.lanes
    return acc.array.rows * acc.array.cols
