"""`mensa verilog` writes Verilog, filelist and manifest that simulators accept, only when changed."""

import json
import shutil
import subprocess

import pytest

from mensa.gen.cli import main
from mensa.sim.runner import _setup_verilator

CONFIG = '''
name = "small"
[[accelerator]]
name = "sa"
[accelerator.array]
rows = 2
cols = 3
dataflow = "{dataflow}"
'''


@pytest.fixture(params=["ws", "os"])
def emitted(request, tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(CONFIG.format(dataflow=request.param))
    out = tmp_path / "out"
    assert main(["verilog", "--config", str(config), "--out", str(out)]) == 0
    return config, out


def test_manifest_and_filelist(emitted):
    _, out = emitted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["accelerator"][0]["array"]["cols"] == 3
    module = manifest["modules"][0]
    assert module["module"] == "small_sa" and len(module["config_hash"]) == 12
    ports = {p["name"]: p for p in module["ports"]}
    assert ports["clk"]["direction"] == "input"
    assert "amaranth" in manifest["tools"]
    assert (out / "files.f").read_text().split() == ["small_sa.v"]


def test_rewrite_only_when_changed(emitted, capsys):
    config, out = emitted
    before = (out / "small_sa.v").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["verilog", "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("unchanged") == 5   # .v, _regs.h, files.f, .core, manifest.json
    assert (out / "small_sa.v").stat().st_mtime_ns == before


@pytest.mark.skipif(not shutil.which("iverilog"), reason="iverilog not installed")
def test_icarus_accepts(emitted, tmp_path):
    _, out = emitted
    r = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.vvp"), str(out / "small_sa.v")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_verilator_lint_accepts(emitted):
    _, out = emitted
    _setup_verilator()
    r = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "-Wno-WIDTH", str(out / "small_sa.v")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
