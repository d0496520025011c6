"""Model cycles of every sweep record at a base commit and now, to see which predictions moved."""
import subprocess, sys, json, os
code = r'''
import json
from mensa.gen.validate import ACCELERATORS, accelerator_suite, LATENCIES
from mensa.model.cost import evaluate
from mensa.core.config import DramConfig
out = {}
for name, acc in ACCELERATORS.items():
    layers = accelerator_suite(name, large=True)
    for lat in LATENCIES:
        c = evaluate(layers, [acc], DramConfig(latency_cycles=lat)).cycles[:, 0]
        for i, l in enumerate(layers):
            out[f"{name}|{lat}|{i}|{l.name}"] = float(c[i])
print(json.dumps(out))
'''
base = sys.argv[1]
subprocess.run(["git", "worktree", "add", "-f", "--detach", "/tmp/wt-base-testall", base], check=True, capture_output=True)
try:
    env = dict(os.environ, PYTHONPATH="")
    # import the base tree's model by mapping the package dirs
    shim = "import sys, importlib.util, types\n"
    shim += "import mensa\n" if False else ""
    before = json.loads(subprocess.run([".venv/bin/python", "-c", f"""
import sys, types, importlib
root = '/tmp/wt-base-testall'
import mensa
for sub in ('core','contract','model','gen','sim','hw'):
    pkg = importlib.import_module('mensa.' + sub)
    pkg.__path__[:] = [root + '/' + sub]
for k in list(sys.modules):
    if k.startswith('mensa.') and k.count('.') >= 2: del sys.modules[k]
""" + code], capture_output=True, text=True, check=True).stdout)
finally:
    subprocess.run(["git", "worktree", "remove", "--force", "/tmp/wt-base-testall"], check=True)
after = json.loads(subprocess.run([".venv/bin/python", "-c", code], capture_output=True, text=True, check=True).stdout)
json.dump({"before": before, "after": after}, open(".testlogs/delta.json", "w"))
for k in before:
    d = after[k] / before[k] - 1
    print(f"{k:32s} {before[k]:9.0f} {after[k]:9.0f} {100*d:+6.2f}%")
