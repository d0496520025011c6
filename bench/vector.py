"""Benchmark: the vector unit's layers on the accelerator's RTL: lane utilisation, bus bytes per cycle, the model's error.

Each layer runs as ``mensa run-layer`` runs it (the accelerator's Verilog under cocotb, DRAM
with a fixed read latency, the output checked byte for byte against the golden model), all
in one simulation. Default: on configs/pascal-fpga.toml (its vector unit of 8 lanes, a 64-bit
AXI port) at a DRAM latency of 20 cycles, MobileNetV2's depthwise convs on 14x14x144 at
stride 1 and 2 (the goal: at least 80% lane utilisation, MACs per lane and cycle), a max, an
average and a global average pool, a residual add and a squeeze-excite mul. The windowed ops
report lane utilisation (taps per lane and cycle); every layer reports its DRAM bytes per
cycle against the bus width each way, and the cost model's cycles (:mod:`mensa.model.vector`)
beside the measured ones. Prints a table and writes bench/out/vector.json.

    python bench/vector.py
    python bench/vector.py --layers "depthwise:in=28x28x32,kernel=5,padding=same" --latency 50
"""

import argparse
import json
from pathlib import Path

from mensa.core.config import DramConfig, load
from mensa.gen.layer_spec import parse_layer, simulate_layers, systolic_accelerator
from mensa.model.cost import evaluate
from mensa.sim.tb_accelerator import make_layer

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"depthwise:in=14x14x144,kernel=3,padding=same,act=relu6": 0.80,
         "depthwise:in=14x14x144,kernel=3,stride=2,padding=same,act=relu6": 0.80}
LAYERS = [
    *GOALS,
    "maxpool:in=28x28x32,kernel=3,stride=2,padding=same",     # ResNet's stem pool, narrowed
    "avgpool:in=14x14x64,kernel=3,padding=same",
    "global_avgpool:in=7x7x320",                              # a classifier's pool
    "add:in=14x14x64",                                        # a residual
    "mul:in=14x14x144",                                       # squeeze-excite's gate
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "pascal-fpga.toml")
    p.add_argument("--accelerator", default=None)
    p.add_argument("--layers", nargs="+", default=LAYERS, metavar="SPEC",
                   help="layers as `mensa run-layer --layer` takes them (default: the goals and a layer of each op)")
    p.add_argument("--latency", type=int, default=20, help="DRAM read latency in cycles (default: 20)")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "vector.json")
    args = p.parse_args()

    acc = systolic_accelerator(load(args.config), args.accelerator)
    if acc.vector is None:
        p.error(f"accelerator {acc.name!r} of {args.config} has no vector unit ([accelerator.vector])")
    lanes, bus = acc.vector.lanes, acc.memory.data_bits // 8
    specs = [parse_layer(text, args.seed) for text in args.layers]
    for text, spec in zip(args.layers, specs):
        spec.setdefault("name", text)
    measured, wall = simulate_layers(acc, specs, latency=(args.latency, args.latency), sim=args.sim,
                                     seed=args.seed, test_name="bench-vector")
    model = evaluate([make_layer(spec, i) for i, spec in enumerate(specs)], [acc],
                     DramConfig(latency_cycles=args.latency))

    print(f"{acc.name}: vector unit of {lanes} lanes, {bus * 8}-bit AXI, DRAM latency {args.latency} cycles "
          f"({args.sim}); every output bit-exact with the golden model")
    print(f"{'layer':<64} {'cycles':>8} {'model':>8} {'error':>7} {'lanes':>6} {'B/cyc rd':>8} {'wr':>5}")
    rows = []
    for i, (text, r) in enumerate(zip(args.layers, measured)):
        predicted = float(model.cycles[i, 0])
        row = {**r, "layer": text, "lane_utilisation": r["busy"] / r["cycles"],
               "mac_utilisation": r["macs"] / (r["cycles"] * lanes),
               "read_bytes_per_cycle": r["dram_read_bytes"] / r["cycles"],
               "write_bytes_per_cycle": r["dram_write_bytes"] / r["cycles"], "bus_bytes": bus,
               "model_cycles": predicted, "model_error": (predicted - r["cycles"]) / r["cycles"]}
        rows.append(row)
        lane = row["mac_utilisation"] if r["macs"] else row["lane_utilisation"]
        print(f"{text:<64} {r['cycles']:>8,} {predicted:>8,.0f} {row['model_error']:>+7.2%} {lane:>6.1%} "
              f"{row['read_bytes_per_cycle']:>8.2f} {row['write_bytes_per_cycle']:>5.2f}")
    report = {"config": str(args.config), "accelerator": acc.name, "lanes": lanes, "data_bits": bus * 8,
              "latency": args.latency, "sim": args.sim, "seed": args.seed, "wall_seconds": round(wall, 1),
              "layers": rows, "goals": []}
    for text, floor in GOALS.items():
        row = next((r for r in rows if r["layer"] == text), None)
        if row is not None:
            met = row["mac_utilisation"] >= floor
            report["goals"].append({"layer": text, "lane_utilisation": row["mac_utilisation"], "floor": floor,
                                    "met": met})
            print(f"goal: {text} at {row['mac_utilisation']:.1%} lane utilisation "
                  f"({'meets' if met else 'misses'} the {floor:.0%} floor)")
    worst = max(abs(r["model_error"]) for r in rows)
    report["model_error_max"] = worst
    print(f"cost model: largest error {worst:.2%} over {len(rows)} layers")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
