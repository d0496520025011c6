"""Layer specs: the text ``mensa run-layer --layer`` and ``bench/layers.py`` take, as testbench layers.

A spec is a zoo model's layer (``MODEL:LAYER``, by name or index) or written out as
``OP:key=value,...``::

    conv2d:in=28x28x64,out=64,kernel=3,stride=1,padding=same,act=relu
    depthwise:in=56x56x32,kernel=3,stride=2,padding=same
    fc:in=4x1024,out=1000
    pointwise:in=14x14x96,out=24
    maxpool:in=112x112x64,kernel=3,stride=2,padding=same
    avgpool:in=14x14x32,kernel=3,stride=1,padding=1
    global_avgpool:in=7x7x1280
    add:in=28x28x32             (of a second random input with its own quantisation)
    mul:in=14x14x480            (by a random per-channel gate, squeeze-excite)
    lstm:in=20x64,hidden=128,proj=64   (T time steps x C inputs; proj optional)

Depthwise convs, pools, add and mul run on the accelerator's vector unit when it has one
(``[accelerator.vector]``), and pools, add and mul only there. A near-memory accelerator runs fc,
pointwise and (with ``nearmem.lstm``) lstm layers.
"""

import json
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from mensa.contract.compiler import compile_layer
from mensa.core import golden
from mensa.core.config import CoreKind, to_dict
from mensa.core.errors import UserError
from mensa.core.ir import Op
from mensa.hw.accelerator import Accelerator
from mensa.model import zoo
from mensa.sim.runner import run
from mensa.sim.tb_accelerator import BIAS_MAX, POOLS, WEIGHT_MIN, make_layer
from mensa.sim.tb_nearmem_accelerator import layer_of

__all__ = ["parse_layer", "systolic_accelerator", "layer_accelerator", "check_layer", "simulate_layers",
           "LayerSpecError", "OPS"]

OPS = ("conv2d", "depthwise", "pointwise", "fc", "maxpool", "avgpool", "global_avgpool", "add", "mul", "lstm")
#: the ops whose output has the input's channels (no out=...)
SAME_CHANNELS = ("depthwise", "maxpool", "avgpool", "global_avgpool", "add", "mul")
KEYS = {
    "conv2d": ("in", "out", "kernel", "stride", "padding", "dilation", "act"),
    "depthwise": ("in", "kernel", "stride", "padding", "dilation", "act"),
    "pointwise": ("in", "out", "act"),
    "fc": ("in", "out", "act"),
    "maxpool": ("in", "kernel", "stride", "padding", "act"),
    "avgpool": ("in", "kernel", "stride", "padding", "act"),
    "global_avgpool": ("in", "act"),
    "add": ("in", "act"),
    "mul": ("in", "act"),
    "lstm": ("in", "hidden", "proj"),
}
ACTIVATIONS = ("none", "relu", "relu6")
#: run after the requantiser through a 256-entry table (the vector unit's depthwise, add and mul)
TABLE_ACTIVATIONS = ("sigmoid", "tanh", "hard_swish", "hard_sigmoid")
DIM_MAX = (1 << 16) - 1         # IN_H, IN_W, IN_C, OUT_C ... are 16-bit registers
KERNEL_MAX = (1 << 8) - 1       # KERNEL_H, STRIDE_H, DILATION_H, PAD_TOP ... are 8-bit registers
SIM_IMAGE_MAX = 1 << 28         # bytes of DRAM a simulation serves (a Python bytearray behind AXI)


class LayerSpecError(UserError):
    """A --layer that does not parse or names no layer."""


def _int(text):
    return int(text) if text.isdigit() and len(text) <= 12 else None


def _shape(text, what):
    dims = tuple(_int(d) for d in text.split("x"))
    if not dims or None in dims or min(dims) < 1:
        raise LayerSpecError(f"{what} {text!r} is not a shape; allowed: positive sizes joined by 'x', e.g. 28x28x64")
    if max(dims) > DIM_MAX:
        raise LayerSpecError(f"{what}={text!r}: a size above {DIM_MAX}; allowed: sizes of at most {DIM_MAX} "
                             f"(the descriptor's 16-bit registers)")
    return dims


def _pair(text, key):
    values = tuple(_int(v) for v in text.split("x"))
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or None in values or min(values) < 1:
        raise LayerSpecError(f"{key}={text!r} is not a size; allowed: N or NxM with positive integers")
    if max(values) > KERNEL_MAX:
        raise LayerSpecError(f"{key}={text!r}: above {KERNEL_MAX}; allowed: at most {KERNEL_MAX} "
                             f"(the descriptor's 8-bit registers)")
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
    if op == "lstm":
        return _lstm(fields, shape)
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
    if op not in SAME_CHANNELS and "out" not in fields:
        raise LayerSpecError(f"{op} layer: out=... (the output channels) is missing")
    out = shape[-1] if op in SAME_CHANNELS else _shape(fields["out"], "out")[0]
    act = fields.get("act", "none")
    if act not in ACTIVATIONS + TABLE_ACTIVATIONS:
        raise LayerSpecError(f"act={act!r} is not run; allowed: {', '.join(ACTIVATIONS + TABLE_ACTIVATIONS)}")
    spec = {"op": "conv2d" if op == "pointwise" else op, "in_shape": list(shape), "out_channels": out,
            "activation": act}
    if op in ("conv2d", "depthwise", "maxpool", "avgpool"):
        spec["kernel"] = _pair(fields.get("kernel", "1"), "kernel")
        spec["stride"] = _pair(fields.get("stride", "1"), "stride")
        if "dilation" in KEYS[op]:
            spec["dilation"] = _pair(fields.get("dilation", "1"), "dilation")
        pad = fields.get("padding", "valid")
        if pad in ("same", "valid"):
            spec["padding"] = pad
        else:
            p = [_int(v) for v in pad.split("x")]
            if None in p:
                p = []
            if len(p) == 1:
                p *= 4
            elif len(p) == 2:
                p = [p[0], p[0], p[1], p[1]]
            if len(p) != 4 or min(p) < 0 or max(p) > KERNEL_MAX:
                raise LayerSpecError(f"padding={pad!r} is not allowed; allowed: same, valid, P, PHxPW or "
                                     f"TOPxBOTTOMxLEFTxRIGHT (each 0..{KERNEL_MAX})")
            spec["padding"] = p
    return _quantised(spec, seed)


def _lstm(fields, shape):
    """An LSTM spec of :mod:`mensa.sim.tb_nearmem_accelerator` (its weights and scales drawn by the testbench)."""
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise LayerSpecError(f"lstm layer: in={fields['in']!r} is not STEPSxFEATURES (one sequence)")
    if "hidden" not in fields:
        raise LayerSpecError("lstm layer: hidden=... (the hidden units) is missing")
    hidden = _shape(fields["hidden"], "hidden")[0]
    proj = _shape(fields["proj"], "proj")[0] if "proj" in fields else 0
    return {"op": "lstm", "steps": shape[0], "in": shape[1], "hidden": hidden, "projection": proj}


def _from_zoo(model, which, seed):

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
    ops = {Op.CONV2D: "conv2d", Op.DEPTHWISE: "depthwise", Op.FC: "fc", Op.MAXPOOL: "maxpool",
           Op.AVGPOOL: "avgpool", Op.GLOBAL_AVGPOOL: "global_avgpool", Op.ADD: "add", Op.MUL: "mul"}
    if layer.op is Op.LSTM and layer.in_shape[0] == 1:
        return {"op": "lstm", "steps": layer.in_shape[1], "in": layer.in_channels, "hidden": layer.hidden,
                "projection": layer.projection or 0, "name": f"{model}:{layer.name}"}
    if layer.op not in ops or (layer.op is Op.CONV2D and layer.groups != 1):
        raise LayerSpecError(f"{model}:{layer.name} is a {layer.op.value} layer"
                             f"{' with groups' if layer.op is Op.CONV2D else ''}; the systolic accelerator runs "
                             f"conv2d, depthwise, pointwise and fc layers (and with a vector unit, pools, add and mul)")
    if layer.activation.value not in ACTIVATIONS + TABLE_ACTIVATIONS:
        raise LayerSpecError(f"{model}:{layer.name} has activation {layer.activation.value}; the systolic "
                             f"accelerator runs {', '.join(ACTIVATIONS + TABLE_ACTIVATIONS)}")
    spec = {"op": ops[layer.op], "in_shape": list(layer.in_shape), "out_channels": layer.out_channels,
            "activation": layer.activation.value, "name": f"{model}:{layer.name}"}
    if layer.op in (Op.MAXPOOL, Op.AVGPOOL):
        spec.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=list(layer.padding))
    elif layer.op not in (Op.FC, Op.GLOBAL_AVGPOOL, Op.ADD, Op.MUL):
        spec.update(kernel=list(layer.kernel), stride=list(layer.stride), dilation=list(layer.dilation),
                    padding=list(layer.padding))
    return _quantised(spec, seed)


def _quantised(spec, seed):
    """Zero points and scales drawn from the seed, the output scale sized to the layer's fan-in."""
    r = random.Random(seed)
    fan_in = spec["in_shape"][-1] if spec["op"] not in SAME_CHANNELS else 1
    if "kernel" in spec:
        fan_in *= spec["kernel"][0] * spec["kernel"][1]
    spec.update(zp_in=r.randint(-128, 127), zp_out=r.randint(-20, 20), in_scale=r.uniform(0.02, 0.1),
                out_scale=r.uniform(0.05, 0.5) * fan_in ** 0.5)
    if spec["op"] == "mul":
        spec.update(zp_in2=r.randint(-128, 127), in2_scale=r.uniform(0.002, 0.008))
    if spec["op"] == "add":
        spec.update(zp_in2=r.randint(-128, 127), in2_scale=r.uniform(0.02, 0.1), out_scale=r.uniform(0.05, 0.2))
    if spec["activation"] in TABLE_ACTIVATIONS:
        # requantised to the table's input at the drawn output scale; the table's output in 1/64 steps
        spec.update(pre_scale=spec["out_scale"], zp_pre=r.randint(-20, 20), out_scale=1 / 64)
    return spec


def parse_layer(text, seed=1):
    """A testbench layer spec (:mod:`mensa.sim.tb_accelerator`) from ``--layer``'s text."""
    head, colon, body = text.partition(":")
    if not colon:
        raise LayerSpecError(f"--layer {text!r} has no ':'; allowed: MODEL:LAYER or OP:key=value,... "
                             f"(OP one of {', '.join(OPS)})")
    if "=" in body or head in OPS:
        return _from_text(head, body, seed)
    if head not in zoo.MODELS:
        raise LayerSpecError(f"{head!r} is neither a layer op nor a zoo model; allowed ops: {', '.join(OPS)}; "
                             f"models: {', '.join(zoo.MODELS)}")
    return _from_zoo(head, body, seed)


def layer_accelerator(system, name):
    """The accelerator ``name`` of ``system`` (default: its first one) that runs a layer alone: a systolic or a
    near-memory accelerator, each with its registers and DMA."""
    if name is None:
        return system.accelerator[0]
    for a in system.accelerator:
        if a.name == name:
            return a
    raise UserError(f"no accelerator {name!r} in {system.name!r}; allowed: "
                    f"{', '.join(a.name for a in system.accelerator)}")


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
    """Compile the layer once here, so a layer the accelerator can't run fails before any build.

    The sizes are checked before anything of the layer's size is allocated; the compiler sees the
    testbench's extreme weights and bias, so its accumulator bound is the one the run meets (an LSTM's
    weights are drawn as its testbench draws them).
    """
    if spec["op"] == "lstm":
        c, h, p, t = spec["in"], spec["hidden"], spec["projection"], spec["steps"]
        if (c + (p or h)) * 4 * h + h * p > SIM_IMAGE_MAX:
            raise LayerSpecError(f"lstm layer: {c} inputs, {h} hidden units: weights beyond {SIM_IMAGE_MAX:,} bytes")
        layer, params, x = layer_of(spec, 0, np.random.default_rng(0))
        return layer, compile_layer(acc, layer, params, x)
    layer = make_layer(spec, 0)
    sizes = {"input": int(np.prod(layer.in_shape, dtype=object)),
             "weights": int(np.prod(golden.weight_shape(layer), dtype=object)),
             "output": int(np.prod(layer.out_shape, dtype=object))}
    if sum(sizes.values()) > SIM_IMAGE_MAX:
        parts = ", ".join(f"{name} {size:,} B" for name, size in sizes.items())
        raise LayerSpecError(f"layer {spec.get('name', layer.name)!r}: {parts}; allowed: at most "
                             f"{SIM_IMAGE_MAX:,} bytes in all (the simulated DRAM)")
    if layer.op in (*POOLS.values(), Op.ADD, Op.MUL):
        params = golden.layer_params(layer)
    else:
        params = golden.layer_params(layer, weights=np.full(golden.weight_shape(layer), WEIGHT_MIN, np.int8),
                                     bias=np.full(layer.out_channels, BIAS_MAX, np.int32))
    zeros = tuple(np.zeros(sh, np.int8) for sh in (layer.in_shape, *layer.extra_in_shapes))
    prog = compile_layer(acc, layer, params, zeros if len(zeros) > 1 else zeros[0])
    if prog.image.size > SIM_IMAGE_MAX:
        raise LayerSpecError(f"layer {spec.get('name', layer.name)!r}: a DRAM image of {prog.image.size:,} bytes; "
                             f"allowed: at most {SIM_IMAGE_MAX:,} (the simulated DRAM)")
    return layer, prog


def simulate_layers(acc, specs, *, latency, sim, seed, pause=0.0, test_name="layers"):
    """Run testbench layer ``specs`` on ``acc``'s RTL in one simulation, each output checked
    byte for byte against the golden model; returns the testbench's record of each layer
    (:mod:`mensa.sim.tb_accelerator`) and the wall seconds. ``latency``: ``(lo, hi)`` cycles."""
    ram = 1 << max(20, max(check_layer(spec, acc)[1].image.size - 1 for spec in specs).bit_length())
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        params = {"config": {"accelerator": to_dict(acc)}, "layers": specs, "pause": pause,
                  "latency": list(latency), "ram_bytes": ram, "result": str(result)}
        start = time.perf_counter()
        run(Accelerator(acc), name="accelerator", key=("accelerator", acc), sim=sim,
            test_module="mensa.sim.tb_accelerator", test_name=test_name, seed=seed,
            extra_env={"MENSA_TB": json.dumps(params)})
        return json.loads(result.read_text()), time.perf_counter() - start
