import json, glob, numpy as np
from dataclasses import replace
from mensa.gen.validate import ACCELERATORS, accelerator_suite
from mensa.model.cost import evaluate, Calibration
from mensa.core.config import DramConfig
recs = {}
for path in sorted(glob.glob(".testlogs/rtl*.jsonl")):
    for line in open(path):
        r = json.loads(line); recs[(r["accelerator"], r["latency"], r["index"])] = r["cycles"]
suites = {n: accelerator_suite(n, large=True) for n in ACCELERATORS}
for v in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5):
    cal = replace(Calibration(), ws_loader_slots=v)
    errs = []
    for (n, lat, i), m in recs.items():
        c = evaluate([suites[n][i]], [ACCELERATORS[n]], DramConfig(latency_cycles=lat), calibration=cal).cycles[0, 0]
        errs.append(c / m - 1)
    e = np.abs(errs)
    print(f"ws_loader_slots={v}: {len(e)} records, max {100*e.max():.2f}%, mean {100*e.mean():.2f}%, beyond 5% {(e>0.05).sum()}")
