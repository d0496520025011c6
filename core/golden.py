"""The bit-exact numpy golden model: the definition every RTL test is measured against.

Numeric contract (the TFLite int8 scheme, see docs/golden.md):

* activations int8 asymmetric, ``real = scale * (q - zero_point)``;
* weights int8 symmetric per output channel (zero point 0), bias int32 at scale
  ``input_scale * weight_scale[c]``;
* accumulation in int32: ``acc[c] = sum((x - x_zero_point) * w[., c]) + bias[c]``; a
  padded input element equals the input zero point, so it adds nothing;
* requantisation by a Q31 multiplier and a power-of-two shift with TFLite's rounding
  (:func:`requantize`), then the output zero point and a clamp to the activation's range
  (:func:`activation_range`).

Exactness of the fast path: every product ``(x - zp) * w`` is an integer of magnitude at
most ``255 * 128 < 2**15``. A dot product of K such terms has every partial sum an integer
below ``K * 2**15`` in magnitude, so a binary floating-point sum of them is exact, in any
summation order, while ``K * 2**15 <= 2**p`` (p = 24 for float32, 53 for float64). The
BLAS products below use float32 when ``K <= 512`` and float64 otherwise (exact up to
``K = 2**38``). An accumulator (or accumulator plus bias) outside int32 raises
:class:`AccumulatorOverflow` naming the value and K: the model never wraps silently, and the
compilers refuse every layer whose worst case could get there
(:func:`mensa.contract.numeric.accumulator_refusal`).

The LSTM has a fixed-point contract of its own, written out in :func:`lstm`.
"""

import math
from dataclasses import dataclass

import numpy as np

from mensa.core.ir import Activation, LayerError, Network, Op, conv_out_size, conv_transpose_pads

__all__ = [
    "AccumulatorOverflow", "matmul", "quantize_multiplier", "multiply_by_quantized_multiplier", "rounding_divide_by_pot",
    "requantize", "activation_range",
    "conv2d_acc", "conv2d", "depthwise_conv2d", "pointwise_conv2d",
    "conv2d_real", "fully_connected_acc", "fully_connected", "add", "ADD_LEFT_SHIFT", "mul",
    "TABLE_ACTIVATIONS", "activation_function", "activation_table",
    "avg_pool", "max_pool", "global_avg_pool", "concat", "zero_insert", "conv_transpose_acc", "resize_nearest",
    "GATE_FRAC_BITS", "CELL_FRAC_BITS", "ACT_FRAC_BITS", "PROJ_INPUT_SCALE",
    "sigmoid_table", "tanh_table", "sigmoid_q15", "tanh_q15", "lstm_cell", "lstm",
    "LayerParams", "weight_shape", "check_layer", "layer_params", "read_as", "run_layer", "run_network",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
_F32_EXACT_K = 512          # 512 * 2**15 = 2**24: float32 sums stay exact


class AccumulatorOverflow(OverflowError):
    """An int32 accumulator would leave its range: the model refuses to wrap."""


def _to_int32(acc, k, what="accumulator"):
    """Integer-valued array (exact) -> int32; :class:`AccumulatorOverflow` outside int32."""
    acc = np.asarray(acc)
    if acc.size and (acc.max() > INT32_MAX or acc.min() < INT32_MIN):
        worst = int(acc.max()) if acc.max() > INT32_MAX else int(acc.min())
        raise AccumulatorOverflow(f"{what} {worst} leaves int32 [{INT32_MIN}, {INT32_MAX}] (K = {k})")
    return acc.astype(np.int64).astype(np.int32)


def matmul(a, b):
    """int8 x int8 -> int32 matrix product ``a @ b`` (A: M x K, B: K x N), exact."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not chain")
    # float64 BLAS is exact here: |a*b| < 2**15 and K < 2**37 keeps every partial sum below 2**53.
    return _to_int32(a.astype(np.float64) @ b.astype(np.float64), a.shape[1])


def _exact_dtype(k):
    return np.float32 if k <= _F32_EXACT_K else np.float64


# -- requantisation ---------------------------------------------------------------------

def quantize_multiplier(real):
    """TFLite's ``QuantizeMultiplier``: ``real ~= multiplier * 2**(shift - 31)``.

    Parameters
    ----------
    real : float or array of float
        Non-negative real multiplier(s), e.g. ``input_scale * weight_scale / output_scale``.

    Returns
    -------
    (multiplier, shift)
        ``multiplier`` an int32 Q31 mantissa in ``[2**30, 2**31)`` (0 for a real of 0 or one
        below ``2**-32``), ``shift`` the power of two, positive = left shift, in ``[-31, 30]``
        (a real of ``2**30`` or more saturates to ``(2**31 - 1, 30)``). Python ints for a
        scalar argument, int32 arrays of the argument's shape otherwise.
    """
    r = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"quantize_multiplier: real must be finite and >= 0, not {real!r}")
    q, e = np.frexp(r)                                  # r = q * 2**e, q in [0.5, 1)
    m = np.floor(q * (1 << 31) + 0.5).astype(np.int64)  # std::round (half away from zero)
    carry = m == (1 << 31)
    m = np.where(carry, m >> 1, m)
    e = np.where(carry, e + 1, e).astype(np.int64)
    tiny = (m == 0) | (e < -31)
    m = np.where(tiny, 0, m)
    e = np.where(tiny, 0, e)
    big = e > 30
    m = np.where(big, INT32_MAX, m)
    e = np.where(big, 30, e)
    if r.ndim == 0:
        return int(m), int(e)
    return m.astype(np.int32), e.astype(np.int32)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    ``x`` an integer array, ``exponent`` in ``[0, 31]`` (broadcast against ``x``).
    """
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite's ``MultiplyByQuantizedMultiplier`` on int32 values, vectorised.

    ``x * 2**max(shift, 0)`` (saturated to int32), then gemmlowp's
    ``SaturatingRoundingDoublingHighMul`` with ``multiplier``, then
    ``RoundingDivideByPOT`` by ``max(-shift, 0)``. ``multiplier`` and ``shift`` broadcast
    against ``x`` (per-channel arrays along the last axis). Returns int64 (fits int32).
    """
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    # one private copy of the broadcast shape, updated in place below
    x = np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, multiplier.shape, shift.shape)))
    if np.any(shift > 0):
        # TFLite leaves an overflowing left shift undefined; the contract saturates it.
        x <<= np.maximum(shift, 0)
        np.clip(x, INT32_MIN, INT32_MAX, out=x)
    # SaturatingRoundingDoublingHighMul: (x*m + nudge) / 2**31 in C division (toward zero),
    # nudge 2**30 for x*m >= 0 and 1 - 2**30 otherwise. Its one saturating case (both
    # operands INT32_MIN) cannot occur: multiplier >= 0.
    x *= multiplier
    neg = x < 0
    x += 1 << 30
    x -= neg * np.int64((1 << 31) - 1)          # the sign is unchanged by the nudge
    low = x & ((1 << 31) - 1)
    x >>= 31
    x += neg & (low != 0)                       # floor -> toward zero for negatives
    right = np.maximum(-shift, 0)
    if not np.any(right):
        return x
    # RoundingDivideByPOT, in place
    mask = (np.int64(1) << right) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    x >>= right
    x += remainder > threshold
    return x


def _int_dtype(qmin, qmax):
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return dt
    raise ValueError(f"requantize: range [{qmin}, {qmax}] does not fit int32")


def requantize(acc, multiplier, shift, zero_point, qmin=-128, qmax=127):
    """Requantise int32 accumulators: exactly what the hardware's requantiser does.

    ``clamp(MultiplyByQuantizedMultiplier(acc, multiplier, shift) + zero_point, qmin, qmax)``.

    Parameters
    ----------
    acc : int32 array
        Accumulators (bias included); the LAST axis is the output channel.
    multiplier, shift : int or per-channel array
        From :func:`quantize_multiplier`.
    zero_point : int
        Output zero point.
    qmin, qmax : int
        Clamp range (the activation's, see :func:`activation_range`).

    Returns
    -------
    array
        int8 for the default range; int16 (int32) when ``[qmin, qmax]`` needs it.
    """
    if qmin > qmax:
        raise ValueError(f"requantize: qmin {qmin} > qmax {qmax}")
    out = multiply_by_quantized_multiplier(acc, multiplier, shift)
    out += zero_point
    return np.clip(out, qmin, qmax, out=out).astype(_int_dtype(qmin, qmax))


def _round_half_away(v):
    return int(np.sign(v) * np.floor(abs(v) + 0.5))


def activation_range(activation, scale, zero_point, qmin=-128, qmax=127):
    """TFLite's ``CalculateActivationRangeQuantized``: the clamp ``(lo, hi)`` of a fused activation.

    ReLU clamps below at the zero point; ReLU6 also above at ``zero_point + round(6 / scale)``.
    """
    activation = Activation(activation)
    if activation not in (Activation.RELU, Activation.RELU6):
        return qmin, qmax      # NONE, and the table activations (their table does the clamping)
    lo = max(qmin, zero_point)
    if activation is Activation.RELU:
        return lo, qmax
    return lo, min(qmax, zero_point + _round_half_away(6.0 / scale))


# -- convolution and matrix products ----------------------------------------------------

def _pair(v, name):
    t = tuple(int(i) for i in (v if isinstance(v, (tuple, list)) else (v, v)))
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{name} must be a positive int or pair, not {v!r}")
    return t


def _padding4(padding):
    t = tuple(int(i) for i in (padding if isinstance(padding, (tuple, list)) else (padding,) * 4))
    if len(t) != 4 or min(t) < 0:
        raise ValueError(f"padding must be (top, bottom, left, right) >= 0, not {padding!r}")
    return t


def conv2d_real(xs, w, stride, padding, dilation, groups):
    """Convolution of real-valued NHWC ``xs`` (padding adds zeros) with HWIO ``w``.

    Shared by the integer path (``xs = x - zero_point``, exact, see the module docstring)
    and the float reference of :mod:`mensa.core.quant`. Returns ``(N, OH, OW, C_out)`` in
    the dtype of the product.
    """
    n, h, wd, c = xs.shape
    kh, kw, cg, cout = w.shape
    sh, sw = stride
    dh, dw = dilation
    t, b, l, r = padding
    if c != cg * groups or cout % groups:
        raise ValueError(f"conv: {c} input channels, weights {w.shape} and groups {groups} do not agree")
    oh = conv_out_size(h, kh, sh, t, b, dh)
    ow = conv_out_size(wd, kw, sw, l, r, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"conv: kernel {(kh, kw)} dilation {(dh, dw)} is larger than the padded input")
    if any(padding):
        xs = np.pad(xs, ((0, 0), (t, b), (l, r), (0, 0)))

    def tap(i, j):
        return xs[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]

    mult = cout // groups
    if cg == 1:
        # Depthwise (and depth-multiplier) convolution: one multiply-add per tap over all
        # pixels; output channel c * mult + j reads input channel c.
        wr = w.reshape(kh, kw, groups, mult)
        acc = np.zeros((n, oh, ow, groups, mult), dtype=np.result_type(xs, w))
        for i in range(kh):
            for j in range(kw):
                acc += tap(i, j)[..., None] * wr[i, j]
        return acc.reshape(n, oh, ow, cout)
    if kh == kw == 1 and (sh, sw) == (1, 1):
        cols = xs if (oh, ow) == (h + t + b, wd + l + r) else tap(0, 0)
    else:
        cols = np.concatenate([tap(i, j) for i in range(kh) for j in range(kw)], axis=-1)
    k = kh * kw * cg
    if groups == 1:
        return (cols.reshape(-1, k) @ w.reshape(k, cout)).reshape(n, oh, ow, cout)
    # im2col columns are ordered (tap, group, channel): regroup to (group, rows, tap*channel).
    cols = cols.reshape(-1, kh * kw, groups, cg).transpose(2, 0, 1, 3).reshape(groups, -1, k)
    wg = w.reshape(k, groups, mult).transpose(1, 0, 2)
    return (cols @ wg).transpose(1, 0, 2).reshape(n, oh, ow, cout)


def conv2d_acc(x, w, *, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, x_zero_point=0):
    """int32 accumulators of an int8 convolution (no bias): ``sum((x - x_zero_point) * w)``.

    Parameters
    ----------
    x : int8 array (N, H, W, C_in), NHWC.
    w : int8 array (KH, KW, C_in / groups, C_out), HWIO; output channel ``o`` belongs to group
        ``o // (C_out / groups)`` (the ONNX / TFLite convention; depthwise is
        ``groups == C_in`` with weights ``(KH, KW, 1, C_in * multiplier)``).
    stride, dilation : int or (int, int)
    padding : int or (top, bottom, left, right); padded elements equal ``x_zero_point``.
    groups : int
    x_zero_point : int

    Returns
    -------
    int32 array (N, OH, OW, C_out)
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_acc: x {x.shape} must be NHWC and w {w.shape} HWIO")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding = _padding4(padding)
    dt = _exact_dtype(w.shape[0] * w.shape[1] * w.shape[2])
    xs = x.astype(dt) - dt(x_zero_point)
    k = w.shape[0] * w.shape[1] * w.shape[2]
    return _to_int32(conv2d_real(xs, w.astype(dt), stride, padding, dilation, int(groups)), k)


def zero_insert(x, stride, fill):
    """``x`` (N, H, W, C) with its pixels ``stride`` apart and ``fill`` between them: the input of the
    convolution a transposed convolution is."""
    x = np.asarray(x)
    sh, sw = _pair(stride, "stride")
    n, h, w, c = x.shape
    z = np.full((n, (h - 1) * sh + 1, (w - 1) * sw + 1, c), fill, dtype=x.dtype)
    z[:, ::sh, ::sw] = x
    return z


def conv_transpose_acc(x, w, layer, *, x_zero_point=0):
    """int32 accumulators of an int8 transposed convolution (no bias): a stride-1 convolution with the
    kernel flipped over the zero-inserted input (:func:`mensa.core.ir.conv_transpose_pads`); ``w`` is
    ``(KH, KW, C_in, C_out)``."""
    z = zero_insert(x, layer.stride, x_zero_point)
    return conv2d_acc(z, np.asarray(w)[::-1, ::-1], padding=conv_transpose_pads(layer), dilation=layer.dilation,
                      x_zero_point=x_zero_point)


def resize_nearest(x, out_shape):
    """Nearest-neighbour upsampling of ``x`` (N, H, W, C) to ``out_shape`` by whole factors."""
    x = np.asarray(x)
    fh, fw = out_shape[1] // x.shape[1], out_shape[2] // x.shape[2]
    return np.repeat(np.repeat(x, fh, axis=1), fw, axis=2)


def _bias_add(acc, bias, k):
    if bias is None:
        return acc
    return _to_int32(acc.astype(np.int64) + np.asarray(bias, dtype=np.int64), k, "accumulator plus bias")


def conv2d(x, w, bias, multiplier, shift, *, x_zero_point, out_zero_point, stride=(1, 1),
           padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, qmin=-128, qmax=127):
    """Requantised int8 convolution: :func:`conv2d_acc` + ``bias``, then :func:`requantize`.

    ``multiplier``/``shift`` per output channel (``input_scale * weight_scale[c] / output_scale``);
    ``qmin``/``qmax`` the fused activation's clamp (:func:`activation_range`).
    """
    acc = conv2d_acc(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     x_zero_point=x_zero_point)
    k = np.shape(w)[0] * np.shape(w)[1] * np.shape(w)[2]
    return requantize(_bias_add(acc, bias, k), multiplier, shift, out_zero_point, qmin, qmax)


def depthwise_conv2d(x, w, bias, multiplier, shift, **kwargs):
    """:func:`conv2d` with ``groups = C_in``; ``w`` is ``(KH, KW, 1, C_in * depth_multiplier)``."""
    return conv2d(x, w, bias, multiplier, shift, groups=np.shape(x)[-1], **kwargs)


def pointwise_conv2d(x, w, bias, multiplier, shift, **kwargs):
    """:func:`conv2d` with a 1x1 kernel; ``w`` is ``(1, 1, C_in, C_out)``."""
    if np.shape(w)[:2] != (1, 1):
        raise ValueError(f"pointwise_conv2d: weights {np.shape(w)} are not 1x1")
    return conv2d(x, w, bias, multiplier, shift, **kwargs)


def fully_connected_acc(x, w, *, x_zero_point=0):
    """int32 accumulators ``(x - x_zero_point) @ w`` of int8 ``x (..., C_in)`` and ``w (C_in, C_out)``."""
    x = np.asarray(x)
    w = np.asarray(w)
    if w.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"fully_connected_acc: x {x.shape} and w {w.shape} do not chain")
    dt = _exact_dtype(w.shape[0])
    return _to_int32((x.astype(dt) - dt(x_zero_point)) @ w.astype(dt), w.shape[0])


def fully_connected(x, w, bias, multiplier, shift, *, x_zero_point, out_zero_point, qmin=-128, qmax=127):
    """Requantised int8 fully connected layer (per-output-channel weights)."""
    acc = fully_connected_acc(x, w, x_zero_point=x_zero_point)
    return requantize(_bias_add(acc, bias, np.shape(w)[0]), multiplier, shift, out_zero_point, qmin, qmax)


# -- element-wise, pooling, concatenation -----------------------------------------------

ADD_LEFT_SHIFT = 20


def add(a, b, *, a_multiplier, a_shift, a_zero_point, b_multiplier, b_shift, b_zero_point,
        multiplier, shift, out_zero_point, qmin=-128, qmax=127):
    """TFLite's int8 element-wise ADD (reference ``AddElementwise``).

    ``a' = MBQM((a - a_zp) << 20, a_multiplier, a_shift)``, the same for ``b``, then
    ``clamp(MBQM(a' + b', multiplier, shift) + out_zp)``, MBQM being
    :func:`multiply_by_quantized_multiplier`. The multipliers come from
    ``twice_max = 2 * max(a_scale, b_scale)``: ``a_scale / twice_max``,
    ``b_scale / twice_max`` and ``twice_max / (2**20 * out_scale)``
    (see :func:`layer_params`).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"add: shapes {a.shape} and {b.shape} differ")
    sa = multiply_by_quantized_multiplier((a - a_zero_point) << ADD_LEFT_SHIFT, a_multiplier, a_shift)
    sb = multiply_by_quantized_multiplier((b - b_zero_point) << ADD_LEFT_SHIFT, b_multiplier, b_shift)
    return requantize(sa + sb, multiplier, shift, out_zero_point, qmin, qmax)


def mul(a, gate, multiplier, shift, *, a_zero_point, gate_zero_point, out_zero_point, qmin=-128, qmax=127):
    """TFLite's int8 MUL, the gate broadcast over H and W (squeeze-excite):
    ``clamp(MBQM((a - a_zp) * (gate - gate_zp), multiplier, shift) + out_zp)``, the multiplier
    from ``a_scale * gate_scale / out_scale``. ``a`` (N, H, W, C), ``gate`` (N, 1, 1, C).
    """
    prod = (np.asarray(a, dtype=np.int32) - a_zero_point) * (np.asarray(gate, dtype=np.int32) - gate_zero_point)
    return requantize(prod, multiplier, shift, out_zero_point, qmin, qmax)


TABLE_ACTIVATIONS = (Activation.SIGMOID, Activation.TANH, Activation.HARD_SWISH, Activation.HARD_SIGMOID)


def activation_function(activation):
    """The real-valued function of a fused activation (the float reference and the tables)."""
    def relu6(v):
        return np.clip(v, 0.0, 6.0)
    return {
        Activation.NONE: lambda v: v,
        Activation.RELU: lambda v: np.maximum(v, 0.0),
        Activation.RELU6: relu6,
        Activation.SIGMOID: lambda v: 1.0 / (1.0 + np.exp(-v)),
        Activation.TANH: np.tanh,
        Activation.HARD_SWISH: lambda v: v * relu6(v + 3.0) / 6.0,
        Activation.HARD_SIGMOID: lambda v: relu6(v + 3.0) / 6.0,
    }[Activation(activation)]


def activation_table(activation, pre, out):
    """The 256-entry int8 table of a table activation (sigmoid, tanh, hard-swish, hard-sigmoid).

    The layer requantises its accumulators to int8 at ``pre`` (``LayerQuant.pre_activation``,
    full range, no clamp), then outputs ``T[q + 128]`` with
    ``T[i] = clamp(round(f(pre.scale * (i - 128 - pre.zero_point)) / out.scale) + out.zero_point)``,
    rounded half away from zero in float64. The table is data: hardware loads it as computed here.
    """
    real = activation_function(activation)(pre.scale * (np.arange(-128, 128) - pre.zero_point))
    v = real / out.scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + out.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def _pool_windows(x, kernel, stride, padding, fill):
    """Window taps of an NHWC tensor as a list of (N, OH, OW, C) views, padding with ``fill``."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    t, b, l, r = padding
    oh = conv_out_size(h, kh, sh, t, b, 1)
    ow = conv_out_size(w, kw, sw, l, r, 1)
    if oh < 1 or ow < 1:
        raise ValueError(f"pool: kernel {kernel} is larger than the padded input")
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill) if any(padding) else x
    return [xp[:, i: i + (oh - 1) * sh + 1: sh, j: j + (ow - 1) * sw + 1: sw, :]
            for i in range(kh) for j in range(kw)]


def avg_pool(x, *, kernel, stride, padding=(0, 0, 0, 0), qmin=-128, qmax=127):
    """TFLite's int8 AVERAGE_POOL_2D (input and output share scale and zero point).

    Per output: the sum ``s`` of the ``n`` window elements inside the input (padding is not
    counted), then ``(s + n//2) / n`` for ``s > 0`` and ``(s - n//2) / n`` otherwise, with
    C division (toward zero), then the clamp.
    """
    x = np.asarray(x)
    kernel, stride = _pair(kernel, "kernel"), _pair(stride, "stride")
    padding = _padding4(padding)
    s = sum(t.astype(np.int32) for t in _pool_windows(x, kernel, stride, padding, 0))
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int32)
    n = sum(_pool_windows(ones, kernel, stride, padding, 0))
    num = np.where(s > 0, s + n // 2, s - n // 2)
    q = np.abs(num) // n * np.sign(num)
    return np.clip(q, qmin, qmax).astype(np.int8)


def max_pool(x, *, kernel, stride, padding=(0, 0, 0, 0), qmin=-128, qmax=127):
    """int8 MAX_POOL_2D: the maximum of the window elements inside the input, then the clamp."""
    x = np.asarray(x)
    kernel, stride = _pair(kernel, "kernel"), _pair(stride, "stride")
    padding = _padding4(padding)
    # -128 never wins against an element inside the input, and each window holds one.
    out = np.maximum.reduce(_pool_windows(x, kernel, stride, padding, -128))
    return np.clip(out, qmin, qmax).astype(np.int8)


def global_avg_pool(x, multiplier, shift, *, x_zero_point, out_zero_point, qmin=-128, qmax=127):
    """Global average pooling (TFLite MEAN over H, W): ``requantize(sum(x - x_zp))``.

    ``multiplier``/``shift`` from ``in_scale / (out_scale * H * W)``; returns ``(N, 1, 1, C)``.
    """
    x = np.asarray(x)
    acc = (x.astype(np.int32) - x_zero_point).sum(axis=(1, 2), keepdims=True, dtype=np.int32)
    return requantize(acc, multiplier, shift, out_zero_point, qmin, qmax)


def concat(xs, *, zero_points, multipliers, shifts, out_zero_point):
    """Concatenation along channels; an input whose quantisation differs from the output's is
    requantised first: ``requantize(x - zp_i, multiplier_i, shift_i, out_zp)`` with
    ``multiplier_i`` from ``scale_i / out_scale``. A ``multiplier_i`` of ``None`` passes the
    input through unchanged (same scale and zero point).
    """
    parts = []
    for x, zp, m, s in zip(xs, zero_points, multipliers, shifts, strict=True):
        x = np.asarray(x)
        parts.append(x if m is None else requantize(x.astype(np.int32) - zp, m, s, out_zero_point))
    return np.concatenate(parts, axis=-1)


# -- LSTM -------------------------------------------------------------------------------

GATE_FRAC_BITS = 12      # gate pre-activations: int16 Q3.12, real range [-8, 8)
CELL_FRAC_BITS = 11      # cell state: int16 Q4.11, real range [-16, 16)
ACT_FRAC_BITS = 15       # sigmoid / tanh outputs: int16 Q0.15
PROJ_INPUT_SCALE = 2.0 ** -7   # o * tanh(c) as int8 (zero point 0) before a projection
_TABLE_STEP_BITS = 8     # the table index is the top 8 bits of the Q3.12 input


def _table(fn):
    xs = (np.arange(257) - 128) * 2.0 ** (_TABLE_STEP_BITS - GATE_FRAC_BITS)
    v = fn(xs) * (1 << ACT_FRAC_BITS)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -32768, 32767).astype(np.int16)


def sigmoid_table():
    """The 257-entry int16 sigmoid table: ``T[i] = round(2**15 * sigmoid((i - 128) / 16))``.

    Rounded half away from zero and clamped to int16; entry 256 (``x = 8``) is the end
    point of the last segment only.
    """
    return _table(lambda v: 1.0 / (1.0 + np.exp(-v)))


def tanh_table():
    """The 257-entry int16 tanh table: ``T[i] = clamp(round(2**15 * tanh((i - 128) / 16)))``."""
    return _table(np.tanh)


def _interpolate(table, pre):
    """Piecewise-linear table lookup of an int16 Q3.12 input -> int16 Q0.15.

    ``i = (pre >> 8) + 128`` (arithmetic shift; 0..255), ``f = pre & 255``,
    ``y = T[i] + (((T[i+1] - T[i]) * f + 128) >> 8)``.
    """
    pre = np.asarray(pre, dtype=np.int32)
    i = (pre >> _TABLE_STEP_BITS) + 128
    f = pre & ((1 << _TABLE_STEP_BITS) - 1)
    t = table.astype(np.int32)
    lo = t[i]
    return (lo + (((t[i + 1] - lo) * f + 128) >> _TABLE_STEP_BITS)).astype(np.int16)


_SIGMOID = sigmoid_table()
_TANH = tanh_table()


def sigmoid_q15(pre):
    """Sigmoid of int16 Q3.12 values -> int16 Q0.15, by :func:`sigmoid_table` with interpolation."""
    return _interpolate(_SIGMOID, pre)


def tanh_q15(pre):
    """Tanh of int16 Q3.12 values -> int16 Q0.15, by :func:`tanh_table` with interpolation."""
    return _interpolate(_TANH, pre)


def _sat16(v):
    return np.clip(v, -32768, 32767).astype(np.int16)


def lstm_cell(gate_x, h, c, *, w_h, h_zero_point, recurrent_multiplier, recurrent_shift,
              hidden_multiplier, hidden_shift, projection_weights=None, projection_bias=None,
              projection_multiplier=None, projection_shift=None):
    """One LSTM time step of the fixed-point contract (see :func:`lstm`).

    ``gate_x`` int16 (N, 4H): the input half of the gate pre-activations (step 1);
    ``h`` int8 (N, P) the previous output; ``c`` int16 (N, H) the previous cell state.
    Returns ``(h, c)``.
    """
    hidden = c.shape[-1]
    acc_h = fully_connected_acc(h, w_h, x_zero_point=h_zero_point)
    gate_h = requantize(acc_h, recurrent_multiplier, recurrent_shift, 0, -32768, 32767)
    pre = _sat16(gate_x.astype(np.int32) + gate_h)
    i = sigmoid_q15(pre[:, :hidden]).astype(np.int32)
    f = sigmoid_q15(pre[:, hidden:2 * hidden]).astype(np.int32)
    g = tanh_q15(pre[:, 2 * hidden:3 * hidden]).astype(np.int32)
    o = sigmoid_q15(pre[:, 3 * hidden:]).astype(np.int32)
    c = _sat16(rounding_divide_by_pot(f * c, ACT_FRAC_BITS)
               + rounding_divide_by_pot(i * g, 2 * ACT_FRAC_BITS - CELL_FRAC_BITS))
    c_q312 = _sat16(c.astype(np.int32) << (GATE_FRAC_BITS - CELL_FRAC_BITS))
    m = o * tanh_q15(c_q312).astype(np.int32)            # Q0.30
    if projection_weights is None:
        return requantize(m, hidden_multiplier, hidden_shift, h_zero_point), c
    m8 = requantize(m, hidden_multiplier, hidden_shift, 0)
    h = fully_connected(m8, projection_weights, projection_bias, projection_multiplier, projection_shift,
                        x_zero_point=0, out_zero_point=h_zero_point)
    return h, c


def lstm(x, w, bias, *, x_zero_point, h_zero_point, input_multiplier, input_shift,
         recurrent_multiplier, recurrent_shift, hidden_multiplier, hidden_shift,
         projection_weights=None, projection_bias=None, projection_multiplier=None, projection_shift=None):
    """A whole int8 LSTM layer over T time steps: mensa's fixed-point LSTM contract.

    Shapes: ``x`` int8 (N, T, C); ``w`` int8 (C + P, 4H), rows ``[:C]`` the input weights,
    rows ``[C:]`` the recurrent weights, columns the gates in the order **i, f, g, o**
    (input, forget, cell candidate, output), each H wide; ``bias`` int32 (4H,) or None;
    P = H without a projection, else the projection size with ``projection_weights`` int8
    (H, P) and ``projection_bias`` int32 (P,). Output ``h`` int8 (N, T, P) at the layer's
    output quantisation ``(s_h, h_zero_point)``; it is also the recurrent input.
    Weights are symmetric per column: ``s_w[j]`` for the gates, ``s_p[k]`` for the projection.

    Initial state: ``h = h_zero_point`` (real 0), ``c = 0``. Per time step t:

    1. ``gx = requantize(sum((x_t - x_zp) * w[:C]) + bias, input_multiplier, input_shift,
       0, -32768, 32767)``: int16 Q3.12 (scale 2**-12); multipliers from
       ``s_x * s_w[j] / 2**-12``; bias at scale ``s_x * s_w[j]``.
    2. ``gh = requantize(sum((h_{t-1} - h_zp) * w[C:]), recurrent_multiplier,
       recurrent_shift, 0, -32768, 32767)``: int16 Q3.12; multipliers from
       ``s_h * s_w[j] / 2**-12``.
    3. ``pre = sat16(gx + gh)``.
    4. ``i, f, o = sigmoid_q15(pre)``, ``g = tanh_q15(pre)`` (int16 Q0.15, table lookup with
       linear interpolation, :func:`sigmoid_table`, :func:`tanh_table`).
    5. cell, int16 Q4.11 kept on chip:
       ``c = sat16(RDBPOT(f * c, 15) + RDBPOT(i * g, 19))`` (RDBPOT =
       :func:`rounding_divide_by_pot`, products in int32).
    6. ``m = o * tanh_q15(sat16(c << 1))``: int32 Q0.30 (``c << 1`` is c in Q3.12).
    7. without projection: ``h_t = requantize(m, hidden_multiplier, hidden_shift, h_zp)``,
       multiplier from ``2**-30 / s_h``;
       with projection: ``m8 = requantize(m, hidden_multiplier, hidden_shift, 0)`` (int8 at
       scale 2**-7 = :data:`PROJ_INPUT_SCALE`, multiplier from ``2**-23``), then
       ``h_t = requantize(m8 @ projection_weights + projection_bias, projection_multiplier,
       projection_shift, h_zp)`` with multipliers from ``2**-7 * s_p[k] / s_h``.

    Steps 1 and 2 are the one matrix-vector product over ``[x_t; h_{t-1}]`` split by rows
    into two int32 accumulators, each with its own requantisation.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    n, steps, cin = x.shape
    hidden = w.shape[1] // 4
    p = hidden if projection_weights is None else np.shape(projection_weights)[1]
    if w.shape != (cin + p, 4 * hidden):
        raise ValueError(f"lstm: weights {w.shape} do not match ({cin} + {p}, 4 * {hidden})")
    acc_x = _bias_add(fully_connected_acc(x, w[:cin], x_zero_point=x_zero_point), bias, cin)
    gate_x = requantize(acc_x, input_multiplier, input_shift, 0, -32768, 32767)
    h = np.full((n, p), h_zero_point, dtype=np.int8)
    c = np.zeros((n, hidden), dtype=np.int16)
    out = np.empty((n, steps, p), dtype=np.int8)
    for t in range(steps):
        h, c = lstm_cell(gate_x[:, t], h, c, w_h=w[cin:], h_zero_point=h_zero_point,
                         recurrent_multiplier=recurrent_multiplier, recurrent_shift=recurrent_shift,
                         hidden_multiplier=hidden_multiplier, hidden_shift=hidden_shift,
                         projection_weights=projection_weights, projection_bias=projection_bias,
                         projection_multiplier=projection_multiplier, projection_shift=projection_shift)
        out[:, t] = h
    return out


# -- layers and networks ----------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LayerParams:
    """The integer parameters of one quantised layer (made by :func:`layer_params`).

    Members
    -------
    weights : int8 array or None
        Conv ``(KH, KW, C_in / groups, C_out)``, FC ``(C_in, C_out)``, LSTM ``(C + P, 4H)``.
    bias : int32 array (C_out,) or None
    multiplier, shift : int32 arrays (C_out,) or ints
        Output requantisation (conv, FC, ADD output, global average pool); for an LSTM the
        gate input half (step 1 of :func:`lstm`).
    input_multipliers, input_shifts : tuple
        ADD: the two input rescalings; CONCAT: one per input (``None`` = pass through).
    recurrent_multiplier, recurrent_shift, hidden_multiplier, hidden_shift,
    projection_weights, projection_bias, projection_multiplier, projection_shift
        LSTM only, as in :func:`lstm`.
    """
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    multiplier: np.ndarray | int | None = None
    shift: np.ndarray | int | None = None
    input_multipliers: tuple = ()
    input_shifts: tuple = ()
    recurrent_multiplier: np.ndarray | None = None
    recurrent_shift: np.ndarray | None = None
    hidden_multiplier: int | None = None
    hidden_shift: int | None = None
    projection_weights: np.ndarray | None = None
    projection_bias: np.ndarray | None = None
    projection_multiplier: np.ndarray | None = None
    projection_shift: np.ndarray | None = None


_N_INPUTS = {Op.ADD: 2, Op.MUL: 2, Op.LSTM: 1, Op.CONV2D: 1, Op.DEPTHWISE: 1, Op.FC: 1, Op.AVGPOOL: 1,
             Op.MAXPOOL: 1, Op.GLOBAL_AVGPOOL: 1, Op.CONV_TRANSPOSE: 1, Op.RESIZE: 1}


_REQUANTISING = (Op.CONV2D, Op.DEPTHWISE, Op.FC, Op.ADD, Op.MUL, Op.CONV_TRANSPOSE)


def _bad(layer, fieldname, text):
    raise LayerError(f"layer {layer.name!r}: {fieldname}: {text}")


def weight_shape(layer):
    """The int8 weight array a layer's :class:`LayerParams` hold (grouped conv: ``C_in / groups``)."""
    if layer.op is Op.CONV2D:
        kh, kw = layer.kernel
        return (kh, kw, layer.in_channels // layer.groups, layer.out_channels)
    if layer.op is Op.LSTM:
        return (layer.in_channels + (layer.projection or layer.hidden), 4 * layer.hidden)
    return layer.weight_shape


def check_layer(layer):
    """:meth:`Layer.check` plus what the golden model needs; raises :class:`LayerError`."""
    if not isinstance(layer.op, Op) or layer.op not in (*_N_INPUTS, Op.CONCAT):
        _bad(layer, "op", f"{layer.op!r} is not supported; allowed: {', '.join(o.value for o in Op)}")
    layer.check()
    n_in = _N_INPUTS.get(layer.op)
    if n_in is not None and len(layer.inputs) != n_in:
        _bad(layer, "inputs", f"{layer.op.value} takes {n_in} input(s), not {len(layer.inputs)}")
    if layer.op is Op.CONCAT and len(layer.inputs) < 1:
        _bad(layer, "inputs", "concat needs at least one input")
    if layer.op in (Op.ADD, Op.CONCAT) and len(layer.extra_in_shapes) != len(layer.inputs) - 1:
        _bad(layer, "extra_in_shapes", f"{len(layer.extra_in_shapes)} shapes for {len(layer.inputs)} inputs")
    if layer.op is Op.CONV2D and (layer.in_channels % layer.groups or layer.out_channels % layer.groups):
        _bad(layer, "groups", f"{layer.groups} does not divide {layer.in_channels} -> {layer.out_channels} channels")
    if layer.op in (Op.AVGPOOL, Op.MAXPOOL):
        t, b, l, r = layer.padding
        if max(t, b) >= layer.kernel[0] or max(l, r) >= layer.kernel[1]:
            _bad(layer, "padding", f"{layer.padding} lets a window of {layer.kernel} read only padding; "
                                   "each side must be below the kernel")
    if layer.op is Op.ADD and layer.out_shape != layer.in_shape:
        _bad(layer, "out_shape", f"{layer.out_shape} differs from the inputs' {layer.in_shape}")
    if layer.op is Op.FC and (len(layer.in_shape) not in (2, 3) or layer.out_shape[:-1] != layer.in_shape[:-1]):
        _bad(layer, "out_shape", f"{layer.out_shape} is not (N, C_out) or (N, T, C_out) for input {layer.in_shape}")
    if layer.activation in TABLE_ACTIVATIONS and layer.op not in _REQUANTISING:
        _bad(layer, "activation", f"{layer.activation.value} cannot be fused into {layer.op.value}; "
                                  f"allowed into {', '.join(o.value for o in _REQUANTISING)}")
    if layer.op is Op.GLOBAL_AVGPOOL:
        if len(layer.in_shape) != 4 or layer.out_shape != (layer.in_shape[0], 1, 1, layer.in_shape[3]):
            _bad(layer, "out_shape", f"{layer.out_shape} is not (N, 1, 1, C) for input {layer.in_shape}")
    if layer.op is Op.CONCAT:
        shapes = (layer.in_shape, *layer.extra_in_shapes)
        if any(s[:-1] != layer.in_shape[:-1] for s in shapes):
            _bad(layer, "extra_in_shapes", f"{shapes} differ outside the channel axis")
        if layer.out_shape != layer.in_shape[:-1] + (sum(s[-1] for s in shapes),):
            _bad(layer, "out_shape", f"{layer.out_shape} is not the concatenation of {shapes}")
    if layer.op is Op.LSTM:
        p = layer.projection or layer.hidden
        if len(layer.in_shape) != 3 or layer.out_shape != layer.in_shape[:2] + (p,):
            _bad(layer, "out_shape", f"{layer.out_shape} is not (N, T, {p}) for input {layer.in_shape}")
    return layer


def _scales(layer, count, offset=0):
    ws = np.asarray(layer.quant.weight_scales[offset:offset + count], dtype=np.float64)
    if ws.shape != (count,) or not np.all(ws > 0):
        _bad(layer, "quant.weight_scales", f"needs {count} positive scales from index {offset}, "
                                            f"has {len(layer.quant.weight_scales)}")
    return ws


def _int_array(layer, fieldname, value, shape, dtype):
    if value is None:
        _bad(layer, fieldname, "missing")
    value = np.asarray(value)
    if value.shape != shape:
        _bad(layer, fieldname, f"shape {value.shape}, expected {shape}")
    info = np.iinfo(dtype)
    if not np.issubdtype(value.dtype, np.integer) or (value.size and (value.min() < info.min or value.max() > info.max)):
        _bad(layer, fieldname, f"must be {np.dtype(dtype).name} values")
    return value.astype(dtype)


def layer_params(layer, *, weights=None, bias=None, projection_weights=None, projection_bias=None):
    """Build a layer's :class:`LayerParams` from its int8 weights, int32 bias and ``layer.quant``.

    Every multiplier and shift is derived here, from the scales in ``layer.quant``, by
    :func:`quantize_multiplier`; for an LSTM ``layer.quant.weight_scales`` holds the 4H gate
    column scales followed by the P projection column scales.
    """
    check_layer(layer)
    q = layer.quant
    if q is None:
        _bad(layer, "quant", "missing; quantise the network first (mensa.core.quant.quantize_network)")
    n_q = len(layer.inputs)
    if len(q.inputs) != n_q:
        _bad(layer, "quant.inputs", f"{len(q.inputs)} entries for {n_q} inputs")
    s_in, s_out = q.inputs[0].scale, q.output.scale
    op = layer.op
    if layer.activation in TABLE_ACTIVATIONS:
        if q.pre_activation is None:
            _bad(layer, "quant.pre_activation", f"missing; {layer.activation.value} needs it")
        s_out = q.pre_activation.scale     # the requantisation targets the table's input
    if op in (Op.CONV2D, Op.DEPTHWISE, Op.FC, Op.CONV_TRANSPOSE):
        cout = layer.out_channels
        w = _int_array(layer, "weights", weights, weight_shape(layer), np.int8)
        b = None if bias is None else _int_array(layer, "bias", bias, (cout,), np.int32)
        m, s = quantize_multiplier(s_in * _scales(layer, cout) / s_out)
        return LayerParams(weights=w, bias=b, multiplier=m, shift=s)
    if op is Op.ADD:
        sa, sb = q.inputs[0].scale, q.inputs[1].scale
        twice_max = 2.0 * max(sa, sb)
        ma, sha = quantize_multiplier(sa / twice_max)
        mb, shb = quantize_multiplier(sb / twice_max)
        m, s = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * s_out))
        return LayerParams(multiplier=m, shift=s, input_multipliers=(ma, mb), input_shifts=(sha, shb))
    if op is Op.MUL:
        m, s = quantize_multiplier(q.inputs[0].scale * q.inputs[1].scale / s_out)
        return LayerParams(multiplier=m, shift=s)
    if op is Op.GLOBAL_AVGPOOL:
        m, s = quantize_multiplier(s_in / (s_out * layer.in_shape[1] * layer.in_shape[2]))
        return LayerParams(multiplier=m, shift=s)
    if op is Op.CONCAT:
        ms, ss = [], []
        for qi in q.inputs:
            m, s = (None, None) if qi == q.output else quantize_multiplier(qi.scale / s_out)
            ms.append(m)
            ss.append(s)
        return LayerParams(input_multipliers=tuple(ms), input_shifts=tuple(ss))
    if op in (Op.AVGPOOL, Op.MAXPOOL, Op.RESIZE):
        if q.inputs[0] != q.output:
            _bad(layer, "quant.output", f"{q.output} must equal the input's {q.inputs[0]} for {op.value}")
        return LayerParams()
    # LSTM
    hidden, proj = layer.hidden, layer.projection
    w = _int_array(layer, "weights", weights, weight_shape(layer), np.int8)
    b = None if bias is None else _int_array(layer, "bias", bias, (4 * hidden,), np.int32)
    sw = _scales(layer, 4 * hidden)
    gate_scale = 2.0 ** -GATE_FRAC_BITS
    mi, si = quantize_multiplier(s_in * sw / gate_scale)
    mr, sr = quantize_multiplier(s_out * sw / gate_scale)
    m_scale = 2.0 ** -(2 * ACT_FRAC_BITS)
    if not proj:
        mh, sh = quantize_multiplier(m_scale / s_out)
        return LayerParams(weights=w, bias=b, multiplier=mi, shift=si, recurrent_multiplier=mr,
                           recurrent_shift=sr, hidden_multiplier=mh, hidden_shift=sh)
    mh, sh = quantize_multiplier(m_scale / PROJ_INPUT_SCALE)
    pw = _int_array(layer, "projection_weights", projection_weights, (hidden, proj), np.int8)
    pb = None if projection_bias is None else _int_array(layer, "projection_bias", projection_bias, (proj,), np.int32)
    mp, sp = quantize_multiplier(PROJ_INPUT_SCALE * _scales(layer, proj, 4 * hidden) / s_out)
    return LayerParams(weights=w, bias=b, multiplier=mi, shift=si, recurrent_multiplier=mr, recurrent_shift=sr,
                       hidden_multiplier=mh, hidden_shift=sh, projection_weights=pw, projection_bias=pb,
                       projection_multiplier=mp, projection_shift=sp)


def read_as(x, shape):
    """A producer's output ``x`` as a consumer reads it with ``shape`` (see :mod:`mensa.core.ir`):
    as is, its first ``shape[-1]`` channels (a channel slice), or reshaped in row-major order;
    ``None`` when none of these fits."""
    x = np.asarray(x)
    if x.shape == tuple(shape):
        return x
    if x.ndim == len(shape) and x.shape[:-1] == tuple(shape[:-1]) and shape[-1] < x.shape[-1]:
        return x[..., :shape[-1]]
    if x.size == math.prod(shape) and x.ndim and x.shape[0] == shape[0]:
        return x.reshape(shape)   # an implicit flatten, e.g. (N, 1, 1, C) into an FC layer
    return None


def _input(layer, x, shape, index):
    x = np.asarray(x)
    if x.dtype != np.int8:
        _bad(layer, "inputs", f"input {index} is {x.dtype}, must be int8")
    view = read_as(x, shape)
    if view is None:
        _bad(layer, "in_shape", f"{shape} does not match input {index} of shape {x.shape}")
    return view


def run_layer(layer, params, *inputs):
    """Run one quantised layer on int8 inputs; returns its int8 output of ``layer.out_shape``."""
    check_layer(layer)
    q = layer.quant
    if q is None:
        _bad(layer, "quant", "missing; quantise the network first (mensa.core.quant.quantize_network)")
    if len(inputs) != len(layer.inputs):
        _bad(layer, "inputs", f"{len(inputs)} arrays given for {len(layer.inputs)} inputs")
    shapes = (layer.in_shape, *layer.extra_in_shapes)
    xs = [_input(layer, x, s, i) for i, (x, s) in enumerate(zip(inputs, shapes))]
    x, zp_in, zp_out = xs[0], q.inputs[0].zero_point, q.output.zero_point
    lo, hi = activation_range(layer.activation, q.output.scale, zp_out)
    table = None
    if layer.activation in TABLE_ACTIVATIONS:
        if q.pre_activation is None:
            _bad(layer, "quant.pre_activation", f"missing; {layer.activation.value} needs it")
        table = activation_table(layer.activation, q.pre_activation, q.output)
        zp_out = q.pre_activation.zero_point
    p = params
    op = layer.op
    if op in (Op.CONV2D, Op.DEPTHWISE):
        out = conv2d(x, p.weights, p.bias, p.multiplier, p.shift, x_zero_point=zp_in, out_zero_point=zp_out,
                     stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                     groups=layer.groups, qmin=lo, qmax=hi)
    elif op is Op.CONV_TRANSPOSE:
        acc = conv_transpose_acc(x, p.weights, layer, x_zero_point=zp_in)
        k = layer.kernel[0] * layer.kernel[1] * layer.in_channels
        out = requantize(_bias_add(acc, p.bias, k), p.multiplier, p.shift, zp_out, lo, hi)
    elif op is Op.RESIZE:
        out = resize_nearest(x, layer.out_shape)
    elif op is Op.FC:
        out = fully_connected(x, p.weights, p.bias, p.multiplier, p.shift, x_zero_point=zp_in,
                              out_zero_point=zp_out, qmin=lo, qmax=hi)
    elif op is Op.ADD:
        (ma, mb), (sa, sb) = p.input_multipliers, p.input_shifts
        out = add(xs[0], xs[1], a_multiplier=ma, a_shift=sa, a_zero_point=zp_in, b_multiplier=mb, b_shift=sb,
                  b_zero_point=q.inputs[1].zero_point, multiplier=p.multiplier, shift=p.shift,
                  out_zero_point=zp_out, qmin=lo, qmax=hi)
    elif op is Op.MUL:
        out = mul(xs[0], xs[1], p.multiplier, p.shift, a_zero_point=zp_in, gate_zero_point=q.inputs[1].zero_point,
                  out_zero_point=zp_out, qmin=lo, qmax=hi)
    elif op is Op.AVGPOOL:
        out = avg_pool(x, kernel=layer.kernel, stride=layer.stride, padding=layer.padding, qmin=lo, qmax=hi)
    elif op is Op.MAXPOOL:
        out = max_pool(x, kernel=layer.kernel, stride=layer.stride, padding=layer.padding, qmin=lo, qmax=hi)
    elif op is Op.GLOBAL_AVGPOOL:
        out = global_avg_pool(x, p.multiplier, p.shift, x_zero_point=zp_in, out_zero_point=zp_out, qmin=lo, qmax=hi)
    elif op is Op.CONCAT:
        out = concat(xs, zero_points=[qi.zero_point for qi in q.inputs], multipliers=p.input_multipliers,
                     shifts=p.input_shifts, out_zero_point=zp_out)
    else:
        out = lstm(x, p.weights, p.bias, x_zero_point=zp_in, h_zero_point=zp_out, input_multiplier=p.multiplier,
                   input_shift=p.shift, recurrent_multiplier=p.recurrent_multiplier,
                   recurrent_shift=p.recurrent_shift, hidden_multiplier=p.hidden_multiplier,
                   hidden_shift=p.hidden_shift, projection_weights=p.projection_weights,
                   projection_bias=p.projection_bias, projection_multiplier=p.projection_multiplier,
                   projection_shift=p.projection_shift)
    if table is not None:
        out = table[out.astype(np.int16) + 128]
    if out.shape != layer.out_shape:
        _bad(layer, "out_shape", f"{layer.out_shape}, but the op produces {out.shape}")
    return out


def run_network(net, params, x):
    """Run a quantised network DAG on an int8 input.

    ``params`` maps a layer's name to its :class:`LayerParams` (from
    :func:`mensa.core.quant.quantize_network`); ``x`` is the int8 input, or a dict of the
    ``"input"`` and ``net.extra_inputs`` by name. Returns every layer's output by name, in
    layer order.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a Network, not {type(net).__name__}")
    outputs = {k: np.asarray(v) for k, v in (x.items() if isinstance(x, dict) else {"input": x}.items())}
    missing = {"input", *(name for name, _ in net.extra_inputs)} - outputs.keys()
    if missing:
        raise LayerError(f"network {net.name!r}: inputs: {sorted(missing)} not given")
    names = set(outputs)
    for layer in net.layers:
        if layer.name not in params:
            _bad(layer, "params", "no LayerParams given for this layer")
        outputs[layer.name] = run_layer(layer, params[layer.name], *(outputs[s] for s in layer.inputs))
    return {k: v for k, v in outputs.items() if k not in names}
