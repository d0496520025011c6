"""``mensa verilog``: write the RTL of a configuration."""

from pathlib import Path

from mensa.gen.verilog import UNITS, emit
from mensa.core.config import load
from mensa.gen import args as types

DEFAULT_CONFIG = "pascal"


def add_arguments(parser):
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="system config: a TOML file or a preset name (default: pascal)")
    parser.add_argument("--out", type=types.out_dir, default=Path("build/verilog"),
                        help="output folder (default: build/verilog)")
    parser.add_argument("--unit", choices=UNITS, default="accelerator",
                        help="the whole accelerator (default), or only the PE array of systolic accelerators")


def run(args):
    system = load(args.config)
    for path, written in emit(system, args.out, args.unit):
        print(f"{'wrote    ' if written else 'unchanged'} {path}")
    return 0
