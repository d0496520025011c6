"""``mensa explore``: a search writes a loadable best config and its reports; a killed run resumes from
its SQLite record; a transfer starts from an earlier run's best points; mistakes are one line, exit 2."""

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mensa.core.config import load
from mensa.gen.cli import main

SPACE = '''
name = "tiny"
base = "pascal"
[[param]]
name = "side"
paths = ["pascal.array.rows", "pascal.array.cols"]
values = [8, 16, 32]
[[param]]
name = "weight_kib"
path = "pascal.buffers.weight_kib"
lo = 16
hi = 256
pow2 = true
[constraints]
area_mm2 = 4.2
'''


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPACE)
    return path


def _explore(space, out, *extra):
    return main(["explore", "--space", str(space), "--models", "ds_cnn", "--out", str(out), "--no-plots",
                 "--workers", "1", *extra])


def test_a_search_writes_a_best_config_and_its_reports(space, tmp_path, capsys):
    out = tmp_path / "run"
    assert _explore(space, out, "--budget", "15", "--optimizer", "grid") == 0      # 15 points: exhaustive
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 15 == summary["space_points"]
    best = load(out / "best.toml")
    side = summary["best"]["values"]["side"]
    assert best.accelerator[0].array.rows == best.accelerator[0].array.cols == side
    assert summary["best"]["area_mm2"] <= 4.2
    assert 0 < summary["feasible"] < 15
    rows = list(csv.DictReader((out / "trials.csv").open()))
    feasible = [float(r["value"]) for r in rows if r["feasible"] == "True"]
    assert float(summary["best"]["value"]) == min(feasible)
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["points"] and 0 < pareto["hypervolume"] < 1
    assert "best latency" in capsys.readouterr().out


def test_a_search_resumes_and_a_transfer_starts_from_the_best_points(space, tmp_path):
    out = tmp_path / "run"
    assert _explore(space, out, "--budget", "6", "--optimizer", "random") == 0
    first = list(csv.DictReader((out / "trials.csv").open()))
    assert _explore(space, out, "--budget", "10", "--optimizer", "random") == 0
    again = list(csv.DictReader((out / "trials.csv").open()))
    assert len(again) == 10 and again[:6] == first
    other = tmp_path / "other"
    assert _explore(space, other, "--budget", "8", "--optimizer", "tpe", "--objective", "energy",
                    "--transfer-from", str(out)) == 0
    summary = json.loads((other / "summary.json").read_text())
    assert summary["warm_points"] == 1
    best_before = json.loads((out / "summary.json").read_text())["best"]["values"]
    first_row = next(csv.DictReader((other / "trials.csv").open()))
    assert {k: float(first_row[k]) for k in best_before} == {k: float(v) for k, v in best_before.items()}


@pytest.mark.slow       # two processes' start-up and a kill: ~18 s
def test_a_killed_run_resumes_from_its_record(tmp_path):
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("mensa")), "explore", "--space", "edgetpu", "--models", "ds_cnn",
           "--budget", "400", "--batch", "1", "--optimizer", "random", "--workers", "1", "--no-plots",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "study.db"
    deadline = time.monotonic() + 60
    recorded = 0
    while time.monotonic() < deadline and recorded < 6:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    recorded = con.execute("select count(*) from trials").fetchone()[0]
            except sqlite3.Error:
                pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert recorded >= 6
    with sqlite3.connect(db) as con:
        before = con.execute("select count(*) from trials").fetchone()[0]
    assert before < 400
    done = subprocess.run(cmd[:cmd.index("400")] + ["20"] + cmd[cmd.index("400") + 1:], capture_output=True,
                          text=True)
    # resumed with a smaller budget: the trials already recorded count, only the rest are evaluated
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == max(20, before)


BAD = [
    ("unknown space", ["--space", "nosuch"], ["nosuch", "edgetpu", "mensa-g"]),
    ("unknown model", ["--space", "edgetpu", "--models", "alexnet"], ["alexnet", "mobilenet_v2"]),
    ("budget zero", ["--space", "edgetpu", "--budget", "0"], ["--budget", "0", "1.."]),
    ("unknown optimizer", ["--space", "edgetpu", "--optimizer", "sgd"], ["--optimizer", "sgd", "tpe"]),
    ("negative area", ["--space", "edgetpu", "--area-mm2", "-3"], ["--area-mm2", "positive"]),
    ("no run to transfer", ["--space", "edgetpu", "--transfer-from", "/nonexistent"], ["--transfer-from", "run.json"]),
]


@pytest.mark.parametrize("what,argv,words", BAD, ids=[b[0] for b in BAD])
def test_a_mistake_is_one_line_and_exit_2(what, argv, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explore", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for w in words:
        assert w in err
    assert not (out / "study.db").exists()


def test_a_bad_space_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(SPACE.replace('"pascal.buffers.weight_kib"', '"pascal.buffers.colour"'))
    assert main(["explore", "--space", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "colour" in err and str(path) in err


def test_an_out_folder_of_another_run_is_refused(space, tmp_path, capsys):
    out = tmp_path / "run"
    assert _explore(space, out, "--budget", "3", "--optimizer", "random") == 0
    capsys.readouterr()
    assert _explore(space, out, "--budget", "3", "--optimizer", "tpe") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optimizer" in err


@pytest.mark.slow       # two searches and a compare: ~20 s
def test_compare_by_default_searches_the_monolith_and_says_so(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "ds_cnn", "--search-budget", "12", "--workers", "1", "--no-plots",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "compare.json").read_text())
    s = data["summary"]
    assert s["baseline"]["kind"] == "searched" and s["baseline"]["space"] == "edgetpu"
    assert "baseline edgetpu-best: the best edgetpu design" in printed
    budget = s["area_budget_mm2"]
    assert all(a <= budget * (1 + 1e-9) for a in s["area_mm2"].values())
    best = load(out / "search-monolith" / "best.toml")
    assert data["systems"]["edgetpu-best"]["accelerator"][0]["edgetpu"] == json.loads(
        json.dumps(best.accelerator[0].edgetpu.__dict__))
    assert best.accelerator[0].clock_mhz == load("mensa-g").accelerator[0].clock_mhz     # equal clock
    assert {"mensa-g_over_edgetpu-best", "mensa-g-best_over_edgetpu-best"} <= set(s)


@pytest.mark.slow       # starts a local Ray: ~20 s
def test_a_search_evaluates_on_ray_as_it_does_locally(space, tmp_path):
    pytest.importorskip("ray")
    here, there = tmp_path / "here", tmp_path / "there"
    assert _explore(space, here, "--budget", "15", "--optimizer", "grid") == 0
    assert main(["explore", "--space", str(space), "--models", "ds_cnn", "--out", str(there), "--no-plots",
                 "--budget", "15", "--optimizer", "grid", "--ray-address", "local"]) == 0
    assert (here / "trials.csv").read_text() == (there / "trials.csv").read_text()
