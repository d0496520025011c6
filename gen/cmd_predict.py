"""``mensa predict``: the learned model's latency and energy of a NAS-Bench-101 cell on the Edge TPU classes.

The cell is given as its adjacency matrix (JSON, upper triangular) and its ops; the model is the
one ``mensa study nasbench101 --report`` trained (``OUT/perf_model``). The cost model's own
figures are printed beside the prediction, so its error shows.
"""

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mensa.core.errors import UserError
from mensa.gen.args import out_file
from mensa.model.nasbench import OPS, Cell
from mensa.model.study import CLASSES, Sweep, class_system

__all__ = ["add_arguments", "run"]

_SHORT = {op.split("-")[0]: op for op in OPS}


class PredictError(UserError):
    """A model folder that cannot be read."""


def _matrix(text):
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: not JSON; allowed: rows of 0 and 1, e.g. "
                                         f"'[[0,1,1],[0,0,1],[0,0,0]]'") from None
    if not isinstance(value, list) or not all(isinstance(r, list) for r in value):
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: not a list of rows; allowed: e.g. '[[0,1],[0,0]]'")
    return value


def _ops(text):
    ops = [o.strip() for o in text.split(",")]
    return [_SHORT.get(o, o) for o in ops]


def add_arguments(parser):
    parser.add_argument("--model", type=Path, required=True,
                        help="a trained model folder (OUT/perf_model of `mensa study nasbench101 --report`)")
    parser.add_argument("--matrix", type=_matrix, required=True,
                        help="adjacency matrix as JSON, upper triangular, vertex 0 the input and the last the output")
    parser.add_argument("--ops", type=_ops, required=True,
                        help=f"one op per vertex, comma-separated: input, then {', '.join(OPS)} "
                             f"(or {', '.join(_SHORT)}), then output")
    parser.add_argument("--json", type=out_file, default=None, help="also write the figures as JSON")


def run(args):
    from mensa.model.perf_model import PerfModel, cell_features, class_features
    cell = Cell.parse(args.matrix, args.ops)
    if not (args.model / "features.json").exists():
        raise PredictError(f"{args.model}: no trained model (features.json missing); allowed: the perf_model "
                           f"folder `mensa study nasbench101 --report` wrote")
    try:
        model = PerfModel.load(args.model)
    except (OSError, ValueError, KeyError) as e:
        raise PredictError(f"{args.model}: cannot read the model ({str(e).splitlines()[0] if str(e) else e!r}); "
                           f"allowed: a folder `mensa study nasbench101 --report` wrote") from None
    systems = [class_system(c) for c in CLASSES]
    t0 = time.perf_counter()
    feats = cell_features(cell)
    rows = [feats + class_features(s) for s in systems]
    pred = model.predict(rows)
    predict_us = (time.perf_counter() - t0) * 1e6
    exact = Sweep(systems).run([cell])
    out = {"cell": {"matrix": [list(r) for r in cell.matrix], "ops": list(cell.ops), "hash": cell.hash},
           "predict_us": predict_us, "classes": {}}
    table = Table(title=f"cell {cell.hash}: {cell.vertices} vertices, {cell.edges} edges "
                        f"(predicted in {predict_us:.0f} us)")
    for col in ("class", "latency ms", "cost model ms", "error", "energy uJ", "cost model uJ", "error"):
        table.add_column(col, justify="right")
    for k, (c, s) in enumerate(zip(CLASSES, systems)):
        lat, uj = float(pred["latency_ms"][k]), float(pred["energy_uj"][k])
        lat_x, uj_x = float(exact[f"latency_ms_{s.name}"][0]), float(exact[f"energy_uj_{s.name}"][0])
        out["classes"][c] = {"latency_ms": lat, "energy_uj": uj, "cost_model_latency_ms": lat_x,
                             "cost_model_energy_uj": uj_x}
        table.add_row(c.upper(), f"{lat:.4f}", f"{lat_x:.4f}", f"{lat / lat_x - 1:+.1%}", f"{uj:.1f}", f"{uj_x:.1f}",
                      f"{uj / uj_x - 1:+.1%}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0

