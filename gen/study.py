"""``mensa study nasbench101``: every NAS-Bench-101 network on the Edge TPU classes, to Parquet.

The space is enumerated once into ``OUT/cells.npz`` (:func:`mensa.model.nasbench.load_or_enumerate`).
The sweep runs in chunks of :data:`CHUNK` networks (:func:`mensa.gen.parallel.run_tasks`: local
processes, or Ray with ``--ray-address``); each finished chunk is written at once as
``OUT/parts/part-NNNNN.parquet``, so a killed run resumes where it stopped. When every chunk is
there they are joined, in the space's order, into ``OUT/nasbench101.parquet``.
``OUT/study.json`` records the options; a resumed run must give the same ones.
"""

import json
from pathlib import Path

import numpy as np

from mensa.core.errors import UserError
from mensa.gen.parallel import run_tasks
from mensa.model.nasbench import CellSpace, load_or_enumerate
from mensa.model.study import CLASSES, GRAPH_FEATURES, Sweep, class_system, graph_features

__all__ = ["CHUNK", "TABLE", "StudyError", "select", "sweep_chunk", "run_sweep", "read_table"]

CHUNK = 4096
TABLE = "nasbench101.parquet"


class StudyError(UserError):
    """A study folder or option that cannot be used."""


def select(count, limit):
    """Indices of the cells a study covers: all, or ``limit`` of them spread evenly over the space."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def _upper_bits(m, v):
    """The matrix as the published generator's bits: bit ``x + y (y - 1) / 2`` is the edge x -> y."""
    return sum(int(m[x, y]) << (x + y * (y - 1) // 2) for y in range(v) for x in range(y))


_CACHE = {}


def sweep_chunk(task):
    """One chunk of the sweep (run in a worker): the columns of its networks, by name."""
    space_path, indices, classes = task
    if _CACHE.get("space_path") != space_path:
        _CACHE.update(space_path=space_path, space=CellSpace.load(space_path))
    if _CACHE.get("classes") != classes:
        _CACHE.update(classes=classes, sweep=Sweep([class_system(c) for c in classes]))
    space, sweep = _CACHE["space"], _CACHE["sweep"]
    cells = [space.cell(int(i)) for i in indices]
    figs = sweep.run(cells)
    feats = np.array([graph_features(c) for c in cells], dtype=np.int64).reshape(len(cells), len(GRAPH_FEATURES))
    cols = {"index": np.asarray(indices, dtype=np.int64), "hash": space.hashes[indices].astype(str),
            "matrix": np.array([_upper_bits(space.matrices[i], int(space.vertices[i])) for i in indices],
                               dtype=np.int64),
            "ops": np.array(["".join(str(k) for k in space.ops[i, :space.vertices[i] - 2]) for i in indices])}
    cols.update({f: feats[:, j] for j, f in enumerate(GRAPH_FEATURES)})
    for name, system in zip(classes, sweep.systems):
        for col in ("latency_ms", "energy_uj", "utilisation", "dram_bytes"):
            cols[f"{col}_{name}"] = figs[f"{col}_{system.name}"]
    for col in ("macs", "params", "layers", "act_bytes"):
        cols[col] = figs[col]
    return cols


def _check_meta(out, meta):
    path = out / "study.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old != meta:
            raise StudyError(f"{out}: holds a study run with other options ({old}); allowed: the same options "
                             f"to resume it, or another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "study.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
        tmp.replace(path)


def run_sweep(out, *, classes=tuple(CLASSES), limit=None, ray_address=None, workers=None, progress=None):
    """Sweep the space into ``out``; returns the path of the joined table.

    ``progress(stage, done, total)`` is called as the work advances (stages ``enumerate``,
    ``sweep``, ``join``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    out = Path(out)
    _check_meta(out, {"space": "nasbench101", "classes": list(classes), "limit": limit, "chunk": CHUNK})
    table = out / TABLE
    if table.exists():
        return table
    space_path = out / "cells.npz"
    if progress:
        progress("enumerate", 0, 6)
    def map_chunks(fn, chunks):     # the hashing of the enumeration, on the sweep's workers
        out = [None] * len(chunks)
        for i, result in run_tasks(fn, chunks, ray_address=ray_address, workers=workers):
            out[i] = result
        return out
    space = load_or_enumerate(space_path, progress=progress and (lambda v, n: progress("enumerate", v - 1, 6)),
                              map_chunks=map_chunks)
    indices = select(len(space), limit)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    chunks = [indices[i:i + CHUNK] for i in range(0, len(indices), CHUNK)]
    todo = [k for k in range(len(chunks)) if not (parts / f"part-{k:05d}.parquet").exists()]
    done = len(indices) - sum(len(chunks[k]) for k in todo)
    if progress:
        progress("sweep", done, len(indices))
    tasks = [(str(space_path), chunks[k], tuple(classes)) for k in todo]
    for j, cols in run_tasks(sweep_chunk, tasks, ray_address=ray_address, workers=workers):
        k = todo[j]
        tmp = parts / f"part-{k:05d}.parquet.tmp"
        pq.write_table(pa.table(cols), tmp)
        tmp.replace(parts / f"part-{k:05d}.parquet")
        done += len(chunks[k])
        if progress:
            progress("sweep", done, len(indices))
    if progress:
        progress("join", 0, 1)
    joined = pa.concat_tables([pq.read_table(parts / f"part-{k:05d}.parquet") for k in range(len(chunks))])
    tmp = out / (TABLE + ".tmp")
    pq.write_table(joined, tmp)
    tmp.replace(table)
    if progress:
        progress("join", 1, 1)
    return table


def read_table(out):
    """The joined table of a finished sweep as a dict of numpy arrays."""
    import pyarrow.parquet as pq
    path = Path(out) / TABLE
    if not path.exists():
        raise StudyError(f"{out}: no {TABLE}; allowed: a folder a finished `mensa study nasbench101 --out` wrote")
    t = pq.read_table(path)
    return {name: t.column(name).to_numpy() for name in t.column_names}
