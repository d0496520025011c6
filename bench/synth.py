"""Benchmark: the systolic array on an FPGA, swept over sizes and both dataflows.

For each size (rows = cols) and dataflow, the array alone (int8 operands, 32-bit
accumulators) goes through `mensa synth` (Yosys synth_ecp5 -abc9, nextpnr-ecp5
out of context, speed grade 6) with a 200 MHz target. Prints one row per point and
writes bench/out/synth.json: LUTs, FFs and DSP blocks in all and per PE, Fmax, and
the critical path's start and end.

Goals (issue 7): the 8x8 weight-stationary array at >= 200 MHz on ECP5-85F, at most
one DSP block per PE.

    python bench/synth.py                       # the whole sweep (long: ~minutes per point)
    python bench/synth.py --sizes 8 --dataflows ws
"""

import argparse
import json
import sys
import time
from pathlib import Path

from mensa.gen.synth import TARGETS, synth
from mensa.hw.config import from_dict

OUT = Path(__file__).resolve().parent / "out"
GOAL_MHZ = 200.0


def point(size, dataflow, target, clock_mhz):
    system = from_dict({"name": f"sweep{size}{dataflow}", "accelerator": [{
        "name": "array", "clock_mhz": clock_mhz,
        "array": {"rows": size, "cols": size, "dataflow": dataflow}}]})
    t0 = time.monotonic()
    report = synth(system, target, OUT / "synth" / target / system.name)
    (m,) = report["modules"]
    r, pes = m["resources"], m["pes"]
    clk = m["clocks"].get("clk") or next(iter(m["clocks"].values()))
    # The core's critical path: register to register in its clock (not the shell's pin paths).
    internal = [p for p in m["critical_paths"] if p["from_clock"] == p["to_clock"] != "<async>"]
    worst = max(internal, key=lambda p: p["delay_ns"]) if internal else {}
    return {
        "size": size, "dataflow": dataflow, "target": target, "pes": pes,
        "luts": r["luts"], "ffs": r["ffs"], "dsps": r["dsps"], "brams": r["brams"],
        "luts_per_pe": round(r["luts"] / pes, 2), "ffs_per_pe": round(r["ffs"] / pes, 2),
        "dsps_per_pe": round(r["dsps"] / pes, 3),
        "fmax_mhz": clk["fmax_mhz"], "target_mhz": clk["target_mhz"],
        "critical_start": worst.get("start"), "critical_end": worst.get("end"),
        "critical_ns": worst.get("delay_ns"), "critical_logic_ns": worst.get("logic_ns"),
        "critical_routing_ns": worst.get("routing_ns"),
        "cached": m["cached"], "seconds": round(time.monotonic() - t0, 1),
        "tools": {k: v for k, v in m["tools"].items() if k.startswith(("yowasp", "amaranth", "mensa"))},
    }


def write(out, by_key):
    """Write the points and the 8x8 WS goal's verdict to ``out``; return what was written."""
    points = sorted(by_key.values(), key=lambda p: (p["target"], p["dataflow"], p["size"]))
    goal = [p for p in points if (p["size"], p["dataflow"], p["target"]) == (8, "ws", "ecp5-85f")]
    result = {"goal": {"fmax_mhz": GOAL_MHZ, "dsps_per_pe": 1.0,
                       "met": (goal[0]["fmax_mhz"] >= GOAL_MHZ and goal[0]["dsps_per_pe"] <= 1.0)
                       if goal else None},
              "points": points}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,4,8,12", help="comma-separated array sizes (default 2,4,8,12)")
    parser.add_argument("--dataflows", default="ws,os", help="comma-separated: ws, os (default both)")
    parser.add_argument("--target", default="ecp5-85f", choices=list(TARGETS))
    parser.add_argument("--clock-mhz", type=float, default=GOAL_MHZ, help="nextpnr's frequency target")
    parser.add_argument("--out", type=Path, default=OUT / "synth.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    dataflows = args.dataflows.split(",")

    previous = {}
    if args.out.exists():   # keep the points of earlier partial sweeps
        for p in json.loads(args.out.read_text()).get("points", []):
            previous[(p["size"], p["dataflow"], p["target"])] = p
    print(f"{'array':>7} {'df':>3} {'LUTs':>6} {'FFs':>6} {'DSPs':>5} {'LUT/PE':>7} {'FF/PE':>6} "
          f"{'DSP/PE':>6} {'Fmax':>7}  critical path")
    for size in sizes:
        for df in dataflows:
            p = point(size, df, args.target, args.clock_mhz)
            previous[(size, df, args.target)] = p
            write(args.out, previous)       # after every point: a long sweep can be cut short
            print(f"{size:>3}x{size:<3} {df:>3} {p['luts']:>6} {p['ffs']:>6} {p['dsps']:>5} "
                  f"{p['luts_per_pe']:>7.1f} {p['ffs_per_pe']:>6.1f} {p['dsps_per_pe']:>6.2f} "
                  f"{p['fmax_mhz']:>7.1f}  {p['critical_start']} -> {p['critical_end']} "
                  f"({p['critical_ns']} ns){' [cached]' if p['cached'] else ''}", flush=True)
    result = write(args.out, previous)
    goal = result["goal"]["met"]
    print(f"8x8 WS goal (>= {GOAL_MHZ:g} MHz, <= 1 DSP/PE): "
          f"{'not measured' if goal is None else 'met' if goal else 'not met'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
