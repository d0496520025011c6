"""The accelerator's vector unit runs depthwise convs, pools, add and mul from AXI DRAM bit-exactly (cocotb, through
the top).

Registers through cocotbext-axi's AxiLiteMaster, DRAM in its AxiRam with a read latency of
1 to 50 cycles per burst and random pauses on every AXI channel; channel counts that are
not multiples of the lanes, odd sizes, kernels up to 7 (kh != kw), strides 1-2, dilations,
explicit and TFLite 'same' padding; max, average and global average pools; add and mul with
their own quantisations; none, relu, relu6 and the table activations; two lane counts on two bus
widths; a conv on the array
between them (the engine is picked per START). Outputs against :func:`mensa.core.golden.run_layer`,
each input pixel read once.
"""

import random

import pytest

from mensa.contract.vector_program import planar, vector_refusal
from mensa.core.ir import Op
from mensa.sim.runner import simulators
from mensa.sim.tb_accelerator import accelerator_config, make_layer

from tests.rtl.test_accelerator import simulate

# lanes 8 on a 64-bit bus (a pixel vector is one word) and lanes 4 on a 32-bit bus; 1 KiB line buffers
VECTOR_CONFIGS = [
    {"rows": 4, "cols": 4, "data_bits": 64, "acc_kib": 1, "lanes": 8, "line_kib": 1},
    {"rows": 4, "cols": 4, "data_bits": 32, "acc_kib": 1, "lanes": 4, "line_kib": 1},
]
# The goal for a depthwise layer on the vector unit at DRAM latency 20.
UTILISATION_FLOOR = 0.8


def random_depthwise_spec(r, *, max_hw=9, max_c=19, max_k=5):
    """A depthwise spec: kernel 1..max_k each way, stride 1-2, dilation 1-2, 'same', 'valid' or explicit padding."""
    kh, kw = r.randint(1, max_k), r.randint(1, max_k)
    dil = [r.choice([1, 1, 2]), r.choice([1, 1, 2])]
    h = r.randint(dil[0] * (kh - 1) + 1, max_hw + dil[0] * (kh - 1))
    w = r.randint(dil[1] * (kw - 1) + 1, max_hw + dil[1] * (kw - 1))
    reach = [dil[0] * (kh - 1), dil[1] * (kw - 1)]
    pad = r.choice(["same", "valid", [r.randint(0, reach[0]), r.randint(0, reach[0]),
                                      r.randint(0, reach[1]), r.randint(0, reach[1])]])
    c = r.randint(1, max_c)
    return {"op": "depthwise", "in_shape": [1, h, w, c], "out_channels": c, "kernel": [kh, kw],
            "stride": [r.randint(1, 2), r.randint(1, 2)], "padding": pad, "dilation": dil,
            "activation": r.choice(["none", "relu", "relu6"]), "zp_in": r.randint(-128, 127),
            "zp_out": r.randint(-20, 20), "in_scale": r.uniform(0.02, 0.1), "out_scale": r.uniform(0.5, 3.0)}


def random_pool_spec(r, *, max_hw=9, max_c=19):
    """A max, average or global average pool spec: kernel 1..5, stride 1..3, padding below the kernel or 'same'."""
    op = r.choice(["maxpool", "avgpool", "global_avgpool"])
    h, w, c = r.randint(1, max_hw), r.randint(1, max_hw), r.randint(1, max_c)
    kh, kw = r.randint(1, min(5, h)), r.randint(1, min(5, w))
    pad = r.choice(["same", "valid", [r.randint(0, kh - 1), r.randint(0, kh - 1), r.randint(0, kw - 1),
                                      r.randint(0, kw - 1)]])
    return {"op": op, "in_shape": [1, h, w, c], "out_channels": c, "kernel": [kh, kw],
            "stride": [r.randint(1, 3), r.randint(1, 3)], "padding": pad,
            "activation": r.choice(["none", "relu", "relu6"]), "zp_in": r.randint(-128, 127),
            "zp_out": r.randint(-20, 20), "in_scale": r.uniform(0.02, 0.1), "out_scale": r.uniform(0.01, 0.1)}


def random_mul_spec(r, *, max_hw=9, max_c=19):
    """A mul by a per-channel gate (squeeze-excite) or an add of two tensors, each input with its own
    quantisation."""
    c = r.randint(1, max_c)
    if r.random() < 0.5:
        return {"op": "add", "in_shape": [1, r.randint(1, max_hw), r.randint(1, max_hw), c], "out_channels": c,
                "activation": r.choice(["none", "relu", "relu6"]), "zp_in": r.randint(-128, 127),
                "zp_in2": r.randint(-128, 127), "zp_out": r.randint(-20, 20), "in_scale": r.uniform(0.01, 0.1),
                "in2_scale": r.uniform(0.01, 0.1), "out_scale": r.uniform(0.02, 0.2)}
    return {"op": "mul", "in_shape": [1, r.randint(1, max_hw), r.randint(1, max_hw), c], "out_channels": c,
            "activation": r.choice(["none", "relu", "relu6"]), "zp_in": r.randint(-128, 127),
            "zp_in2": r.randint(-128, 127), "zp_out": r.randint(-20, 20), "in_scale": r.uniform(0.02, 0.1),
            "in2_scale": r.uniform(0.002, 0.008), "out_scale": r.uniform(0.01, 0.5)}


def vector_specs(cfg, seed, count, pools=0, muls=0, **kw):
    """``count`` random depthwise specs, then ``pools`` pool and ``muls`` mul specs, that the vector unit of
    ``cfg`` accepts."""
    r = random.Random(seed)
    acc = accelerator_config(cfg)
    specs = []
    while len(specs) < count + pools + muls:
        n = len(specs)
        spec = (random_depthwise_spec(r, **kw) if n < count else random_pool_spec(r) if n < count + pools
                else random_mul_spec(r))
        if spec["op"] in ("depthwise", "add", "mul") and r.random() < 0.4:
            spec.update(activation=r.choice(["sigmoid", "tanh", "hard_swish", "hard_sigmoid"]),
                        pre_scale=r.uniform(0.02, 0.1), zp_pre=r.randint(-20, 20), out_scale=1 / 64)
        if not vector_refusal(acc, make_layer(spec, len(specs))):
            specs.append(spec)
    return specs


def compiled(cfg, specs):
    """The programs of ``specs`` on ``cfg`` (zero weights and inputs: the layout depends on the shapes only)."""
    import numpy as np
    from mensa.contract.compiler import compile_layer
    from mensa.core import golden
    acc = accelerator_config(cfg)
    progs = []
    for i, spec in enumerate(specs):
        lay = make_layer(spec, i)
        xs = tuple(np.zeros(sh, np.int8) for sh in (lay.in_shape, *lay.extra_in_shapes))
        params = (golden.layer_params(lay) if lay.op in (Op.ADD, Op.MUL, Op.MAXPOOL, Op.AVGPOOL, Op.GLOBAL_AVGPOOL)
                  else golden.layer_params(lay, weights=np.zeros(golden.weight_shape(lay), np.int8)))
        progs.append(compile_layer(acc, lay, params, xs if len(xs) > 1 else xs[0]))
    return progs


def dram_read_bytes(prog, layer):
    """Each input pixel once (both of an add's inputs); each tile's taps (depthwise; a mul's gate) and
    quantisation record (depthwise, add, mul, global average pool) once; a table activation's table once."""
    layer = planar(layer)
    g = prog.geometry
    planes = -(-layer.in_channels // g.lanes)
    h, w = layer.in_shape[1:3]
    taps = {Op.DEPTHWISE: layer.kernel[0] * layer.kernel[1], Op.MUL: 1}.get(layer.op, 0)
    record = g.quant_bytes if layer.op in (Op.DEPTHWISE, Op.ADD, Op.MUL, Op.GLOBAL_AVGPOOL) else 0
    inputs = 2 if layer.op is Op.ADD else 1
    table = 256 if prog.registers["ACT_TABLE"] else 0
    return planes * ((inputs * h * w + taps) * g.pixel_bytes + record) + table


# a transducer's joint: an add over (N, T, C) tensors, walked as one row of N * T pixels
JOINT = {"op": "add", "in_shape": [2, 3, 11], "out_channels": 11, "activation": "tanh", "zp_in": 4, "zp_in2": -9,
         "zp_out": 0, "in_scale": 0.04, "in2_scale": 0.07, "out_scale": 1 / 128, "pre_scale": 0.05, "zp_pre": 3}
CONV = {"op": "conv2d", "in_shape": [1, 5, 4, 6], "out_channels": 5, "kernel": [3, 3], "stride": [1, 1],
        "padding": "same", "activation": "relu", "zp_in": 3, "zp_out": -2, "in_scale": 0.05, "out_scale": 1.0}


@pytest.mark.parametrize("cfg", [pytest.param(VECTOR_CONFIGS[0], id="lanes8-d64"),
                                 pytest.param(VECTOR_CONFIGS[1], id="lanes4-d32", marks=pytest.mark.slow)])
def test_random_depthwise_pool_add_and_mul_layers_on_the_vector_unit_bit_exact(cfg, tmp_path):
    seed = cfg["lanes"]
    print(f"seed {seed}")
    specs = vector_specs(cfg, seed, 4, pools=4, muls=3, max_k=7 if cfg["lanes"] == 8 else 5)
    specs.insert(2, CONV)           # the array between depthwise layers: the engine follows the opcode
    specs.append(JOINT)
    measured = simulate(cfg, specs, tmp_path)
    progs = compiled(cfg, specs)
    for i, (got, prog, spec) in enumerate(zip(measured, progs, specs)):
        assert got["engine"] == ("array" if spec is CONV else "vector"), got
        assert got["dram_write_bytes"] == prog.output_bytes, got
        if spec is not CONV:
            assert got["dram_read_bytes"] == dram_read_bytes(prog, make_layer(spec, i)), got


def _mobilenet_depthwise(h, c, stride):
    return {"op": "depthwise", "in_shape": [1, h, h, c], "out_channels": c, "kernel": [3, 3],
            "stride": [stride, stride], "padding": "same", "activation": "relu6", "zp_in": -5, "zp_out": -128,
            "in_scale": 0.05, "out_scale": 0.05}


@pytest.mark.slow
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_3x3_on_pascal_fpga_keeps_the_lanes_busy(stride, tmp_path):
    """pascal-fpga's vector unit (8 lanes, 64-bit bus), DRAM latency 20, no backpressure: a 3x3
    depthwise on 14x14x144 keeps >= 80% of the lanes' MAC slots busy at stride 1 and 2.

    The next output row's input rows (and, at a channel tile's end, the next tile's record, taps
    and first rows) load into the line buffer's ring while this row computes."""
    from mensa.core.config import load, to_dict
    cfg = {"accelerator": to_dict(load("pascal-fpga").accelerator[0])}
    (r,) = simulate(cfg, [_mobilenet_depthwise(14, 144, stride)], tmp_path, pause=0.0, latency=(20, 20),
                    sim=simulators()[0])
    assert r["engine"] == "vector" and r["lanes"] == 8, r
    assert r["utilisation"] >= UTILISATION_FLOOR, r


ZOO_MODELS = ("mobilenet_v2", "mobilenet_v3_large", "resnet50")
REDUCED = 5         # spatial sizes above this are cut to it: the slow suite runs every distinct shape's
                    # channels, kernel, stride and padding, on planes a simulation gets through


def zoo_vector_specs():
    """The distinct depthwise and pool layers of the zoo's MobileNetV2, MobileNetV3-Large and ResNet-50,
    spatially reduced; a table activation (hard-swish) becomes relu6, which the vector unit runs."""
    from mensa.core.ir import same_padding
    from mensa.model import zoo
    ops = {Op.DEPTHWISE: "depthwise", Op.MAXPOOL: "maxpool", Op.AVGPOOL: "avgpool",
           Op.GLOBAL_AVGPOOL: "global_avgpool", Op.ADD: "add", Op.MUL: "mul"}
    specs, seen = [], set()
    for model in ZOO_MODELS:
        for layer in zoo.get(model).layers:
            if layer.op not in ops:
                continue
            _, h, w, c = layer.in_shape
            same = layer.op not in (Op.GLOBAL_AVGPOOL, Op.ADD, Op.MUL) and tuple(layer.padding) == (
                *same_padding(h, layer.kernel[0], layer.stride[0], layer.dilation[0]),
                *same_padding(w, layer.kernel[1], layer.stride[1], layer.dilation[1]))
            act = layer.activation.value if layer.activation.value in ("none", "relu", "relu6") else "relu6"
            spec = {"op": ops[layer.op], "in_shape": [1, min(h, REDUCED), min(w, REDUCED), c], "out_channels": c,
                    "activation": act, "zp_in": -3, "zp_out": 5, "in_scale": 0.05, "out_scale": 0.08}
            if layer.op is Op.MUL:
                spec.update(zp_in2=7, in2_scale=0.004)
            elif layer.op is Op.ADD:
                spec.update(zp_in2=-9, in2_scale=0.06)
            elif layer.op is not Op.GLOBAL_AVGPOOL:
                spec.update(kernel=list(layer.kernel), stride=list(layer.stride),
                            padding="same" if same else list(layer.padding))
            if layer.op is Op.DEPTHWISE:
                spec["dilation"] = list(layer.dilation)
            key = repr(sorted(spec.items()))
            if key not in seen:
                seen.add(key)
                specs.append(dict(spec, name=f"{model}:{layer.name}"))
    return specs


@pytest.mark.slow
def test_zoo_depthwise_pool_add_and_mul_shapes_on_pascal_fpga_bit_exact(tmp_path):
    """Every distinct depthwise, pool, add and mul shape of MobileNetV2, MobileNetV3-Large and ResNet-50 (planes cut
    to 5x5) on pascal-fpga's vector unit, DRAM latency 1-50 and random pauses: bit-exact, each input
    pixel read once."""
    from mensa.core.config import load, to_dict
    cfg = {"accelerator": to_dict(load("pascal-fpga").accelerator[0])}
    specs = zoo_vector_specs()
    assert len(specs) >= 20, len(specs)
    measured = simulate(cfg, specs, tmp_path, pause=0.1, latency=(1, 50), sim=simulators()[0])
    for i, (got, prog, spec) in enumerate(zip(measured, compiled(cfg, specs), specs)):
        assert got["engine"] == "vector", got
        assert got["dram_read_bytes"] == dram_read_bytes(prog, make_layer(spec, i)), (spec["name"], got)
