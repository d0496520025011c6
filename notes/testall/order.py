import sys
from mensa.gen.validate import ACCELERATORS, accelerator_suite
from mensa.model.cost import evaluate
from mensa.core.config import DramConfig
name = sys.argv[1]; plan = sys.argv[2:]   # lat or lat:first-index
acc = ACCELERATORS[name]; layers = accelerator_suite(name, large=True)
jobs = []
for p in plan:
    lat, *rest = p.split(":"); lat = int(lat); skip = set(int(x) for x in rest)
    c = evaluate(layers, [acc], DramConfig(latency_cycles=lat)).cycles[:, 0]
    jobs += [f"{name}:{lat}:{i}" for i in sorted(range(len(layers)), key=lambda i: c[i]) if i not in skip]
print(" ".join(jobs))
