"""Benchmark: an int8 GEMM on the systolic array's RTL, measured cycles and utilisation.

Default: M = N = K = 256 on the 8x8 weight-stationary array, no handshake gaps,
on Verilator. Prints and writes JSON (bench/out/gemm.json). Utilisation is
MACs / (rows x cols x cycles), cycles counted from the first activation taken
to the last partial sum taken.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from mensa.core.config import ArrayConfig, Dataflow, to_dict
from mensa.hw.systolic import SystolicArray
from mensa.sim.runner import run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--dataflow", choices=["ws", "os"], default="ws")
    p.add_argument("--size", type=int, nargs=3, default=[256, 256, 256], metavar=("M", "K", "N"))
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "gemm.json")
    args = p.parse_args()

    config = ArrayConfig(rows=args.rows, cols=args.cols, dataflow=Dataflow(args.dataflow))
    with tempfile.TemporaryDirectory() as tmp:
        figures_path = Path(tmp) / "figures.json"
        params = dict(to_dict(config), shapes=[args.size], gap=0.0, result=str(figures_path))
        start = time.perf_counter()
        seed = run(SystolicArray(config), name="systolic_array", key=config, sim=args.sim,
                   test_module="mensa.sim.tb_systolic", test_name="bench-gemm",
                   extra_env={"MENSA_TB": json.dumps(params)})
        wall = time.perf_counter() - start
        (figure,) = json.loads(figures_path.read_text())
    m, k, n = args.size
    result = {
        "bench": "gemm", "simulator": args.sim, "seed": seed,
        "array": {"rows": args.rows, "cols": args.cols, "dataflow": args.dataflow},
        "M": m, "K": k, "N": n, "macs": m * k * n,
        "cycles": figure["cycles"],
        "ideal_cycles": -(-m * k * n // (args.rows * args.cols)),
        "utilisation": round(figure["utilisation"], 4),
        "wall_seconds": round(wall, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
