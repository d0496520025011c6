"""The Edge TPU preset is a model of the Coral Edge TPU: its four published latencies within 25% and in
their order; its template terms (parameter cache, depthwise on SIMD lanes, efficiency) act only where
a template asks for them."""

import dataclasses

import numpy as np
import pytest

from mensa.core.config import load
from mensa.model import zoo
from mensa.model.cost import evaluate
from mensa.model.schedule import schedule

CORAL_MS = {"mobilenet_v2": 2.3, "efficientnet_edgetpu_s": 5.0, "efficientnet_edgetpu_m": 7.3,
            "efficientnet_edgetpu_l": 21.3}      # reference/SEEDS.md section 5


@pytest.fixture(scope="module")
def predicted():
    system = load("edgetpu")
    return {m: schedule(zoo.get(m), system).latency_s * 1e3 for m in CORAL_MS}


@pytest.mark.parametrize("model", CORAL_MS)
def test_the_preset_predicts_coral_within_a_quarter(predicted, model):
    assert predicted[model] == pytest.approx(CORAL_MS[model], rel=0.25)


def test_the_preset_orders_the_models_as_coral_does(predicted):
    assert sorted(CORAL_MS, key=predicted.get) == sorted(CORAL_MS, key=CORAL_MS.get)


def _template(system, **changes):
    a = system.accelerator[0]
    return dataclasses.replace(a, edgetpu=dataclasses.replace(a.edgetpu, **changes))


def test_the_parameter_cache_keeps_the_first_8_mib_of_parameters_on_chip():
    system = load("edgetpu")
    net = zoo.get("efficientnet_edgetpu_l")               # 10.5 MB of parameters: the last layers stream
    cost = evaluate(net.layers, [system.accelerator[0], _template(system, param_cache=False)], system.dram)
    cached, always = cost.dram_weight_bytes[:, 0], cost.dram_weight_bytes[:, 1]
    upto = cost.layers.param_upto
    assert np.all(cached[upto <= 8 << 20] == 0)
    assert np.all(cached[upto > 8 << 20] == always[upto > 8 << 20])
    assert always.sum() > cached.sum() > 0


def test_template_terms_off_leave_a_template_as_before():
    system = load("edgetpu")
    plain = _template(system, param_cache=False, depthwise_lanes=False, efficiency=1.0)
    bare = dataclasses.replace(plain, edgetpu=None)       # the same array, buffers from the template's memories
    bare = dataclasses.replace(bare, buffers=dataclasses.replace(
        bare.buffers, weight_kib=128 * 64, act_kib=2048 * 16))
    net = zoo.get("mobilenet_v2")
    a = evaluate(net.layers, [plain], system.dram)
    dram = dataclasses.replace(system.dram, bandwidth_gbps=0.3)      # the template's I/O bound
    b = evaluate(net.layers, [bare], dram)
    # the bare array runs what its compiler accepts, a few-channel conv over its im2col rows, and streams
    # every layer's activations through DRAM; the template is modelled, tap by tap, and keeps what fits on
    # chip: the array's work is the same, the DRAM traffic not
    built = b.supported[:, 0] & ~b.layers.packed
    assert built.sum() >= 50 and a.supported.all()
    assert np.array_equal(a.compute[built], b.compute[built])
    assert np.array_equal(a.dram_weight_bytes[built], b.dram_weight_bytes[built])


def test_depthwise_on_the_lanes_keeps_every_lane_busy():
    system = load("edgetpu")
    net = zoo.get("mobilenet_v2")
    acc = _template(system, param_cache=False, efficiency=1.0)
    cost = evaluate(net.layers, [acc], system.dram)
    dw = [i for i, l in enumerate(net.layers) if l.op.value == "depthwise"]
    macs = np.array([net.layers[i].macs for i in dw])
    assert np.all(cost.compute[dw, 0] == np.ceil(macs / 4096))
