"""Benchmark: the cost model against the RTL, layer by layer, and the error distribution.

Runs every validation layer (model/validate.py) on the RTL of each validated accelerator
(systolic arrays and near-memory units, Verilator, one simulation per accelerator), and
prints per layer the model's core cycles, the measured cycles and the relative error, then
max and mean |error| per accelerator and overall. Writes bench/out/validate.json.

    python bench/validate.py [--small] [--configs ws4x4,os4x8] [--sim verilator]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from mensa.model.validate import CONFIGS, suite, summary, validate

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the default test suite's layers, not the sweep")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated accelerators; allowed: {', '.join(CONFIGS)}")
    parser.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "validate.json"))
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        print(f"--configs: unknown accelerator {', '.join(unknown) or '(none given)'}; allowed: "
              f"{', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    report = {"bench": "validate", "simulator": args.sim, "suite": "small" if args.small else "sweep",
              "accelerators": {}, "layers": []}
    everything = []
    for name in names:
        acc, dram = CONFIGS[name]
        started = time.monotonic()
        records = validate(suite(name, large=not args.small), acc, dram=dram, sim=args.sim)
        wall = time.monotonic() - started
        everything += records
        print(f"{name}: {len(records)} layers, {wall:.0f} s")
        print(f"  {'layer':16s} {'op':10s} {'workload':28s} {'model':>9s} {'RTL':>9s} {'error':>8s}")
        for r in records:
            print(f"  {r.layer:16s} {r.op:10s} {str(r.workload):28s} {r.model:9.0f} {r.measured:9d} "
                  f"{100 * r.error:+7.2f}%")
            report["layers"].append({"accelerator": name, "layer": r.layer, "op": r.op,
                                     "workload": list(r.workload), "model_cycles": r.model,
                                     "rtl_cycles": r.measured, "error": r.error})
        s = summary(records)
        s["wall_seconds"] = round(wall, 1)
        report["accelerators"][name] = s
        print(f"  max |error| {100 * s['max_abs_error']:.2f}%, mean {100 * s['mean_abs_error']:.2f}%, "
              f"exact {s['exact']}/{s['layers']}")
    report["overall"] = summary(everything)
    o = report["overall"]
    print(f"overall: {o['layers']} layers, max |error| {100 * o['max_abs_error']:.2f}% ({o['worst']}), "
          f"mean {100 * o['mean_abs_error']:.2f}%, exact {o['exact']}/{o['layers']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
