"""One source of truth: where the scheduler puts a layer that mensa hardware runs, that
accelerator's compiler accepts it.

Every zoo model is scheduled on mensa-g and on each single-accelerator preset; every placement of
a layer some mensa hardware runs (:func:`mensa.contract.compiler.in_hardware`) is compiled for its
accelerator with the model's quantised parameters. A model some layer of which no accelerator of
the system runs is refused in one line naming the layer, its op and every accelerator.
"""

import functools

import numpy as np
import pytest

from mensa.contract.compiler import compile_layer, engine, in_hardware, refusal
from mensa.core.config import load
from mensa.gen.network_run import quantised as quantised_network
from mensa.model import zoo
from mensa.model.schedule import ScheduleError, schedule

SYSTEMS = ("mensa-g", "pascal", "pavlov", "jacquard", "mensa-g-fpga", "pascal-fpga", "pavlov-fpga")
FAST = {("ds_cnn", "mensa-g"), ("ds_cnn", "pascal-fpga"), ("mobilenet_v2", "mensa-g"), ("seq2seq", "pavlov")}


@functools.cache
def quantised(name):
    return quantised_network(zoo.get(name), 0)


def _cases():
    for model in zoo.names():
        for system in SYSTEMS:
            marks = () if (model, system) in FAST else (pytest.mark.slow,)
            yield pytest.param(model, system, marks=marks, id=f"{model}-{system}")


@pytest.mark.parametrize("model, system_name", list(_cases()))
def test_every_placement_compiles_or_the_model_is_refused_in_one_line(model, system_name):
    system = load(system_name)
    net, params = quantised(model)
    try:
        sched = schedule(net, system)
    except ScheduleError as e:
        text = str(e)
        assert "\n" not in text and "no accelerator of" in text
        assert any(f"layer {l.name!r} ({l.op.value})" in text for l in net.layers), text
        assert all(f"{a.name}: " in text for a in system.accelerator), text
        return
    accs = {a.name: a for a in system.accelerator}
    layers = {l.name: l for l in net.layers}
    rng = np.random.default_rng(1)
    compiled = 0
    for p in sched.placements:
        layer, acc = layers[p.layer], accs[p.accelerator]
        if not in_hardware(layer, acc):
            continue
        if engine(acc, layer) == "layout":      # a concat: nothing to compile, its producers lay it out
            assert not refusal(acc, layer)
            continue
        xs = tuple(rng.integers(-128, 128, size=shape, dtype=np.int8)
                   for shape in (layer.in_shape, *layer.extra_in_shapes))
        compile_layer(acc, layer, params[layer.name], xs if len(xs) > 1 else xs[0])
        compiled += 1
    assert compiled >= 1
