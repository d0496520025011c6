"""The study's sums are the scheduler's figures, network by network; the learned model learns them."""

import numpy as np
import pytest

from mensa.core.config import load
from mensa.model.blocks import compare_blocks, effnet_s_blocks, stage_totals
from mensa.model.nasbench import build_network, enumerate_cells
from mensa.model.schedule import schedule
from mensa.model.study import CLASSES, GRAPH_FEATURES, Sweep, class_system, graph_features
from tests.model.test_nasbench import SEVEN


@pytest.fixture(scope="module")
def space():
    return enumerate_cells(5)


def test_the_sweep_gives_what_the_scheduler_gives(space):
    systems = [class_system(c) for c in CLASSES]
    cells = [space.cell(int(i)) for i in np.random.default_rng(5).choice(len(space), 6, replace=False)] + [SEVEN]
    out = Sweep(systems).run(cells)
    for k, cell in enumerate(cells):
        net = build_network(cell)
        assert out["macs"][k] == net.macs and out["layers"][k] == len(net.layers)
        for s in systems:
            sch = schedule(net, s)
            assert out[f"latency_ms_{s.name}"][k] == pytest.approx(sch.latency_s * 1e3, rel=1e-12)
            assert out[f"energy_uj_{s.name}"][k] == pytest.approx(sch.energy_pj * 1e-6, rel=1e-12)
            assert out[f"dram_bytes_{s.name}"][k] == pytest.approx(sum(p.dram_bytes for p in sch.placements))
            peak = s.accelerator[0].array.pes * s.accelerator[0].clock_mhz * 1e6
            assert out[f"utilisation_{s.name}"][k] == pytest.approx(net.macs / (sch.latency_s * peak))


def test_the_classes_are_the_reported_ones():
    for name, pes, mhz in (("v1", (4, 4), 800.0), ("v2", (4, 4), 1066.0), ("v3", (4, 1), 1066.0)):
        acc = class_system(name).accelerator[0]
        assert (acc.edgetpu.pe_rows, acc.edgetpu.pe_cols) == pes and acc.clock_mhz == mhz


def test_the_sweep_refuses_a_system_of_several_accelerators():
    with pytest.raises(ValueError, match="one-accelerator"):
        Sweep([load("mensa-g")])


def test_graph_features_of_a_known_cell():
    f = dict(zip(("vertices", "edges", "n3", "n1", "nm", "input_edges", "fan_in", "depth"), graph_features(SEVEN)))
    assert f == {"vertices": 7, "edges": 9, "n3": 2, "n1": 1, "nm": 2, "input_edges": 2, "fan_in": 3, "depth": 3}


def test_the_learned_model_predicts_held_out_networks(space):
    from mensa.gen.study_report import learned_model_accuracy
    systems = [class_system(c) for c in CLASSES]
    cells = [space.cell(i) for i in range(len(space))]
    figs = Sweep(systems).run(cells)
    table = {"index": np.arange(len(cells))}
    feats = np.array([graph_features(c) for c in cells])
    table.update({f: feats[:, j] for j, f in enumerate(GRAPH_FEATURES)})
    for col in ("macs", "params", "layers", "act_bytes"):
        table[col] = figs[col]
    for c, s in zip(CLASSES, systems):
        for col in ("latency_ms", "energy_uj"):
            table[f"{col}_{c}"] = figs[f"{col}_{s.name}"]
    _, acc = learned_model_accuracy(table, train_fraction=0.5, rounds=150)
    assert acc["test_networks"] > 1000
    for c in CLASSES:
        for t in ("latency_ms", "energy_uj"):
            assert acc["classes"][c][t]["mape_pct"] < 5.0, (c, t, acc["classes"][c][t])


def test_blocks_compare_both_variants_at_the_models_shapes():
    shapes = effnet_s_blocks()
    assert [s.stage for s in shapes] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert shapes[0].in_shape == (1, 112, 112, 24) and shapes[0].stride == 2 and shapes[0].expanded == 192
    rows = compare_blocks([class_system("v1")])
    for r in rows:
        # the fused block does k*k times the MACs of the expansion in place of the 1x1 and the depthwise
        assert r["fused_macs"] > r["ibn_macs"] > 0 and r["ibn_ms"] > 0 and r["fused_ms"] > 0
    totals = stage_totals(rows)
    assert len(totals) == 5
