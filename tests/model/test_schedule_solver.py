"""The Mensa scheduler: optimal on chains and trees, good on DAGs, transfers and pins respected."""

import math
import random

import numpy as np
import pytest

from mensa.gen.cli import main
from mensa.core.config import from_dict
from mensa.core.ir import Layer, Network, Op
from mensa.model.schedule import ScheduleError, exhaustive, schedule, solve, total_cost
from mensa.model.zoo import get


def random_instance(rng, n, a, parents):
    node = np.array([[rng.uniform(1, 10) if rng.random() > 0.15 else math.inf for _ in range(a)]
                     for _ in range(n)])
    for i in range(n):                      # every node runnable somewhere
        if not np.isfinite(node[i]).any():
            node[i, rng.randrange(a)] = rng.uniform(1, 10)
    edges = []
    for v in range(1, n):
        for u in parents(v):
            mat = np.array([[0.0 if x == y else rng.uniform(0, 8) for y in range(a)] for x in range(a)])
            edges.append((u, v, mat))
    return node, edges


def test_dp_matches_exhaustive_search_on_random_chains():
    rng = random.Random(8)
    for _ in range(200):
        n, a = rng.randint(1, 7), rng.randint(1, 4)
        node, edges = random_instance(rng, n, a, lambda v: [v - 1])
        assign, cost = solve(node, edges)
        _, best = exhaustive(node, edges)
        assert cost == pytest.approx(best)
        assert total_cost(node, edges, assign) == pytest.approx(cost)


def test_dp_matches_exhaustive_search_on_random_trees():
    rng = random.Random(9)
    for _ in range(100):
        n, a = rng.randint(2, 7), 3
        node, edges = random_instance(rng, n, a, lambda v: [rng.randrange(v)])
        assert solve(node, edges)[1] == pytest.approx(exhaustive(node, edges)[1])


def test_dag_heuristic_is_close_to_optimal_on_random_dags():
    rng = random.Random(10)
    gaps = []
    for _ in range(100):
        n, a = rng.randint(3, 7), 3
        node, edges = random_instance(rng, n, a, lambda v: sorted(rng.sample(range(v), min(v, rng.randint(1, 2)))))
        got, best = solve(node, edges)[1], exhaustive(node, edges)[1]
        assert got >= best - 1e-9
        gaps.append(got / best - 1)
    assert np.mean(gaps) < 0.005 and max(gaps) < 0.02


def two_accelerator_system(bandwidth=25.6):
    return from_dict({"name": "duo", "dram": {"bandwidth_gbps": bandwidth}, "accelerator": [
        {"name": "pascal", "array": {"rows": 32, "cols": 32},
         "buffers": {"weight_kib": 256, "act_kib": 1024, "acc_kib": 64}, "memory": {"data_bits": 128},
         "vector": {"lanes": 16, "line_kib": 32}},
        {"name": "jacquard", "kind": "nearmem",
         "nearmem": {"vaults": 16, "lanes": 16, "vault_bits": 128, "local_kib": 8}},
    ]})


def conv_add_conv():
    """A big activation (56x56x64) through conv -> add -> conv: the add alone is faster near memory."""
    shape = (1, 56, 56, 64)
    conv = dict(op=Op.CONV2D, in_shape=shape, out_shape=shape, kernel=(3, 3), padding=(1, 1, 1, 1))
    return Network("cac", shape, (
        Layer("c1", inputs=("input",), **conv),
        Layer("add", Op.ADD, shape, shape, inputs=("c1", "input"), extra_in_shapes=(shape,)),
        Layer("c2", inputs=("add",), **conv),
    ))


def conv_pointwise_conv():
    """A big activation (56x56x64) through conv -> pointwise conv -> conv: every layer runs on pascal,
    the pointwise one on jacquard too."""
    shape = (1, 56, 56, 64)
    conv = dict(op=Op.CONV2D, in_shape=shape, out_shape=shape, kernel=(3, 3), padding=(1, 1, 1, 1))
    return Network("cpc", shape, (
        Layer("c1", inputs=("input",), **conv),
        Layer("pw", Op.CONV2D, shape, shape, inputs=("c1",)),
        Layer("c2", inputs=("pw",), **conv),
    ))


def test_a_layer_stays_with_its_neighbours_where_its_tensors_cannot_cross():
    net, system = conv_pointwise_conv(), two_accelerator_system()
    sched = schedule(net, system, objective="latency")
    assert [p.accelerator for p in sched.placements] == ["pascal"] * 3
    # The pointwise conv could run near memory, but the unit reads one pixel's channels a vector, not the
    # array's channel-tile planes of 3136 pixels: no placement of pw there runs, and a pin says so.
    with pytest.raises(ScheduleError, match=r"^layer 'pw' reads 'c1' in a layout no accelerator of duo"):
        schedule(net, system, objective="latency", pins={"pw": "jacquard"})


def test_cheap_transfer_moves_a_low_reuse_layer_near_memory():
    # A classifier tail: 1280 bytes move, the 1.3 MB of FC weights then stay in the vaults.
    net = get("mobilenet_v2")
    sched = schedule(net, two_accelerator_system(), objective="energy")
    where = {p.layer: p.accelerator for p in sched.placements}
    assert where[net.layers[-1].name] == "jacquard"
    assert all(where[l.name] == "pascal" for l in net.layers if l.op in (Op.CONV2D, Op.DEPTHWISE))


def test_schedule_totals_are_the_sum_of_layers_and_transfers():
    net, system = get("ds_cnn"), two_accelerator_system()
    s = schedule(net, system, objective="energy")
    assert s.latency_s == pytest.approx(sum(p.seconds + p.transfer_seconds for p in s.placements))
    assert s.energy_pj == pytest.approx(sum(sum(p.energy_pj.values()) + p.idle_leakage_pj + p.transfer_pj
                                            for p in s.placements))
    # the latency objective can only be at least as fast
    assert schedule(net, system, objective="latency").latency_s <= s.latency_s * (1 + 1e-9)


def test_pins_are_honoured_and_checked():
    net, system = conv_pointwise_conv(), two_accelerator_system()
    tail = get("mobilenet_v2").layers[-1].name
    s = schedule(get("mobilenet_v2"), system, pins={tail: "jacquard"})
    assert s.placements[-1].accelerator == "jacquard" and s.placements[-1].pinned
    assert s.placements[-1].transfer_bytes > 0           # its input crossed from pascal
    with pytest.raises(ScheduleError, match="jacquard: add cannot run on the near-memory unit"):
        schedule(conv_add_conv(), system, pins={"add": "jacquard"})
    with pytest.raises(ScheduleError, match="jacquard: conv2d with a 3x3 kernel"):
        schedule(net, system, pins={"c1": "jacquard"})
    with pytest.raises(ScheduleError, match="no accelerator 'eyeriss'; allowed: pascal, jacquard"):
        schedule(net, system, pins={"c1": "eyeriss"})
    with pytest.raises(ScheduleError, match="objective 'speed' is not allowed"):
        schedule(net, system, objective="speed")


def test_layer_no_accelerator_can_run_is_a_user_error():
    system = from_dict({"name": "nm", "accelerator": [
        {"name": "jacquard", "kind": "nearmem", "nearmem": {"vaults": 4, "lanes": 4}}]})
    with pytest.raises(ScheduleError, match=r"layer 'c1' \(conv2d\): no accelerator of nm can run it"):
        schedule(conv_add_conv(), system)


def write_system(tmp_path):
    path = tmp_path / "duo.toml"
    path.write_text('name = "duo"\n'
                    '[[accelerator]]\nname = "pascal"\narray = {rows = 32, cols = 32}\n'
                    'buffers = {weight_kib = 256, act_kib = 1024, acc_kib = 64}\nmemory = {data_bits = 128}\n'
                    'vector = {lanes = 16, line_kib = 32}\n'
                    '[[accelerator]]\nname = "jacquard"\nkind = "nearmem"\n'
                    'nearmem = {vaults = 16, lanes = 16, vault_bits = 128, local_kib = 8}\n')
    return path


def test_cli_schedule_prints_and_writes_the_same_schedule(tmp_path, capsys):
    import json
    system = write_system(tmp_path)
    out = tmp_path / "s.json"
    assert main(["schedule", "ds_cnn", "--system", str(system), "--objective", "energy", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    direct = schedule(get("ds_cnn"), two_accelerator_system(), objective="energy")
    assert data["energy_pj"] == pytest.approx(direct.energy_pj)
    assert [l["accelerator"] for l in data["layers"]] == [p.accelerator for p in direct.placements]
    text = capsys.readouterr().out
    assert "ds_cnn on duo" in text and "layers per accelerator" in text


@pytest.mark.parametrize("argv, message", [
    (["schedule", "nope"], "unknown model 'nope'"),
    (["schedule", "ds_cnn", "--pin", "conv"], "expected LAYER=ACCELERATOR"),
    (["schedule", "ds_cnn", "--pin", "conv1=gpu"], "no accelerator 'gpu'"),
    (["schedule", "ds_cnn", "--json", "/nonexistent/dir/x.json"], "does not exist"),
])
def test_cli_schedule_user_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = argv[:2] + ["--system", str(write_system(tmp_path))] + argv[2:]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
