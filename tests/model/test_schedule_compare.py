"""`mensa compare`: three systems on the zoo, ratios consistent with the scheduler, equal-area baseline."""

import json

import pytest

from mensa.gen.cli import main
from mensa.gen.cmd_compare import eyeriss_like, fit_area, sram_scaled
from mensa.core.config import from_dict, loads
from mensa.core.errors import UserError
from mensa.model.energy import system_area_mm2
from mensa.model.schedule import schedule
from mensa.model.zoo import get

BASELINE = """name = "edgetpu"
[dram]
bandwidth_gbps = 25.6
latency_cycles = 100
[[accelerator]]
name = "edgetpu"
clock_mhz = 800.0
array = {rows = 64, cols = 64}
buffers = {weight_kib = 2048, act_kib = 2048, acc_kib = 256}
memory = {data_bits = 256}
vector = {lanes = 32, line_kib = 32}
"""

MENSA = """name = "mensa-g"
[dram]
bandwidth_gbps = 25.6
latency_cycles = 100
[[accelerator]]
name = "pascal"
clock_mhz = 800.0
array = {rows = 32, cols = 32}
buffers = {weight_kib = 256, act_kib = 512, acc_kib = 64}
memory = {data_bits = 256}
vector = {lanes = 32, line_kib = 32}
[[accelerator]]
name = "jacquard"
kind = "nearmem"
clock_mhz = 800.0
nearmem = {vaults = 16, lanes = 16, vault_bits = 128, vault_kib = 65536, local_kib = 8}
"""


@pytest.fixture
def configs(tmp_path):
    (tmp_path / "edgetpu.toml").write_text(BASELINE)
    (tmp_path / "mensa-g.toml").write_text(MENSA)
    return tmp_path


def test_eyeriss_like_baseline_is_the_largest_square_array_within_the_area():
    base = loads(BASELINE)
    area = system_area_mm2(base)
    ey = eyeriss_like(area, base)
    side = ey.accelerator[0].array.rows
    assert system_area_mm2(ey) <= area
    assert system_area_mm2(eyeriss_like(area * 10, base)) > area      # a larger budget buys a larger array
    assert ey.accelerator[0].array.dataflow.value == "os" and ey.dram == base.dram
    assert side > 8


def test_cli_compare_reports_the_scheduler_ratios_and_writes_plots(configs, capsys):
    out = configs / "cmp"
    argv = ["compare", "--baseline", str(configs / "edgetpu.toml"), "--system", str(configs / "mensa-g.toml"),
            "--models", "ds_cnn,mobilenet_v2", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "compare.json").read_text())
    base, mensa = loads(BASELINE), loads(MENSA)
    # by default every system is sized to the heterogeneous system's area
    base, _ = fit_area(base, system_area_mm2(mensa))
    assert data["summary"]["area_budget_mm2"] == pytest.approx(system_area_mm2(mensa))
    assert all(a <= system_area_mm2(mensa) * (1 + 1e-9) for a in data["summary"]["area_mm2"].values())
    for m in ("ds_cnn", "mobilenet_v2"):
        b = schedule(get(m), base)
        g = schedule(get(m), mensa)
        assert data["models"][m]["edgetpu"]["latency_s"] == pytest.approx(b.latency_s)
        assert data["models"][m]["mensa-g"]["energy_pj"] == pytest.approx(g.energy_pj)
    ratios = data["summary"]["mensa-g_over_edgetpu"]
    thr = [data["models"][m]["edgetpu"]["latency_s"] / data["models"][m]["mensa-g"]["latency_s"] for m in ("ds_cnn", "mobilenet_v2")]
    assert ratios["throughput_geomean"] == pytest.approx((thr[0] * thr[1]) ** 0.5)
    assert (out / "utilisation.png").stat().st_size > 0 and (out / "energy_breakdown.png").stat().st_size > 0
    assert "mensa-g_over_edgetpu: throughput" in capsys.readouterr().out


def test_fit_area_scales_every_sram_by_the_largest_factor_within_the_budget():
    base, mensa = loads(BASELINE), loads(MENSA)
    budget = system_area_mm2(mensa)
    sized, factor = fit_area(base, budget)
    assert system_area_mm2(sized) <= budget < system_area_mm2(sram_scaled(base, factor * 1.05))
    a, b = sized.accelerator[0], base.accelerator[0]
    assert a.array == b.array and a.memory == b.memory                  # compute and interfaces kept
    assert a.buffers.weight_kib / b.buffers.weight_kib == pytest.approx(factor, rel=0.05)
    assert fit_area(mensa, budget) == (mensa, 1.0)                      # already the budget: unchanged
    grown, up = fit_area(mensa, 2 * budget)                             # a larger budget buys more SRAM
    assert up > 1 and system_area_mm2(grown) <= 2 * budget
    assert grown.accelerator[1].nearmem.local_kib > mensa.accelerator[1].nearmem.local_kib
    with pytest.raises(UserError, match="needs at least"):
        fit_area(base, 0.5)


def test_cli_compare_native_keeps_the_presets_and_a_number_sets_the_budget(configs):
    common = ["compare", "--baseline", str(configs / "edgetpu.toml"), "--system", str(configs / "mensa-g.toml"),
              "--models", "ds_cnn", "--no-plots"]
    assert main(common + ["--out", str(configs / "n"), "--area-mm2", "native"]) == 0
    native = json.loads((configs / "n" / "compare.json").read_text())["summary"]
    assert native["area_mm2"]["edgetpu"] == pytest.approx(system_area_mm2(loads(BASELINE)))
    assert native["area_budget_mm2"] is None
    assert main(common + ["--out", str(configs / "b"), "--area-mm2", "20"]) == 0
    sized = json.loads((configs / "b" / "compare.json").read_text())["summary"]
    assert all(19 < a <= 20 for a in sized["area_mm2"].values()), sized["area_mm2"]


@pytest.mark.parametrize("extra, message", [
    (["--area-mm2", "lots"], "--area-mm2 'lots': allowed: a positive number"),
    (["--area-mm2", "-3"], "--area-mm2 '-3': allowed: a positive number"),
    (["--area-mm2", "0.5"], "needs at least"),
    (["--models", "ds_cnn,alexnet"], "unknown model 'alexnet'"),
    (["--system", "/nonexistent.toml"], "no such config file"),
])
def test_cli_compare_user_errors_exit_2_with_one_line(configs, capsys, extra, message):
    argv = ["compare", "--baseline", str(configs / "edgetpu.toml"), "--system", str(configs / "mensa-g.toml"),
            "--out", str(configs / "cmp"), "--no-plots"] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (configs / "cmp" / "compare.json").exists()


def test_cli_compare_rejects_the_same_system_twice(configs, capsys):
    argv = ["compare", "--baseline", str(configs / "edgetpu.toml"), "--system", str(configs / "edgetpu.toml"),
            "--out", str(configs / "cmp"), "--no-plots"]
    assert main(argv) == 2
    assert "must name different systems" in capsys.readouterr().err
