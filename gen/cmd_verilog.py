"""``mensa verilog``: write the RTL of a configuration."""

from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mensa.core.config import load
from mensa.gen import args as types
from mensa.gen.verilog import UNITS, add_time_limit_argument, check_elaboration, emit

DEFAULT_CONFIG = "pascal"


def add_arguments(parser):
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="system config: a TOML file or a preset name (default: pascal)")
    parser.add_argument("--out", type=types.out_dir, default=Path("build/verilog"),
                        help="output folder (default: build/verilog)")
    parser.add_argument("--unit", choices=UNITS, default="accelerator",
                        help="the whole accelerator (default), its core alone (the PE array, the bare near-memory "
                             "unit), or a systolic accelerator's requantiser alone")
    add_time_limit_argument(parser)


def run(args):
    system = load(args.config)
    estimates = check_elaboration("verilog", system.accelerator, args.unit, no_time_limit=args.no_time_limit)
    n = len(system.accelerator)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("elaborating", total=None)

        def step(index, acc):
            progress.update(task, description=f"elaborating {acc.name} ({index + 1} of {n}, about "
                                              f"{estimates[index]:.0f} s)")
        written = emit(system, args.out, args.unit, on_elaborate=step)
    for path, changed in written:
        print(f"{'wrote    ' if changed else 'unchanged'} {path}")
    return 0
