"""The Edge TPU preset against the Coral Edge TPU's published latencies, and the one figure fitted to them.

configs/edgetpu.toml models the real chip from its public traits (4 TOPS int8: 4096 MACs at 500 MHz;
8 MB of parameter memory that caches a network's parameters across inferences; parameters beyond it,
the input and the output over a ~300 MB/s host link) and one fitted figure: the template's sustained
``efficiency`` on matrix products. It is fitted here, in steps of 0.01, to one of the four Coral
figures (EfficientNet-EdgeTPU-S); the other three (MobileNetV2, M and L) are predictions.
Prints the fit, the four latencies against Coral's (reference/SEEDS.md section 5: MobileNetV2 2.3 ms,
S 5.0, M 7.3, L 21.3) and the rest of the zoo's predicted latencies; writes bench/out/coral.json.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from mensa.core.config import load
from mensa.model import zoo
from mensa.model.schedule import schedule

OUT = Path(__file__).resolve().parent / "out" / "coral.json"
CORAL_MS = {"mobilenet_v2": 2.3, "efficientnet_edgetpu_s": 5.0, "efficientnet_edgetpu_m": 7.3,
            "efficientnet_edgetpu_l": 21.3}
FITTED_ON = ("efficientnet_edgetpu_s",)


def with_efficiency(system, e):
    a = system.accelerator[0]
    return dataclasses.replace(system, accelerator=(
        dataclasses.replace(a, edgetpu=dataclasses.replace(a.edgetpu, efficiency=float(e))),))


def latencies_ms(system, models):
    return {m: schedule(zoo.get(m), system).latency_s * 1e3 for m in models}


def main():
    preset = load("edgetpu")
    grid = np.round(np.arange(0.20, 1.0001, 0.01), 2)
    loss = []
    for e in grid:
        lat = latencies_ms(with_efficiency(preset, e), FITTED_ON)
        loss.append(sum(math.log(lat[m] / CORAL_MS[m]) ** 2 for m in FITTED_ON))
    fitted = float(grid[int(np.argmin(loss))])
    used = preset.accelerator[0].edgetpu.efficiency
    print(f"efficiency fitted on {', '.join(FITTED_ON)} (steps of 0.01): {fitted:.2f}; "
          f"configs/edgetpu.toml has {used:.2f}")
    lat = latencies_ms(preset, zoo.names())
    rows = []
    print(f"{'model':26s} {'Coral ms':>9s} {'mensa ms':>9s} {'error':>7s}  role")
    for m, ref in CORAL_MS.items():
        err = lat[m] / ref - 1
        role = "fitted" if m in FITTED_ON else "predicted"
        rows.append({"model": m, "coral_ms": ref, "mensa_ms": lat[m], "error": err, "role": role})
        print(f"{m:26s} {ref:9.2f} {lat[m]:9.2f} {100 * err:+6.1f}%  {role}")
    order = sorted(CORAL_MS, key=lat.get) == sorted(CORAL_MS, key=CORAL_MS.get)
    worst = max(abs(r["error"]) for r in rows)
    print(f"same order as Coral: {order}; largest error {100 * worst:.1f}%")
    others = {m: lat[m] for m in zoo.names() if m not in CORAL_MS}
    print("the rest of the zoo, predicted: " + ", ".join(f"{m} {v:.2f} ms" for m, v in others.items()))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"fitted_efficiency": fitted, "preset_efficiency": used, "fitted_on": FITTED_ON,
                               "coral": rows, "same_order": order, "largest_error": worst,
                               "other_models_ms": others}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
