"""`mensa run`: a whole network on the RTL, every layer bit-exact, JSON and a timeline; a mistake is one line, exit 2."""

import json

import numpy as np
import onnx
import pytest

from mensa.core.quant import quantize_weights
from mensa.gen.cli import main
from mensa.gen.cmd_run import load_network
from mensa.gen.network_run import quantised
from tests.model.test_onnx_edge_models import squeezenet_like
from tests.rtl.test_network import small  # noqa: F401  (a fixture: the small system's TOML)


def test_ds_cnn_runs_whole_on_a_small_system_and_writes_json_and_a_timeline(small, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "t.png"
    assert main(["run", "ds_cnn", "--system", str(small), "--latency", "7", "--pause", "0.1", "--seed", "5", "--json", str(out),
                 "--timeline", str(png)]) == 0
    text = capsys.readouterr().out
    assert "11 of 11 layers bit-exact with the golden model" in text and "cycles/s" in text
    r = json.loads(out.read_text())
    assert r["bit_exact"] and r["network"] == "ds_cnn" and len(r["layers"]) == 11 and r["latency"] == 7
    assert r["layer_cycles"] == sum(l["cycles"] for l in r["layers"]) <= r["total_cycles"]
    assert {l["engine"] for l in r["layers"]} == {"gemm", "vector"}
    # every layer reads its input and writes its output through DRAM
    assert all(l["read_bytes"] > 0 and l["written_bytes"] > 0 for l in r["layers"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_onnx_model_runs_with_its_own_weights_and_its_concats_as_layouts(small, tmp_path, capsys):
    path = tmp_path / "squeezenet_like.onnx"
    onnx.save(squeezenet_like(np.random.default_rng(0)), path)
    assert main(["run", str(path), "--system", str(small), "--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "10 of 10 layers bit-exact" in text and "concat f0_cat, f1_cat: a layout, no command" in text
    # its own weights, not random ones: the seed moves only the calibration input
    net, weights, params = load_network(str(path))
    assert params is None and set(weights) == {l.name for l in net.layers if l.op.value == "conv2d"}
    for seed in (1, 2):
        _, params = quantised(net, seed, weights)
        assert np.array_equal(params["stem"].weights, quantize_weights(weights["stem"].weights)[0])


@pytest.mark.parametrize("argv, text", [
    (["run", "nosuch"], "unknown model 'nosuch'"),
    (["run", "captioning"], "no accelerator of pascal-fpga can run it"),
    (["run", "seq2seq", "--system", "mensa-g-fpga"], "1024 hidden units need 256 gate groups"),
    (["run", "ds_cnn", "--pin", "fc=nosuch"], "no accelerator 'nosuch'"),
    (["run", "ds_cnn", "--latency", "0"], "--latency"),
    (["run", "ds_cnn", "--pause", "1.5"], "--pause"),
])
def test_a_mistake_is_one_line_and_exit_2(argv, text, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(argv + ["--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_a_network_whose_vault_images_do_not_fit_together_is_one_line_saying_by_how_much(tmp_path, capsys):
    """Every LSTM of seq2seq fits a 16 MiB stack alone; together they do not (slow: quantising its 46 M
    parameters; tests/contract/test_network.py checks the compiler's message on a small network)."""
    system = tmp_path / "tight.toml"
    system.write_text('name = "tight"\n[[accelerator]]\nname = "pavlov"\nkind = "nearmem"\n'
                      "nearmem = {vaults = 16, lanes = 16, vault_bits = 128, vault_kib = 1024, local_kib = 64, "
                      "lstm = true}\n")
    out = tmp_path / "r.json"
    assert main(["run", "seq2seq", "--system", str(system), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'pavlov' need 82,784 words of every vault" in err and "by 17,248" in err, err
    assert not out.exists()
