"""A whole network on the RTL: compiled for a system, replayed by the C runtime, checked byte for byte.

:func:`run_on_rtl` takes a quantised network and its schedule, compiles it
(:func:`mensa.contract.network.compile_network`), builds the Verilator harness of the system's
accelerator with mensa's C runtime (:mod:`mensa.sim.harness`, ``gen/runtime``), writes the
network's input as the host would, runs the command list and compares every layer's output
with :func:`mensa.core.golden.run_network`. Each layer's measured cycles sit beside the cost
model's prediction (the schedule's).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mensa.contract.compiler import engine
from mensa.contract.network import compile_network
from mensa.core import golden
from mensa.core.errors import UserError
from mensa.model.cost import dram_bytes_per_cycle
from mensa.sim import harness

__all__ = ["RUNTIME", "LayerRun", "NetworkRun", "run_on_rtl"]

#: the C runtime's sources (mensa_runtime.c, mensa_runtime.h)
RUNTIME = Path(__file__).resolve().parent / "runtime"


@dataclass(frozen=True)
class LayerRun:
    layer: str
    op: str
    accelerator: str
    engine: str
    cycles: int           # measured: the accelerator's CYCLES_TOTAL
    predicted: float      # the cost model's cycles (the schedule's)
    start: int            # simulated cycle it started (finished minus its cycles)
    end: int              # simulated cycle it finished
    macs: int
    lanes: int            # the MACs its engine does per cycle at full use
    read_bytes: int       # DRAM bytes the layer read (bus words)
    written_bytes: int    # DRAM bytes it wrote
    bit_exact: bool

    @property
    def error(self):
        return self.predicted / self.cycles - 1.0

    @property
    def utilisation(self):
        return self.macs / (self.cycles * self.lanes) if self.macs else 0.0


@dataclass(frozen=True)
class NetworkRun:
    network: str
    system: str
    layers: tuple
    total_cycles: int       # simulated cycles from reset to the last layer's end, register writes included
    wall_seconds: float
    build_seconds: float
    image_bytes: int
    activation_bytes: int

    @property
    def bit_exact(self):
        return all(r.bit_exact for r in self.layers)

    @property
    def cycles_per_second(self):
        return self.total_cycles / self.wall_seconds

    def to_dict(self):
        layers = [dict(vars(r), error=r.error, utilisation=r.utilisation) for r in self.layers]
        measured = sum(r.cycles for r in self.layers)
        predicted = sum(r.predicted for r in self.layers)
        return {"network": self.network, "system": self.system, "bit_exact": self.bit_exact,
                "layer_cycles": measured, "predicted_cycles": predicted, "error": predicted / measured - 1.0,
                "dram_read_bytes": sum(r.read_bytes for r in self.layers),
                "dram_written_bytes": sum(r.written_bytes for r in self.layers),
                "total_cycles": self.total_cycles, "wall_seconds": self.wall_seconds,
                "build_seconds": self.build_seconds, "cycles_per_second": self.cycles_per_second,
                "image_bytes": self.image_bytes, "activation_bytes": self.activation_bytes, "layers": layers}


def _lanes(acc, layer):
    if engine(acc, layer) == "vector":
        return acc.vector.lanes
    return acc.array.rows * acc.array.cols


def run_on_rtl(net, params, system, sched, x, *, latency=None, pause=0.0, seed=1, progress=None, trace=None):
    """Run ``net`` (quantised, with ``params``) on ``system``'s RTL as ``sched`` places it, on input ``x``.

    The harness's DRAM moves the bytes per cycle the system's DRAM bandwidth gives at the accelerator's
    clock (as the cost model has it); ``latency`` (DRAM read latency in cycles, default the system's
    ``dram.latency_cycles``) and
    ``pause`` (the probability an AXI channel of the DRAM pauses in a cycle, drawn from ``seed``)
    set the harness's DRAM; ``trace`` (a path) gets its bus handshakes (:func:`mensa.sim.harness.run`).
    ``progress(stage, done, total)`` is called as the work goes on.
    Returns a :class:`NetworkRun`.
    """
    note = progress or (lambda *a: None)
    placement = {p.layer: p.accelerator for p in sched.placements}
    prog = compile_network(net, params, system, placement)
    units = {c.unit for c in prog.commands}
    if len(units) > 1:
        names = sorted({c.accelerator for c in prog.commands})
        raise UserError(f"network {net.name!r}: placed on {', '.join(names)}; the RTL harness runs one accelerator "
                        f"(no system top yet); allowed: a schedule on one accelerator (pin the layers)")
    acc = system.accelerator[units.pop()]
    note("build", 0, 1)
    t0 = time.monotonic()
    exe = harness.build(acc, RUNTIME)
    built = time.monotonic() - t0
    note("build", 1, 1)

    image = prog.image.copy()
    for addr, blob in prog.input_writes(x):
        image[addr:addr + blob.size] = blob
    count = len(prog.commands)
    note("run", 0, count)
    done = []

    def finished(index, cycles):
        done.append(index)
        note("run", len(done), count)

    t0 = time.monotonic()
    fin, total = harness.run(exe, image, prog.command_list(), latency=system.dram.latency_cycles if latency is None
                             else latency, bandwidth=dram_bytes_per_cycle(acc, system.dram), pause=pause, seed=seed,
                             on_done=finished, max_cycles=_cycle_limit(sched), trace=trace)
    wall = time.monotonic() - t0
    expect = golden.run_network(net, params, x)
    predicted = {p.layer: p.cycles for p in sched.placements}
    runs, moved, before = [], {}, (0, 0)
    for f in fin:         # the bytes each moved: in finish order, one layer at a time on one accelerator
        moved[f.index] = f.read_bytes - before[0], f.written_bytes - before[1]
        before = f.read_bytes, f.written_bytes
    for f in sorted(fin, key=lambda f: f.index):
        cmd = prog.commands[f.index]
        layer = net[cmd.layer]
        got = cmd.program.output(f.output)
        runs.append(LayerRun(layer=layer.name, op=layer.op.value, accelerator=cmd.accelerator,
                             engine=engine(acc, layer), cycles=int(f.cycles), predicted=float(predicted[layer.name]),
                             start=int(f.at - f.cycles), end=int(f.at), macs=int(layer.macs),
                             lanes=_lanes(acc, layer), read_bytes=moved[f.index][0], written_bytes=moved[f.index][1],
                             bit_exact=bool(np.array_equal(got, expect[layer.name]))))
    return NetworkRun(network=net.name, system=system.name, layers=tuple(runs), total_cycles=int(total),
                      wall_seconds=wall, build_seconds=built, image_bytes=int(image.size),
                      activation_bytes=prog.activation_bytes)


def _cycle_limit(sched):
    """A hung run stops: ten times the model's cycles, plus register writes."""
    return int(10 * sum(p.cycles for p in sched.placements) + 10_000 * (len(sched.placements) + 10))
