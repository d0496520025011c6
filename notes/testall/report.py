"""Before (e8cb2fe) / after (this tree) model errors of every measured sweep record."""
import json, glob
import numpy as np
d = json.load(open(".testlogs/delta.json"))
from mensa.gen.validate import ACCELERATORS, accelerator_suite
from mensa.model.cost import evaluate
from mensa.core.config import DramConfig
recs = {}
for path in sorted(glob.glob(".testlogs/rtl*.jsonl")):
    for line in open(path):
        r = json.loads(line); recs[(r["accelerator"], r["latency"], r["index"])] = r
order = {n: i for i, n in enumerate(ACCELERATORS)}
rows = []
print(f"| record | layer (M,K,N) | RTL cycles | model before | error before | model after | error after |")
print(f"|---|---|---:|---:|---:|---:|---:|")
for (n, lat, i) in sorted(recs, key=lambda k: (order[k[0]], k[1], k[2])):
    r = recs[(n, lat, i)]
    layer = accelerator_suite(n, large=True)[i]
    key = f"{n}|{lat}|{i}|{layer.name}"
    after = float(evaluate([layer], [ACCELERATORS[n]], DramConfig(latency_cycles=lat)).cycles[0, 0])
    before = d["before"][key]
    eb, ea = before / r["cycles"] - 1, after / r["cycles"] - 1
    rows.append((eb, ea))
    mark = " **" if abs(eb) > 0.05 else ""
    print(f"| {n}@L{lat} | {layer.name}{mark} | {r['cycles']} | {before:.0f} | {100*eb:+.2f}% | {after:.0f} | {100*ea:+.2f}% |")
e = np.abs(np.array(rows))
print(f"\n{len(rows)} records: before max |error| {100*e[:,0].max():.2f}%, mean {100*e[:,0].mean():.2f}%, beyond 5% {(e[:,0]>0.05).sum()}; "
      f"after max {100*e[:,1].max():.2f}%, mean {100*e[:,1].mean():.2f}%, beyond 5% {(e[:,1]>0.05).sum()}")
