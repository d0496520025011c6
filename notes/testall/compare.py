"""Model vs measured RTL cycles for every measured sweep record (the model as it is in the tree)."""
import json, sys, glob
import numpy as np
from mensa.gen.validate import ACCELERATORS, accelerator_suite
from mensa.model.cost import evaluate, LayerTable
from mensa.core.config import DramConfig
recs = {}
for path in sorted(glob.glob(".testlogs/rtl*.jsonl")):
    for line in open(path):
        r = json.loads(line); recs[(r["accelerator"], r["latency"], r["index"])] = r
rows = []
only_bad = "--bad" in sys.argv
for (name, lat, i), r in sorted(recs.items()):
    layers = accelerator_suite(name, large=True)
    c = evaluate([layers[i]], [ACCELERATORS[name]], DramConfig(latency_cycles=lat))
    t = LayerTable([layers[i]])
    model = float(c.cycles[0, 0]); err = model / r["cycles"] - 1
    rows.append(abs(err))
    if only_bad and abs(err) <= 0.05: continue
    print(f"{name}@L{lat:<2d} {layers[i].name:9s} ({int(t.m1[0])},{int(t.k1[0])},{int(t.n1[0])}) model {model:8.0f} RTL {r['cycles']:7d} "
          f"{100*err:+6.2f}%  busy {r.get('busy')} stall {r.get('stall')} rd {r.get('dram_read_bytes')} | core {c.core_cycles[0,0]:.0f} dma {c.dma[0,0]:.0f} stall {c.stall[0,0]:.0f} dramB {c.dram_bytes[0,0]-c.dram_act_bytes[0,0]*0:.0f}")
rows = np.array(rows)
print(f"{len(rows)} records, beyond 5%: {(rows > 0.05).sum()}, max {100*rows.max():.2f}%, mean {100*rows.mean():.2f}%")
