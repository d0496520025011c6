"""Measure single layers of the whole-accelerator sweep on the RTL, as gen.validate.measure_accelerator
does (same config, same spec, same latency), one simulation per layer; append full figures to a JSONL."""
import json, sys, tempfile, time
from pathlib import Path
from mensa.gen.validate import ACCELERATORS, accelerator_suite, _accelerator_spec
from mensa.hw.accelerator import Accelerator
from mensa.sim.runner import run
from mensa.sim.tb_accelerator import accelerator_config

out = Path(sys.argv[1])
jobs = [j.split(":") for j in sys.argv[2:]]      # name:latency:index
for name, lat, idx in jobs:
    lat, idx = int(lat), int(idx)
    acc = ACCELERATORS[name]
    layers = accelerator_suite(name, large=True)
    layer = layers[idx]
    cfg = {"rows": acc.array.rows, "cols": acc.array.cols, "data_bits": acc.memory.data_bits,
           "acc_kib": acc.buffers.acc_kib, "act_kib": acc.buffers.act_kib, "weight_kib": acc.buffers.weight_kib}
    built = accelerator_config(cfg)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "cycles.json"
        params = {"config": cfg, "layers": [_accelerator_spec(layer, idx)], "pause": 0.0, "latency": [lat, lat],
                  "result": str(result)}
        import os
        run(Accelerator(built), name="accelerator", key=("accelerator", built), sim="verilator",
            test_module="mensa.sim.tb_accelerator", test_name=f"m-{name}-l{lat}-{idx}-{os.getpid()}",
            extra_env={"MENSA_TB": json.dumps(params)})
        (fig,) = json.loads(result.read_text())
    fig.update(accelerator=name, latency=lat, index=idx, name=layer.name, wall=round(time.monotonic() - t0, 1))
    with out.open("a") as f:
        f.write(json.dumps(fig) + "\n")
    print(name, lat, layer.name, fig["cycles"], fig["wall"], flush=True)
