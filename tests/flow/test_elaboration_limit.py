"""Configs whose elaboration would take longer than the limit are refused before any work, with the
estimate; below the limit nothing changes."""

import re
import time

import pytest

from mensa.core.config import load
from mensa.gen.cli import main
from mensa.gen.verilog import ELABORATION_MAX_S, elaboration_estimate

HUGE = """name = "huge"
[[accelerator]]
name = "big"
kind = "systolic"
[accelerator.array]
rows = 256
cols = 256
[accelerator.buffers]
act_kib = 65536
"""


@pytest.mark.parametrize("command", [["verilog"], ["synth", "--target", "ecp5-85f"],
                                     ["run-layer", "--layer", "fc:in=4x16,out=8"]])
def test_a_config_beyond_the_limit_is_refused_at_once(tmp_path, capsys, command):
    config = tmp_path / "huge.toml"
    config.write_text(HUGE)
    out = tmp_path / "out"
    extra = [] if command[0] == "run-layer" else ["--out", str(out)]
    start = time.monotonic()
    assert main([*command, "--config", str(config), *extra]) == 2
    assert time.monotonic() - start < 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"about [\d,]+ min", err) and "--no-time-limit" in err, err
    assert not out.exists()


def test_the_presets_elaborate_within_the_limit():
    for preset in ("pascal", "mensa-g", "edgetpu", "pascal-fpga"):
        assert sum(elaboration_estimate(a) for a in load(preset).accelerator) < ELABORATION_MAX_S
