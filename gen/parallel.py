"""Run many independent evaluations: local processes by default, a Ray cluster when given its address.

Sweeps (``mensa study``, ``mensa explore``) hand :func:`run_tasks` a picklable function
and its tasks; results come back as they finish, with their task's index, so a caller
can write them (and a progress bar can advance) while the rest still run. There is one
way to go parallel in mensa: this one. No cluster code of mensa's own: a cluster is
Ray's (``ray start --head`` on one machine, ``ray start --address`` on the others).
"""

import os
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from mensa.core.errors import UserError

__all__ = ["run_tasks", "check_address", "ClusterError", "local_workers"]


class ClusterError(UserError):
    """A Ray address that cannot be reached, or Ray not installed."""


def local_workers():
    """Processes a local run uses: the cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:      # pragma: no cover - macOS
        return os.cpu_count() or 1


def run_tasks(fn, tasks, *, ray_address=None, workers=None):
    """Yield ``(index, fn(task))`` for every task, in the order they finish.

    Parameters
    ----------
    fn : callable
        A module-level (picklable) function of one argument.
    tasks : sequence
    ray_address : str, optional
        A Ray cluster (``"auto"``, ``"ray://host:10001"`` or ``"host:6379"``); ``None`` runs
        locally.
    workers : int, optional
        Local processes (default: :func:`local_workers`); 1 runs in this process.
    """
    tasks = list(tasks)
    if ray_address is not None:
        yield from _on_ray(fn, tasks, ray_address)
        return
    workers = min(workers or local_workers(), max(len(tasks), 1))
    if workers == 1:
        for i, task in enumerate(tasks):
            yield i, fn(task)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # At most two tasks per worker in flight: results stream out as the first ones finish.
        pending, it = {}, iter(enumerate(tasks))
        def submit():
            for i, task in it:
                pending[pool.submit(fn, task)] = i
                if len(pending) >= 2 * workers:
                    return
        submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield pending.pop(f), f.result()
            submit()


def check_address(address):
    """A ``host:port`` (or ``ray://host:port``) that answers no TCP connection is refused at once:
    Ray itself would wait for it without end."""
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--ray-address {address}: not an address; allowed: host:port, ray://host:port, "
                           f"'auto' or 'local'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ClusterError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); allowed: the "
                           f"address `ray start --head` printed") from None


def _call(fn, task):
    return fn(task)


def _on_ray(fn, tasks, address):
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray-address {address}: Ray is not installed; allowed: pip install 'mensa[cluster]' "
                           f"or run without --ray-address") from None
    if not ray.is_initialized():
        check_address(address)
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClusterError(f"--ray-address {address}: cannot join a Ray cluster there ({first}); allowed: "
                               f"the address `ray start --head` printed, or 'auto' on a cluster node") from None
    remote = ray.remote(_call)
    fn_ref = ray.put(fn)
    index = {}
    for i, task in enumerate(tasks):
        index[remote.remote(fn_ref, task)] = i
    pending = list(index)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            yield index[ref], ray.get(ref)
