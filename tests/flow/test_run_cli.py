"""`mensa run`: a whole network on the RTL, every layer bit-exact, JSON and a timeline; a mistake is one line, exit 2."""

import json

import pytest

from mensa.gen.cli import main
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


@pytest.mark.parametrize("argv, text", [
    (["run", "nosuch"], "unknown model 'nosuch'"),
    (["run", "rnnt"], "no accelerator of pascal-fpga can run it"),
    (["run", "ds_cnn", "--system", "mensa-g-fpga"], "near-memory accelerator"),
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
