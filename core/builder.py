"""Build a :class:`~mensa.core.ir.Network` layer by layer while the shapes are tracked.

A :class:`NetworkBuilder` hands out :class:`Tensor` handles (a producer's name
and the shape it is read with); every method takes its source tensor first,
appends one checked :class:`~mensa.core.ir.Layer` and returns the handle of
its output::

    b = NetworkBuilder("tiny", (1, 32, 32, 3))
    x = b.conv(b.input, 16, 3, stride=2, activation=Activation.RELU6)
    x = b.depthwise(x, 3)
    x = b.flatten(b.global_avgpool(x))
    b.fc(x, 10)
    net = b.build()

:meth:`NetworkBuilder.reshape`, :meth:`NetworkBuilder.flatten` and
:meth:`NetworkBuilder.truncate` add no layer: they return a handle that reads the
same producer with another shape, which is how the IR spells a reshape or a
channel slice (see :mod:`mensa.core.ir`).
"""

import math
from dataclasses import dataclass

from mensa.core.ir import (Activation, Layer, LayerError, Network, Op, conv_out_size, conv_transpose_out_size,
                           same_padding)

__all__ = ["Tensor", "NetworkBuilder"]


@dataclass(frozen=True)
class Tensor:
    """A handle: the producing layer (or network input) ``name`` read with ``shape``."""
    name: str
    shape: tuple[int, ...]


def _pair(value, name):
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise TypeError(f"{name} must be an int or a pair of ints, not {value!r}")
    return value


class NetworkBuilder:
    """Chain layers into a :class:`Network`, computing each output shape.

    Parameters
    ----------
    name : str
        Network name.
    input_shape : tuple of int
        ``(N, H, W, C)`` for images, ``(N, T, C)`` for sequences.
    kind : str
        ``"cnn"``, ``"lstm"``, ``"transducer"`` or ``"hybrid"``.
    """

    KINDS = ("cnn", "lstm", "transducer", "hybrid")

    def __init__(self, name, input_shape, *, kind="cnn"):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}, not {kind!r}")
        self._name = name
        self._kind = kind
        self._input = Tensor("input", tuple(input_shape))
        self._extra_inputs = []
        self._layers = []
        self._names = {"input"}
        self._counts = {}

    @property
    def input(self):
        """The network input."""
        return self._input

    def add_input(self, name, shape):
        """Declare a further network input (e.g. an embedded previous token) and return it."""
        if name in self._names:
            raise ValueError(f"name {name!r} is used twice")
        self._names.add(name)
        self._extra_inputs.append((name, tuple(shape)))
        return Tensor(name, tuple(shape))

    # -- helpers -------------------------------------------------------------------------
    def _auto_name(self, name, prefix):
        if name is None:
            n = self._counts.get(prefix, 0)
            self._counts[prefix] = n + 1
            name = f"{prefix}{n}"
        if name in self._names:
            raise ValueError(f"name {name!r} is used twice")
        return name

    def _append(self, name, prefix, **fields):
        name = self._auto_name(name, prefix)
        layer = Layer(name=name, **fields).check()
        self._names.add(name)
        self._layers.append(layer)
        return Tensor(name, layer.out_shape)

    @staticmethod
    def _padding(padding, size, kernel, stride, dilation):
        """Resolve ``"same"`` (TensorFlow), ``"valid"``, an int (all sides) or (top, bottom, left, right)."""
        if padding == "same":
            return same_padding(size[0], kernel[0], stride[0], dilation[0]) + \
                same_padding(size[1], kernel[1], stride[1], dilation[1])
        if padding == "valid":
            return (0, 0, 0, 0)
        if isinstance(padding, int):
            return (padding,) * 4
        padding = tuple(padding)
        if len(padding) != 4:
            raise TypeError(f"padding must be 'same', 'valid', an int or (top, bottom, left, right), not {padding!r}")
        return padding

    def _spatial(self, x, kernel, stride, padding, dilation):
        if len(x.shape) != 4:
            raise LayerError(f"input {x.name!r}: shape {x.shape} is not NHWC")
        kernel, stride, dilation = _pair(kernel, "kernel"), _pair(stride, "stride"), _pair(dilation, "dilation")
        n, h, w, _ = x.shape
        pad = self._padding(padding, (h, w), kernel, stride, dilation)
        oh = conv_out_size(h, kernel[0], stride[0], pad[0], pad[1], dilation[0])
        ow = conv_out_size(w, kernel[1], stride[1], pad[2], pad[3], dilation[1])
        return kernel, stride, dilation, pad, (n, max(oh, 0), max(ow, 0))

    # -- layers --------------------------------------------------------------------------
    def conv(self, x, out_channels, kernel, *, stride=1, padding="same", dilation=1,
             activation=Activation.NONE, bias=True, name=None):
        """A full convolution (``groups == 1``)."""
        kernel, stride, dilation, pad, nhw = self._spatial(x, kernel, stride, padding, dilation)
        return self._append(name, "conv", op=Op.CONV2D, in_shape=x.shape, out_shape=nhw + (out_channels,),
                            inputs=(x.name,), kernel=kernel, stride=stride, padding=pad, dilation=dilation,
                            activation=activation, bias=bias)

    def conv_transpose(self, x, out_channels, kernel, *, stride=1, padding=0, output_padding=0, dilation=1,
                       activation=Activation.NONE, bias=True, name=None):
        """A transposed convolution (ONNX ConvTranspose, groups 1): ``padding`` crops the output
        (an int or (top, bottom, left, right)), ``output_padding`` adds rows and columns at its end."""
        if len(x.shape) != 4:
            raise LayerError(f"input {x.name!r}: shape {x.shape} is not NHWC")
        kernel, stride, dilation = _pair(kernel, "kernel"), _pair(stride, "stride"), _pair(dilation, "dilation")
        extra = _pair(output_padding, "output_padding")
        pad = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        n, h, w, _ = x.shape
        oh = conv_transpose_out_size(h, kernel[0], stride[0], pad[0], pad[1], dilation[0]) + extra[0]
        ow = conv_transpose_out_size(w, kernel[1], stride[1], pad[2], pad[3], dilation[1]) + extra[1]
        return self._append(name, "convt", op=Op.CONV_TRANSPOSE, in_shape=x.shape,
                            out_shape=(n, max(oh, 1), max(ow, 1), out_channels), inputs=(x.name,), kernel=kernel,
                            stride=stride, padding=pad, dilation=dilation, activation=activation, bias=bias)

    def resize(self, x, factor, *, name=None):
        """Nearest-neighbour upsampling of an NHWC tensor by whole factors (an int or (fh, fw))."""
        fh, fw = _pair(factor, "factor")
        if len(x.shape) != 4:
            raise LayerError(f"input {x.name!r}: shape {x.shape} is not NHWC")
        n, h, w, c = x.shape
        return self._append(name, "resize", op=Op.RESIZE, in_shape=x.shape, out_shape=(n, h * fh, w * fw, c),
                            inputs=(x.name,), bias=False)

    def pointwise(self, x, out_channels, *, activation=Activation.NONE, bias=True, name=None):
        """A 1x1 convolution."""
        return self.conv(x, out_channels, 1, activation=activation, bias=bias, name=name)

    def depthwise(self, x, kernel, *, stride=1, padding="same", dilation=1, multiplier=1,
                  activation=Activation.NONE, bias=True, name=None):
        """A depthwise convolution (one filter per input channel, times ``multiplier``)."""
        kernel, stride, dilation, pad, nhw = self._spatial(x, kernel, stride, padding, dilation)
        c = x.shape[-1]
        return self._append(name, "dw", op=Op.DEPTHWISE, in_shape=x.shape, out_shape=nhw + (c * multiplier,),
                            inputs=(x.name,), kernel=kernel, stride=stride, padding=pad, dilation=dilation,
                            groups=c, activation=activation, bias=bias)

    def fc(self, x, out_features, *, activation=Activation.NONE, bias=True, name=None):
        """A fully connected layer on ``(N, C)``, or on ``(N, T, C)`` at every time step."""
        if len(x.shape) not in (2, 3):
            raise LayerError(f"input {x.name!r}: shape {x.shape} is neither (N, C) nor (N, T, C); flatten it first")
        return self._append(name, "fc", op=Op.FC, in_shape=x.shape, out_shape=x.shape[:-1] + (out_features,),
                            inputs=(x.name,), activation=activation, bias=bias)

    def _pool(self, op, prefix, x, kernel, stride, padding, name):
        stride = kernel if stride is None else stride
        kernel, stride, dilation, pad, nhw = self._spatial(x, kernel, stride, padding, 1)
        return self._append(name, prefix, op=op, in_shape=x.shape, out_shape=nhw + (x.shape[-1],),
                            inputs=(x.name,), kernel=kernel, stride=stride, padding=pad, bias=False)

    def maxpool(self, x, kernel, *, stride=None, padding="valid", name=None):
        """Max pooling; the stride defaults to the kernel."""
        return self._pool(Op.MAXPOOL, "maxpool", x, kernel, stride, padding, name)

    def avgpool(self, x, kernel, *, stride=None, padding="valid", name=None):
        """Average pooling; the stride defaults to the kernel."""
        return self._pool(Op.AVGPOOL, "avgpool", x, kernel, stride, padding, name)

    def global_avgpool(self, x, *, name=None):
        """Mean over H and W: ``(N, H, W, C) -> (N, 1, 1, C)``."""
        if len(x.shape) != 4:
            raise LayerError(f"input {x.name!r}: shape {x.shape} is not NHWC")
        n, h, w, c = x.shape
        return self._append(name, "gap", op=Op.GLOBAL_AVGPOOL, in_shape=x.shape, out_shape=(n, 1, 1, c),
                            inputs=(x.name,), kernel=(h, w), stride=(h, w), bias=False)

    def add(self, x, y, *, activation=Activation.NONE, name=None):
        """Element-wise sum of two tensors of one shape."""
        return self._append(name, "add", op=Op.ADD, in_shape=x.shape, out_shape=x.shape,
                            inputs=(x.name, y.name), extra_in_shapes=(y.shape,), activation=activation,
                            bias=False)

    def mul(self, x, gate, *, name=None):
        """Scale ``x`` (N, H, W, C) channel by channel by ``gate`` (N, 1, 1, C)."""
        return self._append(name, "mul", op=Op.MUL, in_shape=x.shape, out_shape=x.shape,
                            inputs=(x.name, gate.name), extra_in_shapes=(gate.shape,), bias=False)

    def concat(self, *xs, name=None):
        """Concatenate along the last (channel) axis; the other dimensions must agree."""
        if len(xs) < 2:
            raise ValueError("concat needs at least two inputs")
        lead = xs[0].shape[:-1]
        for t in xs[1:]:
            if t.shape[:-1] != lead:
                raise LayerError(f"concat: {t.name!r} shape {t.shape} does not match {xs[0].shape} "
                                 "outside the channel axis")
        out = lead + (sum(t.shape[-1] for t in xs),)
        return self._append(name, "concat", op=Op.CONCAT, in_shape=xs[0].shape, out_shape=out,
                            inputs=tuple(t.name for t in xs), extra_in_shapes=tuple(t.shape for t in xs[1:]),
                            bias=False)

    def lstm(self, x, hidden, *, projection=0, name=None):
        """An LSTM layer over all ``T`` steps of ``(N, T, C)``, with an optional output projection."""
        if len(x.shape) != 3:
            raise LayerError(f"input {x.name!r}: shape {x.shape} is not (N, T, C)")
        n, t, _ = x.shape
        return self._append(name, "lstm", op=Op.LSTM, in_shape=x.shape, out_shape=(n, t, projection or hidden),
                            inputs=(x.name,), hidden=hidden, projection=projection)

    # -- views (no layer) -------------------------------------------------------------------
    def reshape(self, x, shape):
        """Read ``x`` with another shape of the same number of elements (row-major)."""
        shape = tuple(shape)
        if math.prod(shape) != math.prod(x.shape):
            raise LayerError(f"reshape of {x.name!r}: {x.shape} has {math.prod(x.shape)} elements, "
                             f"{shape} has {math.prod(shape)}")
        return Tensor(x.name, shape)

    def truncate(self, x, channels):
        """Read the first ``channels`` channels of ``x`` (a channel slice, as NAS-Bench-101 truncates)."""
        if not 0 < channels <= x.shape[-1]:
            raise LayerError(f"truncate of {x.name!r}: {channels} channels; allowed: 1 to {x.shape[-1]}")
        return Tensor(x.name, x.shape[:-1] + (channels,))

    def flatten(self, x):
        """``(N, ...) -> (N, prod(...))``."""
        return self.reshape(x, (x.shape[0], math.prod(x.shape[1:])))

    def build(self):
        """The finished :class:`Network`."""
        if not self._layers:
            raise ValueError(f"network {self._name!r} has no layers")
        return Network(name=self._name, input_shape=self._input.shape, layers=tuple(self._layers),
                       kind=self._kind, extra_inputs=tuple(self._extra_inputs))
