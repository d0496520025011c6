"""The Layer IR: the one vocabulary of the golden model, the cost model, the
program compiler and the scheduler.

A :class:`Layer` describes one layer: its op, input and output shapes (NHWC,
batch first), kernel, stride, explicit padding, dilation, groups, fused
activation and, once a network is quantised, its int8 quantisation parameters.
A :class:`Network` is a DAG of layers in topological order; a layer names its
producers in ``inputs`` (the network input is called ``"input"``).

Shapes: spatial ops use ``(N, H, W, C)``; ``FC`` uses ``(N, C)`` or ``(N, T, C)``
(applied at every time step); ``LSTM`` uses ``(N, T, C)`` in and
``(N, T, hidden or projection)`` out. A layer whose ``in_shape`` holds as many
elements as its producer's ``out_shape`` but differs from it reads the
producer's output reshaped in row-major (NHWC) order: that is how a flatten
before an FC or a transducer's time reduction appears in the IR. A layer whose
``in_shape`` agrees with its producer's ``out_shape`` except for fewer channels
reads the producer's first channels (a channel slice: NAS-Bench-101's truncation
of a vertex that has one channel more than its consumer).
"""

import enum
import math
from dataclasses import dataclass, replace

from mensa.core.errors import UserError

__all__ = ["Op", "Activation", "LayerError", "QuantParams", "LayerQuant", "Layer", "Network",
           "conv_out_size", "conv_transpose_out_size", "conv_transpose_pads", "same_padding"]


class LayerError(UserError):
    """An impossible layer. The message is one line naming the layer and the field."""


class Op(enum.Enum):
    CONV2D = "conv2d"              # groups == 1 (pointwise when the kernel is 1x1)
    DEPTHWISE = "depthwise"        # groups == input channels, depth multiplier = out_c / in_c
    FC = "fc"                      # fully connected / matrix-vector
    ADD = "add"                    # element-wise add of two tensors, each requantised
    AVGPOOL = "avgpool"
    MAXPOOL = "maxpool"
    GLOBAL_AVGPOOL = "global_avgpool"
    CONCAT = "concat"              # along channels
    LSTM = "lstm"                  # a whole LSTM layer over T time steps, optional projection
    MUL = "mul"                    # element-wise multiply by a (N, 1, 1, C) gate broadcast over H, W (squeeze-excite)
    CONV_TRANSPOSE = "conv_transpose"   # transposed convolution (groups == 1): a conv over the zero-inserted input
    RESIZE = "resize"              # nearest-neighbour upsampling by integer factors (out_shape / in_shape)


class Activation(enum.Enum):
    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"
    HARD_SWISH = "hard_swish"      # MobileNetV3
    HARD_SIGMOID = "hard_sigmoid"  # MobileNetV3 squeeze-excite gate
    SIGMOID = "sigmoid"
    TANH = "tanh"                  # transducer joint network


@dataclass(frozen=True)
class QuantParams:
    """Affine int8 quantisation of a tensor: real = scale * (q - zero_point)."""
    scale: float
    zero_point: int = 0


@dataclass(frozen=True)
class LayerQuant:
    """A layer's quantisation: per-input and output tensors, per-output-channel weight scales."""
    inputs: tuple[QuantParams, ...]
    output: QuantParams
    weight_scales: tuple[float, ...] = ()
    # A fused sigmoid / tanh / hard-swish / hard-sigmoid reads the accumulator requantised to
    # int8 at this quantisation, through a 256-entry table (mensa.core.golden.activation_table).
    pre_activation: QuantParams | None = None


def conv_out_size(size, kernel, stride, pad_before, pad_after, dilation):
    eff = dilation * (kernel - 1) + 1
    return (size + pad_before + pad_after - eff) // stride + 1


def conv_transpose_out_size(size, kernel, stride, pad_before, pad_after, dilation):
    """Output size of a transposed convolution before its output padding (0 .. stride - 1 more)."""
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - pad_before - pad_after


def conv_transpose_pads(layer):
    """The padding (top, bottom, left, right) of the stride-1 convolution, with the kernel flipped, over
    the zero-inserted input (pixels ``stride`` apart) that a transposed convolution ``layer`` is."""
    (kh, kw), (dh, dw) = layer.kernel, layer.dilation
    t, b, l, r = layer.padding
    eh, ew = dh * (kh - 1), dw * (kw - 1)
    _, h, w, _ = layer.in_shape
    extra_h = layer.out_shape[1] - conv_transpose_out_size(h, kh, layer.stride[0], t, b, dh)
    extra_w = layer.out_shape[2] - conv_transpose_out_size(w, kw, layer.stride[1], l, r, dw)
    return (eh - t, eh - b + extra_h, ew - l, ew - r + extra_w)


def same_padding(size, kernel, stride, dilation=1):
    """TensorFlow 'SAME' padding: (before, after) for one spatial dimension."""
    eff = dilation * (kernel - 1) + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Layer:
    name: str
    op: Op
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    inputs: tuple[str, ...] = ("input",)
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, bottom, left, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    activation: Activation = Activation.NONE
    bias: bool = True
    hidden: int = 0          # LSTM units
    projection: int = 0      # LSTM projection size (0: none)
    quant: LayerQuant | None = None
    extra_in_shapes: tuple[tuple[int, ...], ...] = ()   # further inputs of ADD / CONCAT

    # -- derived figures --------------------------------------------------------------
    @property
    def in_channels(self):
        return self.in_shape[-1]

    @property
    def out_channels(self):
        return self.out_shape[-1]

    @property
    def is_pointwise(self):
        return self.op is Op.CONV2D and self.kernel == (1, 1) and self.stride == (1, 1)

    @property
    def weight_shape(self):
        """Weights as stored: conv (KH, KW, C_in/groups, C_out); FC (C_in, C_out);
        LSTM (C_in + out, 4 * hidden) plus the projection (hidden, projection)."""
        kh, kw = self.kernel
        if self.op is Op.CONV2D:
            return (kh, kw, self.in_channels // self.groups, self.out_channels)
        if self.op is Op.CONV_TRANSPOSE:
            return (kh, kw, self.in_channels, self.out_channels)
        if self.op is Op.DEPTHWISE:
            return (kh, kw, 1, self.out_channels)
        if self.op is Op.FC:
            return (self.in_channels, self.out_channels)
        if self.op is Op.LSTM:
            return (self.in_channels + self.out_channels, 4 * self.hidden)
        return ()

    @property
    def params(self):
        """Number of parameters (weights and biases)."""
        if self.op is Op.LSTM:
            n = math.prod(self.weight_shape) + (4 * self.hidden if self.bias else 0)
            if self.projection:
                n += self.hidden * self.projection
            return n
        w = self.weight_shape
        if not w:
            return 0
        return math.prod(w) + (self.out_channels if self.bias else 0)

    @property
    def macs(self):
        """Multiply-accumulates of one inference."""
        n = self.out_shape[0]
        if self.op in (Op.CONV2D, Op.DEPTHWISE):
            _, oh, ow, oc = self.out_shape
            kh, kw = self.kernel
            cin_per_group = self.in_channels // self.groups
            return n * oh * ow * oc * kh * kw * cin_per_group
        if self.op is Op.CONV_TRANSPOSE:       # every input pixel meets every tap (the zeros inserted do nothing)
            _, ih, iw, ic = self.in_shape
            kh, kw = self.kernel
            return n * ih * iw * ic * kh * kw * self.out_channels
        if self.op is Op.FC:
            return math.prod(self.out_shape[:-1]) * self.in_channels * self.out_channels
        if self.op is Op.LSTM:
            t = self.in_shape[1]
            per_step = (self.in_channels + self.out_channels) * 4 * self.hidden
            if self.projection:
                per_step += self.hidden * self.projection
            return n * t * per_step
        return 0

    def check(self):
        """Raise :class:`LayerError` if the layer is impossible; return the layer."""
        def bad(fieldname, text):
            raise LayerError(f"layer {self.name!r}: {fieldname}: {text}")
        if any(d <= 0 for d in self.in_shape):
            bad("in_shape", f"{self.in_shape} has a zero-size dimension")
        if any(d <= 0 for d in self.out_shape):
            bad("out_shape", f"{self.out_shape} has a zero-size dimension")
        if self.op in (Op.CONV2D, Op.DEPTHWISE, Op.AVGPOOL, Op.MAXPOOL):
            if len(self.in_shape) != 4:
                bad("in_shape", f"{self.in_shape} is not NHWC")
            _, h, w, c = self.in_shape
            t, b, l, r = self.padding
            for dim, size, k, s, d, p0, p1 in (("height", h, self.kernel[0], self.stride[0], self.dilation[0], t, b),
                                                ("width", w, self.kernel[1], self.stride[1], self.dilation[1], l, r)):
                if k < 1 or s < 1 or d < 1:
                    bad("kernel/stride/dilation", f"must be at least 1 ({dim})")
                if d * (k - 1) + 1 > size + p0 + p1:
                    bad("kernel", f"{self.kernel} (dilation {self.dilation}) is larger than the padded input {dim} {size + p0 + p1}")
            oh = conv_out_size(h, self.kernel[0], self.stride[0], t, b, self.dilation[0])
            ow = conv_out_size(w, self.kernel[1], self.stride[1], l, r, self.dilation[1])
            if self.out_shape[1:3] != (oh, ow):
                bad("out_shape", f"{self.out_shape} does not match the computed {oh}x{ow}")
        if self.op is Op.CONV_TRANSPOSE:
            if len(self.in_shape) != 4 or len(self.out_shape) != 4 or self.groups != 1:
                bad("in_shape", f"{self.in_shape} -> {self.out_shape}: a transposed conv is NHWC, groups 1")
            _, h, w, _ = self.in_shape
            t, b, l, r = self.padding
            for dim, size, out, k, s, d, p0, p1 in (
                    ("height", h, self.out_shape[1], self.kernel[0], self.stride[0], self.dilation[0], t, b),
                    ("width", w, self.out_shape[2], self.kernel[1], self.stride[1], self.dilation[1], l, r)):
                if k < 1 or s < 1 or d < 1 or min(p0, p1) < 0 or max(p0, p1) > d * (k - 1):
                    bad("kernel/stride/padding", f"kernel {k}, stride {s}, dilation {d}, padding ({p0}, {p1}) "
                                                 f"({dim}); padding at most dilation * (kernel - 1)")
                base = conv_transpose_out_size(size, k, s, p0, p1, d)
                if not base <= out < base + s:
                    bad("out_shape", f"{self.out_shape}: the {dim} must be {base} plus an output padding below "
                                     f"the stride {s}")
        if self.op is Op.RESIZE:
            if len(self.in_shape) != 4 or len(self.out_shape) != 4 or self.out_shape[3] != self.in_shape[3] or \
                    any(o % i for o, i in zip(self.out_shape[1:3], self.in_shape[1:3])):
                bad("out_shape", f"{self.out_shape} is not {self.in_shape} scaled by whole factors in H and W")
        if self.op is Op.CONV2D and (self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups):
            bad("groups", f"{self.groups} does not divide {self.in_channels} -> {self.out_channels} channels")
        if self.op is Op.DEPTHWISE:
            if self.groups != self.in_channels or self.out_channels % self.in_channels:
                bad("groups", f"{self.groups} with {self.in_channels} -> {self.out_channels} channels is not depthwise")
        if self.op in (Op.AVGPOOL, Op.MAXPOOL) and self.in_channels != self.out_channels:
            bad("out_shape", f"pooling cannot change channels {self.in_channels} -> {self.out_channels}")
        if self.op is Op.ADD:
            for s in self.extra_in_shapes:
                if s != self.in_shape:
                    bad("extra_in_shapes", f"{s} does not match {self.in_shape} (channel or shape mismatch)")
        if self.op is Op.MUL:
            n, _, _, c = self.in_shape
            if self.extra_in_shapes != ((n, 1, 1, c),) or self.out_shape != self.in_shape:
                bad("extra_in_shapes", f"{self.extra_in_shapes} is not one ({n}, 1, 1, {c}) gate for {self.in_shape}")
        if self.op is Op.LSTM and self.hidden < 1:
            bad("hidden", f"{self.hidden}; an LSTM needs at least one unit")
        return self


@dataclass(frozen=True)
class Network:
    """A DAG of layers in topological order; ``input_shape`` is the network input (NHWC or (N, T, C)).

    ``extra_inputs`` names further network inputs and their shapes, e.g. the
    embedded previous token of a decoder or a transducer's prediction network.
    """
    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    input_quant: QuantParams | None = None
    kind: str = "cnn"     # cnn, lstm, transducer, hybrid
    extra_inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self):
        seen = {"input"} | {name for name, _ in self.extra_inputs}
        for layer in self.layers:
            for src in layer.inputs:
                if src not in seen:
                    raise LayerError(f"layer {layer.name!r}: inputs: {src!r} is not an earlier layer")
            if layer.name in seen:
                raise LayerError(f"layer {layer.name!r}: name: used twice")
            seen.add(layer.name)

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def macs(self):
        return sum(l.macs for l in self.layers)

    @property
    def params(self):
        return sum(l.params for l in self.layers)

    @property
    def outputs(self):
        """Layers no other layer consumes."""
        used = {s for l in self.layers for s in l.inputs}
        return tuple(l.name for l in self.layers if l.name not in used)

    def with_layers(self, layers):
        return replace(self, layers=tuple(layers))
