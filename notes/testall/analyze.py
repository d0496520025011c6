import json, sys, collections
d = json.load(open(sys.argv[1]))
reg = d["regions"]; ev = d["events"]
def reg_addr(n):
    return reg.get(n, reg.get(n + "_LO"))
ia, wa, qa, oa = (reg_addr(n) for n in ("INPUT_ADDR", "WEIGHT_ADDR", "QUANT_ADDR", "OUTPUT_ADDR"))
def kind(a):
    return "win" if a < wa else "w" if a < qa else "q" if a < oa else "?"
bursts = []; q = collections.deque()
for e in ev:
    if e[0] == "ar":
        b = dict(ar=e[1], addr=e[2], len=e[3], kind=kind(e[2]), beats=[], blocked=0); bursts.append(b); q.append(b)
    elif e[0] == "r":
        b = q[0]; b["beats"].append(e[1])
        if e[2]: q.popleft()
    else:
        q[0]["blocked"] += 1
print("total", d["total"], "bursts", len(bursts), collections.Counter(b["kind"] for b in bursts))
for k in ("win", "w", "q"):
    bs = [b for b in bursts if b["kind"] == k]
    if not bs: continue
    lat = [b["beats"][0] - b["ar"] for b in bs]; hold = [b["beats"][-1] - b["ar"] for b in bs]
    print(k, "n", len(bs), "first-beat lat avg %.1f max %d" % (sum(lat)/len(lat), max(lat)), "hold avg %.1f max %d" % (sum(hold)/len(hold), max(hold)),
          "blocked cycles", sum(b["blocked"] for b in bs))
# weight address restarts = M tiles (weights re-read)
starts = [i for i, b in enumerate(bursts) if b["kind"] == "w" and b["addr"] == wa]
print("M tile starts (burst idx, AR cycle):", [(i, bursts[i]["ar"]) for i in starts])
# per N tile: records
qs = [b for b in bursts if b["kind"] == "q"]
print("records AR cycles:", [b["ar"] for b in qs][:40])
print("record hold:", [b["beats"][-1] - b["ar"] for b in qs][:40])
if len(sys.argv) > 2:
    lo, hi = int(sys.argv[2]), int(sys.argv[3])
    for b in bursts:
        if lo <= b["ar"] <= hi:
            print(b["kind"], b["ar"], hex(b["addr"]), b["len"], b["beats"][0] if b["beats"] else None, b["beats"][-1] if b["beats"] else None, b["blocked"])
