"""The program compiler of the vector unit: a layer -> descriptor registers + DRAM image.

A systolic accelerator with a vector unit (``config.vector``) runs depthwise convs, max,
average and global average pools, element-wise add and the squeeze-excite mul by a
per-channel gate on it,
one lane per channel: :func:`compile_vector` turns a layer, its integer parameters and
its input into a :class:`VectorProgram`, and :func:`vector_refusal` holds every rule on
the layer's shape (the scheduler asks it where a layer may go; the compiler asks it first).

The unit walks the layer per channel tile of ``lanes`` channels; in a tile, per output
row, per output pixel, per kernel tap, one multiply-accumulate per lane and cycle. A line
buffer holds ``LINE_ROWS`` input rows as a ring (as many as it has room for, at least the
window's rows plus the vertical stride, so the next output row's rows arrive while this
one computes): every input pixel is read from DRAM once per layer.

DRAM layout, every vector in whole bus words (its last word padded with zeros), each
region on its own 4 KiB page:

activations (the input and the output: the same layout for every vector op)
    ``ceil(C / lanes)`` channel-tile planes; plane ``t`` is ``H * W`` pixel vectors in
    row-major order, channel ``t * lanes + i`` in byte ``i`` of its pixel's vector. Channels
    beyond C in the last tile are zero in the input and undefined in the output.
weights (depthwise)
    per channel tile, ``kh * kw`` tap vectors in row-major tap order, lane ``i`` holding
    channel ``t * lanes + i``'s weight.
add's second input (``INPUT2_ADDR``)
    the activation layout; its rows load into the line buffer's upper half beside the first
    input's. The two inputs' rescales (multiplier, shift at most 0, zero point) are registers
    (``IN_MULTIPLIER``, ``IN_SHIFT``, ``IN2_MULTIPLIER``, ``IN2_SHIFT``, ``IN_ZERO_POINT``,
    ``IN2_ZERO_POINT``); the output multiplier and shift are in the records.
mul's gate (the second input, ``INPUT2_ADDR``)
    a (1, 1, 1, C) tensor in the activation layout: one pixel vector per channel tile, which
    is the weight layout of a one-tap kernel; the lanes subtract the input's and the gate's
    zero points (``IN_ZERO_POINT``, ``IN2_ZERO_POINT``) before they multiply.
quantisation records (depthwise, add, mul, global average pool)
    one per channel tile, the format of :mod:`mensa.contract.gemm_program`'s: ``lanes`` int32
    biases, ``lanes`` int32 Q31 multipliers and ``lanes`` int8 shifts, little-endian, padded to
    whole words. A depthwise layer's biases have the input zero point folded in (``bias - zp_in
    * sum(w)``, wrapping like the 32-bit adder, so padded taps multiply the zero point); an add's
    and a mul's are 0; a global average pool's ``-zp_in * H * W``. The per-layer multiplier and
    shift of an add, a mul or a global average pool are written into every lane (one way for
    every op that requantises).
activation table (``TABLE_ADDR``, when ``ACT_TABLE``: a depthwise, add or mul with sigmoid,
tanh, hard-swish or hard-sigmoid)
    256 int8 entries ``T[q + 128]`` (:func:`mensa.core.golden.activation_table`), read once at
    the layer's start; the records then requantise to the table's input (the pre-activation
    zero point, full range) and every output byte is looked up.

Max and average pools read neither weights nor records: they keep the input's quantisation.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mensa.contract.gemm_program import ALIGN, LayerProgram, Layout, address_registers, table_activation
from mensa.contract.numeric import accumulator_refusal
from mensa.contract.regs import OPCODES, line_depth, register_map
from mensa.core import golden
from mensa.core.config import AcceleratorConfig
from mensa.core.errors import CompileError
from mensa.core.ir import Activation, Op

__all__ = ["VectorGeometry", "VectorProgram", "compile_vector", "vector_refusal", "vector_layouts", "planar", "line_rows", "ring_rows", "rows_that_fit",
           "window", "KERNEL_MAX",
           "TAPS_MAX", "VECTOR_UNIT_OPS"]

KERNEL_MAX = 7          # kernel height and width, each
TAPS_MAX = 64           # tap vectors per weight bank: 7 x 7 rounded up to a power of two


def _up(n, to):
    return -(-n // to) * to


@dataclass(frozen=True)
class VectorGeometry:
    """Sizes of the vector unit and of its DRAM layout, from one accelerator config.

    Members
    -------
    lanes : int
        Channels per pixel vector.
    word_bytes : int
        Bytes per AXI data word.
    pixel_words : int
        Bus words of one pixel (or tap) vector; a power of two.
    quant_words : int
        Bus words of one channel tile's quantisation record (``lanes * 9`` bytes).
    line_depth : int
        Pixel vectors the line buffer holds.
    """
    lanes: int
    word_bytes: int
    pixel_words: int
    quant_words: int
    line_depth: int

    @classmethod
    def of(cls, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if config.vector is None:
            raise ValueError(f"accelerator {config.name!r} has no vector unit")
        lanes, wb = config.vector.lanes, config.memory.data_bits // 8
        return cls(lanes=lanes, word_bytes=wb, pixel_words=-(-lanes // wb), quant_words=-(-lanes * 9 // wb),
                   line_depth=line_depth(config))

    @property
    def pixel_bytes(self):
        return self.pixel_words * self.word_bytes

    @property
    def quant_bytes(self):
        return self.quant_words * self.word_bytes


POOLS = (Op.MAXPOOL, Op.AVGPOOL)
#: the ops a table activation may follow (those that requantise, as the golden model has it)
TABLE_OPS = (Op.DEPTHWISE, Op.ADD, Op.MUL)
#: the ops the vector unit runs
VECTOR_UNIT_OPS = (Op.DEPTHWISE, Op.ADD, Op.MUL, *POOLS, Op.GLOBAL_AVGPOOL)


def window(layer):
    """``(kernel, stride, dilation, padding)`` of the window the unit walks: a global average pool's is the
    whole plane."""
    if layer.op is Op.GLOBAL_AVGPOOL:
        return tuple(layer.in_shape[1:3]), (1, 1), (1, 1), (0, 0, 0, 0)
    if layer.op in (Op.ADD, Op.MUL):
        return (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)
    return tuple(layer.kernel), tuple(layer.stride), tuple(layer.dilation), tuple(layer.padding)


def line_rows(layer):
    """The fewest rows of the line buffer's ring ``layer`` runs with: the rows a window spans plus the
    vertical stride (a global average pool: the row being summed and the next)."""
    if layer.op is Op.GLOBAL_AVGPOOL:
        return 2
    (kh, _), (sh, _), (dh, _), _ = window(layer)
    return (kh - 1) * dh + 1 + sh


def planar(layer):
    """``layer`` as the unit walks it: an add over ``(N, C)`` or ``(N, T, C)`` tensors (a transducer's
    joint) is one row of ``N * T`` pixels, ``(1, 1, N * T, C)``; any other layer as it is."""
    if layer.op is not Op.ADD or len(layer.in_shape) not in (2, 3):
        return layer
    shape = (1, 1, math.prod(layer.in_shape[:-1]), layer.in_shape[-1])
    return dataclasses.replace(layer, in_shape=shape, out_shape=shape,
                               extra_in_shapes=(shape,) * len(layer.extra_in_shapes))


def ring_rows(config, layer):
    """Rows of the line buffer's ring a layer runs with: as many input rows as the line buffer holds
    (at least :func:`line_rows`, which :func:`vector_refusal` checks), so the loader runs that far
    ahead of the walk and DRAM latency hides behind more rows."""
    layer = planar(layer)
    return int(rows_that_fit(layer.in_shape[2], line_depth(config), layer.op is Op.ADD))


def rows_that_fit(width, depth, add):
    """Input rows of ``width`` pixel vectors a line buffer of ``depth`` holds for a layer (an add's in
    half of it), at most 255 (the LINE_ROWS register); scalars or numpy arrays."""
    return np.minimum(255, (np.asarray(depth) // np.where(add, 2, 1)) // np.maximum(width, 1))


def vector_refusal(config, layer):
    """Why the vector unit of ``config`` cannot run ``layer`` (one line), or ``""`` if it can.

    Every rule on the layer's shape: op, activation, batch, depth multiplier, kernel,
    stride, dilation, padding, dimensions and the line buffer's capacity. It needs no
    parameters or input, so the scheduler and :func:`compile_vector` share it.
    """
    layer = planar(layer)

    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if config.vector is None:
        return (f"accelerator {config.name!r} has no vector unit; allowed: an accelerator with [accelerator.vector]")
    if layer.op not in VECTOR_UNIT_OPS:
        return (f"{layer.op.value} is not run on the vector unit; allowed: "
                  f"{', '.join(op.value for op in VECTOR_UNIT_OPS)}")
    clamps = (Activation.NONE, Activation.RELU, Activation.RELU6)
    if layer.activation not in clamps and (layer.activation not in golden.TABLE_ACTIVATIONS
                                           or layer.op not in TABLE_OPS):
        return (f"activation {layer.activation.value} of {layer.op.value} is not run on the vector unit; allowed: "
                  f"none, relu, relu6, and for {', '.join(op.value for op in TABLE_OPS)} the table activations")
    if len(layer.in_shape) != 4 or layer.in_shape[0] != 1:
        return (f"input shape {tuple(layer.in_shape)}; allowed: batch 1, NHWC")
    c = layer.in_channels
    if layer.out_channels != c:
        return (f"{layer.op.value} {c} -> {layer.out_channels} channels (depth multiplier "
                  f"{layer.out_channels / c:g}); allowed: depth multiplier 1")
    _, h, w, _ = layer.in_shape
    _, oh, ow, _ = layer.out_shape
    if max(h, w, oh, ow, c) >= 1 << 16:
        return (f"dimensions {h}x{w}x{c} -> {oh}x{ow}; allowed: each below 65536")
    (kh, kw), (sh, sw), (dh, dw), (top, bottom, left, right) = window(layer)
    if layer.op is Op.ADD:
        other = tuple(layer.extra_in_shapes[0]) if layer.extra_in_shapes else None
        if other != tuple(layer.in_shape):
            return (f"add of {tuple(layer.in_shape)} and {other}; allowed: two inputs of one shape")
    elif layer.op is Op.MUL:
        gate = tuple(layer.extra_in_shapes[0]) if layer.extra_in_shapes else None
        if gate != (1, 1, 1, c):
            return (f"mul by a gate of shape {gate}; allowed: a per-channel gate (1, 1, 1, {c})")
    elif layer.op is Op.GLOBAL_AVGPOOL:
        if max(h, w) > 255:
            return (f"global average pool over {h}x{w}; allowed: at most 255x255 (the kernel registers)")
    else:
        strides = (1, 2) if layer.op is Op.DEPTHWISE else tuple(range(1, KERNEL_MAX + 1))
        if not (1 <= kh <= KERNEL_MAX and 1 <= kw <= KERNEL_MAX):
            return (f"kernel {kh}x{kw}; allowed: 1..{KERNEL_MAX} in each dimension")
        if sh not in strides or sw not in strides:
            return (f"stride {sh}x{sw}; allowed: {strides[0]}..{strides[-1]} in each dimension")
        dilations = 255 if layer.op is Op.DEPTHWISE else 1
        if not (1 <= dh <= dilations and 1 <= dw <= dilations):
            return (f"dilation {dh}x{dw}; allowed: 1..{dilations} in each dimension")
        span_h = (kh - 1) * dh
        if max(top, bottom) > span_h or max(left, right) > 255:
            return (f"padding {(top, bottom, left, right)} with kernel {kh}x{kw} dilation {dh}x{dw}; allowed: at "
                      f"most {span_h} rows (the kernel's reach) above and below, 255 columns left and right")
    rows, depth = line_rows(layer), line_depth(config)
    if layer.op is Op.ADD:
        depth //= 2             # the second input's rows in the upper half
    if rows > 255 or rows * w > depth:
        return (f"{rows} input rows of {w} pixels do not fit the line buffer of {depth} pixel vectors "
                  f"(vector.line_kib {config.vector.line_kib}); allowed: rows x width <= {depth}")
    return ""


@dataclass(frozen=True, eq=False)
class VectorProgram(LayerProgram):
    """One layer compiled for the vector unit; used as :class:`~mensa.contract.gemm_program.Program` is.

    Members
    -------
    registers : dict
        Descriptor register name -> value (wide ones split into ``_LO``/``_HI`` as the map has them).
    image : numpy.ndarray
        uint8 DRAM image from ``base``: input, weights, quantisation records; the output region zero.
    base, output_addr : int
        DRAM byte addresses of ``image[0]`` and of the output region.
    m, n : int
        Output pixels and channels.
    out_shape : tuple
    geometry : :class:`VectorGeometry`
    regions, layouts : dict
        See :class:`~mensa.contract.gemm_program.LayerProgram`.
    """
    registers: dict
    image: np.ndarray
    base: int
    output_addr: int
    m: int
    n: int
    out_shape: tuple
    geometry: VectorGeometry
    regions: dict
    layouts: dict

    @property
    def output_bytes(self):
        return -(-self.n // self.geometry.lanes) * self.m * self.geometry.pixel_bytes

    def output(self, region):
        """The layer's int8 output from the bytes of the output region (``output_bytes`` of them)."""
        return from_planes(self.region_bytes(region), self.geometry, self.m, self.n).reshape(self.out_shape).copy()


def to_planes(x, g):
    """An (H, W, C) int8 tensor in the activation layout: bytes of ``ceil(C / lanes)`` planes."""
    h, w, c = x.shape
    nt = -(-c // g.lanes)
    padded = np.zeros((h, w, nt * g.lanes), np.int8)
    padded[..., :c] = x
    planes = np.zeros((nt, h * w, g.pixel_bytes), np.int8)
    planes[..., :g.lanes] = padded.reshape(h * w, nt, g.lanes).transpose(1, 0, 2)
    return planes.reshape(-1)


def from_planes(raw, g, m, c):
    """The (M, C) int8 pixels of activation-layout bytes ``raw`` (M pixels per plane)."""
    planes = raw.reshape(-1, m, g.pixel_bytes)[:, :, :g.lanes]
    return planes.transpose(1, 0, 2).reshape(m, -1)[:, :c]


def _per_channel(layer, value, n, name, dtype):
    arr = np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))
    info = np.iinfo(dtype)
    if arr.min() < info.min or arr.max() > info.max:
        raise CompileError(f"layer {layer.name!r}: {name} out of the {np.dtype(dtype).name} range; "
                           f"allowed: {info.min}..{info.max}")
    return arr.astype(dtype)


def quant_records(layer, g, folded, mult, shift):
    """The per-channel-tile quantisation records (uint8, ``quant_bytes`` each)."""
    n, L = folded.size, g.lanes
    nt = -(-n // L)
    quant = np.zeros((nt, g.quant_bytes), np.uint8)
    for t in range(nt):
        lo, hi = t * L, min(n, (t + 1) * L)
        for values, dtype, at in ((folded, "<i4", 0), (mult, "<i4", 4 * L), (shift, "i1", 8 * L)):
            lanes = np.zeros(L, dtype)
            lanes[:hi - lo] = values[lo:hi]
            quant[t, at:at + lanes.nbytes] = lanes.view(np.uint8)
    return quant.reshape(-1)


def _records(layer, params, g, folded, refuse):
    """The quantisation records of ``folded`` biases and the layer's multipliers and shifts."""
    c = folded.size
    folded = (folded + (1 << 31)) % (1 << 32) - (1 << 31)
    mult = _per_channel(layer, params.multiplier, c, "multiplier", np.int32)
    shift = _per_channel(layer, params.shift, c, "shift", np.int8)
    if shift.min() < -(1 << 5) or shift.max() >= 1 << 5:
        refuse("shift outside -32..31; allowed: -32..31")
    return quant_records(layer, g, folded, mult, shift)


def _depthwise_blobs(layer, params, g, zp_in, refuse):
    """A depthwise layer's tap vectors and quantisation records."""
    (kh, kw), c = layer.kernel, layer.in_channels
    nt = -(-c // g.lanes)
    wts = np.asarray(params.weights).astype(np.int64).reshape(kh * kw, c)
    bias = np.zeros(c, np.int64) if params.bias is None else np.asarray(params.bias, np.int64)
    reason = accumulator_refusal(kh * kw, zp_in, int(np.abs(wts).max(initial=0)), int(np.abs(bias).max(initial=0)))
    if reason:
        refuse(reason)
    taps = np.zeros((nt, kh * kw, g.pixel_bytes), np.int8)
    padded = np.zeros((kh * kw, nt * g.lanes), np.int8)
    padded[:, :c] = wts
    taps[..., :g.lanes] = padded.reshape(kh * kw, nt, g.lanes).transpose(1, 0, 2)
    return {"weight": taps.reshape(-1).view(np.uint8),
            "quant": _records(layer, params, g, bias - zp_in * wts.sum(axis=0), refuse)}


def vector_layouts(config, layer):
    """``{"input": Layout, "output": Layout}`` (and ``"input2"`` for add and mul) of ``layer`` on the vector
    unit of ``config``, from its shapes: pixel vectors of ``lanes`` channels in channel-tile planes; mul's
    gate is one pixel."""
    g = VectorGeometry.of(config)
    *before, c = layer.in_shape
    act = Layout(g.lanes, g.pixel_bytes, math.prod(before), c)
    layouts = {"input": act, "output": act._replace(pixels=math.prod(layer.out_shape[:-1]))}
    if layer.op is Op.ADD:
        layouts["input2"] = act
    elif layer.op is Op.MUL:
        layouts["input2"] = act._replace(pixels=1)
    return layouts


def compile_vector(config, layer, params, inputs, *, base=0):
    """Compile ``layer`` for the vector unit of ``config``.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`
        A systolic accelerator with a vector unit.
    layer : :class:`~mensa.core.ir.Layer`
    params : :class:`~mensa.core.golden.LayerParams`
    inputs : int8 array of ``layer.in_shape``, or for an add or a mul the pair of its inputs
    base : int
        DRAM byte address of the image, a multiple of 4096.

    Raises
    ------
    CompileError
        One line naming the layer and what is allowed.
    """
    reason = vector_refusal(config, layer)
    if reason:
        raise CompileError(f"layer {layer.name!r}: {reason}")
    if not isinstance(base, int) or base < 0 or base % ALIGN:
        raise ValueError(f"base must be a non-negative multiple of {ALIGN}, not {base!r}")
    flat = planar(layer)
    if flat is not layer:           # the same bytes, walked as one row of pixels
        xs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        shapes = (tuple(layer.in_shape), *map(tuple, layer.extra_in_shapes))
        if any(np.shape(v) != sh for v, sh in zip(xs, shapes)):
            raise CompileError(f"layer {layer.name!r}: inputs of shapes {[np.shape(v) for v in xs]}; allowed: "
                               f"{list(shapes)}")
        prog = compile_vector(config, flat, params, tuple(np.asarray(v).reshape(flat.in_shape) for v in xs),
                              base=base)
        return dataclasses.replace(prog, out_shape=tuple(layer.out_shape))

    def refuse(text):
        raise CompileError(f"layer {layer.name!r}: {text}")

    golden.check_layer(layer)
    q = layer.quant
    if q is None:
        refuse("quant: missing; allowed: a quantised layer (quantise the network first)")
    xs = [np.asarray(v) for v in (inputs if isinstance(inputs, (tuple, list)) else (inputs,))]
    shapes = (tuple(layer.in_shape), *map(tuple, layer.extra_in_shapes))
    if len(xs) != len(layer.inputs) or any(v.shape != sh or v.dtype != np.int8 for v, sh in zip(xs, shapes)):
        got = [f"{v.dtype} {v.shape}" for v in xs]
        refuse(f"inputs {got}; allowed: int8 of shapes {list(shapes[:len(layer.inputs)])}")
    x = xs[0]
    g = VectorGeometry.of(config)
    _, h, w, c = layer.in_shape
    _, oh, ow, _ = layer.out_shape
    (kh, kw), (sh, sw), (dh, dw), pad = window(layer)
    nt, zp_in = -(-c // g.lanes), q.inputs[0].zero_point
    blobs = {"input": to_planes(x.reshape(h, w, c), g).view(np.uint8)}
    if layer.op is Op.DEPTHWISE:
        blobs.update(_depthwise_blobs(layer, params, g, zp_in, refuse))
    elif layer.op is Op.ADD:
        for shift in params.input_shifts:
            if not -31 <= shift <= 0:
                refuse(f"input shift {shift}; allowed: -31..0 (input multipliers at most 1/2, as add's are)")
        blobs["input2"] = to_planes(xs[1].reshape(h, w, c), g).view(np.uint8)
        blobs["quant"] = _records(layer, params, g, np.zeros(c, np.int64), refuse)
    elif layer.op is Op.MUL:
        # the gate in the activation layout (one pixel per plane) is the weight layout of one tap
        blobs["input2"] = to_planes(xs[1].reshape(1, 1, c), g).view(np.uint8)
        blobs["quant"] = _records(layer, params, g, np.zeros(c, np.int64), refuse)
    elif layer.op is Op.GLOBAL_AVGPOOL:
        # the sum of x - zp over the plane: the zero point folds into the bias
        blobs["quant"] = _records(layer, params, g, np.full(c, -zp_in * h * w, np.int64), refuse)
    table, zp_out = table_activation(layer, refuse)     # the requantisation targets the table's input
    if table is not None:
        blobs["table"] = table
    blobs["output"] = np.zeros(nt * oh * ow * g.pixel_bytes, np.uint8)
    regions, addr = {}, base
    for name, blob in blobs.items():
        regions[name] = addr, blob.nbytes
        addr += _up(blob.nbytes, ALIGN)
    if addr > 1 << config.memory.addr_bits:
        refuse(f"the image ends at {addr:#x}; allowed: within the {config.memory.addr_bits}-bit address space")
    image = np.zeros(addr - base, np.uint8)
    for name in blobs.keys() - {"output"}:
        at = regions[name][0] - base
        image[at:at + blobs[name].nbytes] = blobs[name]

    lo, hi = golden.activation_range(layer.activation, q.output.scale, q.output.zero_point)
    values = {
        "OP": OPCODES[layer.op], "IN_H": h, "IN_W": w, "IN_C": c, "OUT_H": oh, "OUT_W": ow, "OUT_C": c,
        "KERNEL_H": kh, "KERNEL_W": kw, "STRIDE_H": sh, "STRIDE_W": sw, "DILATION_H": dh, "DILATION_W": dw,
        "PAD_TOP": pad[0], "PAD_BOTTOM": pad[1], "PAD_LEFT": pad[2], "PAD_RIGHT": pad[3],
        "IN_ZERO_POINT": zp_in, "OUT_ZERO_POINT": zp_out, "QMIN": lo, "QMAX": hi,
        "LINE_ROWS": ring_rows(config, layer), "ACT_TABLE": int("table" in blobs),
    }
    if layer.op in (Op.ADD, Op.MUL):
        values["IN2_ZERO_POINT"] = q.inputs[1].zero_point
    if layer.op is Op.ADD:
        (ma, mb), (sa, sb) = params.input_multipliers, params.input_shifts
        values.update(IN_MULTIPLIER=ma, IN_SHIFT=sa, IN2_MULTIPLIER=mb, IN2_SHIFT=sb)
    regmap = register_map(config)
    registers = dict(values)
    registers.update(address_registers(regmap, {name: at for name, (at, _) in regions.items()}))
    for name in registers:
        assert name in regmap, name         # the map and the compiler are one description
    layouts = vector_layouts(config, layer)
    return VectorProgram(registers=registers, image=image, base=base, output_addr=regions["output"][0], m=oh * ow,
                         n=c, out_shape=tuple(layer.out_shape), geometry=g, regions=regions, layouts=layouts)
