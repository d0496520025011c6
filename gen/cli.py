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

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "verilog": "write Verilog, manifest, filelist and register header for a config",
    "models": "list the model zoo with MACs and parameter counts",
    "analyze": "characterise a model's layers, assign families, write JSON and plots",
    "schedule": "assign every layer of a model to an accelerator of a system (latency or energy)",
    "synth": "synthesise and place a config's accelerators on an FPGA (Yosys, nextpnr): area, Fmax, critical path",
    "build": "build an FPGA board's bitstream of a self-test: the accelerator runs a stored layer, LEDs show pass/fail",
    "run-layer": "run one layer on an accelerator's RTL from DRAM, bit-exact: cycles, utilisation, stalls, DRAM bytes",
    "compare": "the zoo on the Edge TPU baseline, Mensa-G and an Eyeriss-v2-like baseline: throughput and energy ratios",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, exit 2: the same contract as every other user mistake.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="mensa", description="Heterogeneous edge ML accelerator generator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"mensa.gen.cmd_{name.replace('-', '_')}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args) or 0
    except UserError as e:
        print(f"mensa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
