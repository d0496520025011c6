import subprocess, sys
code = r'''
import time, sys
sys.path.insert(0, "/work/wt-testall/bench")
from cost import random_accelerators
from mensa.model import zoo
from mensa.model.cost import AcceleratorTable, LayerTable, evaluate
layers = [l for name in zoo.names() for l in zoo.get(name).layers]
lt, at = LayerTable(layers), AcceleratorTable(random_accelerators(300))
evaluate(lt, at)
best = 1e9
for _ in range(3):
    t0 = time.perf_counter(); evaluate(lt, at); best = min(best, time.perf_counter() - t0)
print(f"{len(lt)*len(at)} pairs, evaluate {best:.3f} s, {len(lt)*len(at)/best:.3g} pairs/s")
'''
shim = """
import sys, importlib
root = '/tmp/wt-base-testall'
import mensa
for sub in ('core','contract','model','gen','sim','hw'):
    pkg = importlib.import_module('mensa.' + sub)
    pkg.__path__[:] = [root + '/' + sub]
"""
subprocess.run(["git", "worktree", "add", "-f", "--detach", "/tmp/wt-base-testall", sys.argv[1]], check=True, capture_output=True)
try:
    print("before:", subprocess.run([".venv/bin/python", "-c", shim + code], capture_output=True, text=True).stdout.strip())
finally:
    subprocess.run(["git", "worktree", "remove", "--force", "/tmp/wt-base-testall"], check=True)
print("after: ", subprocess.run([".venv/bin/python", "-c", code], capture_output=True, text=True).stdout.strip())
