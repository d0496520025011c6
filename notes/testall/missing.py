import json, glob
d = json.load(open(".testlogs/delta.json"))
recs = set()
for path in glob.glob(".testlogs/rtl*.jsonl"):
    for line in open(path):
        r = json.loads(line); recs.add((r["accelerator"], r["latency"], r["index"]))
moved, same = [], []
for k, b in d["before"].items():
    n, lat, i, name = k.split("|"); key = (n, int(lat), int(i))
    if key in recs: continue
    a = d["after"][k]
    (moved if abs(a / b - 1) > 1e-9 else same).append((k, b, a))
print("unmeasured, prediction moved:"); [print(f"  {k} {b:.0f} -> {a:.0f} ({100*(a/b-1):+.2f}%)") for k, b, a in moved]
print(f"unmeasured, prediction unchanged: {len(same)}")
