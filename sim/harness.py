"""The network harness: a Verilator C++ simulation of a system top, its DRAM in C++, and mensa's C runtime.

:func:`build` Verilates the system top of a config (:class:`~mensa.hw.system.SystemTop`) with ``harness/main.cpp`` (a DRAM model that
answers every AXI4 beat with a per-burst read latency and optional random pauses, the near-memory
accelerators' vaults, served from memories loaded by backdoor (``vaults.h``, generated here, binds
the top's vault ports), and an AXI4-Lite master the runtime's register reads and writes go through)
and the C runtime given by the caller
(``mensa_runtime.c`` and the register header it includes), once per design: the executable is
cached under ``build/sim/harness-<hash>``. :func:`run` runs it on a DRAM image and a command list;
no Python runs per cycle.
"""

import fcntl
import hashlib
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mensa.contract.header import header
from mensa.contract.numeric import DRAM_CREDIT_WORDS
from mensa.contract.network import address_map, peripherals
from mensa.contract.regs import register_map
from mensa.core.config import CoreKind
from mensa.core.files import write_if_changed
from mensa.hw.convert import convert, ports
from mensa.hw.system import SystemTop, unit_component
from mensa.sim.runner import _setup_verilator, build_root

__all__ = ["build", "run", "Finished", "HarnessFailed"]

_MAIN = Path(__file__).resolve().parent / "harness" / "main.cpp"
_FLAGS = ("-Wno-fatal", "-Wno-WIDTH", "--x-assign", "fast", "--x-initial", "fast", "-O3")
#: the C++ compiler's: the model is built for the machine that runs it (a harness lives in its build folder);
#: -O3 -march=native simulated MobileNetV2 at 96x96 on pascal-fpga at 120,819 cycles/s, -O2 at 97,044 (both before
#: the reset was tied low, :func:`_reset_tied`)
_CFLAGS = "-O3 -march=native"


class HarnessFailed(AssertionError):
    """The harness stopped with an error (a bad DRAM access, a hung accelerator, a bad command list)."""


@dataclass(frozen=True)
class Finished:
    """One command as the harness saw it finish."""
    index: int
    cycles: int          # the accelerator's CYCLES_TOTAL
    at: int              # the simulated cycle it finished at
    read_bytes: int      # bus bytes read since the start, when it finished
    written_bytes: int   # bus bytes written since the start, when it finished
    output: bytes        # its output region


def build(system, runtime_dir, *, jobs=2):
    """The harness executable for ``system`` (a SystemConfig), built once; ``runtime_dir`` holds
    ``mensa_runtime.c`` and ``mensa_runtime.h``."""
    runtime_dir = Path(runtime_dir)
    units = peripherals(system)
    modules = {a.name: f"unit{i}_{a.name}".replace("-", "_") for i, a in enumerate(units)}
    top = SystemTop(system, modules)
    text = "\n".join([convert(unit_component(a), modules[a.name]) for a in units] +
                     [convert(top, "system"), _reset_tied(top)])
    vaults = _vault_bindings(units)
    first = units[0]
    regs = header(register_map(first), prefix="mensa", source=f"accelerator {first.name}")
    word = first.memory.data_bits // 8
    window, bases = address_map(system)
    sources = [_MAIN, runtime_dir / "mensa_runtime.c", runtime_dir / "mensa_runtime.h"]
    defines = f"-DWORD_BYTES={word} -DWINDOW={window} -DUNITS={len(bases)} -DCREDIT_WORDS={DRAM_CREDIT_WORDS}"
    digest = hashlib.sha256("".join([text, regs, vaults, defines, repr(_FLAGS), _CFLAGS] +
                                    [p.read_text() for p in sources]).encode()).hexdigest()
    # one folder per design: make rebuilds only what changed (the harness or the runtime, not the model)
    folder = build_root() / f"harness-{hashlib.sha256((text + repr(_FLAGS)).encode()).hexdigest()[:12]}"
    exe = folder / "harness"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if exe.exists() and (folder / "built.sha256").exists() and (folder / "built.sha256").read_text() == digest:
            return exe
        write_if_changed(folder / "system.v", text)
        write_if_changed(folder / "mensa_regs.h", regs)
        write_if_changed(folder / "vaults.h", vaults)
        for p in sources:
            write_if_changed(folder / p.name, p.read_text())
        _setup_verilator()
        if (folder / "cflags").exists() and (folder / "cflags").read_text() != _CFLAGS:
            shutil.rmtree(folder / "obj", ignore_errors=True)      # make does not rebuild on new flags
        cflags = f"{_CFLAGS} {defines} -I{folder}"
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(jobs), "--prefix", "Vtop", "--top-module",
               "harness", *_FLAGS, "-CFLAGS", cflags, "--Mdir", str(folder / "obj"), "-o", str(exe),
               str(folder / "system.v"), str(folder / "main.cpp"), str(folder / "mensa_runtime.c")]
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        (folder / "build.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"building the harness failed; see {folder / 'build.log'}:\n{done.stderr[-2000:]}")
        (folder / "built.sha256").write_text(digest)
        (folder / "cflags").write_text(_CFLAGS)
    return exe


def _reset_tied(top):
    """Verilog of ``harness``: the system top with its ``rst`` tied low, every other port passed through.

    The harness starts from the registers' initial values and never resets. Amaranth writes each register's
    reset as a multiplexer in front of it, so with ``rst`` a port, all next-state logic depends on an input
    and Verilator evaluates it at every ``eval()``, twice a cycle. Tied low, Verilator removes the
    multiplexers: ``bench/network.py`` simulated MobileNetV2 on pascal-fpga at 188,552 cycles/s, not 127,540,
    bit for bit the same outputs (before the RTL was made cheaper to simulate: docs/network.md).
    """
    passed = [(name, way, width) for name, way, width in ports(top) if name != "rst"]
    lines = ["module harness(" + ", ".join(name for name, _, _ in passed) + ");"]
    lines += [f"  {way} [{width - 1}:0] {name};" for name, way, width in passed]
    lines += ["  system system (.rst(1'b0), " + ", ".join(f".{name}({name})" for name, _, _ in passed) + ");",
              "endmodule", ""]
    return "\n".join(lines)


def _vault_bindings(units):
    """``vaults.h``: ``bind_vaults`` lists every vault port of the system top (``u<i>_vault_req``/``_resp``)."""
    lines = ["// generated by mensa.sim.harness: the system top's vault ports", "",
             "static void bind_vaults(std::vector<VaultPort> &ports) {"]
    for i, a in enumerate(units):
        if a.kind is not CoreKind.NEARMEM:
            continue
        word = a.nearmem.vault_bits // 8
        for v in range(a.nearmem.vaults):
            # Verilator spells a port's "__" as "___05F"
            req, resp = (f"t->u{i}_vault_{way}__{v}__".replace("__", "___05F") for way in ("req", "resp"))
            lines += [f"    ports.push_back(VaultPort{{{i}, {v}, {word},",
                      f"        [](Vtop *t) {{ return (bool){req}valid; }},",
                      f"        [](Vtop *t) {{ return (uint64_t){req}payload; }},",
                      f"        [](Vtop *t, bool r) {{ {req}ready = r; }},",
                      f"        [](Vtop *t, bool v, const uint8_t *p) {{ {resp}valid = v; "
                      f"if (p) put({resp}payload, p, {word}); }},",
                      f"        [](Vtop *t) {{ return (bool){resp}ready; }}}});"]
    lines += ["    (void)ports;", "}", ""]
    return "\n".join(lines)


def _vault_file(vaults):
    """The ``--vaults`` file: per vault its unit, index, byte count and bytes (``vaults`` per unit: None or
    each vault's contents)."""
    parts = []
    for unit, contents in enumerate(vaults):
        for v, data in enumerate(contents or ()):
            data = np.ascontiguousarray(data, np.uint8)
            parts += [struct.pack("<IIQ", unit, v, data.size), data.tobytes()]
    return b"".join(parts)


def run(exe, image, command_list, *, latency, vaults=(), vault_latency=None, bandwidth=0.0, pause=0.0, seed=1,
        max_cycles=0, on_done=None, trace=None):
    """Run the harness ``exe`` on ``image`` (uint8, DRAM from address 0) and ``command_list`` (uint32 words).

    ``latency`` is the DRAM's read latency per burst, ``bandwidth`` the bytes per cycle it moves (reads and
    writes together; 0: one beat each way every cycle). ``vaults`` holds, per unit, None or each vault's
    contents from word 0 (:attr:`~mensa.contract.network.NetworkProgram.vaults`); a vault answers a word per
    cycle ``vault_latency`` cycles (default ``latency``) after its request. ``trace`` (a path) gets the DRAM
    bus's handshakes, one a line (``harness/main.cpp``). ``on_done(index, cycles)`` is called as each command finishes. Returns
    ``(finished, total cycles)``: a :class:`Finished` per command, in the order they finished.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "image.bin").write_bytes(np.ascontiguousarray(image, np.uint8).tobytes())
        (tmp / "list.bin").write_bytes(np.ascontiguousarray(command_list, "<u4").tobytes())
        (tmp / "vaults.bin").write_bytes(_vault_file(vaults))
        args = [str(exe), "--image", str(tmp / "image.bin"), "--list", str(tmp / "list.bin"),
                "--out", str(tmp / "out.bin"), "--vaults", str(tmp / "vaults.bin"), "--latency", str(int(latency)),
                "--vault-latency", str(int(latency if vault_latency is None else vault_latency)),
                "--bandwidth", repr(float(bandwidth)),
                "--pause", repr(float(pause)), "--seed", str(int(seed)), "--max-cycles", str(int(max_cycles))]
        if trace is not None:
            args += ["--trace", str(trace)]
        total = None
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                word, *rest = line.split()
                if word == "done" and on_done is not None:
                    on_done(int(rest[0]), int(rest[1]))
                elif word == "cycles":
                    total = int(rest[0])
            err = proc.stderr.read()
        if proc.returncode:
            raise HarnessFailed(err.strip() or f"the harness exited with status {proc.returncode}")
        return _finished(command_list, (tmp / "out.bin").read_bytes()), total


def _finished(command_list, raw):
    words = np.asarray(command_list, np.uint32)
    sizes, at = [], 3
    for _ in range(int(words[2])):
        sizes.append(int(words[at + 5]))
        at += 6 + int(words[at + 1]) + 2 * int(words[at + 2])
    out, pos = [], 0
    while pos < len(raw):
        index, cycles, when, read, written = struct.unpack_from("<IQQQQ", raw, pos)
        pos += 36
        out.append(Finished(index, cycles, when, read, written, raw[pos:pos + sizes[index]]))
        pos += sizes[index]
    return out
