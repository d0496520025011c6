"""The program compiler of the systolic accelerator: a layer -> descriptor registers + DRAM image.

:func:`compile_gemm` turns one Layer IR layer, its integer parameters and an
accelerator config into a :class:`Program`: the values of the descriptor registers of
:func:`mensa.contract.regs.register_map` and the bytes of DRAM the layer reads (input,
weights, quantisation records) and writes (output), laid out as the sequencer
(:mod:`mensa.contract.gemm`, whose docstring gives the loop nest) walks them, every vector
in whole bus words (its last word padded with zeros):

input
    Channel tiles of ``rows`` input channels; per tile, an ``in_h x in_w`` plane of
    vectors in raster order, channel ``t * rows + i`` in byte ``i``. A fully connected or
    pointwise layer is a plane of one row of M pixels.
weights
    For each N tile, for ky, for kx, for each channel tile it walks
    (:meth:`~mensa.contract.gemm.GemmGeometry.channel_tiles`), ``rows`` vectors: vector
    ``i`` holds ``B[(ky, kx, c0 + i), n0 : n0 + cols]``; a depthwise layer's B is diagonal.
quantisation records
    One per N tile: ``cols`` int32 biases, ``cols`` int32 Q31 multipliers and ``cols``
    int8 shifts, little-endian, padded to whole words. The input zero point is folded into
    the bias (``bias - zp_in * sum_k B[k, n]``, wrapping like the 32-bit adder), so the
    array multiplies raw int8 activations and the sequencer feeds zero-point vectors for
    padded pixels.
activation table (``TABLE_ADDR``, when ``ACT_TABLE``: sigmoid, tanh, hard-swish or hard-sigmoid)
    256 int8 entries ``T[q + 128]`` (:func:`mensa.core.golden.activation_table`), read once at the
    layer's start, as the vector unit's; the records then requantise to the table's input (the
    pre-activation zero point, full range) and every output byte is looked up.
output
    N tiles of M vectors; channel ``n0 + j`` of pixel ``m`` in byte ``j``.

Channels beyond K or N in the last tile are zero. The layers it runs: fully connected,
conv2d (groups 1) and depthwise conv (depth multiplier 1) with stride 1 or 2, kernels,
padding and dilation up to 255, batch 1 unless the kernel is 1x1 without padding; no
activation, ReLU, ReLU6 or a table activation. Anything else is a
:class:`~mensa.core.errors.CompileError` naming the layer and what is allowed.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mensa.contract.gemm import GemmGeometry, LayerWalk
from mensa.contract.numeric import TABLE_ENTRIES, accumulator_refusal
from mensa.contract.regs import OPCODES, register_map
from mensa.core import golden
from mensa.core.config import AcceleratorConfig
from mensa.core.errors import CompileError
from mensa.core.ir import Activation, Op

__all__ = ["LayerProgram", "Program", "Layout", "compile_gemm", "gemm_refusal", "gemm_layouts", "tap_packed", "im2col",
           "address_registers", "register_writes", "table_activation", "ALIGN", "PACK_CHANNELS", "ADDRESS_REGISTERS", "GEMM_OPS",
           "GEMM_ACTIVATIONS"]

ALIGN = 4096            # every region starts on an AXI 4 KiB page
PACK_CHANNELS = 4       # a conv of at most this many input channels runs over its im2col rows
#: the ops the systolic array runs, and the activations fused after them
GEMM_OPS = (Op.FC, Op.CONV2D, Op.DEPTHWISE)
GEMM_ACTIVATIONS = (Activation.NONE, Activation.RELU, Activation.RELU6, *golden.TABLE_ACTIVATIONS)


#: the descriptor registers that hold each DRAM region's byte address
ADDRESS_REGISTERS = (("INPUT_ADDR", "input"), ("INPUT2_ADDR", "input2"), ("WEIGHT_ADDR", "weight"),
                     ("BIAS_ADDR", "quant"), ("QUANT_ADDR", "quant"), ("TABLE_ADDR", "table"),
                     ("OUTPUT_ADDR", "output"))


def _up(n, to):
    return -(-n // to) * to


class Layout(NamedTuple):
    """How a tensor lies in DRAM: ``ceil(channels / tile)`` channel tiles of ``tile`` channels; per tile,
    ``pixels`` vectors of ``vector_bytes`` (a tile's channels, then zero or undefined bytes)
    in raster order; ``channels`` of them the layer's. A producer's output feeds a consumer's
    input in place when the consumer reads no more channels than the producer writes and the
    two agree on ``tile``, ``vector_bytes`` and ``pixels``, or both are one pixel's channels one
    after another (channel ``c`` in byte ``c``: a vector holds just its tile, whatever the tile)."""
    tile: int
    vector_bytes: int
    pixels: int
    channels: int

    def feeds(self, consumer):
        """True if a tensor laid out so can be read in place as ``consumer`` lays its input out."""
        if consumer.channels > self.channels:
            return False
        return (self.tile, self.vector_bytes, self.pixels) == consumer[:3] or (
            self.pixels == consumer.pixels == 1 and self.dense and consumer.dense)

    @property
    def dense(self):
        """True if a vector holds its tile's channels and nothing else."""
        return self.vector_bytes == self.tile

    @property
    def bytes(self):
        return -(-self.channels // self.tile) * self.pixels * self.vector_bytes

    def pack(self, x):
        """The uint8 bytes of ``x`` (int8, ``pixels`` x ``channels`` elements, channels last) laid out so."""
        tiles = -(-self.channels // self.tile)
        planes = np.zeros((self.pixels, tiles * self.tile), np.int8)
        planes[:, :self.channels] = np.asarray(x, np.int8).reshape(self.pixels, self.channels)
        out = np.zeros((tiles, self.pixels, self.vector_bytes), np.int8)
        out[..., :self.tile] = planes.reshape(self.pixels, tiles, self.tile).transpose(1, 0, 2)
        return out.view(np.uint8).reshape(-1)


def register_writes(regmap, registers):
    """(byte offset, 32-bit word) of every register of ``registers`` (name -> value), in map order."""
    return [(r.offset, registers[r.name] & 0xFFFFFFFF) for r in regmap if r.name in registers]


def address_registers(regmap, addresses):
    """Register name -> value of the address registers of the regions in ``addresses`` (region name ->
    DRAM byte address), wide ones split into ``_LO``/``_HI`` as the map has them."""
    registers = {}
    for name, key in ADDRESS_REGISTERS:
        if key not in addresses:
            continue
        if name in regmap:
            registers[name] = addresses[key]
        elif f"{name}_LO" in regmap:
            registers[f"{name}_LO"] = addresses[key] & 0xFFFFFFFF
            registers[f"{name}_HI"] = addresses[key] >> 32
    return registers


class LayerProgram:
    """What every compiled layer of a DMA-fed accelerator has: its descriptor registers'
    writes, its DRAM regions and its output region's bytes (``registers``, ``image``,
    ``base``, ``regions``, ``layouts`` and ``output_bytes`` of the subclass).

    ``regions`` maps a region's name (``input``, ``input2``, ``weight``, ``quant``, ``table``,
    ``output``) to its ``(address, bytes)``; ``layouts`` the activation regions' names to their
    :class:`Layout`.
    """

    def writes(self, regmap):
        """(byte offset, 32-bit word) of every descriptor register, in map order."""
        return register_writes(regmap, self.registers)

    def region(self, name):
        """The bytes of region ``name`` in the image (uint8)."""
        addr, size = self.regions[name]
        return self.image[addr - self.base:addr - self.base + size]

    def relocated(self, regmap, addresses):
        """The descriptor registers with the regions at ``addresses`` (name -> DRAM byte address) instead:
        a network places every layer's regions in one memory image."""
        missing = self.regions.keys() - addresses.keys()
        if missing:
            raise ValueError(f"no address for the regions {sorted(missing)}")
        return {**self.registers, **address_registers(regmap, {k: addresses[k] for k in self.regions})}

    def region_bytes(self, region):
        """The output region's ``output_bytes`` bytes as int8."""
        raw = np.frombuffer(bytes(region), dtype=np.int8)
        if raw.size != self.output_bytes:
            raise ValueError(f"output region: {raw.size} bytes, expected {self.output_bytes}")
        return raw


@dataclass(frozen=True, eq=False)
class Program(LayerProgram):
    """One layer compiled for the systolic accelerator.

    Members
    -------
    registers : dict
        Descriptor register name -> value (signed registers as Python ints, wide ones
        split into ``_LO``/``_HI`` as the map has them).
    image : numpy.ndarray
        uint8 DRAM image from ``base``: input, weights and quantisation records; the output
        region zero.
    base : int
        DRAM byte address of ``image[0]``.
    output_addr, m, n : int
        Where the output region starts, and the GEMM's rows and output channels.
    out_shape : tuple
        The layer's output shape.
    geometry : :class:`~mensa.contract.gemm.GemmGeometry`
    walk : :class:`~mensa.contract.gemm.LayerWalk`
        The layer as the sequencer walks it; its M tiles are ``walk.m_tiles(TILE_ROWS, TILE_COLS)``.
    regions, layouts : dict
        See :class:`LayerProgram`.
    """
    registers: dict
    image: np.ndarray
    base: int
    output_addr: int
    m: int
    n: int
    out_shape: tuple
    geometry: GemmGeometry
    walk: LayerWalk
    regions: dict
    layouts: dict

    def m_tiles(self):
        """``(ty, tx, rows, cols, window_vectors)`` of every M tile, in walk order."""
        kt = -(-self.walk.k // self.geometry.rows)
        for ty, tx, rows, cols in self.walk.m_tiles(self.registers["TILE_ROWS"], self.registers["TILE_COLS"]):
            iy_lo, iy_hi, ix_lo, ix_hi = self.walk.window(ty, tx, rows, cols)
            yield ty, tx, rows, cols, kt * (iy_hi - iy_lo) * (ix_hi - ix_lo)

    @property
    def output_bytes(self):
        g = self.geometry
        return -(-self.n // g.cols) * self.m * g.out_bytes

    def output(self, region):
        """The layer's int8 output from the bytes of the output region (``output_bytes`` of them)."""
        g = self.geometry
        raw = self.region_bytes(region)
        tiles = raw.reshape(-1, self.m, g.out_bytes)[:, :, :g.cols]         # (NT, M, cols)
        out = tiles.transpose(1, 0, 2).reshape(self.m, -1)[:, :self.n]
        return out.reshape(self.out_shape).copy()


def _per_channel(layer, value, n, name, dtype):
    arr = np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))
    info = np.iinfo(dtype)
    if arr.min() < info.min or arr.max() > info.max:
        raise CompileError(f"layer {layer.name!r}: {name} out of the {np.dtype(dtype).name} range")
    return arr.astype(dtype)


def gemm_layouts(config, layer):
    """``{"input": Layout, "output": Layout}`` of ``layer`` on the array of ``config``, from its shapes: the
    activations as channel-tile planes of ``rows`` (input) and ``cols`` (output) channels; a tap-packed conv's
    input is its im2col rows (:func:`tap_packed`)."""
    g = GemmGeometry.of(config)
    *before, k = (tap_packed(layer) or layer).in_shape
    *lead, n = layer.out_shape
    return {"input": Layout(g.rows, g.act_bytes, math.prod(before), k),
            "output": Layout(g.cols, g.out_bytes, math.prod(lead), n)}


def tap_packed(layer):
    """A few-channel conv as the array runs it, or ``None``: a 1x1 conv over its input's im2col rows.

    The sequencer walks K tap by tap, one channel tile a tap, so a conv of ``C <= PACK_CHANNELS``
    input channels (a network's stem: 1 or 3) would fill ``C`` of the array's rows. Its input is
    laid out instead as one vector per output pixel holding the window's taps, ``(ky, kx, c)``
    in order (:func:`im2col`, padding at the zero point), so ``ceil(KH * KW * C / rows)`` K tiles
    replace ``KH * KW`` (the order SCALE-Sim packs K in). The compiler and the cost model both
    run the layer so; whoever writes the input writes it so (the host, for a network's input).
    """
    if (layer.op is not Op.CONV2D or layer.groups != 1 or layer.in_channels > PACK_CHANNELS
            or tuple(layer.kernel) == (1, 1) or len(layer.in_shape) != 4 or layer.in_shape[0] != 1):
        return None
    kh, kw = layer.kernel
    _, oh, ow, _ = layer.out_shape
    return dataclasses.replace(layer, in_shape=(1, oh, ow, kh * kw * layer.in_channels), kernel=(1, 1),
                               stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1))


def im2col(x, layer, fill):
    """The (1, OH, OW, KH * KW * C) int8 im2col rows of ``layer``'s NHWC input ``x``, ``(ky, kx, c)``
    in order, padded with ``fill`` (the input zero point)."""
    (kh, kw), (sh, sw), (dh, dw), (t, b, left, right) = layer.kernel, layer.stride, layer.dilation, layer.padding
    _, oh, ow, _ = layer.out_shape
    xp = np.pad(np.asarray(x).reshape(layer.in_shape), ((0, 0), (t, b), (left, right), (0, 0)), constant_values=fill)
    taps = [xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            for i in range(kh) for j in range(kw)]
    return np.concatenate(taps, axis=-1).astype(np.int8)


@dataclass(frozen=True)
class _Shape:
    """A layer as the sequencer walks it (what :func:`_shape` finds)."""
    walk: LayerWalk
    tile_rows: int
    tile_cols: int
    weight_tiles: int
    sizes: tuple                # bytes of the input, weight, quantisation, table and output regions


_ALLOWED = "allowed: fc, conv2d (groups 1) or depthwise (depth multiplier 1)"


def _shape(config, layer):
    """The layer's walk, tiling and region sizes on ``config``, or why it cannot run (a str)."""
    g = GemmGeometry.of(config)
    layer = tap_packed(layer) or layer
    if layer.op not in GEMM_OPS:
        return f"{layer.op.value} is not run; {_ALLOWED}"
    if layer.activation not in GEMM_ACTIVATIONS:
        return (f"activation {layer.activation.value} is not run; allowed: "
                f"{', '.join(a.value for a in GEMM_ACTIVATIONS)}")
    k, n = layer.in_channels, layer.out_channels
    depthwise = layer.op is Op.DEPTHWISE
    if layer.op is Op.FC:
        # one GEMM row per input vector: (batch, channels), or (batch, steps, channels) of a sequence
        kernel, stride, dilation, pad = (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)
    else:
        kernel, stride, dilation, pad = layer.kernel, layer.stride, layer.dilation, layer.padding
        if layer.op is Op.CONV2D and layer.groups != 1:
            return f"conv2d with groups {layer.groups}; {_ALLOWED}"
        if depthwise and n != k:
            return f"depthwise {k} -> {n} channels (depth multiplier {n // k}); {_ALLOWED}"
        if not all(s_ in (1, 2) for s_ in stride):
            return f"stride {stride}; allowed: 1 or 2 in each dimension"
        if max(*kernel, *dilation, *pad) > 255:
            return f"kernel {kernel}, dilation {dilation}, padding {pad}; allowed: each at most 255"
    if (kernel, stride, pad) == ((1, 1), (1, 1), (0, 0, 0, 0)):
        # a GEMM: one row of M pixels (batch and rows flattened), a 1x1 kernel
        in_h, in_w = 1, math.prod(layer.in_shape[:-1])
        out_h, out_w, dilation = in_h, in_w, (1, 1)
    else:
        nb, in_h, in_w, _ = layer.in_shape
        _, out_h, out_w, _ = layer.out_shape
        if nb != 1:
            return (f"batch {nb} with a {kernel[0]}x{kernel[1]} kernel; allowed: batch 1 (or a 1x1 kernel "
                    f"without padding or stride)")
    if max(in_h, in_w, out_h, out_w, k, n) >= 1 << 16:
        return f"dimensions {in_h}x{in_w} -> {out_h}x{out_w}, {k} -> {n} channels; allowed: each below 65536"
    walk = LayerWalk(k=k, in_h=in_h, in_w=in_w, out_h=out_h, out_w=out_w, kernel=tuple(kernel),
                     stride=tuple(stride), dilation=tuple(dilation), pad_top=pad[0], pad_left=pad[2])
    try:
        tile_rows, tile_cols = g.tiling(walk)
    except ValueError as e:
        return (f"{e} (buffers.act_kib {config.buffers.act_kib}); allowed: a window that fits, "
                f"a larger act_kib or fewer channels")
    kh, kw = kernel
    kt, nt = -(-k // g.rows), -(-n // g.cols)
    weight_tiles = kh * kw * sum(len(g.channel_tiles(k, t, depthwise=depthwise)) for t in range(nt))
    table = TABLE_ENTRIES if layer.activation in golden.TABLE_ACTIVATIONS else 0
    sizes = (kt * in_h * in_w * g.act_bytes, weight_tiles * g.rows * g.weight_bytes, nt * g.quant_bytes, table,
             nt * out_h * out_w * g.out_bytes)
    end = sum(_up(size, ALIGN) for size in sizes)
    if end > 1 << config.memory.addr_bits:
        return f"its image takes {end:#x} bytes, beyond the {config.memory.addr_bits}-bit address space"
    return _Shape(walk, tile_rows, tile_cols, weight_tiles, sizes)


def table_activation(layer, refuse):
    """A layer's table (:data:`~mensa.contract.numeric.TABLE_ENTRIES` bytes, uint8) and the zero point the
    records requantise to: for a table activation its table and the table's input zero point (the
    pre-activation's), as :func:`mensa.core.golden.run_layer` defines the layer; ``(None, the output
    zero point)`` for any other activation. Both engines' compilers use it."""
    q = layer.quant
    if layer.activation not in golden.TABLE_ACTIVATIONS:
        return None, q.output.zero_point
    if q.pre_activation is None:
        refuse(f"quant.pre_activation: missing; allowed: a {layer.activation.value} layer with it")
    table = golden.activation_table(layer.activation, q.pre_activation, q.output).view(np.uint8)
    return table, q.pre_activation.zero_point


def gemm_refusal(config, layer):
    """Why the systolic array of ``config`` cannot run ``layer`` ("" when it can).

    Every rule of :func:`compile_gemm` that depends on the layer's shape alone (op,
    activation, kernel, stride, sizes, the window against the scratchpad, the image against
    the address space): the scheduler places a layer only where this is empty.
    """
    s = _shape(config, layer)
    return s if isinstance(s, str) else ""


def compile_gemm(config, layer, params, x, *, base=0):
    """Compile ``layer`` with ``params`` (:class:`~mensa.core.golden.LayerParams`) and input ``x``.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`
    layer : :class:`~mensa.core.ir.Layer`
    params : :class:`~mensa.core.golden.LayerParams`
    x : int8 array of ``layer.in_shape``
    base : int
        DRAM byte address of the image, a multiple of 4096.

    Raises
    ------
    CompileError
        The layer is not one the accelerator runs (:func:`gemm_refusal`), or does not fit it.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if not isinstance(base, int) or base < 0 or base % ALIGN:
        raise ValueError(f"base must be a non-negative multiple of {ALIGN}, not {base!r}")
    g = GemmGeometry.of(config)

    def refuse(text):
        raise CompileError(f"layer {layer.name!r}: {text}")

    golden.check_layer(layer)
    shape = _shape(config, layer)
    if isinstance(shape, str):
        refuse(shape)
    q = layer.quant
    if q is None:
        refuse("quant: missing; quantise the network first")
    x = np.asarray(x)
    if x.shape != tuple(layer.in_shape) or x.dtype != np.int8:
        refuse(f"input is {x.dtype} {x.shape}; allowed: int8 {tuple(layer.in_shape)}")
    packed = tap_packed(layer)
    if packed is not None:
        weights = np.asarray(params.weights).reshape(1, 1, -1, layer.out_channels)
        return compile_gemm(config, packed, dataclasses.replace(params, weights=weights),
                            im2col(x, layer, q.inputs[0].zero_point), base=base)
    walk, sizes = shape.walk, shape.sizes
    k, n = layer.in_channels, layer.out_channels
    depthwise = layer.op is Op.DEPTHWISE
    in_h, in_w, out_h, out_w = walk.in_h, walk.in_w, walk.out_h, walk.out_w
    stride, dilation = walk.stride, walk.dilation
    pad = (0, 0, 0, 0) if layer.op is Op.FC else layer.padding
    tile_rows, tile_cols = shape.tile_rows, shape.tile_cols
    m = out_h * out_w
    kh, kw = walk.kernel
    kt, nt, R, C = -(-k // g.rows), -(-n // g.cols), g.rows, g.cols
    end = base + sum(_up(size, ALIGN) for size in sizes)
    if end > 1 << config.memory.addr_bits:
        refuse(f"the image ends at {end:#x}, beyond the {config.memory.addr_bits}-bit address space")

    w = np.asarray(params.weights).astype(np.int64)
    zp_in = q.inputs[0].zero_point
    bias = np.zeros(n, np.int64) if params.bias is None else np.asarray(params.bias, np.int64)
    reason = accumulator_refusal(kh * kw * (1 if depthwise else k), zp_in, int(np.abs(w).max(initial=0)),
                                 int(np.abs(bias).max(initial=0)))
    if reason:
        refuse(reason)
    if depthwise:
        dense = np.zeros((kh, kw, k, n), np.int64)
        dense[:, :, np.arange(k), np.arange(k)] = w.reshape(kh, kw, k)
    else:
        dense = w.reshape(kh, kw, k, n)

    # -- the regions, each on its own page ---------------------------------------------
    planes = np.zeros((in_h, in_w, kt * R), np.int8)
    planes[..., :k] = x.reshape(in_h, in_w, k)
    inp = np.zeros((kt, in_h, in_w, g.act_bytes), np.int8)
    inp[..., :R] = planes.reshape(in_h, in_w, kt, R).transpose(2, 0, 1, 3)

    b_pad = np.zeros((kh, kw, kt * R, nt * C), np.int8)
    b_pad[:, :, :k, :n] = dense
    tiles = []
    for t in range(nt):
        for ky in range(kh):
            for kx in range(kw):
                for ct in g.channel_tiles(k, t, depthwise=depthwise):
                    tile = np.zeros((R, g.weight_bytes), np.int8)
                    tile[:, :C] = b_pad[ky, kx, ct * R:(ct + 1) * R, t * C:(t + 1) * C]
                    tiles.append(tile)
    wts = np.stack(tiles)

    folded = ((bias - zp_in * dense.sum(axis=(0, 1, 2))) + (1 << 31)) % (1 << 32) - (1 << 31)
    mult = _per_channel(layer, params.multiplier, n, "multiplier", np.int32)
    shift = _per_channel(layer, params.shift, n, "shift", np.int8)
    if shift.min() < -(1 << 5) or shift.max() >= 1 << 5:
        refuse("shift outside -32..31")
    quant = np.zeros((nt, g.quant_bytes), np.uint8)
    for t in range(nt):
        lo, hi = t * C, min(n, (t + 1) * C)
        rec = np.zeros(C * 9, np.uint8)
        for field, (values, dtype, at) in enumerate(((folded, "<i4", 0), (mult, "<i4", 4 * C), (shift, "i1", 8 * C))):
            lanes = np.zeros(C, dtype)
            lanes[:hi - lo] = values[lo:hi]
            rec[at:at + lanes.nbytes] = lanes.view(np.uint8)
        quant[t, :rec.size] = rec

    table, zp_out = table_activation(layer, refuse)
    blobs = {"input": inp, "weight": wts, "quant": quant, **({} if table is None else {"table": table})}
    regions = {}
    addr = base
    for name, blob in (*blobs.items(), ("output", np.zeros(nt * m * g.out_bytes, np.uint8))):
        regions[name] = addr, blob.nbytes
        addr += _up(blob.nbytes, ALIGN)
    image = np.zeros(addr - base, np.uint8)
    for name, blob in blobs.items():
        at = regions[name][0] - base
        image[at:at + blob.nbytes] = blob.reshape(-1).view(np.uint8)
    assert addr == end

    lo, hi = golden.activation_range(layer.activation, q.output.scale, q.output.zero_point)
    values = {
        "OP": OPCODES[layer.op], "IN_H": in_h, "IN_W": in_w, "IN_C": k, "OUT_H": out_h, "OUT_W": out_w,
        "OUT_C": n, "TILE_ROWS": tile_rows, "TILE_COLS": tile_cols,
        # weights on chip when they fit and more than one M tile would read them again
        "WEIGHTS_RESIDENT": int(len(tiles) * R <= g.weight_depth and m > tile_rows * tile_cols),
        "KERNEL_H": kh, "KERNEL_W": kw, "STRIDE_H": stride[0], "STRIDE_W": stride[1],
        "DILATION_H": dilation[0], "DILATION_W": dilation[1], "PAD_TOP": pad[0], "PAD_BOTTOM": pad[1],
        "PAD_LEFT": pad[2], "PAD_RIGHT": pad[3],
        "IN_ZERO_POINT": zp_in, "OUT_ZERO_POINT": zp_out, "QMIN": lo, "QMAX": hi,
        "ACT_TABLE": int(table is not None),
    }
    regmap = register_map(config)
    registers = {}
    for name, value in values.items():
        registers[name] = int(value)
    registers.update(address_registers(regmap, {name: at for name, (at, _) in regions.items()}))
    for name in registers:
        assert name in regmap, name         # the map and the compiler are one description
    layouts = gemm_layouts(config, layer)
    assert layouts["input"].pixels == in_h * in_w and layouts["output"].pixels == m
    return Program(registers=registers, image=image, base=base, output_addr=regions["output"][0], m=m, n=n,
                   out_shape=tuple(layer.out_shape), geometry=g, walk=walk, regions=regions, layouts=layouts)
