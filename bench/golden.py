"""Benchmark of the golden model: whole-network int8 inference of MobileNetV2 224x224.

Prints and writes bench/out/golden.json: inference time (best and median of repeats), MAC
rate and layers per second. BLAS runs single-threaded unless OPENBLAS_NUM_THREADS says
otherwise: on the shared 2-core machine a threaded BLAS loses more to synchronisation on
these small products than it gains (set the variable before numpy is imported).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json             # noqa: E402
import platform         # noqa: E402
import statistics       # noqa: E402
import time             # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np      # noqa: E402

from mensa.model.zoo.mobilenet import mobilenet_v2   # noqa: E402
from mensa.core import golden, quant                 # noqa: E402


def main(repeats=7):
    net = mobilenet_v2()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    qnet, params = quant.quantize_network(net, rng, [rng.uniform(-1, 1, net.input_shape) for _ in range(2)])
    t_quant = time.perf_counter() - t0
    x = quant.quantize_tensor(rng.uniform(-1, 1, net.input_shape), qnet.input_quant)
    golden.run_network(qnet, params, x)                 # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        golden.run_network(qnet, params, x)
        times.append(time.perf_counter() - t0)
    best, median = min(times), statistics.median(times)
    result = {
        "network": qnet.name,
        "input_shape": list(net.input_shape),
        "layers": len(qnet.layers),
        "macs": qnet.macs,
        "repeats": repeats,
        "inference_s_best": best,
        "inference_s_median": median,
        "layers_per_s": len(qnet.layers) / median,
        "gmac_per_s": qnet.macs / median / 1e9,
        "quantize_network_s": t_quant,
        "target_s": 1.0,
        "meets_target": median < 1.0,
        "blas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "numpy": np.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "golden.json").write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
