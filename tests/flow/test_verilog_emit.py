"""`mensa verilog` writes Verilog, filelist and manifest that simulators accept, only when changed.

A weight-stationary config emits the whole accelerator (and its register header); with
``--unit array`` only the PE array, which is also how an output-stationary array is emitted.
"""

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


UNITS = {"ws": [], "os": ["--unit", "array"]}


@pytest.fixture(params=["ws", "os"])
def emitted(request, tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(CONFIG.format(dataflow=request.param))
    out = tmp_path / "out"
    assert main(["verilog", "--config", str(config), "--out", str(out), *UNITS[request.param]]) == 0
    return config, out, request.param


def test_manifest_and_filelist(emitted):
    _, out, dataflow = emitted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["accelerator"][0]["array"]["cols"] == 3
    module = manifest["modules"][0]
    assert module["module"] == "small_sa" and len(module["config_hash"]) == 12
    ports = {p["name"]: p for p in module["ports"]}
    assert ports["clk"]["direction"] == "input"
    assert "amaranth" in manifest["tools"]
    if dataflow == "ws":    # the accelerator: AXI4-Lite registers, an AXI4 master, the interrupt
        assert module["top"] == "Accelerator" and manifest["unit"] == "accelerator"
        assert {"s_axil_awaddr", "m_axi_araddr", "irq"} <= set(ports)
        assert (out / "small_sa_regs.h").exists()
        # and the system top over it, its address map, the C runtime and the register header it includes
        assert (out / "files.f").read_text().split() == ["small_sa.v", "small_system.v"]
        top = manifest["modules"][1]
        assert top["top"] == "SystemTop" and top["module"] == "small_system"
        assert "#define SMALL_SYSTEM_SA_BASE 0x0u" in (out / "small_system.h").read_text()
        assert all((out / f).exists() for f in ("mensa_runtime.c", "mensa_runtime.h", "mensa_regs.h"))
    else:                   # the array: its streams
        assert (out / "files.f").read_text().split() == ["small_sa.v"]
        assert module["top"] == "SystolicArray" and manifest["unit"] == "array"
        assert {"operands__valid", "results__ready"} <= set(ports)
        assert not (out / "small_sa_regs.h").exists()


def test_rewrite_only_when_changed(emitted, capsys):
    config, out, dataflow = emitted
    before = (out / "small_sa.v").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["verilog", "--config", str(config), "--out", str(out), *UNITS[dataflow]]) == 0
    # .v, files.f, .core, manifest.json; the accelerator's _regs.h, the system top's .v and .h, the runtime's
    # two files and the register header it includes
    files = 10 if dataflow == "ws" else 4
    assert capsys.readouterr().out.count("unchanged") == files
    assert (out / "small_sa.v").stat().st_mtime_ns == before


def test_requantiser_alone_has_a_lane_per_array_column(tmp_path):
    # `--unit requant`: the accelerator's requantiser by itself (to measure its timing alone)
    config = tmp_path / "small.toml"
    config.write_text(CONFIG.format(dataflow="ws"))
    out = tmp_path / "out"
    assert main(["verilog", "--config", str(config), "--out", str(out), "--unit", "requant"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (module,) = manifest["modules"]
    assert module["top"] == "Requantizer" and manifest["unit"] == "requant"
    ports = {p["name"]: p["width"] for p in module["ports"]}
    assert ports["accs__payload"] == 3 * 32 + 1 and ports["outs__payload"] == 3 * 8 + 1
    assert not (out / "small_sa_regs.h").exists()


def test_output_stationary_accelerator_is_refused_in_one_line(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text(CONFIG.format(dataflow="os"))
    out = tmp_path / "out"
    assert main(["verilog", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ws' dataflow only" in err and "--unit array" in err
    assert not out.exists()


@pytest.mark.skipif(not shutil.which("iverilog"), reason="iverilog not installed")
def test_icarus_accepts(emitted, tmp_path):
    _, out, _ = emitted
    r = subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "a.vvp"), str(out / "small_sa.v")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_verilator_lint_accepts(emitted):
    _, out, _ = emitted
    _setup_verilator()
    r = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "-Wno-WIDTH", str(out / "small_sa.v")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
