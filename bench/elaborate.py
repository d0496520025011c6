"""Elaboration speed: seconds to turn one accelerator config into Verilog, by array size.

Times ``convert(top_for(acc))`` (Amaranth elaboration and the RTLIL/Verilog back end) for
systolic accelerators of growing arrays and near-memory units of growing vaults x lanes, and
fits ``seconds = base + per_unit * units + per_kib * KiB`` (units: PEs, or MAC lanes; KiB of
on-chip buffers) by least squares: the figures :func:`mensa.gen.verilog.elaboration_estimate` uses. Prints and writes
bench/out/elaborate.json.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mensa.core.config import AcceleratorConfig, ArrayConfig, BufferConfig, CoreKind, NearMemConfig
from mensa.gen.verilog import elaboration_estimate, elaboration_size, top_for
from mensa.hw.convert import convert

OUT = Path(__file__).resolve().parent / "out" / "elaborate.json"


def _time(acc):
    t = time.perf_counter()
    text = convert(top_for(acc), "bench")
    return time.perf_counter() - t, len(text)


def _fit(points):
    a = np.array([[1.0, p["units"], p["kib"]] for p in points])
    secs = np.array([p["seconds"] for p in points], float)
    (base, per_unit, per_kib), *_ = np.linalg.lstsq(a, secs, rcond=None)
    return {"base_s": round(float(base), 3), "per_unit_s": round(float(per_unit), 6),
            "per_kib_s": round(float(per_kib), 6)}


def _point(acc, label):
    seconds, chars = _time(acc)
    units, kib = elaboration_size(acc)
    estimate = elaboration_estimate(acc)
    print(f"{acc.kind.value} {label}: {seconds:.2f} s (estimate {estimate:.2f} s)", flush=True)
    return {"config": label, "units": units, "kib": kib, "seconds": round(seconds, 2), "estimate": round(estimate, 2),
            "verilog_chars": chars}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,8,16,24,32", help="square array sizes (default: 4,8,16,24,32)")
    parser.add_argument("--kib", default="64,256", help="KiB of each buffer of a 4x4 array (default: 64,256)")
    parser.add_argument("--lanes", default="2x4,4x8,8x8,8x16", help="near-memory vaults x lanes")
    parser.add_argument("--local-kib", default="16,64", help="local KiB per vault of 4x8 units (default: 16,64)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = {"systolic": [], "nearmem": []}
    for n in (int(v) for v in args.sizes.split(",")):
        rows["systolic"].append(_point(AcceleratorConfig(name="bench", array=ArrayConfig(rows=n, cols=n)), f"{n}x{n}"))
    for kib in (int(v) for v in args.kib.split(",")):
        acc = AcceleratorConfig(name="bench", array=ArrayConfig(rows=4, cols=4),
                                buffers=BufferConfig(weight_kib=kib, act_kib=kib, acc_kib=kib))
        rows["systolic"].append(_point(acc, f"4x4, {kib} KiB buffers"))
    for spec in args.lanes.split(","):
        vaults, lanes = (int(v) for v in spec.split("x"))
        acc = AcceleratorConfig(name="bench", kind=CoreKind.NEARMEM, nearmem=NearMemConfig(vaults=vaults, lanes=lanes))
        rows["nearmem"].append(_point(acc, spec))
    for kib in (int(v) for v in args.local_kib.split(",")):
        acc = AcceleratorConfig(name="bench", kind=CoreKind.NEARMEM,
                                nearmem=NearMemConfig(vaults=4, lanes=8, local_kib=kib))
        rows["nearmem"].append(_point(acc, f"4x8, {kib} KiB local"))
    report = {kind: {"points": points, "fit": _fit(points)} for kind, points in rows.items()}
    for kind, r in report.items():
        f = r["fit"]
        print(f"{kind}: seconds = {f['base_s']} + {f['per_unit_s']} x units + {f['per_kib_s']} x KiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
