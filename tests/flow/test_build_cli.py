"""``mensa build``: bad input gets one line naming what is wrong and what is allowed, exit 2, nothing
written; a real ULX3S-85F bitstream of a small config is built and then reused from the cache (slow)."""

import json

import pytest

from mensa.gen.cli import main
from mensa.gen.cmd_build import BOARDS

SYSTOLIC = '''
name = "t"
[[accelerator]]
name = "a"
kind = "systolic"
[accelerator.array]
rows = 2
cols = 2
[accelerator.buffers]
weight_kib = 1
act_kib = 1
acc_kib = 1
[accelerator.memory]
data_bits = 32
'''

NEARMEM = '''
[[accelerator]]
name = "nm"
kind = "nearmem"
[accelerator.nearmem]
vaults = 2
'''

BAD = [
    # (what is wrong, config text or None for the default, extra arguments, words the error must hold)
    ("unknown board", SYSTOLIC, ["--board", "de10-nano"], ["'de10-nano'", "allowed", *BOARDS]),
    ("no such config", None, ["--board", "ulx3s-85f", "--config", "missing.toml"], ["missing.toml", "no such config"]),
    ("only a near-memory accelerator", 'name = "t"\n' + NEARMEM, ["--board", "ulx3s-85f"],
     ["0 systolic", "nm (nearmem)", "allowed"]),
    ("near-memory accelerator named", SYSTOLIC + NEARMEM, ["--board", "ulx3s-85f", "--accelerator", "nm"],
     ["'nm'", "nearmem", "allowed: systolic"]),
    ("unknown accelerator", SYSTOLIC, ["--board", "ulx3s-85f", "--accelerator", "zz"], ["'zz'", "allowed: a"]),
    ("output-stationary array", SYSTOLIC.replace("cols = 2", 'cols = 2\ndataflow = "os"'), ["--board", "ulx3s-85f"],
     ["dataflow", "'os'", "allowed: 'ws'"]),
    ("an image beyond the on-chip RAM", SYSTOLIC.replace("rows = 2", "rows = 256").replace("cols = 2", "cols = 256")
     .replace("data_bits = 32", "data_bits = 1024").replace("acc_kib = 1", "acc_kib = 1024")
     .replace("act_kib = 1", "act_kib = 1024"),
     ["--board", "ulx3s-85f"], ["image", "at most 65536"]),
    ("negative seed", SYSTOLIC, ["--board", "ulx3s-85f", "--seed", "-1"], ["--seed", "-1", "allowed"]),
    ("a clock the PLL cannot make", SYSTOLIC, ["--board", "ulx3s-85f", "--clock", "123"],
     ["123 MHz", "121.875 MHz or 125 MHz"]),
    ("a clock beyond the PLL", SYSTOLIC, ["--board", "ulx3s-85f", "--clock", "450"], ["450 MHz", "10 to 400 MHz"]),
    ("a clock that is no number", SYSTOLIC, ["--board", "ulx3s-85f", "--clock", "fast"], ["--clock", "'fast'"]),
    ("no board", SYSTOLIC, [], ["--board"]),
    ("an unknown model", SYSTOLIC, ["--board", "ulx3s-85f", "--model", "nope"], ["'nope'", "ds_cnn"]),
    ("a model and an accelerator", SYSTOLIC, ["--board", "ulx3s-85f", "--model", "ds_cnn", "--accelerator", "a"],
     ["--accelerator", "--model", "allowed: one of them"]),
    ("a model beyond the block RAM", None, ["--board", "ulx3s-85f", "--model", "mobilenet_v3_small"],
     ["mobilenet_v3_small", "bytes", "allowed: at most 327,680"]),
]


@pytest.mark.parametrize("what, text, args, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(what, text, args, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = []
    if text is not None:
        (tmp_path / "c.toml").write_text(text)
        config = ["--config", "c.toml"]
    out = tmp_path / "out"
    assert main(["build", *config, *args, "--out", str(out)]) == 2, what
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists(), f"{what}: {sorted(out.rglob('*'))}"


@pytest.mark.slow
def test_builds_a_bitstream_and_reuses_it(tmp_path, capsys):
    """The real flow (yosys, nextpnr-ecp5, ecppack) on a 2x2 array; the second build is a cache hit."""
    (tmp_path / "c.toml").write_text(SYSTOLIC)
    out = tmp_path / "out"
    args = ["build", "--board", "ulx3s-85f", "--config", str(tmp_path / "c.toml"), "--out", str(out)]
    assert main(args) == 0
    bit = (out / "top.bit").read_bytes()
    assert len(bit) > 100_000 and b"LFE5U-85F" in bit
    report = json.loads((out / "build.json").read_text())
    (clock,) = report["clocks"].values()
    assert clock["met"] and clock["fmax_mhz"] >= 25 and clock["target_mhz"] == 25
    assert report["device"]["DP16KD"]["used"] >= 1 and "Fmax" in (out / "timing.md").read_text()
    first = capsys.readouterr().out
    assert "[cached]" not in first
    assert main(args) == 0
    assert "[cached]" in capsys.readouterr().out and (out / "top.bit").read_bytes() == bit


@pytest.mark.slow
def test_builds_a_bitstream_clocked_by_the_pll(tmp_path, capsys):
    """The self-test of a 2x2 array at 62.5 MHz from the ECP5 PLL: nextpnr times the PLL's output."""
    (tmp_path / "c.toml").write_text(SYSTOLIC)
    out = tmp_path / "out"
    assert main(["build", "--board", "ulx3s-85f", "--config", str(tmp_path / "c.toml"), "--clock", "62.5",
                 "--out", str(out)]) == 0
    report = json.loads((out / "build.json").read_text())
    assert report["clock_mhz"] == 62.5 and report["pll"] == {"clki_div": 2, "clkfb_div": 5, "clkop_div": 10,
                                                            "vco_mhz": 625.0}
    (clock,) = report["clocks"].values()      # the PLL's output, on a global net
    assert clock["target_mhz"] == 62.5 and clock["met"], report["clocks"]
    assert b"LFE5U-85F" in (out / "top.bit").read_bytes()
