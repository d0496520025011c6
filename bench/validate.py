"""Benchmark: the cost model against the RTL, layer by layer, and the error distribution.

Two parts (gen/validate.py): the compute cores (systolic arrays and near-memory units,
the model's core cycles, one simulation per accelerator) and the whole systolic
accelerators from AXI DRAM (DMA, sequencer, activation scratchpad, array, requantiser;
the model's cycles with its DRAM terms, FC, pointwise and 3x3 conv layers, one
simulation per accelerator and DRAM latency). Prints per layer the
model's cycles, the measured cycles and the relative error, then the error distribution
(max, mean, median |error| and a histogram) per accelerator, per part and overall. Writes
bench/out/validate.json.

    python bench/validate.py [--small] [--part cores|accelerators|all] [--configs ws4x4,acc8x8d64]
                             [--latencies 1,20,50] [--sim verilator]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from mensa.core.config import CoreKind, DramConfig
from mensa.gen.validate import (ACCELERATORS, CONFIGS, LATENCIES, accelerator_suite, suite, summary, validate,
                                  validate_accelerator)

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the default test suite's layers, not the sweep")
    parser.add_argument("--part", choices=["all", "cores", "accelerators"], default="all")
    parser.add_argument("--configs", default=None,
                        help=f"comma-separated accelerators (default: all of the part); allowed: "
                             f"{', '.join([*CONFIGS, *ACCELERATORS])}")
    parser.add_argument("--latencies", default=",".join(map(str, LATENCIES)),
                        help="DRAM latencies (cycles) of the whole accelerators, and vault latencies the "
                             "near-memory units also run at (default: %(default)s)")
    parser.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "validate.json"))
    args = parser.parse_args(argv)
    known = {**({} if args.part == "accelerators" else CONFIGS), **({} if args.part == "cores" else ACCELERATORS)}
    names = list(known) if args.configs is None else [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        print(f"--configs: unknown accelerator {', '.join(unknown) or '(none given)'} for --part {args.part}; "
              f"allowed: {', '.join(known)}", file=sys.stderr)
        return 2
    try:
        latencies = [int(x) for x in args.latencies.split(",") if x.strip()]
    except ValueError:
        latencies = []
    if not latencies or min(latencies) < 1:
        print(f"--latencies {args.latencies!r}: allowed: comma-separated positive integers", file=sys.stderr)
        return 2
    report = {"bench": "validate", "simulator": args.sim, "suite": "small" if args.small else "sweep",
              "accelerators": {}, "layers": []}
    everything, parts = [], {"cores": [], "accelerators": []}
    runs = []
    for name in names:
        if name in CONFIGS:
            acc, dram = CONFIGS[name]
            runs.append((name, "cores", lambda acc=acc, dram=dram, name=name: validate(
                suite(name, large=not args.small), acc, dram=dram, sim=args.sim)))
            if acc.kind is CoreKind.NEARMEM:       # and at every vault latency asked for
                for lat in latencies:
                    if lat != dram.latency_cycles:
                        runs.append((f"{name}@L{lat}", "cores", lambda acc=acc, name=name, lat=lat: validate(
                            suite(name, large=not args.small), acc, dram=DramConfig(latency_cycles=lat),
                            sim=args.sim)))
        else:
            for lat in latencies:
                runs.append((f"{name}@L{lat}", "accelerators", lambda name=name, lat=lat: validate_accelerator(
                    accelerator_suite(name, large=not args.small), ACCELERATORS[name], latency=lat, sim=args.sim)))
    for name, part, job in runs:
        started = time.monotonic()
        records = job()
        wall = time.monotonic() - started
        everything += records
        parts[part] += records
        print(f"{name}: {len(records)} layers, {wall:.0f} s")
        print(f"  {'layer':16s} {'op':10s} {'workload':28s} {'model':>9s} {'RTL':>9s} {'error':>8s}")
        for r in records:
            print(f"  {r.layer:16s} {r.op:10s} {str(r.workload):28s} {r.model:9.0f} {r.measured:9d} "
                  f"{100 * r.error:+7.2f}%")
            report["layers"].append({"accelerator": name, "part": part, "layer": r.layer, "op": r.op,
                                     "workload": list(r.workload), "model_cycles": r.model,
                                     "rtl_cycles": r.measured, "error": r.error})
        s = summary(records)
        s["wall_seconds"] = round(wall, 1)
        report["accelerators"][name] = s
        print(f"  max |error| {100 * s['max_abs_error']:.2f}%, mean {100 * s['mean_abs_error']:.2f}%, "
              f"exact {s['exact']}/{s['layers']}")
    for part, records in parts.items():
        if records:
            report[part] = _print_summary(part, records)
    report["overall"] = _print_summary("overall", everything)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print_summary(label, records):
    s = summary(records)
    print(f"{label}: {s['layers']} layers, max |error| {100 * s['max_abs_error']:.2f}% ({s['worst']}), "
          f"mean {100 * s['mean_abs_error']:.2f}%, median {100 * s['median_abs_error']:.2f}%, "
          f"exact {s['exact']}/{s['layers']}; |error| " + ", ".join(f"{k}: {v}" for k, v in s["histogram"].items()))
    return s


if __name__ == "__main__":
    sys.exit(main())
