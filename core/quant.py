"""Post-training int8 quantisation: float weights and calibration runs -> the golden model's parameters.

A network given in float (or with random float weights, :func:`random_float_params`) is run
in float64 on calibration inputs (:func:`run_float`); every tensor's observed range gives its
affine int8 quantisation (:func:`choose_quant_params`), weights are quantised symmetric per
output channel (:func:`quantize_weights`) and biases to int32 at ``input_scale *
weight_scale`` (:func:`quantize_bias`). :func:`quantize_network` does all of it and returns
the quantised network and the :class:`~mensa.core.golden.LayerParams` of every layer.
"""

from dataclasses import dataclass, replace

import numpy as np

from mensa.core.ir import LayerError, LayerQuant, Network, Op, QuantParams, conv_transpose_pads
from mensa.core import golden

__all__ = ["FloatParams", "random_float_params", "run_float", "choose_quant_params", "quantize_tensor",
           "dequantize", "quantize_weights", "quantize_bias", "quantize_network"]


@dataclass(frozen=True, eq=False)
class FloatParams:
    """A layer's float parameters, in the layouts of :func:`mensa.core.golden.weight_shape`."""
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    projection_weights: np.ndarray | None = None
    projection_bias: np.ndarray | None = None


def random_float_params(net, rng):
    """He-initialised random float weights and small biases for every layer with weights."""
    params = {}
    for layer in net.layers:
        shape = golden.weight_shape(layer)
        if layer.op is Op.LSTM:
            h, p = layer.hidden, layer.projection
            bound = 1.0 / np.sqrt(h)                      # PyTorch's LSTM initialisation
            bias = rng.uniform(-bound, bound, 4 * h)
            params[layer.name] = FloatParams(
                weights=rng.uniform(-bound, bound, shape), bias=bias if layer.bias else None,
                projection_weights=rng.uniform(-bound, bound, (h, p)) if p else None,
                projection_bias=rng.uniform(-bound, bound, p) if p and layer.bias else None)
        elif shape:
            fan_in = int(np.prod(shape[:-1]))
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            b = rng.normal(0.0, 0.1, shape[-1]) if layer.bias else None
            params[layer.name] = FloatParams(weights=w, bias=b)
    return params


# -- float reference ----------------------------------------------------------------------

def _float_lstm(x, w, b, pw, pb, hidden):
    n, steps, cin = x.shape
    p = hidden if pw is None else pw.shape[1]
    h = np.zeros((n, p))
    c = np.zeros((n, hidden))
    out = np.empty((n, steps, p))
    sig = golden.activation_function("sigmoid")
    gx = x @ w[:cin] + (0.0 if b is None else b)
    for t in range(steps):
        z = gx[:, t] + h @ w[cin:]
        i, f, g, o = sig(z[:, :hidden]), sig(z[:, hidden:2 * hidden]), np.tanh(z[:, 2 * hidden:3 * hidden]), \
            sig(z[:, 3 * hidden:])
        c = f * c + i * g
        h = o * np.tanh(c)
        if pw is not None:
            h = h @ pw + (0.0 if pb is None else pb)
        out[:, t] = h
    return out


def _avg_pool_float(x, layer):
    wins = golden._pool_windows(x, layer.kernel, layer.stride, layer.padding, 0.0)
    ones = np.ones((1,) + x.shape[1:3] + (1,))
    return sum(wins) / sum(golden._pool_windows(ones, layer.kernel, layer.stride, layer.padding, 0.0))


def _float_layer(layer, fp, xs):
    """One layer in float64; returns ``(pre_activation, output)``."""
    shapes = (layer.in_shape, *layer.extra_in_shapes)
    xs = [golden.read_as(np.asarray(x, dtype=np.float64), s) for x, s in zip(xs, shapes)]
    x, op = xs[0], layer.op
    if op in (Op.CONV2D, Op.DEPTHWISE):
        y = golden.conv2d_real(x, fp.weights, layer.stride, layer.padding, layer.dilation, layer.groups)
    elif op is Op.CONV_TRANSPOSE:
        z = golden.zero_insert(x, layer.stride, 0.0)
        y = golden.conv2d_real(z, fp.weights[::-1, ::-1], (1, 1), conv_transpose_pads(layer), layer.dilation, 1)
    elif op is Op.RESIZE:
        y = golden.resize_nearest(x, layer.out_shape)
    elif op is Op.FC:
        y = x @ fp.weights
    elif op is Op.ADD:
        y = xs[0] + xs[1]
    elif op is Op.MUL:
        y = xs[0] * xs[1]
    elif op is Op.AVGPOOL:
        y = _avg_pool_float(x, layer)
    elif op is Op.MAXPOOL:
        y = np.maximum.reduce(golden._pool_windows(x, layer.kernel, layer.stride, layer.padding, -np.inf))
    elif op is Op.GLOBAL_AVGPOOL:
        y = x.mean(axis=(1, 2), keepdims=True)
    elif op is Op.CONCAT:
        y = np.concatenate(xs, axis=-1)
    else:
        y = _float_lstm(x, fp.weights, fp.bias, fp.projection_weights, fp.projection_bias, layer.hidden)
        return y, y
    if op in (Op.CONV2D, Op.DEPTHWISE, Op.FC, Op.CONV_TRANSPOSE) and fp.bias is not None:
        y = y + fp.bias
    return y, golden.activation_function(layer.activation)(y)


def _inputs_dict(net, x):
    d = dict(x) if isinstance(x, dict) else {"input": x}
    missing = {"input", *(name for name, _ in net.extra_inputs)} - d.keys()
    if missing:
        raise LayerError(f"network {net.name!r}: inputs: {sorted(missing)} not given")
    return d


def _run_float(net, float_params, x):
    values = {k: np.asarray(v, dtype=np.float64) for k, v in _inputs_dict(net, x).items()}
    pre = {}
    for layer in net.layers:
        golden.check_layer(layer)
        fp = float_params.get(layer.name, FloatParams())
        if golden.weight_shape(layer) and (fp.weights is None or np.shape(fp.weights) != golden.weight_shape(layer)):
            raise LayerError(f"layer {layer.name!r}: weights: float weights of shape "
                             f"{None if fp.weights is None else np.shape(fp.weights)}, expected {golden.weight_shape(layer)}")
        pre[layer.name], values[layer.name] = _float_layer(layer, fp, [values[s] for s in layer.inputs])
    return values, pre


def run_float(net, float_params, x):
    """Run a network in float64 (the reference of the quantised model); every layer's output by name."""
    values, _ = _run_float(net, float_params, x)
    return {layer.name: values[layer.name] for layer in net.layers}


# -- quantisation -------------------------------------------------------------------------

def choose_quant_params(lo, hi, qmin=-128, qmax=127):
    """Affine int8 quantisation covering ``[lo, hi]`` (widened to hold 0, as TFLite does).

    ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = round(qmin - lo / scale)`` clamped
    to ``[qmin, qmax]``, so real 0 is exactly representable.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"choose_quant_params: range [{lo}, {hi}] is not finite")
    if hi - lo < 1e-12:
        hi = lo + 1e-6                              # an all-zero tensor: any small scale
    scale = (hi - lo) / (qmax - qmin)
    zp = int(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return QuantParams(scale=scale, zero_point=zp)


def quantize_tensor(x, qp):
    """``clamp(round(x / scale) + zero_point)`` to int8 (round half to even, as numpy)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / qp.scale) + qp.zero_point, -128, 127).astype(np.int8)


def dequantize(q, qp):
    """``scale * (q - zero_point)`` in float64."""
    return qp.scale * (np.asarray(q, dtype=np.float64) - qp.zero_point)


def quantize_weights(w, axis=-1):
    """Symmetric per-channel int8 weights: ``scale[c] = max|w[..., c]| / 127``; returns ``(q, scales)``.

    A channel of zeros gets scale 1 (its weights are 0 whatever the scale).
    """
    w = np.moveaxis(np.asarray(w, dtype=np.float64), axis, -1)
    amax = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
    scales = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.round(w / scales), -127, 127).astype(np.int8)
    return np.moveaxis(q, -1, axis), scales


def quantize_bias(b, scales):
    """int32 bias at scale ``scales`` (``input_scale * weight_scale[c]``), saturated."""
    return np.clip(np.round(np.asarray(b, dtype=np.float64) / scales), -(1 << 31), (1 << 31) - 1).astype(np.int32)


def _range(values):
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    return lo, hi


def _concat_sharing(net):
    """Source layer -> the concat whose quantisation it takes (TFLite's rule: a concat's inputs and
    output share one scale and zero point, so the concat is a layout and not a requantisation).

    A source shares when it feeds no other concat and is a network input or a layer that sets its
    own output quantisation (not a pooling or resizing, which keep their input's, nor a concat); the
    other inputs of such a concat are requantised by it as before.
    """
    kept = (Op.AVGPOOL, Op.MAXPOOL, Op.RESIZE, Op.CONCAT)
    feeds = {}
    for layer in net.layers:
        if layer.op is Op.CONCAT:
            for s in set(layer.inputs):
                feeds.setdefault(s, []).append(layer.name)
    ops = {layer.name: layer.op for layer in net.layers}
    return {s: cats[0] for s, cats in feeds.items() if len(cats) == 1 and ops.get(s) not in kept}


def quantize_network(net, weights, calibration_inputs):
    """Post-training quantisation of a float network.

    Parameters
    ----------
    net : Network
    weights : dict[str, FloatParams] or numpy.random.Generator
        The float parameters per layer name, or a generator for :func:`random_float_params`.
    calibration_inputs : array or dict, or a list of them
        Float input batches (a dict holds ``"input"`` and the ``net.extra_inputs``).

    Returns
    -------
    (Network, dict[str, LayerParams])
        The network with ``input_quant`` and every ``Layer.quant`` filled, and the golden
        model's integer parameters by layer name.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a Network, not {type(net).__name__}")
    if isinstance(weights, np.random.Generator):
        weights = random_float_params(net, weights)
    batches = calibration_inputs if isinstance(calibration_inputs, (list, tuple)) else [calibration_inputs]
    runs = [_run_float(net, weights, b) for b in batches]
    tensors = {}
    for name in runs[0][0]:
        tensors[name] = choose_quant_params(*_range([r[0][name] for r in runs]))
    for source, cat in _concat_sharing(net).items():
        tensors[source] = tensors[cat]
    layers, params = [], {}
    for layer in net.layers:
        in_q = tuple(tensors[s] for s in layer.inputs)
        out_q = tensors[layer.name]
        if layer.op in (Op.AVGPOOL, Op.MAXPOOL, Op.RESIZE):
            out_q = in_q[0]                          # TFLite: pooling and resizing keep the quantisation
        tensors[layer.name] = out_q
        pre_q = None
        if layer.activation in golden.TABLE_ACTIVATIONS:
            pre_q = choose_quant_params(*_range([r[1][layer.name] for r in runs]))
        fp = weights.get(layer.name, FloatParams())
        kwargs, w_scales = {}, ()
        if layer.op in (Op.CONV2D, Op.DEPTHWISE, Op.FC, Op.LSTM, Op.CONV_TRANSPOSE):
            wq, ws = quantize_weights(fp.weights)
            kwargs["weights"], w_scales = wq, tuple(ws)
            if fp.bias is not None:
                kwargs["bias"] = quantize_bias(fp.bias, in_q[0].scale * ws)
            if layer.op is Op.LSTM and fp.projection_weights is not None:
                pq, ps = quantize_weights(fp.projection_weights)
                kwargs["projection_weights"], w_scales = pq, w_scales + tuple(ps)
                if fp.projection_bias is not None:
                    kwargs["projection_bias"] = quantize_bias(fp.projection_bias, golden.PROJ_INPUT_SCALE * ps)
        qlayer = replace(layer, quant=LayerQuant(inputs=in_q, output=out_q, weight_scales=w_scales,
                                                 pre_activation=pre_q))
        layers.append(qlayer)
        params[layer.name] = golden.layer_params(qlayer, **kwargs)
    qnet = replace(net, layers=tuple(layers), input_quant=tensors["input"])
    return qnet, params
