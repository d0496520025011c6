"""The layouts the scheduler checks tensors against are the ones the compilers give their programs."""

import numpy as np
import pytest

from mensa.contract.compiler import compile_layer, layouts, refusal
from mensa.core.builder import NetworkBuilder
from mensa.core.config import load
from mensa.core.ir import Op
from mensa.gen.network_run import quantised
from mensa.model import zoo


def _sequence():
    b = NetworkBuilder("seq", (1, 3, 40), kind="lstm")
    x = b.lstm(b.input, 24, name="l0")
    x = b.lstm(x, 20, projection=12, name="l1")
    b.fc(x, 33, name="fc")
    return b.build()


@pytest.mark.parametrize("model", ["ds_cnn", "mobilenet_v2", "sequence"])
@pytest.mark.parametrize("system", ["mensa-g-fpga", "pascal-fpga"])
def test_layouts_from_shapes_are_the_compilers(model, system):
    net = _sequence() if model == "sequence" else zoo.get(model)
    qnet, params = quantised(net, 1)
    seen = 0
    for layer in qnet.layers[:24]:
        if layer.op is Op.CONCAT:
            continue
        for acc in load(system).accelerator:
            if refusal(acc, layer):
                continue
            xs = tuple(np.zeros(sh, np.int8) for sh in (layer.in_shape, *layer.extra_in_shapes))[:len(layer.inputs)]
            prog = compile_layer(acc, layer, params[layer.name], xs if len(xs) > 1 else xs[0])
            assert layouts(acc, layer) == prog.layouts, (layer.name, acc.name)
            seen += 1
    assert seen >= (1 if (model, system) == ("sequence", "pascal-fpga") else 4)   # no LSTM on pascal
