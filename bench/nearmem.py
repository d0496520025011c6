"""Benchmark: the near-memory unit's RTL on FC and LSTM layers — lane utilisation, cycles, bytes per vault.

Runs the Verilog of a config's near-memory accelerator under cocotb with every vault
answering after a fixed latency and no gaps, checks every output against the golden
model, and reports per layer the cycles from the descriptor to the last output, the lane
utilisation (useful MACs / (vaults x lanes x cycles)) and the bytes each vault read:

- FC layers (and batches of vectors, the shape of a pointwise convolution) on
  ``--fc-config`` (default configs/jacquard.toml). A batch streams the weights once per
  vector, by design: these layers have no reuse to exploit, so the bytes read per vault
  grow with the batch.
- LSTM layers (whole sequences, with and without projection) on ``--lstm-config``
  (default configs/pavlov.toml, which has the LSTM datapath), with cycles per time step
  beside the steady-state model ``lane words per vault and step`` (every weight, and
  a 9-word header per group, streams once per step:
  ``4 * blocks * (C + P + 18) + proj_groups * (H + 9)``).

Prints JSON and writes bench/out/nearmem.json.

    python bench/nearmem.py [--fc-config configs/jacquard.toml] [--lstm-config configs/pavlov.toml]
                            [--sim verilator] [--latency 20] [--skip-fc] [--skip-lstm]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mensa.core.config import CoreKind, load, to_dict
from mensa.contract.nearmem import HEADER_WORDS, NearMemGeometry
from mensa.hw.nearmem import NearMemoryUnit
from mensa.sim.runner import run, simulators

ROOT = Path(__file__).resolve().parent.parent
# [K, N, M]: a classifier head, a wider one, a batch of 4 and 64 pixels of a pointwise layer.
FC_LAYERS = [[1024, 1000, 1], [2048, 1000, 1], [1024, 1000, 4], [256, 512, 64]]
# [C, H, P, T] (P = 0: no projection): a 256-unit LSTM, with a 128 projection, a small one.
LSTM_LAYERS = [[256, 256, 0, 3], [256, 256, 128, 3], [64, 64, 0, 8]]


def _accelerator(path, name, lstm):
    system = load(path)
    for acc in system.accelerator:
        if acc.kind is CoreKind.NEARMEM and (name is None or acc.name == name) and (acc.nearmem.lstm or not lstm):
            return acc
    return None


def _simulate(config, sim, test_module, params):
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "figures.json"
        run(NearMemoryUnit(config), name="nearmem", key=config, sim=sim, test_module=test_module,
            test_name="bench", extra_env={"MENSA_TB": json.dumps(dict(to_dict(config), result=str(result),
                                                                       **params))})
        return json.loads(result.read_text())


def lane_words_per_step(geometry, c, h, p):
    """The steady-state model: lane words one vault streams per LSTM time step (one a cycle)."""
    v, lanes = geometry.vaults, geometry.lanes
    blocks = -(-(-(-h // v)) // lanes)
    proj_groups = -(-(-(-p // v)) // lanes) if p else 0
    return 4 * blocks * (c + (p or h) + 2 * HEADER_WORDS) + proj_groups * (h + HEADER_WORDS)


def _section(acc, path, sim, latency, test_module, layers, extra):
    config = acc.nearmem
    figures = _simulate(config, sim, test_module, dict(layers=layers, latency=[latency, latency], gap=0.0,
                                                       outstanding=2 * latency + 8, **extra))
    return {
        "config": str(path),
        "accelerator": acc.name,
        "nearmem": to_dict(config),
        "bandwidth_matches_lanes": config.vault_bits // 8 == config.lanes,
        "vault_bytes_per_lane_word": config.vault_bits // 8 / config.lanes,
        "macs_per_cycle": config.vaults * config.lanes,
        "layers": figures,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fc-config", default=str(ROOT / "configs" / "jacquard.toml"))
    parser.add_argument("--lstm-config", default=str(ROOT / "configs" / "pavlov.toml"))
    parser.add_argument("--accelerator", help="name of the near-memory accelerator (default: the first)")
    parser.add_argument("--sim", default=None, choices=["verilator", "icarus"])
    parser.add_argument("--latency", type=int, default=20, help="vault read latency, cycles")
    parser.add_argument("--skip-fc", action="store_true")
    parser.add_argument("--skip-lstm", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "nearmem.json"))
    args = parser.parse_args(argv)
    sim = args.sim or simulators()[0]
    started = time.monotonic()
    report = {"vault_latency_cycles": args.latency, "simulator": sim}
    if not args.skip_fc:
        acc = _accelerator(args.fc_config, args.accelerator, lstm=False)
        if acc is None:
            print(f"{args.fc_config}: no near-memory accelerator", file=sys.stderr)
            return 2
        geom = NearMemGeometry.of(acc.nearmem)
        layers = [l for l in FC_LAYERS if l[0] <= geom.max_in]
        fc = _section(acc, args.fc_config, sim, args.latency, "mensa.sim.tb_nearmem", layers, {"raw": True})
        for f in fc["layers"]:
            f["cycles_per_vector"] = f["cycles"] / f["M"]
        report["fc"] = fc
    if not args.skip_lstm:
        acc = _accelerator(args.lstm_config, args.accelerator, lstm=True)
        if acc is None:
            print(f"{args.lstm_config}: no near-memory accelerator with nearmem.lstm = true", file=sys.stderr)
            return 2
        geom = NearMemGeometry.of(acc.nearmem)
        lstm = _section(acc, args.lstm_config, sim, args.latency, "mensa.sim.tb_lstm", LSTM_LAYERS, {})
        for f in lstm["layers"]:
            f["model_cycles_per_step"] = lane_words_per_step(geom, f["C"], f["H"], f["P"] if f["projection"] else 0)
        report["lstm"] = lstm
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
