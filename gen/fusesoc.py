"""A FuseSoC core description (CAPI2) of a system's emitted Verilog.

The ``.core`` file written next to the Verilog lets any FuseSoC-based flow use the
accelerators: ``fusesoc --cores-root <dir> run --target lint_<module> <name>`` lints
one module with Verilator, and other cores can depend on ``<name>``.
"""

import json
from importlib import metadata

__all__ = ["core_name", "core_file"]


def core_name(system):
    """The core's VLNV: ``mensa:generated:<system>:<mensa version>``."""
    try:
        version = metadata.version("mensa")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"mensa:generated:{system.name}:{version}"


def _q(text):
    # JSON strings are valid YAML flow scalars: quoting this way is always safe.
    return json.dumps(text)


def core_file(system, modules):
    """CAPI2 text for ``modules`` (the manifest entries: ``module`` and ``file`` of each).

    One fileset holds every Verilog file; the ``default`` target uses it, and one
    ``lint_<module>`` target per module lints it with Verilator (WIDTH warnings off:
    Amaranth's Verilog relies on Verilog's width extension).
    """
    lines = ["CAPI=2:", "", f"name: {_q(core_name(system))}",
             f"description: {_q(system.description or f'mensa system {system.name}')}", "",
             "filesets:", "  rtl:", "    file_type: verilogSource", "    files:"]
    lines += [f"      - {_q(m['file'])}" for m in modules]
    lines += ["", "targets:", "  default:", "    filesets: [rtl]"]
    for m in modules:
        lines += [f"  lint_{m['module']}:",
                  "    default_tool: verilator",
                  "    filesets: [rtl]",
                  f"    toplevel: {_q(m['module'])}",
                  "    tools:",
                  "      verilator:",
                  "        mode: lint-only",
                  "        verilator_options: [-Wno-WIDTH]"]
    return "\n".join(lines) + "\n"
