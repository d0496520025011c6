"""``mensa analyze MODEL``: characterise a model's layers and place them in the zoo's families.

Prints a per-layer table and the family table, and writes ``<out>/<model>.json``,
``<out>/<model>_layers.png`` (the model's layers over the zoo's) and ``<out>/zoo_layers.png``.
"""

import json
import math
from pathlib import Path

from rich.table import Table

from mensa.gen.cmd_models import make_console
from mensa.model import analysis, zoo
from mensa.gen import args as types

__all__ = ["add_arguments", "run", "load_model", "plot_layers"]


def add_arguments(parser):
    parser.add_argument("model", help=f"a zoo model ({', '.join(zoo.names())}) or an .onnx file")
    parser.add_argument("--out", type=types.out_dir, default=None, help="output folder (default: build/analyze/MODEL)")
    parser.add_argument("--families", type=types.positive_int(64), default=5, help="number of families (default 5)")
    parser.add_argument("--seed", type=types.seed, default=0, help="k-means seed (default 0)")


def onnx_path(spec):
    """The ONNX file ``spec`` names (not a zoo name), else None."""
    path = Path(spec)
    return path if spec not in zoo.MODELS and (path.suffix.lower() == ".onnx" or path.exists()) else None


def load_model(spec):
    """A zoo name or an ONNX file path -> :class:`~mensa.core.ir.Network`."""
    path = onnx_path(spec)
    if path:
        from mensa.model.onnx_import import import_onnx
        return import_onnx(path).network
    return zoo.get(spec)     # raises UnknownModelError naming the zoo's models


def _human(n, unit=""):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}"
    return f"{n:.3g} {unit}".rstrip()


def plot_layers(path, title, points, background=(), families=()):
    """Scatter of arithmetic intensity (x) against parameter footprint (y), one colour per family.

    ``points`` and ``background`` are ``(features, family)`` pairs; layers without MACs are skipped.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    colours = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(8, 6.5), dpi=120)
    # A fixed layout instead of bbox_inches="tight", which draws the figure twice.
    ax = fig.add_axes((0.11, 0.3, 0.86, 0.64))
    bg = [f for f, _ in background if f.macs > 0]
    if bg:
        ax.scatter([f.intensity for f in bg], [max(f.param_bytes, 1) for f in bg], s=10, c="0.85",
                   label="zoo layers", zorder=1)
    for fam in families:
        sel = [f for f, i in points if i == fam.index]
        if not sel:
            continue
        ax.scatter([f.intensity for f in sel], [max(f.param_bytes, 1) for f in sel],
                   s=[12 + 6 * max(0.0, math.log10(f.macs) - 4) ** 1.5 for f in sel],
                   color=colours(fam.index % 10), alpha=0.75, edgecolors="k", linewidths=0.3,
                   label=f"F{fam.index}: {fam.label}; median {fam.intensity:.3g} MAC/B, "
                         f"{_human(fam.param_bytes, 'B')} params [{len(sel)} layers]", zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MAC per DRAM byte, each byte moved once)")
    ax.set_ylabel("parameter footprint (bytes)")
    skipped = sum(1 for f, _ in points if f.macs == 0)
    ax.set_title(f"{title}  ({skipped} data-movement layers without MACs not shown)", fontsize=10)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower left", bbox_to_anchor=(0.08, 0.01), ncol=1,
               frameon=False)
    fig.savefig(path)
    plt.close(fig)


def run(args):
    net = load_model(args.model)
    zoo_feats, families = analysis.zoo_families(k=args.families, seed=args.seed)
    feats = analysis.characterise(net)
    assigned = families.assign(feats)

    name = Path(args.model).stem if args.model not in zoo.MODELS else args.model
    out = args.out or Path("build/analyze") / name

    table = Table(title=f"{net.name}: {len(net.layers)} layers, {_human(net.macs)}MAC, "
                        f"{_human(net.params)} params ({net.kind})")
    for col in ("layer", "op", "MACs", "params B", "act in B", "act out B", "MAC/B", "MAC/B no reuse",
                "param reuse", "rec", "family"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right", no_wrap=True)
    for f, fam in zip(feats, assigned):
        table.add_row(f.layer, f.op, _human(f.macs), _human(f.param_bytes), _human(f.act_in_bytes),
                      _human(f.act_out_bytes), f"{f.intensity:.3g}", f"{f.intensity_no_reuse:.3g}",
                      f"{f.param_reuse:.3g}", "yes" if f.recurrent else "", "-" if fam is None else f"F{fam}")
    ftable = Table(title=f"layer families of the zoo ({len(zoo_feats)} layers, k-means k={args.families}, "
                         f"seed {args.seed}; intensity spread {families.intensity_spread():.1f}x)")
    for col in ("family", "zoo layers", "in this model", "median MAC/B", "median params B", "median reuse",
                "ops", "label"):
        ftable.add_column(col, justify="left" if col in ("family", "ops", "label") else "right", no_wrap=True)
    for fam in families:
        mine = sum(1 for a in assigned if a == fam.index)
        ops = ", ".join(f"{k} {v}" for k, v in fam.ops.items())
        ftable.add_row(f"F{fam.index}", str(fam.count), str(mine), f"{fam.intensity:.3g}",
                       _human(fam.param_bytes), f"{fam.param_reuse:.3g}", ops, fam.label)

    report = {
        "model": net.name, "kind": net.kind, "macs": net.macs, "params": net.params,
        "definitions": {
            "intensity": "MACs / (param_bytes + act_in_bytes + act_out_bytes): each DRAM byte moved once",
            "intensity_no_reuse": "MACs / (2 * MACs + act_out_bytes): weight and input byte fetched per MAC",
            "param_reuse": "MACs per weight", "param_bytes": "int8 weights + int32 biases",
        },
        "layers": [f.as_dict() | {"family": fam} for f, fam in zip(feats, assigned)],
        "families": [fam.summary() | {"members_in_model": sum(1 for a in assigned if a == fam.index)}
                     for fam in families],
    }
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=1))
    model_png = out / f"{name}_layers.png"
    zoo_png = out / "zoo_layers.png"
    zoo_assigned = families.assign(zoo_feats)
    plot_layers(model_png, f"{net.name}: layers by family", list(zip(feats, assigned)),
                background=list(zip(zoo_feats, zoo_assigned)), families=families)
    plot_layers(zoo_png, f"mensa zoo: {len(zoo.names())} models, {len(zoo_feats)} layers",
                list(zip(zoo_feats, zoo_assigned)), families=families)

    console = make_console(width=170)
    console.print(table)
    console.print(ftable)
    for p in (json_path, model_png, zoo_png):
        console.print(f"wrote {p}")
    return 0
