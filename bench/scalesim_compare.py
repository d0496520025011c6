"""mensa's cost model side by side with SCALE-Sim 3.0 on the same layers and arrays.

Layers are zoo layers lowered to GEMMs (M x K @ K x N, SCALE-Sim's GEMM mode);
arrays are weight- and output-stationary, 16x16 and 32x32, with buffers and
interface bandwidth large enough that neither tool stalls on memory, so the
cycles compared are the array's own (mensa: compute + exposed weight loads +
fill/drain; SCALE-Sim: "Total Cycles" without prefetch).

The two disagree by design, and the table shows by how much: SCALE-Sim runs
each fold (tile) to completion before the next one loads -- per fold
``M + 2*rows + cols - 2`` cycles (WS) or ``K + rows + cols - 2`` (OS) -- while
mensa's RTL double-buffers the weights (WS) and drains one tile's results
while the next computes (OS), so fill and drain are paid once per layer. The
``no-overlap`` column is that per-fold formula, computed here: where it
matches SCALE-Sim, the two tools tile the same way and differ only in overlap.

Also times a layer evaluation of each. SCALE-Sim simulates one layer per run;
the model is timed as it is used (``mensa schedule``, sweeps): every layer of
the zoo on the array in one call, divided by the number of layers. The time of
a lone one-layer call (numpy overhead dominated) is printed too. The batched
figure must be >= 1000x faster than SCALE-Sim on every run.
Slow (a few minutes): not part of the test suite. Prints and writes
bench/out/scalesim_compare.json. SCALE-Sim needs numpy < 2.4.
"""

import csv
import json
import math
import tempfile
import time
from pathlib import Path

from mensa.core.config import from_dict
from mensa.model import zoo
from mensa.model.cost import LayerTable, evaluate

OUT = Path(__file__).resolve().parent / "out" / "scalesim_compare.json"

LAYERS = [("mobilenet_v2", "stem"), ("mobilenet_v2", "b3_1_expand"), ("mobilenet_v2", "b6_0_project"),
          ("ds_cnn", "b0_pw"), ("mobilenet_v2", "logits"), ("resnet50", "s3_0_conv2")]
ARRAYS = [(16, 16, "ws"), (32, 32, "ws"), (16, 16, "os"), (32, 32, "os")]
MAX_FOLD_CYCLES = 60_000     # skip runs that would take SCALE-Sim more than ~10 s

CFG = """[general]
run_name = mensa

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 65536
FilterSramSzkB: 65536
OfmapSramSzkB: 65536
IfmapOffset: 0
FilterOffset: 100000000
OfmapOffset: 200000000
Bandwidth: 1024
Dataflow: {df}
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: USER
UseRamulatorTrace: False
"""


def find_layer(model, name):
    net = zoo.get(model)
    try:
        return net[name]
    except KeyError:
        raise SystemExit(f"bench: {model} has no layer {name!r}; update LAYERS") from None


def system(rows, cols, df):
    return from_dict({"name": "s", "dram": {"bandwidth_gbps": 4096.0, "latency_cycles": 0}, "accelerator": [{
        "name": "sa", "array": {"rows": rows, "cols": cols, "dataflow": df},
        "buffers": {"weight_kib": 65536, "act_kib": 65536, "acc_kib": 65536}, "memory": {"data_bits": 1024}}]})


def no_overlap(M, K, N, rows, cols, df):
    if df == "ws":
        return math.ceil(K / rows) * math.ceil(N / cols) * (M + 2 * rows + cols - 2)
    return math.ceil(M / rows) * math.ceil(N / cols) * (K + rows + cols - 2)


def run_scalesim(M, K, N, rows, cols, df, work):
    from scalesim.scale_sim import scalesim
    work.mkdir(parents=True, exist_ok=True)
    (work / "s.cfg").write_text(CFG.format(rows=rows, cols=cols, df=df))
    (work / "topo.csv").write_text(f"Layer, M, N, K,\ng0, {M}, {N}, {K},\n")
    (work / "layout.csv").write_text("Layer, M, N, K,\n")
    t0 = time.perf_counter()
    sim = scalesim(save_disk_space=True, verbose=False, config=str(work / "s.cfg"),
                   topology=str(work / "topo.csv"), layout=str(work / "layout.csv"), input_type_gemm=True)
    sim.run_scale(top_path=str(work / "out"))
    seconds = time.perf_counter() - t0
    with open(work / "out" / "mensa" / "COMPUTE_REPORT.csv") as f:
        row = next(csv.DictReader(f, skipinitialspace=True))
    return int(row["Total Cycles"]), int(row["Stall Cycles"]), seconds


def main():
    rows_out = []
    zoo_layers = LayerTable([l for name in zoo.names() for l in zoo.get(name).layers])
    with tempfile.TemporaryDirectory() as tmp:
        for model, lname in LAYERS:
            layer = find_layer(model, lname)
            lt = LayerTable([layer])
            M, K, N = int(lt.m1[0]), int(lt.k1[0]), int(lt.n1[0])
            for r, c, df in ARRAYS:
                est = no_overlap(M, K, N, r, c, df)
                if est > MAX_FOLD_CYCLES:
                    continue
                sysc = system(r, c, df)
                cost = evaluate(lt, sysc.accelerator, sysc.dram)
                ours = float(cost.compute[0, 0] + cost.load[0, 0] + cost.fill[0, 0])
                reps = 200
                t0 = time.perf_counter()
                for _ in range(reps):
                    evaluate([layer], sysc.accelerator, sysc.dram)
                single_s = (time.perf_counter() - t0) / reps
                t0 = time.perf_counter()
                for _ in range(5):
                    evaluate(zoo_layers, sysc.accelerator, sysc.dram)
                ours_s = (time.perf_counter() - t0) / 5 / len(zoo_layers)
                ss, stall, ss_s = run_scalesim(M, K, N, r, c, df, Path(tmp) / f"{model}_{lname}_{r}_{df}")
                row = {"layer": f"{model}/{lname}", "M": M, "K": K, "N": N, "array": f"{r}x{c} {df}",
                       "mensa_cycles": ours, "scalesim_cycles": ss, "scalesim_stalls": stall,
                       "no_overlap_cycles": est, "scalesim_over_mensa": ss / ours,
                       "no_overlap_vs_scalesim_err": est / ss - 1,
                       "mensa_s_per_layer": ours_s, "mensa_s_single_call": single_s,
                       "scalesim_s_per_layer": ss_s, "speedup": ss_s / ours_s, "speedup_single_call": ss_s / single_s}
                rows_out.append(row)
                print(f"{row['layer']:28s} M={M:6d} K={K:5d} N={N:5d} {row['array']:9s} mensa {ours:9.0f}  "
                      f"scalesim {ss:9d}  no-overlap {est:9d} ({100 * row['no_overlap_vs_scalesim_err']:+.1f}%)  "
                      f"ratio {row['scalesim_over_mensa']:.2f}  time {ours_s * 1e6:.1f} us/layer (single call "
                      f"{single_s * 1e6:.0f} us) vs {ss_s:.2f} s: {row['speedup']:,.0f}x "
                      f"(single call {row['speedup_single_call']:,.0f}x)", flush=True)
    speedups = [r["speedup"] for r in rows_out]
    summary = {"runs": len(rows_out), "min_speedup": min(speedups),
               "geomean_speedup": math.exp(sum(map(math.log, speedups)) / len(speedups)),
               "min_speedup_single_call": min(r["speedup_single_call"] for r in rows_out),
               "mensa_us_per_layer": 1e6 * sum(r["mensa_s_per_layer"] for r in rows_out) / len(rows_out),
               "max_abs_no_overlap_err": max(abs(r["no_overlap_vs_scalesim_err"]) for r in rows_out),
               "mean_scalesim_over_mensa": sum(r["scalesim_over_mensa"] for r in rows_out) / len(rows_out)}
    print(json.dumps(summary, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"summary": summary, "rows": rows_out}, indent=1))
    print(f"wrote {OUT}")
    if summary["min_speedup"] < 1000:
        raise SystemExit(f"model only {summary['min_speedup']:.0f}x faster than SCALE-Sim (need >= 1000x)")


if __name__ == "__main__":
    main()
