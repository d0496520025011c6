"""The network compiler: a quantised network, a system and a placement -> one DRAM image and a command list.

:func:`compile_network` compiles every layer for the accelerator the schedule puts it on
(:func:`mensa.contract.compiler.compile_layer`, the same compilers ``mensa run-layer`` uses) and
places its regions in one DRAM image:

constants
    every layer's weights, quantisation records and activation table, from address 0, each on
    its own 4 KiB page;
activations
    above them, every layer's output in a buffer of its own while some later layer still reads
    it; a buffer whose last reader has been issued is reused (first fit), and the layer that
    reuses it depends on those readers. A layer reads its producer's output in place: the
    compilers lay every activation out as channel-tile planes (:class:`~mensa.contract.gemm_program.Layout`),
    and the two layouts must agree (the compiler refuses in one line where they do not).
    Layers move between accelerators through DRAM, as the scheduler's transfer cost assumes;
network inputs
    one region per reading layer, which the host fills in the layer's own input layout
    (:meth:`NetworkProgram.input_writes`: a few-channel stem reads its im2col rows).

A near-memory accelerator's layers keep their weights in its vaults, not in DRAM: each layer's
vault images lie one after another from vault word 0 (:attr:`NetworkProgram.vaults`), every layer
resident, and the host loads them before the run, as it loads the DRAM image.

The command list (:meth:`NetworkProgram.command_list`) is what the C runtime
(``mensa_runtime.c``) and the board replay: little-endian 32-bit words::

    MAGIC VERSION count
    per command: accelerator  deps  writes  out_lo  out_hi  out_bytes
                 dep[0] .. dep[deps-1]                       (indices of earlier commands)
                 offset[0] value[0] .. offset[writes-1] value[writes-1]   (descriptor registers)

A command runs on its accelerator once the commands it depends on are done; an accelerator
runs its own commands in list order.
"""

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mensa.contract.compiler import compile_layer, in_hardware, layout_refusal
from mensa.contract.gemm_program import ALIGN, Layout, register_writes
from mensa.contract.nearmem import NearMemGeometry
from mensa.contract.regs import register_map
from mensa.core.config import CoreKind
from mensa.core.errors import CompileError
from mensa.core.ir import Network, Op

__all__ = ["Command", "HostInput", "NetworkProgram", "compile_network", "peripherals", "arbitrated",
           "address_map", "LIST_MAGIC", "LIST_VERSION"]

LIST_MAGIC = 0x4C434E4D        # "MNCL" little-endian
LIST_VERSION = 1
CONSTANTS = ("weight", "quant", "table")
INPUT_REGIONS = ("input", "input2")


def _up(n, to=ALIGN):
    return -(-n // to) * to


def peripherals(system):
    """The accelerators of ``system`` with registers and DMA, in config order: the units of the system top
    and of the command list. Every kind is one: the systolic :class:`~mensa.hw.accelerator.Accelerator`
    and the :class:`~mensa.hw.nearmem_accelerator.NearMemAccelerator`."""
    return tuple(system.accelerator)


def arbitrated(system):
    """Whether the units' DMA masters reach the DRAM through the system top's arbiter
    (:class:`~mensa.hw.system.AxiArbiter`), which buffers each master's read data: with more than one
    unit. One unit's DMA is the top's master as it is."""
    return len(peripherals(system)) > 1


def address_map(system):
    """``(window, {accelerator name: register base})``: the system top's AXI4-Lite space, one window of
    ``window`` bytes (the largest register map's size) per unit."""
    units = peripherals(system)
    window = max(register_map(a).size for a in units)
    return window, {a.name: i * window for i, a in enumerate(units)}


@dataclass(frozen=True, eq=False)
class Command:
    """One layer as the runtime issues it.

    Members
    -------
    layer, accelerator : str
        The layer's name and the name of the accelerator that runs it.
    unit : int
        The accelerator's index among the system's :func:`peripherals` (its window in the address map).
    program : :class:`~mensa.contract.gemm_program.LayerProgram`
        The layer compiled on its own (its image at address 0); decodes the output.
    registers : dict
        The descriptor registers with the network's addresses.
    deps : tuple of int
        Earlier commands that must be done first: the producers of its inputs, and the last
        readers of a buffer it reuses.
    output : tuple
        ``(address, bytes)`` of its output.
    frame : int
        The inference it belongs to.
    """
    layer: str
    accelerator: str
    unit: int
    program: object
    registers: dict
    deps: tuple
    output: tuple
    frame: int = 0


class HostInput(NamedTuple):
    """A region the host fills before a run: network input ``name`` of ``frame`` at ``address``, as
    ``command``'s ``region`` reads it, or (``command`` None) as the slot ``layout`` of a concat's buffer."""
    frame: int
    name: str
    address: int
    command: int | None
    region: str | None
    layout: Layout | None = None


@dataclass(frozen=True, eq=False)
class NetworkProgram:
    """A network compiled for a system: the DRAM image, the commands and where the host writes inputs.

    Members
    -------
    network : :class:`~mensa.core.ir.Network`
    params : dict
        The layers' :class:`~mensa.core.golden.LayerParams`, by name.
    accelerators : tuple
        The system's :func:`peripherals`, in ``unit`` order.
    vaults : tuple
        Per unit, None (a systolic accelerator) or a tuple of uint8 arrays: each vault's contents from word 0,
        the weights of every layer placed there.
    image : numpy.ndarray
        uint8 DRAM contents from address 0: the constants, then zeros up to the end of the
        activation buffers (``image.size`` is the memory the network needs).
    commands : tuple of :class:`Command`
    host_inputs : tuple of :class:`HostInput`
        Every region the host fills.
    activation_bytes : int
        Bytes of the activation buffers (after reuse).
    """
    network: Network
    params: dict
    accelerators: tuple
    vaults: tuple
    image: np.ndarray
    commands: tuple
    host_inputs: tuple
    activation_bytes: int

    def input_writes(self, xs):
        """``(address, uint8 bytes)`` the host writes before a run: every network input as its reading
        layer lays it out. ``xs`` holds one frame's inputs per frame: the ``"input"`` array, or a dict of
        every network input by name."""
        writes = []
        for h in self.host_inputs:
            x = xs[h.frame]
            inputs = x if isinstance(x, dict) else {"input": x}
            if h.command is None:
                writes.append((h.address, h.layout.pack(inputs[h.name])))
                continue
            cmd = self.commands[h.command]
            layer = self.network[cmd.layer]
            shapes = (layer.in_shape, *layer.extra_in_shapes)
            operands = [np.asarray(inputs[s], np.int8).reshape(sh) if s in inputs else np.zeros(sh, np.int8)
                        for s, sh in zip(layer.inputs, shapes)]
            prog = compile_layer(self.accelerators[cmd.unit], layer, self.params[layer.name],
                                 tuple(operands) if len(operands) > 1 else operands[0])
            writes.append((h.address, np.array(prog.region(h.region))))
        return writes

    def command_list(self):
        """The command list as uint32 words (see the module's docstring)."""
        words = [LIST_MAGIC, LIST_VERSION, len(self.commands)]
        for cmd in self.commands:
            writes = register_writes(register_map(self.accelerators[cmd.unit]), cmd.registers)
            addr, size = cmd.output
            words += [cmd.unit, len(cmd.deps), len(writes), addr & 0xFFFFFFFF, addr >> 32, size, *cmd.deps]
            for offset, value in writes:
                words += [offset, value]
        return np.array(words, dtype="<u4")


class _Arena:
    """First-fit allocation of activation buffers in whole pages; a freed range remembers the commands
    that last used it, so whoever reuses it waits for them."""

    def __init__(self, start):
        self.top = start
        self.free = []              # [start, end, users]

    def alloc(self, size, before=frozenset()):
        """A range of ``size`` bytes: a freed one whose last users are all in ``before`` (commands the new
        user waits for anyway, so reuse adds no dependency), else a fresh one."""
        size = _up(max(size, 1))
        for i, (lo, hi, users) in enumerate(self.free):
            if hi - lo >= size and users <= before:
                if hi - lo == size:
                    del self.free[i]
                else:
                    self.free[i] = [lo + size, hi, users]
                return lo, set(users)
        lo, self.top = self.top, self.top + size
        return lo, set()

    def release(self, lo, size, users):
        self.free.append([lo, lo + _up(max(size, 1)), set(users)])
        self.free.sort()
        merged = [self.free[0]]
        for lo_, hi_, u in self.free[1:]:
            if merged[-1][1] == lo_:
                merged[-1] = [merged[-1][0], hi_, merged[-1][2] | u]
            else:
                merged.append([lo_, hi_, u])
        self.free = merged


def _placement(network, system, placement):
    """The accelerator config and index of every layer, or a one-line error."""
    names = [a.name for a in system.accelerator]
    units = {a.name: i for i, a in enumerate(peripherals(system))}
    out = {}
    for layer in network.layers:
        name = placement.get(layer.name)
        if name is None:
            raise CompileError(f"layer {layer.name!r}: not placed on any accelerator")
        if name not in names:
            raise CompileError(f"layer {layer.name!r}: placed on {name!r}, not an accelerator of the system; "
                               f"allowed: {', '.join(names)}")
        acc = system[name]
        if not in_hardware(layer):
            raise CompileError(f"layer {layer.name!r} ({layer.op.value}, activation {layer.activation.value}): "
                               f"no mensa hardware runs it yet")
        out[layer.name] = acc, units[name]
    return out


class _Vaults:
    """The vaults of the near-memory accelerators: every layer's images one after another from word 0."""

    def __init__(self, network):
        self.network = network
        self.top = {}           # accelerator name -> next free vault word
        self.images = {}        # accelerator name -> [(word, images)]

    def compile(self, acc, layer, params, x):
        """``layer`` compiled for near-memory accelerator ``acc`` with its images above the ones before it."""
        base = self.top.get(acc.name, 0)
        try:
            prog = compile_layer(acc, layer, params, x, vault_base=base)
        except CompileError:
            if not base:
                raise
            need = compile_layer(acc, layer, params, x).unit.words      # fits alone, not above the others
            capacity = NearMemGeometry.of(acc.nearmem).vault_words
            raise CompileError(f"network {self.network!r}: the weights of its layers on {acc.name!r} need "
                               f"{base + need:,} words of every vault up to {layer.name!r}, beyond the vault's "
                               f"{capacity:,} by {base + need - capacity:,}; allowed: layers whose vault images "
                               f"fit together (place some elsewhere)") from None
        self.top[acc.name] = base + prog.unit.words
        self.images.setdefault(acc.name, []).append((base, prog.vault_images))
        return prog

    def contents(self, acc):
        """Each vault's bytes from word 0, or None for an accelerator without vaults."""
        if acc.kind is not CoreKind.NEARMEM:
            return None
        word = acc.nearmem.vault_bits // 8
        vaults = [np.zeros(self.top.get(acc.name, 0) * word, np.uint8) for _ in range(acc.nearmem.vaults)]
        for base, images in self.images.get(acc.name, ()):
            for v, image in enumerate(images):
                vaults[v][base * word:base * word + image.size] = image
        return tuple(vaults)


def _last_readers(network):
    last = {}
    for i, layer in enumerate(network.layers):
        for s in layer.inputs:
            last[s] = i
    return last


def _check_layout(layer, acc, source, where, have, want):
    if not have.feeds(want):
        raise CompileError(
            f"layer {layer.name!r} on {acc.name!r} reads {source!r} (on {where!r}) in a "
            f"layout it cannot read in place: {want.channels} channels in tiles of {want.tile} as "
            f"{want.pixels} vectors of {want.vector_bytes} B, written as {have.channels} in tiles of "
            f"{have.tile} as {have.pixels} of {have.vector_bytes} B; allowed: accelerators of one tile "
            f"width for layers that pass tensors")


@dataclass(frozen=True)
class _Concat:
    """A concat laid out by its producers: each writes its planes at ``offsets[i]`` of one buffer."""
    name: str
    sources: tuple
    offsets: tuple
    slots: tuple            # each input's Layout
    layout: object          # the concat's Layout
    size: int
    where: str              # the accelerators of its producers, for messages


def _concats(network, params, programs, where):
    """Source -> :class:`_Concat` for every concat of ``network``: where its inputs lie (a producer writes
    its planes there, the host a network input), or a one-line error where they cannot lie side by side
    (:func:`~mensa.contract.compiler.layout_refusal`)."""
    names = {l.name: i for i, l in enumerate(network.layers)}
    out = {}
    for layer in network.layers:
        if layer.op is not Op.CONCAT:
            continue
        acc, _ = where[layer.name]
        why = layout_refusal(acc, layer)
        made = [s for s in layer.inputs if s in names]
        bad = [s for s in made if network[s].op is Op.CONCAT] + [s for s in layer.inputs if s in out]
        if not why and (bad or not made or len(set(layer.inputs)) < len(layer.inputs)):
            why = (f"{layer.name!r} (concat): input {(bad or layer.inputs)[0]!r} is a concat, read twice, another "
                   f"concat's input, or every input is a network input; allowed: distinct tensors, each "
                   f"concatenated once, one at least a layer's output")
        if not why and any(m is not None for m in params[layer.name].input_multipliers):
            why = (f"{layer.name!r} (concat): its inputs are quantised unlike its output; allowed: inputs that "
                   f"share the output's scale and zero point (nothing requantises them)")
        if why:
            raise CompileError(why)
        first = programs[names[made[0]]][0].layouts["output"]
        channels = [shape[-1] for shape in (layer.in_shape, *layer.extra_in_shapes)]
        have = [programs[names[s]][0].layouts["output"] if s in names else first._replace(channels=c)
                for s, c in zip(layer.inputs, channels)]
        for s, lay in zip(layer.inputs, have):
            if lay[:3] != first[:3] or (s != layer.inputs[-1] and lay.channels % lay.tile):
                raise CompileError(
                    f"{layer.name!r} (concat): {s!r} is written as {lay.channels} channels in tiles of {lay.tile} as "
                    f"{lay.pixels} vectors of {lay.vector_bytes} B, beside {first.channels} in tiles of "
                    f"{first.tile} as {first.pixels} of {first.vector_bytes} B; allowed: producers of one layout, "
                    f"every input but the last whole tiles")
        for s, lay in zip(layer.inputs, have):      # each producer writes exactly its planes
            assert s not in names or programs[names[s]][0].regions["output"][1] == lay.bytes, s
        offsets = tuple(int(o) for o in np.cumsum([0] + [lay.bytes for lay in have[:-1]]))
        cat = _Concat(name=layer.name, sources=tuple(layer.inputs), offsets=offsets, slots=tuple(have),
                      layout=first._replace(channels=sum(channels)), size=sum(lay.bytes for lay in have),
                      where=", ".join(sorted({where[s][0].name for s in made})))
        for s in layer.inputs:
            out[s] = cat
    return out


def _issue_order(commands, host_inputs, cycles):
    """``commands`` (and the host inputs' command indices) in the order a list schedule starts them, each
    taking ``cycles[layer]`` on its unit: repeatedly the command whose dependencies are done that can start
    first (the earlier in the list on a tie). Any such order is topological, so no accelerator's next
    command ever waits on a later one: the runtime cannot deadlock."""
    done, free, order, left = {}, {}, [], list(range(len(commands)))
    while left:
        ready = [c for c in left if all(d in done for d in commands[c].deps)]
        start = {c: max([free.get(commands[c].unit, 0.0)] + [done[d] for d in commands[c].deps]) for c in ready}
        c = min(ready, key=lambda c: (start[c], c))
        done[c] = start[c] + max(float(cycles[commands[c].layer]), 1.0)
        free[commands[c].unit] = done[c]
        order.append(c)
        left.remove(c)
    new = {old: i for i, old in enumerate(order)}
    moved = tuple(dataclasses.replace(commands[old], deps=tuple(sorted(new[d] for d in commands[old].deps)))
                  for old in order)
    hosts = tuple(h if h.command is None else h._replace(command=new[h.command]) for h in host_inputs)
    return moved, hosts


def _compile_layers(network, params, where, vaults):
    """Every layer's program but a concat's (``None``), with the addresses of its constant regions, laid out
    one after the other from address 0: ``(programs, constants, size)``, ``programs`` a list of
    ``(program, addresses)`` in layer order, ``constants`` of ``(address, bytes)``."""
    programs, constants, size = [], [], 0
    for layer in network.layers:
        acc, _ = where[layer.name]
        if layer.op is Op.CONCAT:
            programs.append((None, {}))
            continue
        xs = tuple(np.zeros(sh, np.int8) for sh in (layer.in_shape, *layer.extra_in_shapes))[:len(layer.inputs)]
        x = xs if len(xs) > 1 else xs[0]
        if acc.kind is CoreKind.NEARMEM:
            prog = vaults.compile(acc, layer, params[layer.name], x)
        else:
            prog = compile_layer(acc, layer, params[layer.name], x)
        addresses = {}
        for region in CONSTANTS:
            if region in prog.regions:
                addresses[region] = size
                constants.append((size, prog.region(region)))
                size += _up(prog.regions[region][1])
        programs.append((prog, addresses))
    return programs, constants, size


def _place_host_inputs(network, programs, groups, frames, arena, command_of):
    """The regions the host writes every frame's network inputs into before the run, each as its reader
    reads it, from ``arena`` first (free for reuse once their reader is done): ``(host_inputs,
    frame_addresses, frame_buffers)``, per frame the layers' region addresses and the concats' buffers."""
    layer_names = {l.name for l in network.layers}
    per_frame = len(command_of)
    host_inputs, frame_addresses, frame_buffers = [], [], []
    for f in range(frames):
        frame_addresses.append([dict(addresses) for _, addresses in programs])
        frame_buffers.append({})
        for i, layer in enumerate(network.layers):
            prog = programs[i][0]
            for k, source in enumerate(layer.inputs):
                if source in layer_names:
                    continue
                if prog is None:            # a concat: the host writes into its buffer
                    cat = groups[layer.name]
                    if cat.name not in frame_buffers[f]:
                        frame_buffers[f][cat.name] = arena.alloc(cat.size)
                    host_inputs.append(HostInput(f, source, frame_buffers[f][cat.name][0] + cat.offsets[k], None,
                                                 None, cat.slots[k]))
                    continue
                region = INPUT_REGIONS[k]
                addr, _ = arena.alloc(prog.regions[region][1])
                frame_addresses[f][i][region] = addr
                host_inputs.append(HostInput(f, source, addr, f * per_frame + command_of[i], region))
    return host_inputs, frame_addresses, frame_buffers


def compile_network(network, params, system, placement, *, frames=1, cycles=None):
    """Compile ``network`` for ``system`` with every layer on ``placement[layer name]`` (an accelerator's name).

    ``frames`` consecutive inferences share the constants and have activation buffers of their own,
    so an accelerator runs frame ``t + 1``'s layers while the next accelerator of the pipeline still
    runs frame ``t``'s.

    Each accelerator runs its commands in list order, so the order is the issue order. Without
    ``cycles`` it is the network's, frame by frame; with ``cycles`` (layer name -> the cost model's
    cycles, a schedule's) it is the order a list schedule starts them in: each command as early as
    its dependencies and its accelerator allow, so an accelerator whose next layer of frame ``t``
    waits for another accelerator takes frame ``t + 1``'s first.

    A concat is a layout, not a command: its producers write their outputs side by side in its buffer
    (:func:`~mensa.contract.compiler.layout_refusal`), and its readers wait for all of them.

    Parameters
    ----------
    network : :class:`~mensa.core.ir.Network`
        Quantised.
    params : dict
        Layer name -> :class:`~mensa.core.golden.LayerParams`.
    system : :class:`~mensa.core.config.SystemConfig`
    placement : dict
        Layer name -> accelerator name (a schedule's placements).
    frames : int
        Inferences in the command list.
    cycles : dict, optional
        Layer name -> predicted cycles: the issue order (see above).

    Raises
    ------
    CompileError
        One line: a layer no placed accelerator can run, a producer whose output layout its
        reader cannot read in place, or a network that does not fit the address space.
    """
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, not {frames!r}")
    where = _placement(network, system, placement)
    last = _last_readers(network)
    vaults = _Vaults(network.name)
    programs, constants, size = _compile_layers(network, params, where, vaults)
    concats = _concats(network, params, programs, where)
    groups = {cat.name: cat for cat in concats.values()}
    # a concat's buffer lives until the last reader of it or of any of its producers is done (a concat
    # nothing reads is a network output: kept, as every network output is)
    for cat in groups.values():
        if cat.name in last:
            last[cat.name] = max(last.get(n, -1) for n in (cat.name, *cat.sources))
    layer_names = {l.name for l in network.layers}
    released = {}           # layer index -> the tensors whose buffers are free once it is done
    for name, i in last.items():
        if name in layer_names and name not in concats:
            released.setdefault(i, []).append(name)
    # the commands: one per layer but the concats, frame by frame
    ranks = [i for i, layer in enumerate(network.layers) if layer.op is not Op.CONCAT]
    per_frame = len(ranks)
    command_of = {i: k for k, i in enumerate(ranks)}

    arena = _Arena(size)
    host_inputs, frame_addresses, frame_buffers = _place_host_inputs(network, programs, groups, frames, arena,
                                                                     command_of)
    commands, ancestors = [], []
    for f in range(frames):
        # tensor name -> (the commands that wrote it, address, layout, where); concat name -> (address, users)
        outputs, buffers = {}, frame_buffers[f]

        def readers(names, upto):
            return {f * per_frame + command_of[j] for j, l in enumerate(network.layers[:upto + 1])
                    if j in command_of and set(names) & set(l.inputs)}
        for i, layer in enumerate(network.layers):
            acc, unit = where[layer.name]
            prog, addresses = programs[i][0], frame_addresses[f][i]
            deps = set()
            for region, source in zip(INPUT_REGIONS if prog else (None,) * len(layer.inputs), layer.inputs):
                if source not in layer_names:
                    continue
                ps, addr, have, at = outputs[source]
                if prog is not None:
                    _check_layout(layer, acc, source, at, have, prog.layouts[region])
                    addresses[region] = addr
                deps |= ps
            if prog is None:        # a concat: its producers have written it
                cat = groups[layer.name]
                outputs[layer.name] = frozenset(deps), buffers[cat.name][0], cat.layout, cat.where
            else:
                c = len(commands)
                out_bytes = prog.regions["output"][1]
                before = set().union(*([{p} | ancestors[p] for p in deps] or [set()]))
                cat = concats.get(layer.name)
                if cat is None:
                    addresses["output"], users = arena.alloc(out_bytes, before)
                else:               # the first producer of a concat places its buffer; each writes its planes
                    if cat.name not in buffers:
                        buffers[cat.name] = arena.alloc(cat.size, before)
                    base, users = buffers[cat.name]
                    addresses["output"] = base + cat.offsets[cat.sources.index(layer.name)]
                deps |= users
                ancestors.append(before | users)
                for h in host_inputs:
                    if h.command == c:              # read by this layer alone
                        arena.release(h.address, prog.regions[h.region][1], {c})
                outputs[layer.name] = frozenset({c}), addresses["output"], prog.layouts["output"], acc.name
                commands.append(Command(layer=layer.name, accelerator=acc.name, unit=unit, program=prog,
                                        registers=prog.relocated(register_map(acc), addresses),
                                        deps=tuple(sorted(deps - {c})), output=(addresses["output"], out_bytes),
                                        frame=f))
            for name in released.get(i, ()):
                ps, addr = outputs[name][:2]
                if name in groups:
                    cat = groups[name]
                    arena.release(addr, cat.size, readers((name, *cat.sources), i) | ps)
                else:
                    arena.release(addr, commands[next(iter(ps))].output[1], readers((name,), i) | ps)

    end = arena.top
    for acc in system.accelerator:
        if end > 1 << acc.memory.addr_bits:
            raise CompileError(f"network {network.name!r}: needs {end:#x} bytes of DRAM, beyond the "
                               f"{acc.memory.addr_bits}-bit address space of {acc.name!r}")
    image = np.zeros(end, np.uint8)
    for addr, blob in constants:
        image[addr:addr + blob.size] = blob
    if cycles is not None:
        commands, host_inputs = _issue_order(commands, host_inputs, cycles)
    units = peripherals(system)
    return NetworkProgram(network=network, params=dict(params), accelerators=units,
                          vaults=tuple(vaults.contents(a) for a in units), image=image, commands=tuple(commands),
                          host_inputs=tuple(host_inputs),
                          activation_bytes=end - size)
