"""`mensa run-layer`: a layer runs on the accelerator's RTL bit-exactly; a user's mistake is one line, exit 2."""

import json
import shutil

import pytest

from mensa.gen.cli import main
from mensa.gen.layer_spec import parse_layer

SMALL = """name = "small"
[[accelerator]]
name = "pascal4"
kind = "systolic"
clock_mhz = 100.0
array = {rows = 4, cols = 4, dataflow = "ws"}
buffers = {acc_kib = 1}
memory = {data_bits = 64}
"""
OS = SMALL.replace('"ws"', '"os"')
# the near-memory accelerator tests/rtl/test_nearmem_accelerator.py builds (WIDE): the same build
NEARMEM = """name = "nm"
[[accelerator]]
name = "dut"
kind = "nearmem"
memory = {data_bits = 64}
nearmem = {vaults = 3, lanes = 4, vault_bits = 64, vault_kib = 64, local_kib = 4, lstm = true}
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
def test_a_conv_layer_runs_bit_exact_and_reports_cycles(small, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run-layer", "--config", str(small), "--layer", "conv2d:in=5x6x6,out=5,kernel=3,stride=2,"
                 "padding=same,act=relu6", "--latency", "1-30", "--pause", "0.2", "--sim", "icarus",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bit-exact with the golden model" in text and "utilisation" in text
    r = json.loads(out.read_text())
    # 3x3 / 2 'same' on 5x6: 3x3 outputs, K = 9 taps x 6 channels, N = 5.
    assert (r["m"], r["k"], r["n"], r["macs"]) == (9, 54, 5, 9 * 54 * 5)
    assert r["ideal_cycles"] == -(-r["macs"] // 16) <= r["cycles"]
    assert r["utilisation"] == pytest.approx(r["macs"] / (16 * r["cycles"]))
    assert 0 < r["busy"] <= r["cycles"] and r["dram_write_bytes"] >= 9 * 8    # 9 pixels of one 8-byte word
    assert r["bit_exact"] and r["array"] == "4x4" and r["latency"] == [1, 30]


@pytest.mark.parametrize("args,message", [
    (["--layer", "conv3d:in=3"], "layer op 'conv3d' is not run; allowed: conv2d, depthwise, pointwise, fc"),
    (["--layer", "conv2d:in=8x8x3,out=4,kernal=3"], "'kernal=3' is not a setting; allowed: in=..."),
    (["--layer", "conv2d:in=8x8,out=4"], "in='8x8' is not HxWxC or NxHxWxC"),
    (["--layer", "fc:in=64"], "out=... (the output channels) is missing"),
    (["--layer", "pointwise:in=4x4x8,out=8,act=gelu"], "act='gelu' is not run; allowed: none, relu, relu6, sigmoid, tanh, hard_swish, hard_sigmoid"),
    (["--layer", "conv2d:in=8x8x4,out=4,padding=1x2x3"], "padding='1x2x3' is not allowed"),
    (["--layer", "conv2d:in=8x8x4,out=4,kernel=0"], "kernel='0' is not a size"),
    (["--layer", "resnet99:3"], "'resnet99' is neither a layer op nor a zoo model"),
    (["--layer", "mobilenet_v2:nope"], "mobilenet_v2 has no layer 'nope'"),
    (["--layer", "mobilenet_v2:999"], "layer index 999 is out of range"),
    # a mul runs on a vector unit, and this accelerator has none
    (["--layer", "mobilenet_v3_small:b0_se_scale"], "mul is not run; allowed: fc, conv2d"),
    (["--layer", "fc"], "has no ':'"),
    (["--layer", "fc:in=8,out=8", "--latency", "0"], "--latency '0' is not allowed"),
    (["--layer", "fc:in=8,out=8", "--latency", "9-3"], "--latency '9-3' is not allowed"),
    (["--layer", "fc:in=8,out=8", "--pause", "1.5"], "argument --pause: 1.5 is out of range; allowed: a number in [0, 1)"),
    (["--layer", "fc:in=8,out=8", "--accelerator", "pavlov"], "no accelerator 'pavlov' in 'small'; allowed: pascal4"),
    (["--layer", "lstm:in=4x8,hidden=8"], "layer 'lstm': lstm is not run; allowed: fc, conv2d"),
    # a 5x5 kernel over 4096 channels: one output pixel's window is 25 x 1024 vectors of 4
    (["--layer", "conv2d:in=8x8x4096,out=8,kernel=5"],
     "one output pixel reads 25600 input vectors (1024 channel tiles of 4); the activation scratchpad holds "
     "4096 per half (buffers.act_kib 32); allowed:"),
])
def test_a_mistake_is_one_line_and_exit_2(small, tmp_path, capsys, args, message):
    out = tmp_path / "r.json"
    assert main(["run-layer", "--config", str(small), "--json", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


@pytest.fixture
def nearmem(tmp_path):
    path = tmp_path / "nm.toml"
    path.write_text(NEARMEM)
    return path


def test_an_lstm_layer_runs_bit_exact_on_a_near_memory_accelerator(nearmem, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run-layer", "--config", str(nearmem), "--layer", "lstm:in=3x20,hidden=10,proj=6",
                 "--latency", "1-30", "--vault-latency", "1-20", "--pause", "0.2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bit-exact with the golden model" in text and "3 time steps" in text
    r = json.loads(out.read_text())
    assert r["out_shape"] == [1, 3, 6] and r["bit_exact"] and r["vault_latency"] == [1, 20]
    assert r["macs"] == 3 * (4 * 10 * (20 + 6) + 10 * 6) and 0 < r["busy"] <= r["cycles"]
    # three x_t of 20 bytes, each in 3 words of 8; three h_t of 6 channels, padded to 3 vaults x 4 lanes
    assert (r["dram_read_bytes"], r["dram_write_bytes"]) == (3 * 24, 3 * 16)


@pytest.mark.parametrize("layer,message", [
    ("conv2d:in=8x8x4,out=4,kernel=3", "layer 'layer0': conv2d with a 3x3 kernel is not a matrix-vector product"),
    ("lstm:in=4x8,hidden=4000", "layer 'lstm': 4000 recurrent features do not fit an input bank"),
    ("lstm:in=4x8", "lstm layer: hidden=... (the hidden units) is missing"),
    ("lstm:in=2x4x8,hidden=8", "lstm layer: in='2x4x8' is not STEPSxFEATURES (one sequence)"),
])
def test_a_layer_the_near_memory_compiler_refuses_is_one_line_and_exit_2(nearmem, capsys, layer, message):
    assert main(["run-layer", "--config", str(nearmem), "--layer", layer]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_an_output_stationary_config_is_refused_before_any_build(tmp_path, capsys):
    path = tmp_path / "os.toml"
    path.write_text(OS)
    assert main(["run-layer", "--config", str(path), "--layer", "fc:in=8,out=8"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'os'" in err and "allowed: 'ws'" in err


def test_zoo_layers_keep_their_shapes():
    stem = parse_layer("mobilenet_v2:0")
    assert stem["name"] == "mobilenet_v2:stem" and stem["op"] == "conv2d"
    assert stem["in_shape"] == [1, 224, 224, 3] and stem["kernel"] == [3, 3] and stem["stride"] == [2, 2]
    dw = parse_layer("depthwise:in=56x56x32,kernel=3,stride=2,padding=same")
    assert dw["out_channels"] == 32 and dw["in_shape"] == [1, 56, 56, 32]
    assert parse_layer("fc:in=1024,out=10")["in_shape"] == [1, 1024]
    assert parse_layer("lstm:in=20x64,hidden=128,proj=32") == {"op": "lstm", "steps": 20, "in": 64, "hidden": 128,
                                                              "projection": 32}
    # the same seed, the same quantisation; another seed, another
    assert parse_layer("fc:in=8,out=8", 3) == parse_layer("fc:in=8,out=8", 3) != parse_layer("fc:in=8,out=8", 4)
