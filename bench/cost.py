"""Speed of the analytical cost model: (layer, accelerator) pairs evaluated per second.

Every layer of the whole zoo against a few hundred random systolic (WS and OS)
and near-memory configurations, cycles and bytes (``evaluate``) and then energy
(``layer_energy``). Prints and writes bench/out/cost.json.
"""

import json
import random
import time
from pathlib import Path

import numpy as np

from mensa.core.config import from_dict
from mensa.model import zoo
from mensa.model.cost import AcceleratorTable, LayerTable, evaluate
from mensa.model.energy import layer_energy

OUT = Path(__file__).resolve().parent / "out" / "cost.json"


def random_accelerators(n, seed=0):
    rng = random.Random(seed)
    accs = []
    for i in range(n):
        if rng.random() < 0.7:
            acc = {"name": f"sa{i}", "array": {"rows": rng.choice([8, 16, 32, 64, 128]),
                                                "cols": rng.choice([8, 16, 32, 64, 128]),
                                                "dataflow": rng.choice(["ws", "os"])},
                   "buffers": {"weight_kib": rng.choice([64, 256, 1024, 4096]),
                               "act_kib": rng.choice([64, 256, 1024, 4096]), "acc_kib": rng.choice([16, 64, 256])},
                   "memory": {"data_bits": rng.choice([64, 128, 256, 512])}}
        else:
            acc = {"name": f"nm{i}", "kind": "nearmem",
                   "nearmem": {"vaults": rng.choice([4, 8, 16, 32]), "lanes": rng.choice([4, 8, 16, 32]),
                               "vault_bits": rng.choice([64, 128, 256]), "vault_kib": 65536}}
        accs.append(acc)
    return from_dict({"name": "sweep", "accelerator": accs}).accelerator


def main():
    layers = [l for name in zoo.names() for l in zoo.get(name).layers]
    accs = random_accelerators(300)
    t0 = time.perf_counter()
    lt, at = LayerTable(layers), AcceleratorTable(accs)
    t_tables = time.perf_counter() - t0
    evaluate(lt, at)      # warm-up
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        cost = evaluate(lt, at)
    t_eval = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        layer_energy(cost)
    t_energy = (time.perf_counter() - t0) / reps
    pairs = len(lt) * len(at)
    result = {
        "layers": len(lt), "accelerators": len(at), "pairs": pairs,
        "table_build_s": t_tables, "evaluate_s": t_eval, "energy_s": t_energy,
        "pairs_per_s_cycles_and_bytes": pairs / t_eval,
        "pairs_per_s_with_energy": pairs / (t_eval + t_energy),
        "pairs_per_s_including_table_build": pairs / (t_eval + t_energy + t_tables),
        "supported_fraction": float(np.mean(cost.supported)),
        "us_per_pair": 1e6 * (t_eval + t_energy) / pairs,
    }
    for k, v in result.items():
        print(f"{k:36s} {v:,.4g}" if isinstance(v, float) else f"{k:36s} {v:,}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")
    return result


if __name__ == "__main__":
    main()
