"""A bad config gets one line naming the field, the value and what is allowed; exit 2; nothing written."""

import subprocess
import sys

import pytest

from mensa.gen.cli import main
from mensa.core.config import ConfigError, loads

GOOD = '''
name = "t"
[[accelerator]]
name = "a"
kind = "systolic"
[accelerator.array]
rows = 4
cols = 4
dataflow = "ws"
'''

BAD = [
    # (what is wrong, TOML, words the one-line error must hold)
    ("unknown field", GOOD + "colour = 3\n", ["accelerator[0].array.colour", "unknown field", "allowed"]),
    ("unknown top-level field", "foo = 1\n" + GOOD, ["foo", "unknown field"]),
    ("rows zero", GOOD.replace("rows = 4", "rows = 0"), ["accelerator[0].array.rows", "0", "1..256"]),
    ("rows too large", GOOD.replace("rows = 4", "rows = 1000"), ["rows", "1000", "1..256"]),
    ("rows a string", GOOD.replace("rows = 4", 'rows = "four"'), ["rows", "'four'", "integer"]),
    ("rows a float", GOOD.replace("rows = 4", "rows = 4.5"), ["rows", "4.5", "integer"]),
    ("rows a bool", GOOD.replace("rows = 4", "rows = true"), ["rows", "True", "integer"]),
    ("bad dataflow", GOOD.replace('"ws"', '"xs"'), ["dataflow", "'xs'", "'ws'", "'os'"]),
    ("bad kind", GOOD.replace('"systolic"', '"gpu"'), ["kind", "'gpu'", "'systolic'"]),
    ("no accelerator", 'name = "t"\n', ["accelerator", "missing"]),
    ("no name", GOOD.replace('name = "t"\n', "", 1), ["name", "missing"]),
    ("acc_bits too narrow", GOOD + "acc_bits = 12\n", ["array.acc_bits", "12", "allowed: 32"]),
    ("acc_bits wider than the accelerator", GOOD + "acc_bits = 40\n", ["array.acc_bits", "40", "allowed: 32"]),
    ("int4 weights", GOOD + "weight_bits = 4\n", ["array.weight_bits", "4", "allowed: 8"]),
    ("data_bits not a power of two", GOOD + "[accelerator.memory]\ndata_bits = 48\n", ["data_bits", "48", "power of two"]),
    ("nearmem without table", GOOD.replace('"systolic"', '"nearmem"'), ["nearmem", "missing"]),
    ("requant passes not dividing the lanes", 'name = "t"\n[[accelerator]]\nname = "a"\nkind = "nearmem"\n'
     'nearmem = {lanes = 8, requant_passes = 3}\n', ["accelerator[0].nearmem.requant_passes", "3", "divisor of lanes"]),
    ("duplicate accelerator", GOOD + GOOD.split("\n", 2)[2], ["name", "'a'", "twice"]),
    ("not TOML", "name = [\n", ["not valid TOML"]),
    ("negative bandwidth", GOOD + "[dram]\nbandwidth_gbps = -1\n", ["dram.bandwidth_gbps", "-1", "0.1..4096"]),
]


@pytest.mark.parametrize("what,text,words", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_field_value_and_allowed(what, text, words):
    with pytest.raises(ConfigError) as e:
        loads(text)
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{what}: {word!r} not in {message!r}"


def test_good_config_loads():
    system = loads(GOOD)
    assert system.accelerator[0].array.rows == 4
    assert system["a"].array.cols == 4


@pytest.mark.parametrize("what,text,words", BAD[:10], ids=[b[0] for b in BAD[:10]])
def test_cli_bad_config_exit_2_one_line_nothing_written(what, text, words, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = tmp_path / "out"
    status = main(["verilog", "--config", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and str(config) in err
    assert not out.exists()


def test_cli_missing_config_and_bad_argument(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "mensa.gen.cli", "verilog", "--config", str(tmp_path / "none.toml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such config file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    unknown = subprocess.run([sys.executable, "-m", "mensa.gen.cli", "verilog", "--frobnicate"],
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
