"""A whole network on the RTL: compiled for a system, replayed by the C runtime, checked byte for byte.

:func:`compile_for_rtl` compiles a quantised network as its schedule places it
(:func:`mensa.contract.network.compile_network`); :func:`run_on_rtl` builds the Verilator harness of the system's
accelerator with mensa's C runtime (:mod:`mensa.sim.harness`, ``gen/runtime``), writes the
network's input as the host would, runs the command list and compares every layer's output
with :func:`mensa.core.golden.run_network`. Each layer's measured cycles sit beside the cost
model's prediction (the schedule's).
"""

import time
from dataclasses import dataclass

import numpy as np

from mensa.contract.compiler import engine
from mensa.contract.network import compile_network
from mensa.core import golden
from mensa.core.quant import quantize_network
from mensa.model.cost import dram_bytes_per_cycle
from mensa.gen.verilog import RUNTIME
from mensa.sim import harness

__all__ = ["RUNTIME", "LayerRun", "NetworkRun", "quantised", "compile_for_rtl", "run_on_rtl"]


def quantised(net, seed, weights=None):
    """``net`` quantised on one random calibration input from ``seed``: what ``mensa run`` runs,
    ``(network, params)``. Its float ``weights`` (layer name -> FloatParams, an ONNX model's), or
    random ones from ``seed``."""
    rng = np.random.default_rng(seed)
    x = {"input": rng.normal(size=net.input_shape)} | {n: rng.normal(size=s) for n, s in net.extra_inputs}
    return quantize_network(net, rng if weights is None else weights, [x])


@dataclass(frozen=True)
class LayerRun:
    layer: str
    frame: int
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
    frames: int
    layers: tuple
    total_cycles: int       # simulated cycles from reset to the last layer's end, register writes included
    #                         (all frames)
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
        return {"network": self.network, "system": self.system, "frames": self.frames, "bit_exact": self.bit_exact,
                "layer_cycles": measured, "predicted_cycles": predicted, "error": predicted / measured - 1.0,
                "dram_read_bytes": sum(r.read_bytes for r in self.layers),
                "dram_written_bytes": sum(r.written_bytes for r in self.layers),
                "total_cycles": self.total_cycles, "wall_seconds": self.wall_seconds,
                "build_seconds": self.build_seconds, "cycles_per_second": self.cycles_per_second,
                "image_bytes": self.image_bytes, "activation_bytes": self.activation_bytes, "layers": layers}


def _lanes(acc, layer):
    kind = engine(acc, layer)
    if kind == "vector":
        return acc.vector.lanes
    if kind == "nearmem":
        return acc.nearmem.vaults * acc.nearmem.lanes
    return acc.array.rows * acc.array.cols


def compile_for_rtl(net, params, system, sched, *, frames=1):
    """``net`` (quantised, with ``params``) compiled for ``system`` as ``sched`` places it, ``frames``
    inferences, issued in the order the schedule's cycles start them
    (a :class:`~mensa.contract.network.NetworkProgram`)."""
    return compile_network(net, params, system, {p.layer: p.accelerator for p in sched.placements}, frames=frames,
                           cycles={p.layer: p.cycles for p in sched.placements})


def run_on_rtl(prog, system, sched, xs, *, latency=None, pause=0.0, seed=1, progress=None, trace=None):
    """Run ``prog`` (:func:`compile_for_rtl`) on ``system``'s RTL on ``xs``, one input per frame of ``prog``;
    ``sched`` gives the cost model's cycles per layer.

    The harness's DRAM moves the bytes per cycle the system's DRAM bandwidth gives at the accelerator's
    clock (as the cost model has it); ``latency`` (DRAM read latency in cycles, default the system's
    ``dram.latency_cycles``) and
    ``pause`` (the probability an AXI channel of the DRAM pauses in a cycle, drawn from ``seed``)
    set the harness's DRAM; ``trace`` (a path) gets its bus handshakes (:func:`mensa.sim.harness.run`).
    ``progress(stage, done, total)`` is called as the work goes on.
    Returns a :class:`NetworkRun`.
    """
    note = progress or (lambda *a: None)
    net, params = prog.network, prog.params
    note("build", 0, 1)
    t0 = time.monotonic()
    exe = harness.build(system, RUNTIME)
    built = time.monotonic() - t0
    note("build", 1, 1)

    image = prog.image.copy()
    for addr, blob in prog.input_writes(xs):
        image[addr:addr + blob.size] = blob
    count = len(prog.commands)
    note("run", 0, count)
    done = []

    def finished(index, cycles):
        done.append(index)
        note("run", len(done), count)

    t0 = time.monotonic()
    fin, total = harness.run(exe, image, prog.command_list(), vaults=prog.vaults,
                             latency=system.dram.latency_cycles if latency is None else latency,
                             bandwidth=dram_bytes_per_cycle(prog.accelerators[0], system.dram),
                             pause=pause, seed=seed, on_done=finished, max_cycles=len(xs) * _cycle_limit(sched),
                             trace=trace)
    wall = time.monotonic() - t0
    expect = [golden.run_network(net, params, x) for x in xs]
    predicted = {p.layer: p.cycles for p in sched.placements}
    runs, moved, before = [], {}, (0, 0)
    for f in fin:         # the bytes moved between two finishes (each layer's own when one runs at a time)
        moved[f.index] = f.read_bytes - before[0], f.written_bytes - before[1]
        before = f.read_bytes, f.written_bytes
    for f in sorted(fin, key=lambda f: f.index):
        cmd = prog.commands[f.index]
        acc = prog.accelerators[cmd.unit]
        layer = net[cmd.layer]
        got = cmd.program.output(f.output)
        runs.append(LayerRun(layer=layer.name, frame=cmd.frame, op=layer.op.value, accelerator=cmd.accelerator,
                             engine=engine(acc, layer), cycles=int(f.cycles), predicted=float(predicted[layer.name]),
                             start=int(f.at - f.cycles), end=int(f.at), macs=int(layer.macs),
                             lanes=_lanes(acc, layer), read_bytes=moved[f.index][0], written_bytes=moved[f.index][1],
                             bit_exact=bool(np.array_equal(got, expect[cmd.frame][layer.name]))))
    return NetworkRun(network=net.name, system=system.name, frames=len(xs), layers=tuple(runs), total_cycles=int(total),
                      wall_seconds=wall, build_seconds=built, image_bytes=int(image.size),
                      activation_bytes=prog.activation_bytes)


def _cycle_limit(sched):
    """A hung run stops: ten times the model's cycles, plus register writes."""
    return int(10 * sum(p.cycles for p in sched.placements) + 10_000 * (len(sched.placements) + 10))
