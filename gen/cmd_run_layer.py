"""``mensa run-layer``: run one layer on the generated RTL of an accelerator, checked against the golden model.

Depthwise convs and pools run on the accelerator's vector unit when its config has one. On a
near-memory accelerator (kind ``nearmem``: fc, pointwise and, with ``nearmem.lstm``, lstm layers)
the weights are loaded into its vaults by backdoor and served with ``--vault-latency`` cycles a
read; the input and output vectors move over its AXI4 DMA (:mod:`mensa.sim.tb_nearmem_accelerator`).

The layer is a zoo model's layer (``MODEL:LAYER``, by name or index) or written out as
``OP:key=value,...``::

    conv2d:in=28x28x64,out=64,kernel=3,stride=1,padding=same,act=relu
    depthwise:in=56x56x32,kernel=3,stride=2,padding=same
    fc:in=4x1024,out=1000
    pointwise:in=14x14x96,out=24
    lstm:in=20x64,hidden=128,proj=64

The accelerator's Verilog is simulated (Verilator, or Icarus) with a cocotb testbench
(:mod:`mensa.sim.tb_accelerator`): random int8 weights, bias and input from ``--seed``
are compiled (:func:`mensa.contract.compiler.compile_layer`) into a DRAM image served over
AXI4 with ``--latency`` cycles per read burst, the descriptor is written over AXI4-Lite
and the run started; the output is compared byte for byte with
:func:`mensa.core.golden.run_layer`. Printed: cycles, utilisation, the stall breakdown
from the performance counters, DRAM bytes moved.
"""

import json
import os
import re
import sys
import tempfile
from pathlib import Path

from mensa.core.config import CoreKind, load, to_dict
from mensa.core.errors import UserError
from mensa.gen.layer_spec import OPS, check_layer, layer_accelerator, parse_layer
from mensa.hw.accelerator import Accelerator
from mensa.hw.nearmem_accelerator import NearMemAccelerator
from mensa.sim.runner import SimulationFailed, run as simulate, simulators
from mensa.core.files import write_json
from mensa.gen import args as types
from mensa.gen.verilog import add_time_limit_argument, check_elaboration

__all__ = ["add_arguments", "run"]

def add_arguments(parser):
    parser.add_argument("--config", type=Path, required=True, help="system config: a TOML file or a preset name")
    parser.add_argument("--accelerator", metavar="NAME",
                        help="the accelerator of the system to run on, systolic or near-memory (default: its first)")
    parser.add_argument("--layer", required=True, metavar="SPEC",
                        help="MODEL:LAYER (a zoo layer by name or index) or OP:key=value,... "
                             f"(OP one of {', '.join(OPS)})")
    parser.add_argument("--latency", default="20", metavar="N|LO-HI",
                        help="DRAM read latency in cycles per burst, or a range drawn per burst (default: 20)")
    parser.add_argument("--vault-latency", default="4", metavar="N|LO-HI",
                        help="near-memory accelerators: vault read latency in cycles, or a range drawn per read "
                             "(default: 4)")
    parser.add_argument("--pause", type=types.probability, default=0.0,
                        help="probability that an AXI channel of the DRAM pauses in a cycle (default: 0)")
    parser.add_argument("--seed", type=types.seed, default=1, help="seed of weights, input and quantisation (default: 1)")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                        help="simulator (default: verilator, or the one MENSA_SIM names)")
    parser.add_argument("--json", type=types.out_file, metavar="FILE", help="also write the measurements as JSON")
    add_time_limit_argument(parser)


def _latency(text, option="--latency"):
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if not m or int(m[1]) < 1 or (m[2] and int(m[2]) < int(m[1])):
        raise UserError(f"{option} {text!r} is not allowed; allowed: N or LO-HI cycles, 1 <= LO <= HI")
    return [int(m[1]), int(m[2] or m[1])]


def run(args):
    from rich.console import Console


    latency = _latency(args.latency)
    available = simulators()
    args.sim = args.sim or available[0]
    if args.sim not in available:
        why = (f"MENSA_SIM={os.environ['MENSA_SIM']} restricts the choice to" if os.environ.get("MENSA_SIM")
               else "present here:")
        raise UserError(f"--sim {args.sim}: not available; {why} {', '.join(available)}")
    system = load(args.config)
    acc = layer_accelerator(system, args.accelerator)
    nearmem = acc.kind is CoreKind.NEARMEM
    vault_latency = _latency(args.vault_latency, "--vault-latency")
    check_elaboration("run-layer", [acc], no_time_limit=args.no_time_limit)
    spec = parse_layer(args.layer, args.seed)
    layer, prog = check_layer(spec, acc)
    ram = 1 << max(20, (prog.image.size - 1).bit_length())
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        table = to_dict(acc)
        if nearmem:
            del table["array"]          # a near-memory accelerator has none; the loader refuses the table
            top, name, tb = NearMemAccelerator(acc), "nearmem_accelerator", "mensa.sim.tb_nearmem_accelerator"
        else:
            top, name, tb = Accelerator(acc), "accelerator", "mensa.sim.tb_accelerator"
        params = {"config": {"accelerator": table}, "layers": [spec], "pause": args.pause,
                  "latency": latency, "ram_bytes": ram, "result": str(result),
                  "vault_latency": vault_latency, "gap": 0.0, "outstanding": 16}
        with console.status(f"{acc.name}: building and simulating {spec.get('name', args.layer)} ({args.sim})"):
            try:
                simulate(top, name=name, key=(name, acc), sim=args.sim, test_module=tb, test_name="run-layer",
                         seed=args.seed, extra_env={"MENSA_TB": json.dumps(params)})
            except SimulationFailed as e:
                print(f"mensa run-layer: the RTL run failed: {e}", file=sys.stderr)
                return 1
        (r,) = json.loads(result.read_text())
    if nearmem:
        return _report_nearmem(args, acc, spec, layer, prog, r, latency, vault_latency)
    a = acc.array
    vector = r.get("engine") == "vector"
    engine = (f"vector unit of {r['lanes']} lanes, {acc.memory.data_bits}-bit AXI" if vector
              else f"{a.rows}x{a.cols} {a.dataflow.value}, {acc.memory.data_bits}-bit AXI")
    r.update(layer_spec=args.layer, accelerator=acc.name, config=str(args.config), array=f"{a.rows}x{a.cols}",
             clock_mhz=acc.clock_mhz, latency=latency, pause=args.pause, seed=args.seed, sim=args.sim,
             bit_exact=True, ideal_cycles=-(-r["macs"] // r["lanes"]),
             microseconds=round(r["cycles"] / acc.clock_mhz, 3))
    print(f"{spec.get('name', args.layer)} on {acc.name} ({engine}, DRAM latency {args.latency}): "
          f"{layer.out_shape} outputs bit-exact with the golden model")
    if vector:
        taps = prog.registers["KERNEL_H"] * prog.registers["KERNEL_W"]
        print(f"  {r['m']} output pixels x {taps} taps x {r['n']} channels, {r['macs']:,} MACs; line buffer "
              f"{prog.registers['LINE_ROWS']} rows of {prog.registers['IN_W']} of {prog.geometry.line_depth:,} "
              f"pixel vectors")
    else:
        _print_tiles(r, prog)
    print(f"  cycles      {r['cycles']:>12,}  ({r['microseconds']:,} us at {acc.clock_mhz:g} MHz; "
          f"ideal {r['ideal_cycles']:,})")
    print(f"  utilisation {r['utilisation']:>12.1%}")
    busy = "lanes busy" if vector else "array busy"
    print(f"  {busy}  {r['busy']:>12,}  ({r['busy'] / r['cycles']:.1%} of the cycles)")
    print(f"  DRAM stall  {r['stall']:>12,}  ({r['stall'] / r['cycles']:.1%}: a read awaited with nothing to stream)")
    r["bytes_per_cycle"] = round((r["dram_read_bytes"] + r["dram_write_bytes"]) / r["cycles"], 3)
    print(f"  DRAM        {r['dram_read_bytes']:>12,} B read, {r['dram_write_bytes']:,} B written "
          f"({r['bytes_per_cycle']:g} B per cycle of the bus's {acc.memory.data_bits // 8} each way)")
    if args.json:
        write_json(args.json, r)
        print(f"wrote {args.json}")
    return 0


def _print_tiles(r, prog):
    """The systolic array's M tiles: how the compiler cut the layer for the scratchpad."""
    print(f"  GEMM M={r['m']} K={r['k']} N={r['n']}, {r['macs']:,} MACs")
    tiles = list(prog.m_tiles())
    regs = prog.registers
    shape = (f"{regs['TILE_ROWS']} output rows" if regs["TILE_ROWS"] > 1 or regs["TILE_COLS"] == regs["OUT_W"]
             else f"{regs['TILE_COLS']} pixels of a row")
    r.update(m_tiles=len(tiles), tile_rows=regs["TILE_ROWS"], tile_cols=regs["TILE_COLS"],
             window_vectors=max(t[4] for t in tiles), act_depth=prog.geometry.act_depth)
    print(f"  M tiles     {len(tiles):>12,}  (of {shape}; input windows of up to {r['window_vectors']:,} of the "
          f"scratchpad's {r['act_depth']:,} vectors per half)")


def _report_nearmem(args, acc, spec, layer, prog, r, latency, vault_latency):
    """The near-memory accelerator's run: cycles, lane utilisation, counters, DRAM and vault bytes."""
    nm = acc.nearmem
    r.update(layer_spec=args.layer, accelerator=acc.name, config=str(args.config), clock_mhz=acc.clock_mhz,
             latency=latency, vault_latency=vault_latency, pause=args.pause, seed=args.seed, sim=args.sim,
             bit_exact=True, ideal_cycles=-(-r["macs"] // r["lanes"]),
             microseconds=round(r["cycles"] / acc.clock_mhz, 3))
    print(f"{spec.get('name', args.layer)} on {acc.name} (near-memory, {nm.vaults} vaults x {nm.lanes} lanes, "
          f"{acc.memory.data_bits}-bit AXI, DRAM latency {args.latency}, vault latency {args.vault_latency}): "
          f"{layer.out_shape} outputs bit-exact with the golden model")
    what = "time steps" if r["lstm"] else "vectors"
    print(f"  {r['vectors']} {what}, {r['macs']:,} MACs; {prog.unit.words:,} vault words per vault and "
          f"{what[:-1]}")
    print(f"  cycles      {r['cycles']:>12,}  ({r['microseconds']:,} us at {acc.clock_mhz:g} MHz; "
          f"ideal {r['ideal_cycles']:,})")
    print(f"  utilisation {r['utilisation']:>12.1%}")
    print(f"  unit busy   {r['busy']:>12,}  ({r['busy'] / r['cycles']:.1%} of the cycles)")
    print(f"  DRAM wait   {r['stall']:>12,}  ({r['stall'] / r['cycles']:.1%}: a port of the unit waited on the DMA)")
    print(f"  DRAM        {r['dram_read_bytes']:>12,} B read, {r['dram_write_bytes']:,} B written")
    print(f"  vaults      {sum(r['vault_bytes']):>12,} B read ({r['vault_bytes'][0]:,} per vault)")
    if args.json:
        write_json(args.json, r)
        print(f"wrote {args.json}")
    return 0
