"""The Edge TPU study at full scale: its speed and its learned model's accuracy.

Enumerates NAS-Bench-101 (timed; cached in bench/out/study/cells.npz after the first run, pass
--fresh to time it again), sweeps all 423,624 networks over the three Edge TPU classes through
the cost model with local processes (timed), then trains the learned performance model on part
of the study and measures it on held-out networks: MAPE and the shares within 5% and 10%, its
training set size and its prediction time per network (from the cell: features and trees).
Prints and writes bench/out/study.json.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from mensa.gen.parallel import local_workers
from mensa.gen.study import read_table, run_sweep
from mensa.gen.study_report import cell_of_row, learned_model_accuracy
from mensa.model.nasbench import PUBLISHED_COUNT, CellSpace
from mensa.model.perf_model import cell_features, class_features
from mensa.model.study import CLASSES, class_system

OUT = Path(__file__).resolve().parent / "out"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="enumerate the space again (timed)")
    args = parser.parse_args()
    folder = OUT / "study"
    cells = folder / "cells.npz"
    keep = None
    if cells.exists() and not args.fresh:
        keep = cells.read_bytes()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if keep is not None:
        cells.write_bytes(keep)
    stamps = {}

    def progress(stage, done, total):
        stamps.setdefault(stage, time.perf_counter())
        stamps[stage + "_end"] = time.perf_counter()
        if stage == "sweep" and done and done % 40960 < 4096:
            print(f"  sweep {done:,}/{total:,} ({time.perf_counter() - stamps['sweep']:.0f} s)", flush=True)

    t0 = time.perf_counter()
    run_sweep(folder, progress=progress)
    total_s = time.perf_counter() - t0
    space = CellSpace.load(cells)
    table = read_table(folder)
    n = len(table["index"])
    enum_s = (stamps["sweep"] - t0) if keep is None else None
    sweep_s = stamps["join_end"] - stamps["sweep"]
    result = {"cells": len(space), "published_count": PUBLISHED_COUNT, "networks": n, "classes": list(CLASSES),
              "workers": local_workers(), "enumerate_seconds": enum_s, "sweep_seconds": sweep_s,
              "total_seconds": total_s, "networks_x_classes_per_second": n * len(CLASSES) / sweep_s}
    print(f"space: {len(space):,} cells (published {PUBLISHED_COUNT:,}); enumeration "
          f"{'cached' if enum_s is None else f'{enum_s:.1f} s'}")
    print(f"sweep: {n:,} networks x {len(CLASSES)} classes in {sweep_s:.1f} s on {local_workers()} processes "
          f"({result['networks_x_classes_per_second']:,.0f} network-classes/s); total {total_s:.1f} s")
    for c in CLASSES:
        lat = table[f"latency_ms_{c}"]
        result[f"latency_ms_{c}"] = {"min": float(lat.min()), "median": float(np.median(lat)), "max": float(lat.max())}
    model, acc = learned_model_accuracy(table)
    rng = np.random.default_rng(1)
    rows = rng.choice(n, 500, replace=False)
    feats = [class_features(class_system(c)) for c in CLASSES]
    t1 = time.perf_counter()
    for i in rows:
        f = cell_features(cell_of_row(table, i))
        model.predict([f + cf for cf in feats])
    acc["predict_from_cell_us_per_network"] = (time.perf_counter() - t1) / len(rows) * 1e6
    result["learned_model"] = acc
    print(f"learned model: trained on {acc['train_networks']:,} networks ({acc['train_rows']:,} rows) in "
          f"{acc['fit_seconds']:.1f} s; held out {acc['test_networks']:,}; "
          f"{acc['predict_from_cell_us_per_network']:.0f} us per network from its cell (3 classes), "
          f"{acc['predict_us_per_row']:.2f} us per row in a batch")
    for c, d in acc["classes"].items():
        for t, e in d.items():
            print(f"  {c.upper()} {t:11s} MAPE {e['mape_pct']:.2f}%  within 5% {e['within_5pct']:.1%}  "
                  f"within 10% {e['within_10pct']:.1%}")
    OUT.mkdir(exist_ok=True)
    (OUT / "study.json").write_text(json.dumps(result, indent=1) + "\n")
    print(OUT / "study.json")



if __name__ == "__main__":
    main()
