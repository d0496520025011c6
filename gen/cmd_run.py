"""``mensa run``: a whole network on the RTL of a system, every layer checked against the golden model.

The model (a zoo name, with random weights from ``--seed``, or an ONNX file, with its own; a
quantised ONNX model keeps its quantisation) is quantised on a random calibration input; the scheduler places its layers (``--pin`` as for ``mensa
schedule``); the network compiler writes one DRAM image and a command list; a Verilator C++
harness (the accelerator, its DRAM in C++ with ``--latency`` and ``--pause``, and mensa's C
runtime replaying the list) runs it with no Python per cycle. Printed per layer: the
accelerator, measured cycles, the cost model's prediction and the error, bit-exactness;
then totals, utilisation per accelerator and the simulation speed. ``--json`` writes it all,
``--timeline`` draws which accelerator ran what, when.
"""

from pathlib import Path

import numpy as np

from mensa.core.config import load
from mensa.gen import args as types
from mensa.gen.cmd_analyze import load_model, onnx_path
from mensa.gen.cmd_schedule import parse_pins
from mensa.core.files import write_json
from mensa.core.ir import Op
from mensa.model.schedule import schedule

__all__ = ["add_arguments", "run", "DEFAULT_SYSTEM", "load_network", "random_inputs"]

DEFAULT_SYSTEM = "pascal-fpga"


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="a zoo model (see `mensa models`) or an .onnx file")
    parser.add_argument("--system", type=Path, default=DEFAULT_SYSTEM,
                        help=f"system config: a TOML file or a preset name (default: {DEFAULT_SYSTEM})")
    parser.add_argument("--pin", action="append", default=[], metavar="LAYER=ACCELERATOR",
                        help="place a layer by hand (repeatable)")
    parser.add_argument("--frames", type=types.positive_int(64), default=1,
                        help="consecutive inferences, pipelined across the accelerators (default: 1)")
    parser.add_argument("--latency", type=types.positive_int(10_000), default=None,
                        help="DRAM read latency in cycles per burst (default: the system's dram.latency_cycles)")
    parser.add_argument("--pause", type=types.probability, default=0.0,
                        help="probability that an AXI channel of the DRAM pauses in a cycle (default: 0)")
    parser.add_argument("--seed", type=types.seed, default=1,
                        help="seed of the weights, the input and the DRAM's pauses (default: 1)")
    parser.add_argument("--json", type=types.out_file, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--timeline", type=types.out_file, metavar="PNG",
                        help="also draw the timeline: which accelerator ran which layer, when")


def load_network(spec):
    """``(network, float weights, golden params)`` of a zoo name (no weights: random ones) or an ONNX
    file (its weights; a quantised ONNX model's own parameters)."""
    path = onnx_path(spec)
    if path:
        from mensa.model.onnx_import import import_onnx
        imported = import_onnx(path)
        return imported.network, imported.float_params, imported.golden_params
    return load_model(spec), None, None


def random_inputs(net, seed, frames):
    """One random int8 input (a dict of every network input) per frame."""
    rng = np.random.default_rng([seed, 1])
    return [{"input": rng.integers(-128, 128, size=net.input_shape, dtype=np.int8)}
            | {n: rng.integers(-128, 128, size=s, dtype=np.int8) for n, s in net.extra_inputs} for _ in range(frames)]


def run(args):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mensa.gen.network_run import compile_for_rtl, quantised, run_on_rtl

    system = load(args.system)
    net, weights, params = load_network(args.model)
    pins = parse_pins(args.pin)
    console = Console(stderr=True)
    with console.status(f"{net.name}: quantise, schedule and compile for {system.name}"):
        qnet, params = (net, params) if params else quantised(net, args.seed, weights)
        sched = schedule(qnet, system, pins=pins)
        prog = compile_for_rtl(qnet, params, system, sched, frames=args.frames)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("build", total=None)
        stages = {"build": "build the harness (Verilator)", "run": f"run {net.name}: layer"}

        def progress(stage, done, total):
            bar.update(task, description=stages[stage], completed=done, total=total)

        result = run_on_rtl(prog, system, sched, random_inputs(qnet, args.seed, args.frames), latency=args.latency,
                            pause=args.pause, seed=args.seed, progress=progress)
    layouts = [l.name for l in qnet.layers if l.op is Op.CONCAT]
    _print(result, system, args, Console(width=None if Console().is_terminal else 160), layouts)
    data = result.to_dict() | {"seed": args.seed, "pause": args.pause,
                               "latency": args.latency or system.dram.latency_cycles}
    if args.json:
        write_json(args.json, data)
        print(f"wrote {args.json}")
    if args.timeline:
        draw_timeline(args.timeline, result)
        print(f"wrote {args.timeline}")
    return 0 if result.bit_exact else 1


def _print(result, system, args, console, layouts=()):
    from rich.table import Table
    table = Table(title=f"{result.network} on the RTL of {result.system} (DRAM latency "
                        f"{args.latency or system.dram.latency_cycles}, pause {args.pause:g})")
    frame = (("frame", "right"),) if result.frames > 1 else ()
    for col, just in (("layer", "left"), *frame, ("op", "left"), ("accelerator", "left"), ("cycles", "right"),
                      ("model", "right"), ("error %", "right"), ("util %", "right"), ("DRAM kB r/w", "right"),
                      ("bit-exact", "left")):
        table.add_column(col, justify=just)
    for r in result.layers:
        table.add_row(r.layer, *((str(r.frame),) if frame else ()), r.op, f"{r.accelerator} ({r.engine})",
                      f"{r.cycles:,}", f"{r.predicted:,.0f}", f"{100 * r.error:+.2f}", f"{100 * r.utilisation:.1f}",
                      f"{r.read_bytes / 1e3:,.1f}/{r.written_bytes / 1e3:,.1f}", "yes" if r.bit_exact else "NO")
    console.print(table)
    if layouts:
        console.print(f"concat {', '.join(layouts)}: a layout, no command (the producers wrote side by side)")
    d = result.to_dict()
    wrong = [r.layer for r in result.layers if not r.bit_exact]
    console.print(f"{len(result.layers) - len(wrong)} of {len(result.layers)} layers bit-exact with the golden model"
                  + (f"; wrong: {', '.join(wrong)}" if wrong else ""))
    console.print(f"layer cycles {d['layer_cycles']:,} measured, {d['predicted_cycles']:,.0f} by the cost model "
                  f"({100 * d['error']:+.2f}%); {result.total_cycles:,} cycles from reset to the end, register "
                  f"writes included")
    if result.frames > 1:
        console.print(f"{result.frames} frames in {result.total_cycles:,} cycles: "
                      f"{result.total_cycles / result.frames:,.0f} cycles per frame, pipelined across the accelerators")
    for acc in sorted({r.accelerator for r in result.layers}):
        mine = [r for r in result.layers if r.accelerator == acc]
        busy = sum(r.cycles for r in mine)
        peak = max(r.lanes for r in mine if r.engine != "vector") if any(r.engine != "vector" for r in mine) else 0
        macs = sum(r.macs for r in mine)
        console.print(f"{acc}: {len(mine)} layers, busy {busy:,} of {result.total_cycles:,} cycles"
                      + (f", array utilisation {macs / (busy * peak):.1%} over its layers" if peak else ""))
    read, written = sum(r.read_bytes for r in result.layers), sum(r.written_bytes for r in result.layers)
    console.print(f"DRAM: {read:,} B read, {written:,} B written; image {result.image_bytes:,} B ({result.activation_bytes:,} B of activation buffers); "
                  f"simulated {result.total_cycles:,} cycles in {result.wall_seconds:.1f} s "
                  f"({result.cycles_per_second:,.0f} cycles/s; harness built in {result.build_seconds:.1f} s)")


def draw_timeline(path, result):
    """A Gantt chart of the run: one row per accelerator, one bar per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    accs = sorted({r.accelerator for r in result.layers})
    colours = {"gemm": "tab:blue", "vector": "tab:orange", "nearmem": "tab:green"}
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.6 * len(accs)))
    for r in result.layers:
        ax.barh(accs.index(r.accelerator), r.end - r.start, left=r.start, color=colours[r.engine],
                edgecolor="black", linewidth=0.3)
    ax.set_yticks(range(len(accs)), [f"{a}" for a in accs])
    ax.set_xlabel("cycle")
    ax.set_title(f"{result.network} on {result.system}: blue the systolic array, orange the vector unit")
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".part")
    fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    tmp.replace(path)
