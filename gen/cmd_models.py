"""``mensa models``: list the model zoo with each network's MACs and parameters."""

import json

from rich.console import Console
from rich.table import Table

from mensa.model import zoo

__all__ = ["add_arguments", "run", "zoo_summary", "make_console"]


def make_console(width=120):
    """A rich console; ``width`` columns when the output is not a terminal (a pipe or a log file)."""
    console = Console()
    return console if console.is_terminal else Console(width=width)


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def zoo_summary():
    """One dict per zoo model: name, kind, layers, MACs, parameters, input shape."""
    rows = []
    for name in zoo.names():
        net = zoo.get(name)
        rows.append({"name": name, "kind": net.kind, "layers": len(net.layers), "macs": net.macs,
                     "params": net.params, "input_shape": list(net.input_shape)})
    return rows


def run(args):
    rows = zoo_summary()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="mensa model zoo (one inference / invocation, batch 1)")
    for col, justify in (("model", "left"), ("kind", "left"), ("layers", "right"), ("MACs", "right"),
                         ("params", "right"), ("input", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["kind"], str(r["layers"]), f"{r['macs'] / 1e6:,.1f} M",
                      f"{r['params'] / 1e6:,.3f} M", "x".join(map(str, r["input_shape"])))
    make_console().print(table)
    return 0
