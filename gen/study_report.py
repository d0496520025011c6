"""The study's report: what a reader of the Edge TPU evaluation expects, from a finished sweep.

``write_report(out)`` reads ``OUT/nasbench101.parquet`` and writes, into ``OUT/report/``:
latency and utilisation distributions per class, the cell features that make a network fast or
slow on each class, the classes' rank correlations, the learned performance model (trained on a
part of the study, measured on networks it never saw, saved to ``OUT/perf_model/``), and a sample
of the networks scheduled on Mensa-G against the three classes; figures as PNGs, and
``report.md`` with the numbers.
"""

import json
import time
from pathlib import Path

import numpy as np

from mensa.core.config import load
from mensa.gen.study import read_table
from mensa.model.nasbench import Cell, INPUT, OPS, OUTPUT, build_network
from mensa.model.perf_model import TARGETS, PerfModel, class_features
from mensa.model.schedule import schedule
from mensa.model.study import CLASSES, GRAPH_FEATURES, class_system

__all__ = ["write_report", "learned_model_accuracy", "cell_of_row"]

TRAIN_FRACTION = 0.3       # of the networks, to train the learned model; the rest measure it
TRAIN_MAX = 60_000         # networks at most in the training set (x classes rows)
TEST_MAX = 50_000          # held-out networks measured at most
MENSA_G_SAMPLE = 40


def _classes(table):
    return [c for c in CLASSES if f"latency_ms_{c}" in table]


def cell_of_row(table, i):
    """The :class:`~mensa.model.nasbench.Cell` of row ``i`` of a study table."""
    ops = str(table["ops"][i])
    v = len(ops) + 2
    bits = int(table["matrix"][i])
    m = [[(bits >> (x + y * (y - 1) // 2)) & 1 if x < y else 0 for y in range(v)] for x in range(v)]
    return Cell(tuple(map(tuple, m)), (INPUT, *(OPS[int(k)] for k in ops), OUTPUT))


def _rank(x):
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def _spearman(a, b):
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def _design(table, rows, classes):
    """Feature matrix and targets of ``rows`` of the table, one row per (network, class)."""
    base = np.stack([table[f].astype(np.float64) for f in (*GRAPH_FEATURES, "macs", "params", "layers",
                                                           "act_bytes")], axis=1)[rows]
    xs, ys = [], {t: [] for t in TARGETS}
    for c in classes:
        cf = np.array(class_features(class_system(c)), dtype=np.float64)
        xs.append(np.hstack([base, np.broadcast_to(cf, (len(rows), len(cf)))]))
        for t in TARGETS:
            ys[t].append(table[f"{t}_{c}"][rows])
    return np.vstack(xs), {t: np.concatenate(v) for t, v in ys.items()}


def learned_model_accuracy(table, *, seed=0, train_fraction=TRAIN_FRACTION, rounds=600):
    """Train a :class:`PerfModel` on part of the study; measure it on held-out networks.

    Returns ``(model, figures)``: figures holds the training and test sizes, training time,
    prediction time per network, and per class and target the MAPE and the shares within 5%
    and 10%.
    """
    classes = _classes(table)
    n = len(table["index"])
    order = np.random.default_rng(seed).permutation(n)
    n_train = min(max(int(n * train_fraction), 1), TRAIN_MAX)
    train, test = order[:n_train], order[n_train:][:TEST_MAX]
    if len(test) == 0:
        raise ValueError("the study has too few networks to hold any out")
    x, y = _design(table, train, classes)
    t0 = time.perf_counter()
    model = PerfModel().fit(x, y, seed=seed, rounds=rounds)
    fit_s = time.perf_counter() - t0
    figs = {"train_networks": int(len(train)), "train_rows": int(len(x)), "test_networks": int(len(test)),
            "fit_seconds": fit_s, "classes": {}}
    xt, yt = _design(table, test, classes)
    t0 = time.perf_counter()
    pred = model.predict(xt)
    figs["predict_us_per_row"] = (time.perf_counter() - t0) / len(xt) * 1e6
    for k, c in enumerate(classes):
        part = slice(k * len(test), (k + 1) * len(test))
        figs["classes"][c] = {}
        for t in TARGETS:
            err = np.abs(pred[t][part] / yt[t][part] - 1)
            figs["classes"][c][t] = {"mape_pct": float(err.mean() * 100), "within_5pct": float((err <= 0.05).mean()),
                                     "within_10pct": float((err <= 0.10).mean())}
    return model, figs


def _plot_distributions(table, classes, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for col, label, log in (("latency_ms", "latency (ms)", True), ("utilisation", "PE utilisation", False)):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for c in classes:
            v = table[f"{col}_{c}"]
            bins = np.geomspace(v.min(), v.max(), 80) if log else np.linspace(0, max(v.max(), 1e-9), 80)
            ax.hist(v, bins=bins, histtype="step", label=c.upper())
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("networks")
        ax.legend()
        ax.set_title(f"NAS-Bench-101 ({len(table['index']):,} networks): {label}")
        fig.tight_layout()
        path = folder / f"{col}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_bars(rows, labels, series, title, path, ylabel):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(labels)) + k * width, values, width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=40, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mensa_g_sample(table, classes, folder, count):
    """Networks spread over the study, scheduled on Mensa-G: their latencies against the classes'."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    system = load("mensa-g")
    rows = np.unique(np.linspace(0, len(table["index"]) - 1, count).round().astype(int))
    lat = np.array([schedule(build_network(cell_of_row(table, i)), system).latency_s * 1e3 for i in rows])
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for c in classes:
        ax.scatter(table[f"latency_ms_{c}"][rows], lat, s=10, label=c.upper())
    lo, hi = min(lat.min(), *(table[f"latency_ms_{c}"][rows].min() for c in classes)), lat.max() * 1.5
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Edge TPU class latency (ms)")
    ax.set_ylabel("Mensa-G latency (ms)")
    ax.legend()
    fig.tight_layout()
    path = folder / "mensa_g.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    ratios = {c: table[f"latency_ms_{c}"][rows] / lat for c in classes}
    return path, rows, lat, ratios


def write_report(out, *, progress=None):
    """Write ``OUT/report/`` (PNGs, ``report.md``, ``report.json``) and ``OUT/perf_model/``; returns the
    report's path."""
    out = Path(out)
    step = progress or (lambda stage: None)
    table = read_table(out)
    classes = _classes(table)
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(table["index"])
    summary = {"networks": n, "classes": {}}
    step("distributions")
    figures = _plot_distributions(table, classes, folder)
    for c in classes:
        lat, util = table[f"latency_ms_{c}"], table[f"utilisation_{c}"]
        summary["classes"][c] = {
            "latency_ms": {q: float(np.percentile(lat, p)) for q, p in (("min", 0), ("p10", 10), ("median", 50),
                                                                         ("p90", 90), ("max", 100))},
            "utilisation": {q: float(np.percentile(util, p)) for q, p in (("min", 0), ("median", 50),
                                                                          ("max", 100))},
            "energy_uj_median": float(np.median(table[f"energy_uj_{c}"])),
            "dram_mb_median": float(np.median(table[f"dram_bytes_{c}"]) / 1e6)}
    step("rank correlation")
    summary["rank_correlation"] = {f"{a}-{b}": _spearman(table[f"latency_ms_{a}"], table[f"latency_ms_{b}"])
                                   for i, a in enumerate(classes) for b in classes[i + 1:]}
    step("features")
    feats = (*GRAPH_FEATURES, "macs", "params")
    summary["feature_correlation"] = {c: {f: _spearman(table[f].astype(float), table[f"latency_ms_{c}"])
                                          for f in feats} for c in classes}
    figures.append(_plot_bars(None, feats, {c.upper(): [summary["feature_correlation"][c][f] for f in feats]
                                            for c in classes},
                              "what makes a network slow: rank correlation with latency",
                              folder / "features.png", "Spearman rho"))
    step("learned model")
    model, acc = learned_model_accuracy(table)
    model.save(out / "perf_model")
    summary["learned_model"] = acc
    importance = model.importance("latency_ms")
    top = sorted(importance, key=importance.get, reverse=True)[:10]
    summary["learned_model"]["top_features"] = {f: importance[f] for f in top}
    step("mensa-g sample")
    path, rows, lat, ratios = _mensa_g_sample(table, classes, folder, min(MENSA_G_SAMPLE, n))
    figures.append(path)
    summary["mensa_g_sample"] = {"networks": int(len(rows)), "median_latency_ms": float(np.median(lat)),
                                 "speedup_over": {c: {"median": float(np.median(r)), "min": float(r.min()),
                                                      "max": float(r.max())} for c, r in ratios.items()}}
    (folder / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = _markdown(summary, classes, figures)
    (folder / "report.md").write_text(md)
    return folder / "report.md"


def _markdown(s, classes, figures):
    lines = [f"# The Edge TPU study: {s['networks']:,} NAS-Bench-101 networks", "",
             "Every network through mensa's cost model (one accelerator, layers in order, as "
             "`mensa schedule` runs it) on the Edge TPU classes " + ", ".join(c.upper() for c in classes) +
             " (configs/edgetpu-v1..v3.toml).", "",
             "## Latency and utilisation", "",
             "| class | min ms | p10 | median | p90 | max ms | median utilisation | max utilisation | "
             "median energy uJ | median DRAM MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in classes:
        d = s["classes"][c]
        l = d["latency_ms"]
        lines.append(f"| {c.upper()} | {l['min']:.3f} | {l['p10']:.3f} | {l['median']:.3f} | {l['p90']:.3f} | "
                     f"{l['max']:.3f} | {d['utilisation']['median']:.1%} | {d['utilisation']['max']:.1%} | "
                     f"{d['energy_uj_median']:.0f} | {d['dram_mb_median']:.2f} |")
    lines += ["", "![latency](latency_ms.png)", "![utilisation](utilisation.png)", "",
              "## The classes' rank correlation (Spearman, latency)", ""]
    lines += [f"- {k.upper()}: {v:.4f}" for k, v in s["rank_correlation"].items()]
    lines += ["", "## What makes a network fast or slow", "",
              "Spearman correlation of each cell feature with latency, per class (positive: slower).", "",
              "| feature | " + " | ".join(c.upper() for c in classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for f in s["feature_correlation"][classes[0]]:
        lines.append(f"| {f} | " + " | ".join(f"{s['feature_correlation'][c][f]:+.3f}" for c in classes) + " |")
    m = s["learned_model"]
    lines += ["", "![features](features.png)", "", "## The learned performance model", "",
              f"LightGBM on graph, size and class features (mensa.model.perf_model), trained on "
              f"{m['train_networks']:,} networks x {len(classes)} classes ({m['train_rows']:,} rows) in "
              f"{m['fit_seconds']:.1f} s, measured on {m['test_networks']:,} networks it never saw; "
              f"{m['predict_us_per_row']:.2f} us per prediction (one network on one class, in a batch). "
              f"Trees rather than the paper's graph "
              f"neural network: a cell has at most 7 vertices, a few counts describe it, and trees train in "
              f"seconds on two cores with no deep-learning framework.", "",
              "| class | target | MAPE | within 5% | within 10% |", "|---|---|---|---|---|"]
    for c in classes:
        for t, d in m["classes"][c].items():
            lines.append(f"| {c.upper()} | {t} | {d['mape_pct']:.2f}% | {d['within_5pct']:.1%} | "
                         f"{d['within_10pct']:.1%} |")
    lines += ["", "Most useful features (gain, latency): " +
              ", ".join(f"{f} {g:.1%}" for f, g in m["top_features"].items()), "",
              "## Mensa-G on a sample", ""]
    g = s["mensa_g_sample"]
    lines.append(f"{g['networks']} networks spread over the study, scheduled on Mensa-G (mensa-g.toml): median "
                 f"latency {g['median_latency_ms']:.3f} ms. Speed-up of Mensa-G over each class (class latency / "
                 f"Mensa-G latency):")
    lines.append("")
    for c, d in g["speedup_over"].items():
        lines.append(f"- {c.upper()}: median {d['median']:.2f}x (min {d['min']:.2f}x, max {d['max']:.2f}x)")
    lines += ["", "![mensa-g](mensa_g.png)", ""]
    return "\n".join(lines)
