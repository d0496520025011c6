"""``mensa verilog``: write the RTL of a configuration."""

from pathlib import Path

from mensa.gen.verilog import emit
from mensa.hw.config import load

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pascal.toml"


def add_arguments(parser):
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="system config (TOML); default: configs/pascal.toml")
    parser.add_argument("--out", type=Path, default=Path("build/verilog"),
                        help="output folder (default: build/verilog)")


def run(args):
    system = load(args.config)
    for path, written in emit(system, args.out):
        print(f"{'wrote    ' if written else 'unchanged'} {path}")
    return 0
