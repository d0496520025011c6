"""`mensa study` and `mensa predict` from the command line: the sweep, its resume, the report, the model,
and one line with exit 2 for every mistake."""

import json

import numpy as np
import pytest

import mensa.gen.study as study
from mensa.gen.cli import main
from mensa.model.nasbench import CellSpace, enumerate_cells


@pytest.fixture(scope="module")
def small_space(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "cells.npz"
    enumerate_cells(5).save(path)
    return path


@pytest.fixture
def small(monkeypatch, small_space):
    """The sweep on the 2,532 cells of up to 5 vertices (the full space takes minutes to enumerate)."""
    def load_small(path, progress=None, map_chunks=None):
        CellSpace.load(small_space).save(path)
        return CellSpace.load(path)
    monkeypatch.setattr(study, "load_or_enumerate", load_small)


def _table(out):
    return study.read_table(out)


def test_a_sweep_writes_parquet_and_resumes_where_it_stopped(small, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["study", "nasbench101", "--limit", "300", "--workers", "1", "--out", str(out)]) == 0
    first = _table(out)
    assert len(first["index"]) == 300 and np.all(first["latency_ms_v3"] > first["latency_ms_v2"])
    assert first["hash"][0] and set(first["ops"][0]) <= set("012")
    # a killed run: the joined table and one part are gone; the others are kept, not recomputed
    (out / study.TABLE).unlink()
    parts = sorted((out / "parts").glob("part-*.parquet"))
    assert len(parts) == 1
    stamp = parts[0].stat().st_mtime_ns
    assert main(["study", "nasbench101", "--limit", "300", "--workers", "1", "--out", str(out)]) == 0
    assert parts[0].stat().st_mtime_ns == stamp
    again = _table(out)
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_a_resume_with_other_options_is_refused(small, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["study", "nasbench101", "--limit", "20", "--workers", "1", "--classes", "v1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["study", "nasbench101", "--limit", "21", "--workers", "1", "--classes", "v1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other options" in err and "\n" not in err


def test_the_report_and_predict(small, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["study", "nasbench101", "--limit", "400", "--workers", "2", "--report", "--out", str(out)]) == 0
    for name in ("latency_ms.png", "utilisation.png", "features.png", "mensa_g.png", "report.md", "report.json"):
        assert (out / "report" / name).stat().st_size > 0, name
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["networks"] == 400 and set(report["rank_correlation"]) == {"v1-v2", "v1-v3", "v2-v3"}
    assert report["learned_model"]["test_networks"] == 280
    capsys.readouterr()
    j = tmp_path / "p.json"
    assert main(["predict", "--model", str(out / "perf_model"), "--matrix", "[[0,1,1],[0,0,1],[0,0,0]]",
                 "--ops", "input,conv3x3,output", "--json", str(j)]) == 0
    got = json.loads(j.read_text())
    for c in ("v1", "v2", "v3"):
        d = got["classes"][c]
        assert d["latency_ms"] > 0 and abs(d["latency_ms"] / d["cost_model_latency_ms"] - 1) < 0.5


@pytest.mark.parametrize("argv, words", [
    (["study", "nasbench101", "--classes", "v4"], ["--classes", "v1, v2, v3"]),
    (["study", "nasbench101", "--limit", "0"], ["--limit"]),
    (["study", "blocks", "--limit", "5"], ["--limit", "not used"]),
    (["study", "nasbench101", "--ray-address", "127.0.0.1:1", "--limit", "5"], ["--ray-address", "nothing answers"]),
    (["predict", "--model", "nowhere", "--matrix", "[[0,1],[1,0]]", "--ops", "input,output"], ["cycle"]),
    (["predict", "--model", "nowhere", "--matrix", "[[0,1],[0,0]]", "--ops", "input,output"], ["no trained model"]),
    (["predict", "--model", "nowhere", "--matrix", "[[0,1,0],[0,0,1],[0,0,0]]", "--ops", "input,conv7x7,output"],
     ["unknown op", "conv3x3-bn-relu"]),
    (["predict", "--model", "m", "--matrix", "[[0,1", "--ops", "input,output"], ["--matrix", "not JSON"]),
])
def test_a_mistake_is_one_line_and_exit_2(small, tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)


def test_study_blocks_prints_and_plots(tmp_path, capsys):
    assert main(["study", "blocks", "--classes", "v1,v3", "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "EfficientNet-EdgeTPU-S" in shown and "stage" in shown
    data = json.loads((tmp_path / "blocks.json").read_text())
    assert {r["system"] for r in data["blocks"]} == {"edgetpu-v1", "edgetpu-v3", "mensa-g"}
    assert (tmp_path / "blocks.png").stat().st_size > 0


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_cluster(small, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        assert main(["study", "nasbench101", "--limit", "50", "--ray-address", "local", "--out",
                     str(tmp_path / "r")]) == 0
    finally:
        ray.shutdown()
    assert len(_table(tmp_path / "r")["index"]) == 50
