"""``mensa verilog``: write the RTL of a configuration."""

from pathlib import Path

from mensa.gen.verilog import UNITS, emit
from mensa.core.config import load

DEFAULT_CONFIG = "pascal"


def add_arguments(parser):
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="system config: a TOML file or a preset name (default: pascal)")
    parser.add_argument("--out", type=Path, default=Path("build/verilog"),
                        help="output folder (default: build/verilog)")
    parser.add_argument("--unit", choices=UNITS, default="accelerator",
                        help="the whole accelerator (default), or only the PE array of systolic accelerators")


def run(args):
    system = load(args.config)
    for path, written in emit(system, args.out, args.unit):
        print(f"{'wrote    ' if written else 'unchanged'} {path}")
    return 0
