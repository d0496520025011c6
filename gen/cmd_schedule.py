"""``mensa schedule``: put every layer of a model (a zoo name or an ONNX file) on an accelerator of a system."""

from pathlib import Path

from mensa.core.config import load

from mensa.gen.cmd_analyze import load_model
from mensa.model.schedule import OBJECTIVES, ScheduleError, schedule
from mensa.core.files import write_json
from mensa.gen import args as types

__all__ = ["add_arguments", "run", "parse_pins", "write_json"]

DEFAULT_SYSTEM = "mensa-g"


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="a zoo model (see `mensa models`) or an .onnx file")
    parser.add_argument("--system", type=Path, default=DEFAULT_SYSTEM,
                        help="system config: a TOML file or a preset name (default: mensa-g)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="latency",
                        help="what to minimise (default: latency)")
    parser.add_argument("--pin", action="append", default=[], metavar="LAYER=ACCELERATOR",
                        help="place a layer by hand (repeatable)")
    parser.add_argument("--json", type=types.out_file, metavar="PATH", help="also write the schedule as JSON")


def parse_pins(items):
    pins = {}
    for item in items:
        layer, sep, acc = item.partition("=")
        if not sep or not layer or not acc:
            raise ScheduleError(f"--pin {item!r}: expected LAYER=ACCELERATOR")
        pins[layer] = acc
    return pins


def print_schedule(sched, console):
    from rich.table import Table
    table = Table(title=f"{sched.network} on {sched.system} (objective: {sched.objective})")
    for col, just in (("layer", "left"), ("op", "left"), ("accelerator", "left"), ("cycles", "right"),
                      ("us", "right"), ("util %", "right"), ("energy uJ", "right"), ("moved in kB", "right")):
        table.add_column(col, justify=just)
    for p in sched.placements:
        table.add_row(p.layer, p.op, p.accelerator + (" (pinned)" if p.pinned else ""), f"{p.cycles:,.0f}",
                      f"{p.seconds * 1e6:,.1f}", f"{100 * p.utilisation:.1f}",
                      f"{sum(p.energy_pj.values()) / 1e6:,.2f}",
                      f"{p.transfer_bytes / 1e3:,.1f}" if p.transfer_bytes else "")
    console.print(table)
    counts = {}
    for p in sched.placements:
        counts[p.accelerator] = counts.get(p.accelerator, 0) + 1
    console.print(f"layers per accelerator: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    console.print(f"latency {sched.latency_s * 1e3:.3f} ms, energy {sched.energy_pj / 1e9:.3f} mJ, "
                  f"{sched.macs / 1e6:,.1f} M MACs, {sched.macs_per_joule / 1e12:.3f} TMAC/J, "
                  f"area {sched.area_mm2:.2f} mm^2 (45 nm)")
    parts = sched.energy_breakdown_pj
    total = sum(parts.values())
    console.print("energy by component: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in parts.items() if v))


def run(args):
    from rich.console import Console
    system = load(args.system)
    network = load_model(args.model)
    pins = parse_pins(args.pin)
    sched = schedule(network, system, objective=args.objective, pins=pins)
    if args.json:
        write_json(args.json, sched.to_dict())
    print_schedule(sched, Console(width=None if Console().is_terminal else 160))
    return 0
