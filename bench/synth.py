"""Benchmark: the systolic array on an FPGA, swept over sizes and both dataflows.

For each size (rows = cols) and dataflow, the array alone (int8 operands, 32-bit
accumulators) goes through `mensa synth` (Yosys synth_ecp5 -abc9, nextpnr-ecp5
out of context, speed grade 6) with a 200 MHz target. Prints one row per point and
writes bench/out/synth.json: LUTs, FFs and DSP blocks in all and per PE, Fmax, and
the critical path's start and end. Every point is placed with three nextpnr seeds (``--seeds``):
the seed alone moves Fmax by tens of percent, so the point's Fmax is the median, with the lowest,
the highest and their spread beside it.

Goals (issue 7): the 8x8 weight-stationary array at >= 200 MHz on ECP5-85F, at most
one DSP block per PE.

With ``--nearmem`` the FPGA-sized near-memory unit (jacquard of configs/mensa-g-fpga.toml:
4 vaults x 8 MAC lanes) is measured too, one more point (``"unit": "nearmem"``).

Points of earlier runs stay in the JSON (each is replaced when measured again), so a long
sweep can be split: e.g. 12x12 alone in the background,
``nohup python bench/synth.py --sizes 12 > synth12.log &``.

    python bench/synth.py                       # the whole sweep (long: ~minutes per point)
    python bench/synth.py --sizes 8 --dataflows ws
    python bench/synth.py --sizes 2 --nearmem
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from mensa.gen.synth import TARGETS, SynthError, synth
from mensa.core.config import from_dict, load, to_dict

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
GOAL_MHZ = 200.0
NEARMEM = (ROOT / "configs" / "mensa-g-fpga.toml", "jacquard")


def point(size, dataflow, target, clock_mhz, seed=1):
    system = from_dict({"name": f"sweep{size}{dataflow}", "accelerator": [{
        "name": "array", "clock_mhz": clock_mhz,
        "array": {"rows": size, "cols": size, "dataflow": dataflow}}]})
    t0 = time.monotonic()
    report = synth(system, target, OUT / "synth" / target / f"{system.name}-seed{seed}", unit="array", seed=seed)
    (m,) = report["modules"]
    return {"unit": "array", "size": size, "dataflow": dataflow, **_figures(m, target, m["pes"], t0)}


def nearmem_point(target, clock_mhz, seed=1):
    """The FPGA-sized near-memory unit of mensa-g-fpga (its own config, at ``clock_mhz``)."""
    path, name = NEARMEM
    (acc,) = [a for a in load(path).accelerator if a.name == name]
    table = to_dict(acc)
    del table["array"]              # a near-memory accelerator has none; the loader refuses the table
    table["clock_mhz"] = clock_mhz
    system = from_dict({"name": f"nearmem_{name}", "accelerator": [table]})
    t0 = time.monotonic()
    report = synth(system, target, OUT / "synth" / target / f"{system.name}-seed{seed}", seed=seed)
    (m,) = report["modules"]
    nm = acc.nearmem
    lanes = nm.vaults * nm.lanes
    return {"unit": "nearmem", "size": f"{nm.vaults}x{nm.lanes}", "dataflow": "nearmem",
            "config": f"{path.name}:{name}", **_figures(m, target, lanes, t0)}


def _figures(m, target, pes, t0):
    """A module's report reduced to the sweep's figures; ``pes``: MAC units (PEs or lanes)."""
    r = m["resources"]
    clk = m["clocks"].get("clk") or next(iter(m["clocks"].values()))
    # The core's critical path: register to register in its clock (not the shell's pin paths).
    internal = [p for p in m["critical_paths"] if p["from_clock"] == p["to_clock"] != "<async>"]
    worst = max(internal, key=lambda p: p["delay_ns"]) if internal else {}
    return {
        "target": target, "pes": pes,
        "luts": r["luts"], "ffs": r["ffs"], "dsps": r["dsps"], "brams": r["brams"],
        "luts_per_pe": round(r["luts"] / pes, 2), "ffs_per_pe": round(r["ffs"] / pes, 2),
        "dsps_per_pe": round(r["dsps"] / pes, 3),
        "fmax_mhz": clk["fmax_mhz"], "target_mhz": clk["target_mhz"],
        "critical_start": worst.get("start"), "critical_end": worst.get("end"),
        "critical_ns": worst.get("delay_ns"), "critical_logic_ns": worst.get("logic_ns"),
        "critical_routing_ns": worst.get("routing_ns"),
        "seed": m["seed"], "cached": m["cached"], "seconds": round(time.monotonic() - t0, 1),
        "tools": {k: v for k, v in m["tools"].items() if k.startswith(("yowasp", "amaranth", "mensa"))},
    }


def with_spread(per_seed):
    """One point from its runs over several seeds: the median run's figures (the median Fmax), every seed's
    Fmax and critical path, the lowest and highest Fmax and their spread relative to the median."""
    runs = sorted(per_seed, key=lambda p: p["fmax_mhz"])
    p = dict(runs[(len(runs) - 1) // 2])
    fmax = [r["fmax_mhz"] for r in runs]
    p.update(fmax_mhz=statistics.median(fmax), fmax_min_mhz=min(fmax), fmax_max_mhz=max(fmax),
             fmax_spread_pct=round(100 * (max(fmax) - min(fmax)) / statistics.median(fmax), 1),
             seeds=[{k: r[k] for k in ("seed", "fmax_mhz", "critical_start", "critical_end", "critical_ns")}
                    for r in sorted(per_seed, key=lambda r: r["seed"])],
             cached=all(r["cached"] for r in runs), seconds=round(sum(r["seconds"] for r in runs), 1))
    return p


def write(out, by_key):
    """Write the points and the 8x8 WS goal's verdict to ``out``; return what was written."""
    points = sorted(by_key.values(), key=lambda p: (p["target"], p.get("unit", "array"), p["dataflow"], str(p["size"]).zfill(4)))
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
    parser.add_argument("--nearmem", action="store_true",
                        help="also the FPGA-sized near-memory unit (jacquard of configs/mensa-g-fpga.toml)")
    parser.add_argument("--seeds", default="1,2,3",
                        help="nextpnr placer seeds, comma-separated (default 1,2,3): each point's Fmax is their median")
    parser.add_argument("--out", type=Path, default=OUT / "synth.json")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        sizes = []
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        print(f"--seeds {args.seeds!r}: allowed: distinct comma-separated integers of at least 0", file=sys.stderr)
        return 2
    dataflows = [d for d in args.dataflows.split(",") if d]
    if not sizes or min(sizes) < 1 or max(sizes) > 256:
        print(f"--sizes {args.sizes!r}: allowed: comma-separated integers 1..256", file=sys.stderr)
        return 2
    if not dataflows or set(dataflows) - {"ws", "os"}:
        print(f"--dataflows {args.dataflows!r}: allowed: ws, os (comma-separated)", file=sys.stderr)
        return 2

    previous = {}
    if args.out.exists():   # keep the points of earlier partial sweeps
        for p in json.loads(args.out.read_text()).get("points", []):
            previous[(p["size"], p["dataflow"], p["target"])] = p
    runs = [(lambda seed, size=size, df=df: point(size, df, args.target, args.clock_mhz, seed))
            for size in sizes for df in dataflows]
    if args.nearmem:
        runs.append(lambda seed: nearmem_point(args.target, args.clock_mhz, seed))
    print(f"{'array':>7} {'df':>3} {'LUTs':>6} {'FFs':>6} {'DSPs':>5} {'LUT/PE':>7} {'FF/PE':>6} "
          f"{'DSP/PE':>6} {'Fmax':>7}  critical path")
    failed = 0
    for run in runs:
        try:
            per_seed = [run(seed) for seed in seeds]
        except SynthError as e:     # one point's tool failure does not end the sweep
            print(f"error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        p = with_spread(per_seed)
        previous[(p["size"], p["dataflow"], p["target"])] = p
        write(args.out, previous)       # after every point: a long sweep can be cut short
        print(f"{str(p['size']):>7} {p['dataflow'][:3]:>3} {p['luts']:>6} {p['ffs']:>6} {p['dsps']:>5} "
              f"{p['luts_per_pe']:>7.1f} {p['ffs_per_pe']:>6.1f} {p['dsps_per_pe']:>6.2f} "
              f"{p['fmax_mhz']:>7.1f}  {p['critical_start']} -> {p['critical_end']} "
              f"({p['critical_ns']} ns){' [cached]' if p['cached'] else ''}"
              + (f"; seeds {seeds}: {p['fmax_min_mhz']:.1f}..{p['fmax_max_mhz']:.1f} MHz, spread "
                 f"{p['fmax_spread_pct']:.1f}%" if len(seeds) > 1 else ""), flush=True)
    result = write(args.out, previous)
    goal = result["goal"]["met"]
    print(f"8x8 WS goal (>= {GOAL_MHZ:g} MHz, <= 1 DSP/PE): "
          f"{'not measured' if goal is None else 'met' if goal else 'not met'}; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
