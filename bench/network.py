"""Benchmark: whole networks on the RTL: simulation speed, wall time, measured cycles against the cost model.

Each network runs as ``mensa run`` runs it (random weights from the seed, quantised; scheduled on
the system; compiled into one DRAM image and a command list; the Verilator C++ harness with its
DRAM in C++ and the C runtime; every layer's output checked byte for byte). Default: DS-CNN and
MobileNetV2 (224x224) on configs/pascal-fpga.toml at its DRAM's latency and bandwidth. Prints a
table and writes bench/out/network.json: per network the simulated cycles per second (the goal:
at least 300,000 on pascal-fpga), the wall time, the harness's build time, the measured and
predicted cycles and the largest per-layer error.

    python bench/network.py
    python bench/network.py --models ds_cnn --system configs/mensa-g-fpga.toml
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mensa.core.config import load
from mensa.gen.cmd_analyze import load_model
from mensa.gen.network_run import compile_for_rtl, quantised, run_on_rtl
from mensa.model.schedule import schedule

ROOT = Path(__file__).resolve().parent.parent
GOAL_CYCLES_PER_SECOND = 300_000


def worst_text(row):
    return f"{row['worst_layer']} {100 * row['worst_layer_error']:+.1f}%"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", type=Path, default=ROOT / "configs" / "pascal-fpga.toml")
    p.add_argument("--models", nargs="+", default=["ds_cnn", "mobilenet_v2"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "network.json")
    args = p.parse_args()
    system = load(args.system)
    rows = []
    for name in args.models:
        net, params = quantised(load_model(name), args.seed)
        sched = schedule(net, system)
        x = np.random.default_rng([args.seed, 1]).integers(-128, 128, size=net.input_shape, dtype=np.int8)
        print(f"{name}: {len(net.layers)} layers on {system.name} ...", flush=True)
        r = run_on_rtl(compile_for_rtl(net, params, system, sched), system, sched, [x], seed=args.seed)
        d = r.to_dict()
        worst = max(r.layers, key=lambda l: abs(l.error))
        rows.append({k: d[k] for k in ("network", "system", "bit_exact", "layer_cycles", "predicted_cycles", "error",
                                       "total_cycles", "wall_seconds", "build_seconds", "cycles_per_second",
                                       "dram_read_bytes", "dram_written_bytes")}
                    | {"layers": len(r.layers), "worst_layer": worst.layer, "worst_layer_error": worst.error,
                       "goal_cycles_per_second": GOAL_CYCLES_PER_SECOND})
    print(f"{'network':<20}{'layers':>7}{'bit-exact':>10}{'cycles':>12}{'model':>12}{'error':>8}{'worst layer':>24}"
          f"{'wall s':>8}{'cycles/s':>10}")
    for r in rows:
        print(f"{r['network']:<20}{r['layers']:>7}{'yes' if r['bit_exact'] else 'NO':>10}{r['layer_cycles']:>12,}"
              f"{r['predicted_cycles']:>12,.0f}{100 * r['error']:>+7.2f}%"
              f"{worst_text(r):>24}"
              f"{r['wall_seconds']:>8.1f}{r['cycles_per_second']:>10,.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
