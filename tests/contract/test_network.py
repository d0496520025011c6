"""The network compiler: one DRAM image, buffers reused only when dead, dependencies, one-line refusals."""

import numpy as np
import pytest

from mensa.contract.network import LIST_MAGIC, compile_network
from mensa.core.builder import NetworkBuilder
from mensa.core.config import load
from mensa.core.errors import CompileError
from mensa.core.ir import Activation
from mensa.gen.network_run import quantised
from mensa.model import zoo


def residual_cnn():
    """A small residual CNN: a 3-channel stem, an inverted residual block, a pool, odd channel counts."""
    b = NetworkBuilder("residual", (1, 12, 10, 3))
    x = b.conv(b.input, 16, 3, stride=2, activation=Activation.RELU6, name="stem")
    y = b.pointwise(x, 24, activation=Activation.RELU, name="expand")
    y = b.depthwise(y, 3, activation=Activation.RELU6, name="dw")
    y = b.pointwise(y, 16, name="project")
    x = b.add(x, y, name="residual")
    x = b.maxpool(x, 2, stride=2, name="pool")
    x = b.pointwise(x, 12, activation=Activation.RELU, name="head")
    x = b.flatten(b.global_avgpool(x, name="gap"))
    b.fc(x, 5, name="logits")
    return b.build()


def test_buffers_are_reused_only_after_their_last_reader_and_dependencies_follow():
    net, params = quantised(residual_cnn(), 0)
    system = load("pascal-fpga")
    prog = compile_network(net, params, system, {l.name: "pascal" for l in net.layers})
    names = [l.name for l in net.layers]
    last = {}
    for i, layer in enumerate(net.layers):
        for s in layer.inputs:
            last[s] = i
    constants_end = prog.image.size - prog.activation_bytes
    for i, cmd in enumerate(prog.commands):
        layer = net.layers[i]
        addr, size = cmd.output
        assert addr >= constants_end and addr + size <= prog.image.size
        for s in layer.inputs:
            if s in names:
                assert names.index(s) in cmd.deps, (layer.name, s)
        # no live tensor (produced earlier, read at or after i) shares a byte with this output
        for j in range(i):
            if last.get(names[j], -1) >= i:
                a, n = prog.commands[j].output
                assert addr + size <= a or a + n <= addr, (layer.name, names[j])
        assert all(d < i for d in cmd.deps)
    # the residual's input is still live while the block runs: more than two buffers are needed
    assert prog.activation_bytes >= 3 * 4096
    words = prog.command_list()
    assert words[0] == LIST_MAGIC and words[2] == len(net.layers)
    at = 3
    for cmd in prog.commands:
        assert words[at] == cmd.unit and tuple(words[at + 6:at + 6 + words[at + 1]]) == cmd.deps
        at += 6 + int(words[at + 1]) + 2 * int(words[at + 2])
    assert at == words.size


def test_the_host_writes_the_input_as_the_stem_reads_it():
    net, params = quantised(residual_cnn(), 0)
    prog = compile_network(net, params, load("pascal-fpga"), {l.name: "pascal" for l in net.layers})
    x = np.random.default_rng(3).integers(-128, 128, size=net.input_shape, dtype=np.int8)
    ((addr, blob),) = prog.input_writes([x])
    (index, region, name, at), = prog.host_inputs
    assert (index, region, name, at) == (0, "input", "input", addr)
    assert blob.size == prog.commands[0].program.regions["input"][1]
    assert blob.any()


def test_a_layer_on_a_near_memory_accelerator_is_refused_in_one_line():
    net, params = quantised(zoo.get("ds_cnn"), 0)
    placement = {l.name: "pascal" for l in net.layers} | {"fc": "jacquard"}
    with pytest.raises(CompileError) as e:
        compile_network(net, params, load("mensa-g-fpga"), placement)
    assert "\n" not in str(e.value) and "'fc'" in str(e.value) and "jacquard" in str(e.value)


def test_a_layout_the_reader_cannot_read_in_place_is_refused_in_one_line():
    b = NetworkBuilder("few", (1, 8, 8, 8))
    x = b.pointwise(b.input, 3, name="narrow")
    b.conv(x, 8, 3, name="packed")         # a 3-channel conv reads im2col rows: only the host writes them
    net, params = quantised(b.build(), 0)
    with pytest.raises(CompileError) as e:
        compile_network(net, params, load("pascal-fpga"), {l.name: "pascal" for l in net.layers})
    assert "\n" not in str(e.value) and "'packed'" in str(e.value) and "'narrow'" in str(e.value)


def test_a_placement_on_no_accelerator_of_the_system_is_refused():
    net, params = quantised(residual_cnn(), 0)
    with pytest.raises(CompileError, match="not an accelerator of the system"):
        compile_network(net, params, load("pascal-fpga"), {l.name: "pavlov" for l in net.layers})
