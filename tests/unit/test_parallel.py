"""mensa.gen.parallel: every task's result comes back once, with its index, locally and on Ray."""

import math

import pytest

from mensa.gen.parallel import ClusterError, run_tasks


@pytest.mark.parametrize("workers", [1, 2])
def test_every_task_comes_back_once_with_its_index(workers):
    tasks = list(range(37))
    out = list(run_tasks(math.factorial, tasks, workers=workers))
    assert sorted(i for i, _ in out) == tasks
    assert all(r == math.factorial(tasks[i]) for i, r in out)


def test_a_failing_task_raises_in_the_caller():
    with pytest.raises(ValueError):
        list(run_tasks(math.sqrt, [4, -1, 9], workers=2))


@pytest.mark.slow
def test_a_local_ray_cluster_runs_the_same_tasks():
    ray = pytest.importorskip("ray")
    try:
        out = dict(run_tasks(math.factorial, range(9), ray_address="local"))
    finally:
        ray.shutdown()
    assert out == {i: math.factorial(i) for i in range(9)}


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-port", "ray://:x"])
def test_an_address_nothing_answers_is_refused_in_one_line(address):
    with pytest.raises(ClusterError, match="--ray-address"):
        list(run_tasks(math.sqrt, [1.0], ray_address=address))
