"""The systolic accelerator's Verilog runs every distinct conv, depthwise, pointwise and FC layer shape of
MobileNetV2 (mensa.model.zoo) bit-exactly, spatially reduced to keep the simulation short.

The shapes come from the zoo's network (channel counts, kernels, strides, activations as
they are); each layer's input is cut to at most 4x4 pixels (TFLite 'same' padding again for
the cut size), through cocotbext-axi DRAM with latency and backpressure.
"""

import math

import pytest

from mensa.core.ir import Op, same_padding
from mensa.model.zoo import mobilenet_v2

from mensa.sim.runner import simulators

from tests.rtl.test_accelerator import simulate

SIDE = 4        # largest input height/width simulated


def mobilenet_v2_specs():
    """The distinct (op, kernel, stride, channels, activation) layers of MobileNetV2 as testbench specs."""
    specs, seen = [], set()
    for layer in mobilenet_v2(resolution=32).layers:
        if layer.op not in (Op.CONV2D, Op.DEPTHWISE, Op.FC):
            continue
        if layer.op is Op.FC:
            key = ("fc", layer.in_channels, layer.out_channels)
            spec = {"op": "fc", "in_shape": [1, layer.in_channels]}
        else:
            _, h, w, c = layer.in_shape
            h, w = min(h, SIDE), min(w, SIDE)
            kh, kw = layer.kernel
            pad = [*same_padding(h, kh, layer.stride[0]), *same_padding(w, kw, layer.stride[1])]
            if layer.padding == (0, 0, 0, 0):
                pad = [0, 0, 0, 0]
            key = (layer.op, layer.kernel, layer.stride, c, layer.out_channels, layer.activation)
            spec = {"op": layer.op.value, "in_shape": [1, h, w, c], "kernel": list(layer.kernel),
                    "stride": list(layer.stride), "padding": pad, "dilation": list(layer.dilation)}
        if key in seen:
            continue
        seen.add(key)
        taps = layer.macs // math.prod(layer.out_shape)        # products summed per output
        spec.update({"out_channels": layer.out_channels, "activation": layer.activation.value,
                     "zp_in": -7 + len(specs), "zp_out": 3, "in_scale": 0.05, "out_scale": 0.1 * taps ** 0.5})
        specs.append(spec)
    return specs


def test_the_distinct_shapes_cover_every_kind():
    specs = mobilenet_v2_specs()
    kinds = {(s["op"], tuple(s.get("kernel", (1, 1))), tuple(s.get("stride", (1, 1)))) for s in specs}
    assert {("conv2d", (3, 3), (2, 2)), ("depthwise", (3, 3), (1, 1)), ("depthwise", (3, 3), (2, 2)),
            ("conv2d", (1, 1), (1, 1)), ("fc", (1, 1), (1, 1))} <= kinds
    assert len(specs) >= 25


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols", [(8, 8), (4, 4)])
def test_every_distinct_mobilenet_v2_layer_bit_exact(rows, cols, tmp_path):
    specs = mobilenet_v2_specs()
    # (the 1280 x 1000 classifier alone is 20000 passes of an 8x8 array: Verilator)
    measured = simulate({"rows": rows, "cols": cols, "data_bits": 64, "acc_kib": 1}, specs, tmp_path,
                        latency=(1, 50), pause=0.1, sim=simulators()[0])
    assert len(measured) == len(specs)


@pytest.mark.slow
def test_a_mobilenet_v2_inverted_bottleneck_bit_exact(tmp_path):
    """Expansion, stride-2 depthwise and projection of one block, channel counts cut to a quarter."""
    block = [s for s in mobilenet_v2_specs() if s["in_shape"][-1] in (24, 144) and s["op"] != "fc"][:3]
    for spec in block:
        spec["in_shape"][-1] = -(-spec["in_shape"][-1] // 4)
        spec["out_channels"] = -(-spec["out_channels"] // 4)
    assert [s["op"] for s in block] == ["conv2d", "depthwise", "conv2d"]
    simulate({"rows": 8, "cols": 8, "data_bits": 64, "acc_kib": 1}, block, tmp_path)
