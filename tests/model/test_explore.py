"""Design spaces and their search: every point is a config mensa accepts, a point's cost is the
scheduler's, bounds are constraints, a grid covering a space finds its true optimum, searches are
reproducible and resumable, and the Pareto front's hypervolume is exact."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from mensa.core.config import NearMemConfig, loads, to_toml
from mensa.model import zoo
from mensa.model.explore import (OPTIMIZERS, Task, evaluate_points, grid_levels, hypervolume, nearmem_dsp, pareto_front,
                                 search)
from mensa.model.schedule import schedule
from mensa.model.space import SpaceError, load_space, loads_space, spaces, template_array

SMALL = '''
name = "small"
base = "pascal"
[[param]]
name = "rows"
path = "pascal.array.rows"
values = [8, 16, 32]
[[param]]
name = "cols"
path = "pascal.array.cols"
values = [8, 16, 32]
[[param]]
name = "weight_kib"
path = "pascal.buffers.weight_kib"
lo = 16
hi = 256
pow2 = true
[[param]]
name = "act_kib"
path = "pascal.buffers.act_kib"
values = [64, 512]
'''
TASK = Task(models=("ds_cnn",), objective="latency", area_mm2=2.0)


@pytest.fixture(scope="module")
def small():
    return loads_space(SMALL)


def test_the_built_in_spaces_have_the_sizes_their_files_state():
    sizes = {name: load_space(name).size for name in spaces()}
    assert sizes["edgetpu"] >= 10**8                    # Apollo's template, as the issue asks
    assert 10**5 <= sizes["edgetpu-small"] <= 2 * 10**5  # enumerable, for bench/explore.py
    assert set(sizes) >= {"edgetpu", "edgetpu-small", "edgetpu-fpga", "mensa-g"}


@pytest.mark.parametrize("name", ["edgetpu", "edgetpu-fpga", "mensa-g"])
def test_every_point_is_a_config_mensa_loads(name):
    space = load_space(name)
    rng = np.random.default_rng(1)
    for _ in range(20):
        point = tuple(int(rng.integers(n)) for n in space.shape)
        system = space.config(point)
        assert loads(to_toml(system)) == system
        for p in space.params:
            assert all(_get(system, path) == space.values(point)[p.name] for path in p.paths)


def _get(system, path):
    head, _, rest = path.partition(".")
    obj = system.dram if head == "dram" else system[head]
    for name in rest.split("."):
        obj = getattr(obj, name)
    return obj


def test_the_template_runs_its_macs_on_the_squarest_array():
    assert template_array(4096) == (64, 64)
    assert template_array(144) == (12, 12)
    assert template_array(2 * 4096) == (64, 128)
    space = load_space("edgetpu")
    system = space.config(space.point({"pe_x": 2, "pe_y": 3, "cores": 4, "lanes": 20}))
    acc = system.accelerator[0]
    assert acc.array.rows * acc.array.cols == 2 * 3 * 4 * 20


def test_a_monolith_costs_what_the_scheduler_says():
    space = load_space("edgetpu")
    task = Task(models=("mobilenet_v2", "rnnt"), objective="energy")
    rng = np.random.default_rng(7)
    points = [tuple(int(rng.integers(n)) for n in space.shape) for _ in range(6)]
    for e in evaluate_points(space, task, points):
        system = space.config(e.point)
        for m in task.models:
            s = schedule(zoo.get(m), system)
            assert e.models[m][0] == pytest.approx(s.latency_s * 1e3, rel=1e-9)
            assert e.models[m][1] == pytest.approx(s.energy_pj * 1e-9, rel=1e-9)
        assert e.value == pytest.approx(math.sqrt(e.models["mobilenet_v2"][1] * e.models["rnnt"][1]), rel=1e-12)


def test_a_heterogeneous_system_is_scheduled_point_by_point():
    space = load_space("mensa-g")
    point = space.point({})
    (e,) = evaluate_points(space, Task(models=("rnnt",), objective="latency"), [point])
    assert e.models["rnnt"][0] == pytest.approx(schedule(zoo.get("rnnt"), space.base).latency_s * 1e3, rel=1e-12)


def test_bounds_are_constraints_that_name_themselves():
    space = load_space("edgetpu")
    big = space.point({"pe_x": 8, "pe_y": 8, "cores": 16, "lanes": 128})      # 131072 MACs > 256 x 256
    small = space.point({"pe_x": 1, "pe_y": 1, "cores": 1, "lanes": 4, "core_mem_kib": 4, "pe_mem_kib": 16})
    task = Task(models=("mobilenet_v2",), area_mm2=5.0, latency_ms=1.0)
    e_big, e_small = evaluate_points(space, task, [big, small])
    assert not e_big.feasible and "256 x 256" in e_big.reason and "area" in e_big.reason
    assert not e_small.feasible and "latency" in e_small.reason and math.isfinite(e_small.value)
    assert e_big.penalised > e_big.value
    fpga = load_space("edgetpu-fpga")
    task = Task(models=("ds_cnn",), dsp_max=fpga.constraints.dsp_max, bram_kib_max=fpga.constraints.bram_kib_max)
    (e,) = evaluate_points(fpga, task, [fpga.point({"pe_x": 2, "pe_y": 2, "cores": 4, "lanes": 32})])
    assert not e.feasible and "DSP" in e.reason


def test_a_grid_covering_the_space_finds_its_true_optimum(small):
    every = evaluate_points(small, TASK, small.points())
    optimum = min(e.value for e in every if e.feasible)
    found = search(small, TASK, "grid", small.size, lambda ps: evaluate_points(small, TASK, ps), batch=1000)
    assert len(found) == small.size == len(set(e.point for e in found))
    assert min(e.value for e in found if e.feasible) == optimum


def test_grid_levels_shrink_the_widest_parameter_first():
    assert grid_levels((5, 3), 100) == [(0, 1, 2, 3, 4), (0, 1, 2)]
    assert grid_levels((5, 3), 9) == [(0, 2, 4), (0, 1, 2)]


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_every_optimiser_evaluates_its_budget_of_distinct_points_reproducibly(small, kind):
    run = lambda: [e.point for e in search(small, TASK, kind, 24, lambda ps: evaluate_points(small, TASK, ps),
                                           seed=3, batch=4)]
    first = run()
    assert len(first) == len(set(first))
    # CMA-ES may converge on this small space and propose only points it has seen: search stops it then
    # (PROPOSALS_PER_POINT) rather than ask without end, a little short of the budget
    assert len(first) == 24 or (kind == "cmaes" and len(first) >= 16), len(first)
    assert run() == first


@pytest.mark.parametrize("kind", ["random", "evolution", "tpe"])
def test_a_search_resumes_from_its_record(small, kind, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    ev = lambda ps: evaluate_points(small, TASK, ps)
    part = search(small, TASK, kind, 12, ev, seed=5, storage=storage, batch=4)
    whole = search(small, TASK, kind, 28, ev, seed=5, storage=storage, batch=4)
    assert [e.point for e in whole[:12]] == [e.point for e in part]
    assert len(whole) == 28 == len({e.point for e in whole})
    if kind != "tpe":       # our own optimisers replay their record exactly
        fresh = search(small, TASK, kind, 28, ev, seed=5, batch=4)
        assert [e.point for e in fresh] == [e.point for e in whole]


def test_warm_points_are_evaluated_first(small):
    warm = [(2, 2, 4, 1), (0, 0, 0, 0)]
    found = search(small, TASK, "tpe", 10, lambda ps: evaluate_points(small, TASK, ps), warm=warm, batch=4)
    assert [e.point for e in found[:2]] == warm


def test_the_pareto_front_and_its_hypervolume_are_exact():
    rng = np.random.default_rng(0)
    pts = rng.random((40, 3))
    keep = pareto_front(pts)
    dominated = lambda i: any(np.all(pts[j] <= pts[i]) and np.any(pts[j] < pts[i]) for j in range(len(pts)))
    assert keep == [i for i in range(len(pts)) if not dominated(i)]
    assert hypervolume([[0.5, 0.5, 0.5]], [1, 1, 1]) == pytest.approx(0.125)
    # two boxes by inclusion-exclusion: 0.5*0.8*0.9 + 0.8*0.5*0.9 - 0.5*0.5*0.9
    assert hypervolume([[0.5, 0.2, 0.1], [0.2, 0.5, 0.1]], [1, 1, 1]) == pytest.approx(0.36 + 0.36 - 0.225)
    # against a Monte Carlo estimate on a random front
    front = pts[keep]
    sample = rng.random((200_000, 3))
    covered = np.zeros(len(sample), dtype=bool)
    for p in front:
        covered |= np.all(sample >= p, axis=1)
    assert hypervolume(front, [1, 1, 1]) == pytest.approx(covered.mean(), abs=0.01)


BAD_SPACES = [
    ("unknown key", SMALL + "colour = 1\n", ["colour", "unknown key"]),
    ("unknown accelerator", SMALL.replace('"pascal.array.rows"', '"tpu.array.rows"'), ["tpu.array.rows", "pascal"]),
    ("unknown field", SMALL.replace('"pascal.array.rows"', '"pascal.array.height"'), ["height", "allowed"]),
    ("value the config refuses", SMALL.replace("[8, 16, 32]", "[8, 16, 512]", 1), ["512", "1..256"]),
    ("no values", SMALL.replace("values = [64, 512]", ""), ["act_kib", "no values"]),
    ("no base", SMALL.replace('base = "pascal"', ""), ["base"]),
    ("unknown base", SMALL.replace('base = "pascal"', 'base = "nosuch"'), ["nosuch"]),
    ("two params on one field", SMALL.replace('"pascal.array.cols"', '"pascal.array.rows"'), ["set by two"]),
    ("bad constraint", SMALL + "[constraints]\narea_mm2 = -1\n", ["area_mm2", "positive"]),
    ("not TOML", "name = ", ["not valid TOML"]),
]


@pytest.mark.parametrize("what,text,words", BAD_SPACES, ids=[b[0] for b in BAD_SPACES])
def test_a_bad_space_is_refused_in_one_line(what, text, words):
    with pytest.raises(SpaceError) as e:
        loads_space(text)
    message = str(e.value)
    assert "\n" not in message
    for w in words:
        assert w in message


def test_a_near_memory_units_dsp_blocks_follow_its_lanes_and_requantiser_passes():
    # bench/fit.py on mensa-g-fpga's units: pavlov (4 vaults x 4 lanes, LSTM) 56 DSP blocks with a lane of each
    # requantiser a lane of the unit, 38 with one lane each; jacquard (4 x 8) 56, and 35 with one lane
    pavlov = NearMemConfig(vaults=4, lanes=4, lstm=True)
    jacquard = NearMemConfig(vaults=4, lanes=8)
    assert [nearmem_dsp(pavlov), nearmem_dsp(dataclasses.replace(pavlov, requant_passes=4))] == [56, 38]
    assert [nearmem_dsp(jacquard), nearmem_dsp(dataclasses.replace(jacquard, requant_passes=8))] == [56, 35]
