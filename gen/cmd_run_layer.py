"""``mensa run-layer``: run one layer on the generated RTL of an accelerator, checked against the golden model.

The layer is a zoo model's layer (``MODEL:LAYER``, by name or index) or written out as
``OP:key=value,...``::

    conv2d:in=28x28x64,out=64,kernel=3,stride=1,padding=same,act=relu
    depthwise:in=56x56x32,kernel=3,stride=2,padding=same
    fc:in=4x1024,out=1000
    pointwise:in=14x14x96,out=24

The accelerator's Verilog is simulated (Verilator, or Icarus) with a cocotb testbench
(:mod:`mensa.sim.tb_accelerator`): random int8 weights, bias and input from ``--seed``
are compiled (:func:`mensa.gen.program.compile_layer`) into a DRAM image served over
AXI4 with ``--latency`` cycles per read burst, the descriptor is written over AXI4-Lite
and the run started; the output is compared byte for byte with
:func:`mensa.sim.golden.run_layer`. Printed: cycles, utilisation, the stall breakdown
from the performance counters, DRAM bytes moved.
"""

import json
import random
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from mensa.hw.config import CoreKind, UserError, load, to_dict

__all__ = ["add_arguments", "run", "parse_layer", "systolic_accelerator", "check_layer", "LayerSpecError"]

OPS = ("conv2d", "depthwise", "pointwise", "fc")
KEYS = {
    "conv2d": ("in", "out", "kernel", "stride", "padding", "dilation", "act"),
    "depthwise": ("in", "kernel", "stride", "padding", "dilation", "act"),
    "pointwise": ("in", "out", "act"),
    "fc": ("in", "out", "act"),
}
ACTIVATIONS = ("none", "relu", "relu6")


class LayerSpecError(UserError):
    """A --layer that does not parse or names no layer."""


def add_arguments(parser):
    parser.add_argument("--config", type=Path, required=True, help="system config (TOML)")
    parser.add_argument("--accelerator", metavar="NAME",
                        help="the systolic accelerator of the system to run on (default: its first systolic one)")
    parser.add_argument("--layer", required=True, metavar="SPEC",
                        help="MODEL:LAYER (a zoo layer by name or index) or OP:key=value,... "
                             f"(OP one of {', '.join(OPS)})")
    parser.add_argument("--latency", default="20", metavar="N|LO-HI",
                        help="DRAM read latency in cycles per burst, or a range drawn per burst (default: 20)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="probability that an AXI channel of the DRAM pauses in a cycle (default: 0)")
    parser.add_argument("--seed", type=int, default=1, help="seed of weights, input and quantisation (default: 1)")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                        help="simulator (default: verilator)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the measurements as JSON")


def _shape(text, what):
    try:
        dims = tuple(int(d) for d in text.split("x"))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise LayerSpecError(f"{what} {text!r} is not a shape; allowed: positive sizes joined by 'x', e.g. 28x28x64")
    return dims


def _pair(text, key):
    try:
        values = tuple(int(v) for v in text.split("x"))
    except ValueError:
        values = ()
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise LayerSpecError(f"{key}={text!r} is not a size; allowed: N or NxM with positive integers")
    return list(values)


def _from_text(op, body, seed):
    if op not in OPS:
        raise LayerSpecError(f"layer op {op!r} is not run; allowed: {', '.join(OPS)} (or MODEL:LAYER of the zoo)")
    fields = {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in KEYS[op]:
            raise LayerSpecError(f"{op} layer: {item!r} is not a setting; allowed: "
                                 f"{', '.join(k + '=...' for k in KEYS[op])}")
        fields[key] = value
    if "in" not in fields:
        raise LayerSpecError(f"{op} layer: in=... (the input shape) is missing")
    shape = _shape(fields["in"], "in")
    if op == "fc":
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) != 2:
            raise LayerSpecError(f"fc layer: in={fields['in']!r} is not BATCHxFEATURES or FEATURES")
    else:
        if len(shape) == 3:
            shape = (1, *shape)
        if len(shape) != 4:
            raise LayerSpecError(f"{op} layer: in={fields['in']!r} is not HxWxC or NxHxWxC")
    if op != "depthwise" and "out" not in fields:
        raise LayerSpecError(f"{op} layer: out=... (the output channels) is missing")
    out = shape[-1] if op == "depthwise" else _shape(fields["out"], "out")[0]
    act = fields.get("act", "none")
    if act not in ACTIVATIONS:
        raise LayerSpecError(f"act={act!r} is not run; allowed: {', '.join(ACTIVATIONS)}")
    spec = {"op": "conv2d" if op == "pointwise" else op, "in_shape": list(shape), "out_channels": out,
            "activation": act}
    if op in ("conv2d", "depthwise"):
        spec["kernel"] = _pair(fields.get("kernel", "1"), "kernel")
        spec["stride"] = _pair(fields.get("stride", "1"), "stride")
        spec["dilation"] = _pair(fields.get("dilation", "1"), "dilation")
        pad = fields.get("padding", "valid")
        if pad in ("same", "valid"):
            spec["padding"] = pad
        else:
            try:
                p = [int(v) for v in pad.split("x")]
            except ValueError:
                p = []
            if len(p) == 1:
                p *= 4
            elif len(p) == 2:
                p = [p[0], p[0], p[1], p[1]]
            if len(p) != 4 or min(p) < 0:
                raise LayerSpecError(f"padding={pad!r} is not allowed; allowed: same, valid, P, PHxPW or "
                                     f"TOPxBOTTOMxLEFTxRIGHT (non-negative)")
            spec["padding"] = p
    return _quantised(spec, seed)


def _from_zoo(model, which, seed):
    from mensa.model import zoo
    from mensa.model.ir import Op

    net = zoo.get(model)
    layers = list(net.layers)
    if re.fullmatch(r"\d+", which):
        if int(which) >= len(layers):
            raise LayerSpecError(f"{model} has {len(layers)} layers; layer index {which} is out of range 0-{len(layers) - 1}")
        layer = layers[int(which)]
    else:
        named = {l.name: l for l in layers}
        if which not in named:
            raise LayerSpecError(f"{model} has no layer {which!r}; its layers are indexed 0-{len(layers) - 1} "
                                 f"(see `mensa analyze {model}`)")
        layer = named[which]
    ops = {Op.CONV2D: "conv2d", Op.DEPTHWISE: "depthwise", Op.FC: "fc"}
    if layer.op not in ops or (layer.op is Op.CONV2D and layer.groups != 1):
        raise LayerSpecError(f"{model}:{layer.name} is a {layer.op.value} layer"
                             f"{' with groups' if layer.op is Op.CONV2D else ''}; the systolic accelerator runs "
                             f"conv2d, depthwise, pointwise and fc layers")
    if layer.activation.value not in ACTIVATIONS:
        raise LayerSpecError(f"{model}:{layer.name} has activation {layer.activation.value}; the systolic "
                             f"accelerator runs {', '.join(ACTIVATIONS)}")
    spec = {"op": ops[layer.op], "in_shape": list(layer.in_shape), "out_channels": layer.out_channels,
            "activation": layer.activation.value, "name": f"{model}:{layer.name}"}
    if layer.op is not Op.FC:
        spec.update(kernel=list(layer.kernel), stride=list(layer.stride), dilation=list(layer.dilation),
                    padding=list(layer.padding))
    return _quantised(spec, seed)


def _quantised(spec, seed):
    """Zero points and scales drawn from the seed, the output scale sized to the layer's fan-in."""
    r = random.Random(seed)
    fan_in = spec["in_shape"][-1] if spec["op"] != "depthwise" else 1
    if "kernel" in spec:
        fan_in *= spec["kernel"][0] * spec["kernel"][1]
    spec.update(zp_in=r.randint(-128, 127), zp_out=r.randint(-20, 20), in_scale=r.uniform(0.02, 0.1),
                out_scale=r.uniform(0.05, 0.5) * fan_in ** 0.5)
    return spec


def parse_layer(text, seed=1):
    """A testbench layer spec (:mod:`mensa.sim.tb_accelerator`) from ``--layer``'s text."""
    head, colon, body = text.partition(":")
    if not colon:
        raise LayerSpecError(f"--layer {text!r} has no ':'; allowed: MODEL:LAYER or OP:key=value,... "
                             f"(OP one of {', '.join(OPS)})")
    if "=" in body or head in OPS:
        return _from_text(head, body, seed)
    from mensa.model import zoo
    if head not in zoo.MODELS:
        raise LayerSpecError(f"{head!r} is neither a layer op nor a zoo model; allowed ops: {', '.join(OPS)}; "
                             f"models: {', '.join(zoo.MODELS)}")
    return _from_zoo(head, body, seed)


def _latency(text):
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
    if not m or int(m[1]) < 1 or (m[2] and int(m[2]) < int(m[1])):
        raise UserError(f"--latency {text!r} is not allowed; allowed: N or LO-HI cycles, 1 <= LO <= HI")
    return [int(m[1]), int(m[2] or m[1])]


def systolic_accelerator(system, name):
    systolic = [a for a in system.accelerator if a.kind is CoreKind.SYSTOLIC]
    if name is None:
        if not systolic:
            raise UserError(f"system {system.name!r} has no systolic accelerator; run-layer runs the systolic "
                            f"accelerator top")
        return systolic[0]
    for a in systolic:
        if a.name == name:
            return a
    raise UserError(f"no systolic accelerator {name!r} in {system.name!r}; allowed: "
                    f"{', '.join(a.name for a in systolic) or '(none)'}")


def check_layer(spec, acc):
    """Compile the layer once here, so a layer the accelerator can't run fails before any build."""
    from mensa.gen.program import compile_layer
    from mensa.sim import golden
    from mensa.sim.tb_accelerator import make_layer

    layer = make_layer(spec, 0)
    params = golden.layer_params(layer, weights=np.zeros(golden.weight_shape(layer), np.int8),
                                 bias=np.zeros(layer.out_channels, np.int32))
    prog = compile_layer(layer, params, acc, np.zeros(layer.in_shape, np.int8))
    return layer, prog


def run(args):
    from rich.console import Console

    from mensa.hw.accelerator import Accelerator
    from mensa.sim.runner import SimulationFailed, run as simulate, simulators

    latency = _latency(args.latency)
    if not 0 <= args.pause < 1:
        raise UserError(f"--pause {args.pause} is not allowed; allowed: 0 <= p < 1")
    if args.sim not in simulators():
        raise UserError(f"--sim {args.sim}: not installed here; present: {', '.join(simulators())}")
    system = load(args.config)
    acc = systolic_accelerator(system, args.accelerator)
    spec = parse_layer(args.layer, args.seed)
    layer, prog = check_layer(spec, acc)
    ram = 1 << max(20, (prog.image.size - 1).bit_length())
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        params = {"config": {"accelerator": to_dict(acc)}, "layers": [spec], "pause": args.pause,
                  "latency": latency, "ram_bytes": ram, "result": str(result)}
        with console.status(f"{acc.name}: building and simulating {spec.get('name', args.layer)} ({args.sim})"):
            try:
                simulate(Accelerator(acc), name="accelerator", key=("accelerator", acc), sim=args.sim,
                         test_module="mensa.sim.tb_accelerator", test_name="run-layer", seed=args.seed,
                         extra_env={"MENSA_TB": json.dumps(params)})
            except SimulationFailed as e:
                print(f"mensa run-layer: the RTL run failed: {e}", file=sys.stderr)
                return 1
        (r,) = json.loads(result.read_text())
    a = acc.array
    r.update(layer_spec=args.layer, accelerator=acc.name, config=str(args.config), array=f"{a.rows}x{a.cols}",
             clock_mhz=acc.clock_mhz, latency=latency, pause=args.pause, seed=args.seed, sim=args.sim,
             bit_exact=True, ideal_cycles=-(-r["macs"] // (a.rows * a.cols)),
             microseconds=round(r["cycles"] / acc.clock_mhz, 3))
    print(f"{spec.get('name', args.layer)} on {acc.name} ({a.rows}x{a.cols} {a.dataflow.value}, "
          f"{acc.memory.data_bits}-bit AXI, DRAM latency {args.latency}): {layer.out_shape} outputs bit-exact "
          f"with the golden model")
    print(f"  GEMM M={r['m']} K={r['k']} N={r['n']}, {r['macs']:,} MACs")
    tiles = list(prog.m_tiles())
    regs = prog.registers
    shape = (f"{regs['TILE_ROWS']} output rows" if regs["TILE_ROWS"] > 1 or regs["TILE_COLS"] == regs["OUT_W"]
             else f"{regs['TILE_COLS']} pixels of a row")
    r.update(m_tiles=len(tiles), tile_rows=regs["TILE_ROWS"], tile_cols=regs["TILE_COLS"],
             window_vectors=max(t[4] for t in tiles), act_depth=prog.geometry.act_depth)
    print(f"  M tiles     {len(tiles):>12,}  (of {shape}; input windows of up to {r['window_vectors']:,} of the "
          f"scratchpad's {r['act_depth']:,} vectors per half)")
    print(f"  cycles      {r['cycles']:>12,}  ({r['microseconds']:,} us at {acc.clock_mhz:g} MHz; "
          f"ideal {r['ideal_cycles']:,})")
    print(f"  utilisation {r['utilisation']:>12.1%}")
    print(f"  array busy  {r['busy']:>12,}  ({r['busy'] / r['cycles']:.1%} of the cycles)")
    print(f"  DRAM stall  {r['stall']:>12,}  ({r['stall'] / r['cycles']:.1%}: a read awaited with nothing to stream)")
    print(f"  DRAM        {r['dram_read_bytes']:>12,} B read, {r['dram_write_bytes']:,} B written")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
