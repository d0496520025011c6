"""Benchmark: the near-memory unit's RTL on FC layers — lane utilisation, cycles, bytes per vault.

Runs the Verilog of a config's near-memory accelerator (default configs/jacquard.toml)
under cocotb on FC layers (and batches of vectors, the shape of a pointwise
convolution), with every vault answering after a fixed latency and no gaps, checks
every output against the golden model, and reports per layer the cycles from the
descriptor to the last output, the lane utilisation (useful MACs / (vaults x lanes x
cycles)) and the bytes each vault read. Prints JSON and writes bench/out/nearmem.json.

    python bench/nearmem.py [--config configs/jacquard.toml] [--sim verilator] [--latency 20]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mensa.hw.config import CoreKind, load, to_dict
from mensa.hw.nearmem import NearMemGeometry, NearMemoryUnit
from mensa.sim.runner import run, simulators

ROOT = Path(__file__).resolve().parent.parent
# [K, N, M]: a classifier head, a wider one, a batch of 4 and 64 pixels of a pointwise layer.
LAYERS = [[1024, 1000, 1], [2048, 1000, 1], [1024, 1000, 4], [256, 512, 64]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "jacquard.toml"))
    parser.add_argument("--accelerator", help="name of the near-memory accelerator (default: the first)")
    parser.add_argument("--sim", default=None, choices=["verilator", "icarus"])
    parser.add_argument("--latency", type=int, default=20, help="vault read latency, cycles")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "nearmem.json"))
    args = parser.parse_args(argv)
    system = load(args.config)
    accs = [a for a in system.accelerator if a.kind is CoreKind.NEARMEM
            and (args.accelerator is None or a.name == args.accelerator)]
    if not accs:
        print(f"{args.config}: no near-memory accelerator{' named ' + args.accelerator if args.accelerator else ''}",
              file=sys.stderr)
        return 2
    acc = accs[0]
    config = acc.nearmem
    geom = NearMemGeometry.of(config)
    layers = [l for l in LAYERS if l[0] <= geom.max_in]
    sim = args.sim or simulators()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "figures.json"
        params = dict(to_dict(config), layers=layers, latency=[args.latency, args.latency], gap=0.0,
                      outstanding=2 * args.latency + 8, raw=True, result=str(result))
        run(NearMemoryUnit(config), name="nearmem", key=config, sim=sim, test_module="mensa.sim.tb_nearmem",
            test_name="bench", extra_env={"MENSA_TB": json.dumps(params)})
        figures = json.loads(result.read_text())
    for f in figures:
        f["cycles_per_vector"] = f["cycles"] / f["M"]
    report = {
        "config": args.config,
        "accelerator": acc.name,
        "nearmem": to_dict(config),
        "bandwidth_matches_lanes": config.vault_bits // 8 == config.lanes,
        "macs_per_cycle": config.vaults * config.lanes,
        "vault_latency_cycles": args.latency,
        "simulator": sim,
        "wall_seconds": round(time.monotonic() - started, 1),
        "layers": figures,
    }
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
