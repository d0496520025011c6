"""The package graph points one way: core <- contract <- hw | model; hw <- sim <- gen."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("modules", [
    "mensa.model.cost, mensa.model.schedule",
    "mensa.model.energy, mensa.model.analysis, mensa.model.onnx_import, mensa.model.zoo",
    "mensa.contract.compiler, mensa.contract.header",
    "mensa.core.golden, mensa.core.quant, mensa.core.builder",
])
def test_the_cost_model_scheduler_and_contract_load_no_amaranth(modules):
    code = (f"import sys, {modules}; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'cocotb')); "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_core_loads_only_the_standard_library_and_numpy():
    code = ("import sys; before = set(sys.modules); import mensa.core.config, mensa.core.ir, mensa.core.golden; "
            "extra = {m.split('.')[0] for m in set(sys.modules) - before} - {'mensa', 'numpy'} "
            "- set(sys.stdlib_module_names); assert not extra, extra")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
