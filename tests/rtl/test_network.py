"""Whole networks on the RTL through the network compiler, the C runtime and the Verilator harness.

Every layer's output, captured as it finishes, must equal the golden model's run of the network
byte for byte; the DRAM answers with a read latency and random pauses on every AXI channel (the
seed is printed). The harness build is cached per design (build/sim/harness-*).
"""

import os
import random
import subprocess

import numpy as np
import pytest

from mensa.contract.header import header
from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation, Op
from mensa.contract.regs import register_map
from mensa.core.config import load
from mensa.gen.network_run import RUNTIME, compile_for_rtl, quantised, run_on_rtl
from mensa.model.schedule import schedule
from tests.contract.test_network import fire_net, residual_cnn


#: a small system: a 4x4 array and a 4-lane vector unit (its harness builds in a fraction of pascal-fpga's time)
SMALL = """name = "small"
[dram]
bandwidth_gbps = 0.4
latency_cycles = 20
[[accelerator]]
name = "pascal4"
kind = "systolic"
clock_mhz = 100.0
array = {rows = 4, cols = 4, dataflow = "ws"}
buffers = {weight_kib = 4, act_kib = 8, acc_kib = 4}
memory = {data_bits = 64}
vector = {lanes = 4, line_kib = 2}
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def _run(net, system_name, *, latency, pause, seed):
    system = load(system_name)
    qnet, params = quantised(net, seed)
    sched = schedule(qnet, system)
    rng = np.random.default_rng(seed)
    x = {name: rng.integers(-128, 128, size=shape, dtype=np.int8)
         for name, shape in (("input", qnet.input_shape), *qnet.extra_inputs)}
    print(f"{net.name} on {system_name}: seed {seed}, DRAM latency {latency}, pause {pause}")
    result = run_on_rtl(compile_for_rtl(qnet, params, system, sched), system, sched, [x], latency=latency,
                        pause=pause, seed=seed)
    wrong = [r.layer for r in result.layers if not r.bit_exact]
    assert not wrong, f"seed {seed}: layers {wrong} differ from the golden model"
    # every layer ran but the concats, which their producers laid out
    assert sorted(r.layer for r in result.layers) == sorted(l.name for l in qnet.layers if l.op is not Op.CONCAT)
    assert all(r.cycles > 0 and r.start >= 0 for r in result.layers)
    # an accelerator runs one layer at a time: its layers' spans do not overlap, in order
    for acc in {r.accelerator for r in result.layers}:
        mine = [r for r in result.layers if r.accelerator == acc]
        for a, b in zip(mine, mine[1:]):
            assert a.end <= b.start, (a.layer, b.layer)
    for r in result.layers:
        print(f"  {r.layer:10} {r.accelerator:8} {r.cycles:7,} cycles, model {r.predicted:9,.0f} ({r.error:+.1%})")
    return result


def test_a_residual_cnn_runs_whole_and_bit_exact_with_dram_latency_and_backpressure(small):
    seed = int(os.environ.get("MENSA_SEED", random.randrange(1 << 16)))
    latency = random.Random(seed).randint(1, 50)
    _run(residual_cnn(), small, latency=latency, pause=0.2, seed=seed)


def test_a_fire_module_concatenated_as_a_layout_runs_whole_and_bit_exact(small):
    seed = int(os.environ.get("MENSA_SEED", random.randrange(1 << 16)))
    latency = random.Random(seed).randint(1, 50)
    result = _run(fire_net(), small, latency=latency, pause=0.2, seed=seed)
    assert "fire" not in {r.layer for r in result.layers}


#: a hybrid system: the small systolic accelerator and a near-memory one with the LSTM datapath (2 vaults of 4
#: lanes), on a 32-bit bus, where a one-pixel tensor lies the same for both (an FC's output read in place)
HYBRID = SMALL.replace('name = "small"', 'name = "hybrid"').replace("data_bits = 64", "data_bits = 32") + """
[[accelerator]]
name = "pavlov2"
kind = "nearmem"
clock_mhz = 100.0
memory = {data_bits = 32}
nearmem = {vaults = 2, lanes = 4, vault_bits = 32, vault_kib = 16, local_kib = 4, lstm = true}
"""


@pytest.fixture
def hybrid(tmp_path):
    path = tmp_path / "hybrid.toml"
    path.write_text(HYBRID)
    return path


def tiny_captioner():
    """Two independent parts: a two-layer LSTM encoder over 4 frames (the second with a projection), and a
    CNN whose pooled features an FC embeds for a one-step LSTM and an FC that picks the word."""
    b = NetworkBuilder("tiny_captioner", (1, 8, 8, 3), kind="hybrid")
    s = b.lstm(b.add_input("frames", (1, 4, 12)), 16, name="enc0")
    b.lstm(s, 12, projection=8, name="enc1")
    x = b.conv(b.input, 8, 3, stride=2, activation=Activation.RELU, name="stem")
    x = b.fc(b.flatten(b.global_avgpool(x, name="gap")), 16, name="embed")
    x = b.lstm(b.reshape(x, (1, 1, 16)), 16, name="caption")
    b.fc(x, 8, name="word_out")
    return b.build()


def test_a_small_lstm_network_runs_whole_and_bit_exact_on_a_near_memory_and_a_systolic_accelerator(hybrid):
    seed = int(os.environ.get("MENSA_SEED", random.randrange(1 << 16)))
    latency = random.Random(seed).randint(1, 50)
    result = _run(tiny_captioner(), hybrid, latency=latency, pause=0.2, seed=seed)
    runs = {r.layer: r for r in result.layers}
    assert {runs[n].accelerator for n in ("enc0", "enc1", "caption")} == {"pavlov2"}
    assert runs["stem"].accelerator == "pascal4"
    # the two accelerators run at once: the encoder near memory while the CNN runs on the array
    assert runs["enc0"].start < runs["stem"].end and runs["stem"].start < runs["enc0"].end


@pytest.mark.slow
def test_a_seq2seq_the_vaults_hold_runs_whole_and_bit_exact_on_mensa_g_fpga():
    """The zoo's seq2seq structure (two encoder and two decoder LSTMs and the vocabulary FC) at a size
    mensa-g-fpga's vaults hold: its LSTMs run on pavlov, which has the LSTM datapath."""
    from mensa.model.zoo.sequence import seq2seq
    net = seq2seq(source_length=6, embedding=96, units=128, vocabulary=200)
    result = _run(net, "mensa-g-fpga", latency=20, pause=0.1, seed=5)
    runs = {r.layer: r for r in result.layers}
    assert {runs[n].accelerator for n in ("enc_lstm0", "enc_lstm1", "dec_lstm0", "dec_lstm1")} == {"pavlov"}


@pytest.mark.slow
def test_two_frames_of_captioning_pipeline_across_mensa_g_fpga_and_beat_one_after_the_other():
    """The zoo's captioning structure (a MobileNetV2 encoder, the image embedding concatenated with the
    previous word's, an LSTM and the vocabulary FC) at a size mensa-g-fpga holds (pavlov's LSTM datapath
    takes up to 336 hidden units): frame 1's CNN runs on pascal while frame 0's LSTM runs on pavlov, and
    two frames take fewer RTL cycles than two runs of one."""
    from mensa.model.zoo.sequence import captioning
    system = load("mensa-g-fpga")
    net, params = quantised(captioning(resolution=32, width=0.35, embedding=256, units=256, vocabulary=2000), 6)
    sched = schedule(net, system)
    rng = np.random.default_rng(6)
    xs = [{n: rng.integers(-128, 128, size=s, dtype=np.int8) for n, s in (("input", net.input_shape),
                                                                          *net.extra_inputs)} for _ in range(2)]
    one = run_on_rtl(compile_for_rtl(net, params, system, sched), system, sched, xs[:1], latency=20, seed=6)
    two = run_on_rtl(compile_for_rtl(net, params, system, sched, frames=2), system, sched, xs, latency=20, seed=6)
    assert one.bit_exact and two.bit_exact, [r.layer for r in two.layers if not r.bit_exact]
    runs = {(r.frame, r.layer): r for r in two.layers}
    assert runs[0, "lstm"].accelerator == "pavlov" and runs[1, "stem"].accelerator == "pascal"
    assert runs[1, "stem"].start < runs[0, "lstm"].end          # frame 1's CNN beside frame 0's LSTM
    print(f"captioning: one frame {one.total_cycles:,} cycles, two frames {two.total_cycles:,} "
          f"({two.total_cycles / (2 * one.total_cycles):.1%} of two runs)")
    assert two.total_cycles < 0.95 * 2 * one.total_cycles


def test_the_c_runtime_compiles_warning_free_as_c99(tmp_path):
    (tmp_path / "mensa_regs.h").write_text(header(register_map(load("pascal-fpga").accelerator[0]), prefix="mensa"))
    done = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(tmp_path),
                           "-I", str(RUNTIME), "-c", str(RUNTIME / "mensa_runtime.c"), "-o",
                           str(tmp_path / "mensa_runtime.o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


TWIN = SMALL.replace('name = "small"', 'name = "twin"') + SMALL.split("[[accelerator]]")[1].join(
    ["[[accelerator]]", ""]).replace('"pascal4"', '"pascal4b"')


@pytest.fixture
def twin(tmp_path):
    """A system of two small accelerators behind the system top."""
    path = tmp_path / "twin.toml"
    path.write_text(TWIN)
    return load(path)


def two_branches():
    """Two independent convs on the same input, then their sum: work for two accelerators at once."""
    b = NetworkBuilder("branches", (1, 10, 8, 8))
    left = b.pointwise(b.input, 12, activation=Activation.RELU, name="left")
    right = b.conv(b.input, 12, 3, activation=Activation.RELU, name="right")
    x = b.add(left, right, name="join")
    b.fc(b.flatten(b.global_avgpool(x, name="gap")), 4, name="logits")
    return b.build()


@pytest.mark.slow
def test_two_accelerators_behind_the_system_top_run_independent_layers_at_once(twin):
    system = twin
    net, params = quantised(two_branches(), 3)
    sched = schedule(net, system, pins={"left": "pascal4", "right": "pascal4b"})
    x = np.random.default_rng(3).integers(-128, 128, size=net.input_shape, dtype=np.int8)
    result = run_on_rtl(compile_for_rtl(net, params, system, sched), system, sched, [x], latency=20, pause=0.1,
                        seed=3)
    assert result.bit_exact, [r.layer for r in result.layers if not r.bit_exact]
    runs = {r.layer: r for r in result.layers}
    assert (runs["left"].accelerator, runs["right"].accelerator) == ("pascal4", "pascal4b")
    # the runtime issued both branches before either finished: their spans overlap
    assert runs["left"].start < runs["right"].end and runs["right"].start < runs["left"].end
    assert runs["join"].start >= max(runs["left"].end, runs["right"].end)


def a_chain():
    """A CNN in two halves: the first on one accelerator, the second on the other, a pipeline."""
    b = NetworkBuilder("chain", (1, 12, 10, 8))
    x = b.conv(b.input, 16, 3, activation=Activation.RELU, name="front")
    x = b.depthwise(x, 3, activation=Activation.RELU6, name="front_dw")
    x = b.pointwise(x, 16, activation=Activation.RELU, name="back")
    x = b.conv(x, 16, 3, activation=Activation.RELU, name="back_conv")
    b.fc(b.flatten(b.global_avgpool(x, name="gap")), 4, name="logits")
    return b.build()


@pytest.mark.slow
def test_two_frames_pipelined_over_two_accelerators_beat_running_them_one_after_the_other(twin):
    system = twin
    net, params = quantised(a_chain(), 4)
    pins = {"front": "pascal4", "front_dw": "pascal4"} | {n: "pascal4b" for n in ("back", "back_conv", "gap",
                                                                                   "logits")}
    sched = schedule(net, system, pins=pins)
    rng = np.random.default_rng(4)
    xs = [rng.integers(-128, 128, size=net.input_shape, dtype=np.int8) for _ in range(2)]
    one = run_on_rtl(compile_for_rtl(net, params, system, sched), system, sched, xs[:1], latency=20, seed=4)
    two = run_on_rtl(compile_for_rtl(net, params, system, sched, frames=2), system, sched, xs, latency=20, seed=4)
    assert one.bit_exact and two.bit_exact
    assert {r.frame for r in two.layers} == {0, 1}
    runs = {(r.frame, r.layer): r for r in two.layers}
    # frame 1's front half ran while frame 0's back half did
    assert runs[1, "front"].start < runs[0, "back_conv"].end
    print(f"one frame {one.total_cycles:,} cycles, two frames {two.total_cycles:,}")
    assert two.total_cycles < 2 * one.total_cycles
