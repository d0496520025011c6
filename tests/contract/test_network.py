"""The network compiler: one DRAM image, buffers reused only when dead, dependencies, one-line refusals."""

from dataclasses import replace

import numpy as np
import pytest

from mensa.contract.compiler import compile_layer
from mensa.contract.network import LIST_MAGIC, compile_network
from mensa.core import golden
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
    (h,) = prog.host_inputs
    assert (h.frame, h.name, h.address, h.command, h.region) == (0, "input", addr, 0, "input")
    assert blob.size == prog.commands[0].program.regions["input"][1]
    assert blob.any()


def test_a_layer_near_memory_reads_its_producers_output_in_place_and_keeps_its_weights_in_the_vaults():
    net, params = quantised(zoo.get("ds_cnn"), 0)
    system = load("mensa-g-fpga")
    placement = {l.name: "pascal" for l in net.layers} | {"fc": "jacquard"}
    prog = compile_network(net, params, system, placement)
    units = [a.name for a in prog.accelerators]
    assert units == [a.name for a in system.accelerator]
    fc = next(c for c in prog.commands if c.layer == "fc")
    assert fc.unit == units.index("jacquard") and fc.registers["BASE"] == 0
    gap = next(c for c in prog.commands if c.layer == net["fc"].inputs[0])
    assert fc.registers["INPUT_ADDR"] == gap.output[0] and gap.unit == units.index("pascal")
    vaults = prog.vaults[fc.unit]
    assert len(vaults) == 4 and prog.vaults[units.index("pascal")] is None
    for v, image in enumerate(fc.program.vault_images):
        assert np.array_equal(vaults[v][:image.size], image)
    assert not any(prog.vaults[units.index("pavlov")][v].size for v in range(4))


def lstm_stack():
    b = NetworkBuilder("stack", (1, 3, 24), kind="lstm")
    x = b.lstm(b.input, 32, name="l0")
    x = b.lstm(x, 32, name="l1")
    b.fc(x, 10, name="out")
    return b.build()


def test_the_layers_of_a_near_memory_accelerator_lie_one_after_another_in_its_vaults():
    net, params = quantised(lstm_stack(), 2)
    system = load("mensa-g-fpga")
    prog = compile_network(net, params, system, {l.name: "pavlov" for l in net.layers})
    word = system["pavlov"].nearmem.vault_bits // 8
    base = 0
    for cmd in prog.commands:
        assert cmd.registers["BASE"] == base == cmd.program.vault_base
        for v, image in enumerate(cmd.program.vault_images):
            assert np.array_equal(prog.vaults[cmd.unit][v][base * word:base * word + image.size], image)
        base += cmd.program.unit.words
    assert prog.vaults[prog.commands[0].unit][0].size == base * word
    # each LSTM reads its producer's h vectors in place
    assert prog.commands[1].registers["INPUT_ADDR"] == prog.commands[0].output[0]


def test_layers_whose_vault_images_do_not_fit_together_are_refused_with_by_how_much():
    net, params = quantised(lstm_stack(), 2)
    small = load("mensa-g-fpga")
    pavlov = small["pavlov"]
    one = compile_layer(pavlov, net["l0"], params["l0"], np.zeros(net["l0"].in_shape, np.int8)).unit.words
    two = compile_layer(pavlov, net["l1"], params["l1"], np.zeros(net["l1"].in_shape, np.int8)).unit.words
    word = pavlov.nearmem.vault_bits // 8
    kib = (one + two - 1) * word // 1024                     # room for l0, not for l0 and l1
    tight = replace(small, accelerator=tuple(replace(a, nearmem=replace(a.nearmem, vault_kib=kib))
                                             if a.name == "pavlov" else a for a in small.accelerator))
    words = kib * 1024 // word
    assert one <= words < one + two
    with pytest.raises(CompileError) as e:
        compile_network(net, params, tight, {l.name: "pavlov" for l in net.layers})
    text = str(e.value)
    assert "\n" not in text and "'pavlov'" in text and "'l1'" in text
    assert f"{one + two:,} words" in text and f"by {one + two - words:,}" in text


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


def fire_net(hint=True):
    """A fire module (squeeze, 1x1 and 3x3 expands concatenated) with a network input concatenated
    beside them; one expand is also read on its own."""
    b = NetworkBuilder("fire", (1, 10, 12, 3))
    x = b.conv(b.input, 16, 3, stride=2, activation=Activation.RELU, name="stem")
    s = b.pointwise(x, 8, activation=Activation.RELU, name="squeeze")
    e1 = b.pointwise(s, 16, activation=Activation.RELU, name="e1")
    e3 = b.conv(s, 8, 3, activation=Activation.RELU, name="e3")
    parts = (e1, e3, b.add_input("hint", (1, 5, 6, 8))) if hint else (e1, e3)
    cat = b.concat(*parts, name="fire")
    y = b.add(b.pointwise(cat, 12, name="head"), b.pointwise(e1, 12, name="side"), name="join")
    b.fc(b.flatten(b.global_avgpool(y, name="gap")), 4, name="logits")
    return b.build()


def test_a_concat_is_a_layout_its_producers_and_the_host_write_side_by_side():
    net, params = quantised(fire_net(), 0)
    assert params["fire"].input_multipliers == (None, None, None)       # its inputs share its quantisation
    prog = compile_network(net, params, load("pascal-fpga"), {l.name: "pascal" for l in net.layers})
    cmds = {c.layer: (i, c) for i, c in enumerate(prog.commands)}
    assert "fire" not in cmds and len(prog.commands) == len(net.layers) - 1
    (_, e1), (_, e3) = cmds["e1"], cmds["e3"]
    tiles = prog.commands[0].program.layouts["output"].tile
    e1_bytes = e1.program.regions["output"][1]
    assert e3.output[0] == e1.output[0] + e1_bytes == e1.output[0] + 16 // tiles * 5 * 6 * 8
    (hint,) = [h for h in prog.host_inputs if h.name == "hint"]
    assert hint.command is None and hint.address == e3.output[0] + e3.program.regions["output"][1]
    head_i, head = cmds["head"]
    assert head.registers["INPUT_ADDR"] == e1.output[0]
    assert {cmds["e1"][0], cmds["e3"][0]} <= set(head.deps)
    # the host lays the network input out as the concat's planes
    x = {"input": np.zeros(net.input_shape, np.int8), "hint": np.arange(240, dtype=np.int64).astype(np.int8)}
    writes = dict(prog.input_writes([x]))
    planes = writes[hint.address].reshape(1, 30, 8)
    assert np.array_equal(planes.view(np.int8), x["hint"].reshape(1, 30, 8))
    # the buffer is not reused while "side" (after the concat's readers) still reads e1
    side_i, side = cmds["side"]
    lo, hi = e1.output[0], hint.address + hint.layout.bytes
    for i, c in enumerate(prog.commands):
        if head_i < i < side_i or i == side_i:
            assert c.output[0] + c.output[1] <= lo or c.output[0] >= hi, c.layer


def test_layout_packs_a_tensor_as_the_engines_lay_it_out():
    net, params = quantised(fire_net(hint=False), 0)
    prog = compile_network(net, params, load("pascal-fpga"), {l.name: "pascal" for l in net.layers})
    x = np.random.default_rng(5).integers(-128, 128, size=net.input_shape, dtype=np.int8)
    ((_, blob),) = prog.input_writes([x])
    stem = prog.commands[0].program
    assert stem.layouts["input"].bytes == stem.regions["input"][1]
    squeeze = prog.commands[1].program
    y = np.random.default_rng(6).integers(-128, 128, size=(1, 5, 6, 16), dtype=np.int8)
    want = compile_layer(load("pascal-fpga").accelerator[0], net["squeeze"], params["squeeze"], y).region("input")
    assert np.array_equal(squeeze.layouts["input"].pack(y), want)


@pytest.mark.parametrize("case, expect", [
    ("unaligned", "multiple of 8 channels"),
    ("requantised", "quantised unlike its output"),
])
def test_a_concat_that_cannot_be_a_layout_is_refused_in_one_line(case, expect):
    b = NetworkBuilder("bad", (1, 6, 6, 8))
    x = b.pointwise(b.input, 12 if case == "unaligned" else 8, name="a")
    y = b.pointwise(b.input, 8, name="b")
    b.pointwise(b.concat(x, y, name="cat"), 8, name="head")
    net, params = quantised(b.build(), 0)
    if case == "requantised":       # as an imported QLinearConcat may come: an input of a scale of its own
        cat = net["cat"]
        first = replace(cat.quant.inputs[0], scale=cat.quant.inputs[0].scale * 2)
        cat = replace(cat, quant=replace(cat.quant, inputs=(first, *cat.quant.inputs[1:])))
        net = replace(net, layers=tuple(cat if l.name == "cat" else l for l in net.layers))
        params = params | {"cat": golden.layer_params(cat)}
    with pytest.raises(CompileError) as e:
        compile_network(net, params, load("pascal-fpga"), {l.name: "pascal" for l in net.layers})
    assert "\n" not in str(e.value) and "'cat'" in str(e.value) and expect in str(e.value), str(e.value)


def test_with_the_models_cycles_an_accelerator_takes_the_next_frame_while_its_layer_waits_on_another():
    """Frame 0's word_out on the array waits for the LSTM near memory: with the cycles, frame 1's stem is
    listed first on the array; without, the list is the network's, frame by frame. Either order is
    topological (every dependency earlier), so the runtime cannot deadlock."""
    b = NetworkBuilder("cap", (1, 8, 8, 8), kind="hybrid")
    x = b.conv(b.input, 8, 3, stride=2, activation=Activation.RELU, name="stem")
    x = b.fc(b.flatten(b.global_avgpool(x, name="gap")), 32, name="embed")
    x = b.lstm(b.reshape(x, (1, 1, 32)), 32, name="lstm")
    b.fc(x, 16, name="word_out")
    net, params = quantised(b.build(), 1)
    placement = {"stem": "pascal", "gap": "pascal", "embed": "pascal", "lstm": "pavlov", "word_out": "pascal"}
    cycles = {"stem": 1000, "gap": 100, "embed": 100, "lstm": 5000, "word_out": 100}
    system = load("mensa-g-fpga")
    plain = compile_network(net, params, system, placement, frames=2)
    ordered = compile_network(net, params, system, placement, frames=2, cycles=cycles)
    for prog in (plain, ordered):
        assert all(d < i for i, cmd in enumerate(prog.commands) for d in cmd.deps)
        for h in prog.host_inputs:
            assert prog.commands[h.command].frame == h.frame and prog.commands[h.command].layer == "stem"
    names = [(c.frame, c.layer) for c in plain.commands]
    assert names == [(f, n) for f in (0, 1) for n in ("stem", "gap", "embed", "lstm", "word_out")]
    names = [(c.frame, c.layer) for c in ordered.commands]
    assert names.index((1, "stem")) < names.index((0, "word_out"))
    assert sorted(names) == sorted((f, n) for f in (0, 1) for n in cycles)
    # the same commands, dependencies renumbered
    by_name = {(c.frame, c.layer): c for c in plain.commands}
    for c in ordered.commands:
        was = by_name[c.frame, c.layer]
        assert {ordered.commands[d].layer for d in c.deps} == {plain.commands[d].layer for d in was.deps}
