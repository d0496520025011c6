"""Benchmark: whole layers on the systolic accelerator's RTL, from AXI DRAM: cycles, utilisation, stalls, DRAM bytes.

Each layer runs as ``mensa run-layer`` runs it (the accelerator's Verilog under cocotb,
DRAM with a fixed read latency, the output checked byte for byte against the golden
model), all in one simulation. Default: on configs/pascal-fpga.toml (8x8 weight-
stationary, 64-bit AXI) at a DRAM latency of 20 cycles, the compute-bound 3x3 conv
64 -> 64 on 28x28 (issue 5's goal: at least 80% utilisation) and MobileNetV2's kinds of
layer at 14x14 (expand, depthwise stride 1 and 2, project, the classifier), which show
where a monolithic array falls short. Prints a table and writes bench/out/layers.json.

    python bench/layers.py
    python bench/layers.py --layers "conv2d:in=28x28x64,out=64,kernel=3,padding=same" --latency 50
"""

import argparse
import json
from pathlib import Path

from mensa.core.config import load
from mensa.gen.layer_spec import parse_layer, simulate_layers, systolic_accelerator

ROOT = Path(__file__).resolve().parent.parent
GOAL = ("conv2d:in=28x28x64,out=64,kernel=3,padding=same,act=relu", 0.80)
LAYERS = [
    GOAL[0],
    "pointwise:in=14x14x24,out=144,act=relu6",                          # inverted residual: expand
    "depthwise:in=14x14x144,kernel=3,padding=same,act=relu6",           # depthwise, stride 1
    "depthwise:in=14x14x144,kernel=3,stride=2,padding=same,act=relu6",  # depthwise, stride 2
    "pointwise:in=14x14x144,out=24",                                    # project
    "fc:in=1280,out=1000",                                              # the classifier, batch 1
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "pascal-fpga.toml")
    p.add_argument("--accelerator", default=None)
    p.add_argument("--layers", nargs="+", default=LAYERS, metavar="SPEC",
                   help="layers as `mensa run-layer --layer` takes them (default: the goal layer and MobileNetV2's kinds)")
    p.add_argument("--latency", type=int, default=20, help="DRAM read latency in cycles (default: 20)")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "layers.json")
    args = p.parse_args()

    acc = systolic_accelerator(load(args.config), args.accelerator)
    specs = [parse_layer(text, args.seed) for text in args.layers]
    for text, spec in zip(args.layers, specs):
        spec.setdefault("name", text)
    measured, wall = simulate_layers(acc, specs, latency=(args.latency, args.latency), sim=args.sim, seed=args.seed,
                                     test_name="bench-layers")

    a = acc.array
    rows = []
    print(f"{acc.name}: {a.rows}x{a.cols} {a.dataflow.value}, {acc.memory.data_bits}-bit AXI, DRAM latency "
          f"{args.latency} cycles ({args.sim}); every output bit-exact with the golden model")
    print(f"{'layer':<66} {'M':>6} {'K':>5} {'N':>5} {'cycles':>9} {'util':>6} {'stall':>7} {'DRAM rd':>9} {'wr':>8}")
    for text, r in zip(args.layers, measured):
        row = {**r, "layer": text, "ideal_cycles": -(-r["macs"] // (a.rows * a.cols))}
        rows.append(row)
        print(f"{text:<66} {r['m']:>6} {r['k']:>5} {r['n']:>5} {r['cycles']:>9,} {r['utilisation']:>6.1%} "
              f"{r['stall']:>7,} {r['dram_read_bytes']:>9,} {r['dram_write_bytes']:>8,}")
    report = {"config": str(args.config), "accelerator": acc.name, "array": f"{a.rows}x{a.cols}",
              "dataflow": a.dataflow.value, "data_bits": acc.memory.data_bits, "latency": args.latency,
              "sim": args.sim, "seed": args.seed, "wall_seconds": round(wall, 1), "layers": rows}
    goal = next((r for r in rows if r["layer"] == GOAL[0]), None)
    if goal is not None:
        report["goal"] = {"layer": GOAL[0], "utilisation": goal["utilisation"], "floor": GOAL[1],
                          "met": goal["utilisation"] >= GOAL[1]}
        print(f"goal: {GOAL[0]} at {goal['utilisation']:.1%} utilisation "
              f"({'meets' if goal['utilisation'] >= GOAL[1] else 'misses'} the {GOAL[1]:.0%} floor)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
