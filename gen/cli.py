"""The ``mensa`` command.

Each subcommand lives in its own module ``mensa.gen.cmd_<name>`` with
``add_arguments(parser)`` and ``run(args) -> int``; add a command by adding
its name to ``COMMANDS``. A user's mistake (:class:`UserError`) prints one
line and exits with status 2.
"""

import argparse
import importlib
import sys

from mensa.core.errors import UserError
from mensa.gen.verilog import tool_versions

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "verilog": "write Verilog, manifest, filelist and register header for a config",
    "models": "list the model zoo with MACs and parameter counts",
    "analyze": "characterise a model's layers, assign families, write JSON and plots",
    "schedule": "assign every layer of a model to an accelerator of a system (latency or energy)",
    "synth": "synthesise and place a config's accelerators on an FPGA (Yosys, nextpnr): area, Fmax, critical path",
    "build": "build an FPGA board's bitstream of a self-test: the accelerator runs a stored layer, LEDs show pass/fail",
    "run": "run a whole network on a system's RTL (Verilator, C runtime), every layer bit-exact: cycles against the cost model",
    "run-layer": "run one layer on an accelerator's RTL from DRAM, bit-exact: cycles, utilisation, stalls, DRAM bytes",
    "explore": "search a design space (Edge TPU template, Mensa-G, or a TOML space) for the best config of a task",
    "compare": "the zoo on the best monolith of equal area (searched), Mensa-G and an Eyeriss-v2-like baseline: throughput and energy ratios",
    "study": "the Edge TPU study: every NAS-Bench-101 network on the Edge TPU classes, a report, a learned model",
    "predict": "the learned model's latency and energy of a NAS-Bench-101 cell on the Edge TPU classes",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, exit 2: the same contract as every other user mistake.
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print mensa's version and its tools' versions")

    def __call__(self, parser, namespace, values, option_string=None):
        versions = tool_versions()
        parser.exit(0, f"mensa {versions.pop('mensa', '(not installed)')}\n"
                       + "".join(f"  {name} {version}\n" for name, version in versions.items()))


def build_parser():
    parser = _Parser(prog="mensa", description="Heterogeneous edge ML accelerator generator.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"mensa.gen.cmd_{name.replace('-', '_')}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:       # --help, --version, or a mistake argparse reported in one line
        return e.code
    try:
        return args._run(args) or 0
    except UserError as e:
        print(f"mensa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise
        # a path the checks could not foresee (a full or read-only file system, a race)
        print(f"mensa {args.command}: error: {e.filename}: {e.strerror or e.__class__.__name__}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"mensa {args.command}: error: the input needs more memory than this machine has; allowed: "
              f"smaller layers, models or configs", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
