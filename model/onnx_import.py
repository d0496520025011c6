"""ONNX -> Layer IR, with the weights, for float and int8-quantised (QDQ or QOperator) models.

Supported: ``Conv`` (``group`` 1, or depthwise: ``group`` = input channels), ``Gemm``,
``MatMul`` (with a constant right operand, an ``Add`` of a constant becomes its bias), ``Add``
(or a two-input ``Sum``) of two tensors, ``BatchNormalization`` after a ``Conv`` (folded), ``MaxPool``, ``AveragePool`` (``count_include_pad=0``), ``GlobalAveragePool``,
``ConvTranspose`` (``group`` 1), ``Resize`` / ``Upsample`` (nearest, whole factors), ``Mul`` by a
per-channel gate (squeeze-excite), ``Gather`` of an embedding table by the graph's input (the
lookup runs on the host: the network's input is the embedded sequence) or of the first channels
(a channel slice),
``Relu`` / ``Clip`` (0..6 or 0..inf) / ``Sigmoid`` / ``Tanh`` / ``HardSigmoid`` / ``HardSwish``
fused into the layer before them, ``Concat`` on channels, ``Reshape`` / ``Flatten`` / ``Squeeze``
(views), ``Identity`` and ``Dropout`` (dropped), forward ``LSTM`` (default activations, no
peepholes), a final ``Softmax`` (dropped: it runs on the host); quantised: ``QuantizeLinear`` /
``DequantizeLinear`` pairs (QDQ) and ``QLinearConv``, ``QLinearMatMul``, ``QLinearAdd``,
``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearMul`` (QOperator).

Layouts: ONNX's NCHW tensors become NHWC, conv weights ``(O, I/g, KH, KW)`` become
``(KH, KW, I/g, O)``; a flatten of an NCHW map before an FC permutes the FC's weight rows into the
IR's (H, W, C) order; LSTM gates ``i, o, f, c`` are reordered to the golden model's ``i, f, g, o``,
sequences ``(T, 1, C)`` become ``(1, T, C)``.

Quantised models keep their scales: every layer's :class:`~mensa.core.ir.LayerQuant` comes from
the model, weights stay int8 (symmetric, per output channel) and biases int32, and
:attr:`ImportedModel.golden_params` holds the golden model's parameters, ready for
:func:`mensa.core.golden.run_network`.

Every problem (not ONNX, truncated, malformed, an unsupported op or attribute) raises
:class:`OnnxImportError`, one line naming the node and its op.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mensa.core.errors import UserError
from mensa.core.files import read_bytes_file
from mensa.core.builder import NetworkBuilder, Tensor
from mensa.core.ir import Activation, LayerError, LayerQuant, QuantParams
from mensa.core import golden
from mensa.core.quant import FloatParams

__all__ = ["OnnxImportError", "ImportedModel", "import_onnx", "SUPPORTED_OPS", "ONNX_BYTES_MAX"]

ONNX_BYTES_MAX = 2**31 - 1     # protobuf's limit on one message

SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "Clip",
                 "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Concat", "Reshape", "Flatten", "Squeeze", "LSTM",
                 "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd",
                 "QLinearGlobalAveragePool", "QLinearConcat", "QLinearMul", "ConvTranspose", "Resize", "Upsample",
                 "Mul (a per-channel gate)", "Gather (an embedding of the input, or a channel slice)", "Identity", "Dropout", "Constant", "ConstantOfShape", "Sum", "Softmax (final)",
                 "BatchNormalization (after a Conv)")

_ACTIVATIONS = {"Relu": Activation.RELU, "Sigmoid": Activation.SIGMOID, "Tanh": Activation.TANH,
                "HardSwish": Activation.HARD_SWISH}


class OnnxImportError(UserError):
    """An ONNX file mensa cannot import; the message is one line naming the node and its op."""


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """An imported ONNX model.

    Members
    -------
    network : Network
        The Layer IR; quantised models carry ``input_quant`` and every ``Layer.quant``.
    float_params : dict[str, FloatParams]
        Float weights (dequantised for a quantised model) in the golden model's layouts, for
        :func:`mensa.core.quant.run_float` and :func:`mensa.core.quant.quantize_network`.
    golden_params : dict[str, LayerParams] or None
        For a quantised model: the golden model's integer parameters by layer name.
    quantized : bool
    """
    network: object
    float_params: dict
    golden_params: dict | None
    quantized: bool


@dataclass(frozen=True)
class _Val:
    """An ONNX tensor as the IR sees it."""
    tensor: Tensor                 # producer layer (or network input) and the IR shape
    onnx_shape: tuple
    chw: tuple | None = None       # (C, H, W) when this is a flatten of an NCHW map with H * W > 1
    seq: bool = False              # a sequence: ONNX (T, 1, C) or an LSTM's (T, 1, 1, C), IR (1, T, C)


@dataclass(frozen=True)
class _Const:
    value: np.ndarray              # float (dequantised) value
    q: np.ndarray | None = None    # integer value of a quantised constant
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None


def _one_line(text):
    return " ".join(str(text).split())


class _Importer:
    def __init__(self, model, name):
        from onnx import numpy_helper
        self._nh = numpy_helper
        self.model = model
        self.graph = model.graph
        self.name = name
        self.consts = {t.name: _Const(numpy_helper.to_array(t)) for t in self.graph.initializer}
        self.alias = {}            # tensor -> the tensor it stands for (Q/DQ/Identity/view ops)
        self.qinfo = {}            # canonical tensor -> QuantParams
        self.values = {}           # canonical tensor -> _Val
        self.fused = set()         # node indices consumed by a fusion
        self.weights = {}          # layer name -> dict(w=, b=, wq=, bq=, ws=, pw=, pb=)
        self.layer_in = {}         # layer name -> canonical input tensors
        self.layer_out = {}        # layer name -> canonical output tensor
        self.pre_act = {}          # layer name -> canonical pre-activation tensor (table activations)
        self.node = None

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, text, node=None):
        node = node if node is not None else self.node
        where = f"node {node.name or node.output[0]!r} ({node.op_type})" if node is not None else "graph"
        raise OnnxImportError(f"{self.name}: {where}: {_one_line(text)}")

    def canon(self, t):
        while t in self.alias:
            t = self.alias[t]
        return t

    def attr(self, node, name, default=None):
        from onnx import helper
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def const(self, t, what="operand"):
        t = self.canon(t)
        if t not in self.consts:
            self.fail(f"{what} {t!r} must be a constant (initializer)")
        return self.consts[t]

    def val(self, t):
        t = self.canon(t)
        if t not in self.values:
            self.fail(f"input {t!r} is not produced by a supported layer")
        return self.values[t]

    def scalar(self, t):
        return self.const(t, "quantisation parameter").value.reshape(-1)

    def set_q(self, tensor, scale, zero_point, node_what="tensor"):
        s, z = np.asarray(scale).reshape(-1), np.asarray(zero_point).reshape(-1)
        if s.size != 1 or z.size != 1:
            self.fail(f"{node_what} {tensor!r}: per-channel activation quantisation is not supported")
        self.qinfo[self.canon(tensor)] = QuantParams(float(np.float32(s[0])), int(z[0]))

    def consumers(self, tensor):
        """Indices of the not yet fused nodes reading ``tensor`` (through aliases)."""
        tensor = self.canon(tensor)
        return [i for i, n in enumerate(self.graph.node)
                if i not in self.fused and any(self.canon(x) == tensor for x in n.input if x)]

    def layer_name(self, node):
        base = "".join(c if c.isalnum() or c in "_-." else "_" for c in (node.name or node.output[0])) or "layer"
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    # -- quantisation pre-pass ------------------------------------------------------------
    def prepass(self):
        """Fold constants and Q/DQ pairs: quantised weights become constants with their integer
        values, activation Q/DQ become aliases that record the tensor's quantisation."""
        for i, node in enumerate(self.graph.node):
            self.node = node
            op = node.op_type
            if node.domain not in ("", "ai.onnx", "com.microsoft"):
                self.fail(f"operator domain {node.domain!r} is not supported")
            if op == "Constant":
                t = self.attr(node, "value")
                if t is None:
                    self.fail("only tensor-valued Constant nodes are supported")
                self.consts[node.output[0]] = _Const(self._nh.to_array(t))
                self.fused.add(i)
            elif op in ("DequantizeLinear", "QuantizeLinear"):
                x, s = node.input[0], node.input[1]
                z = node.input[2] if len(node.input) > 2 and node.input[2] else None
                scale = self.scalar(s)
                zp = self.scalar(z) if z else np.zeros(1, np.int64)
                if op == "DequantizeLinear" and self.canon(x) in self.consts:
                    q = self.consts[self.canon(x)].value
                    axis = self.attr(node, "axis", 1)
                    shape = [1] * q.ndim
                    if scale.size > 1:
                        shape[axis] = scale.size
                    real = (q.astype(np.float64) - zp.reshape(shape)) * scale.astype(np.float64).reshape(shape)
                    self.consts[node.output[0]] = _Const(real, q=q, scale=scale, zero_point=zp)
                else:
                    self.alias[node.output[0]] = x
                    self.set_q(x, scale, zp)
                self.fused.add(i)
            elif op == "ConstantOfShape" and self.canon(node.input[0]) in self.consts:
                t = self.attr(node, "value")
                fill = self._nh.to_array(t).reshape(-1) if t is not None else np.zeros(1, np.float32)
                shape = self.consts[self.canon(node.input[0])].value.astype(np.int64).reshape(-1)
                self.consts[node.output[0]] = _Const(np.full(tuple(shape), fill[0], dtype=fill.dtype))
                self.fused.add(i)
            elif op == "Identity" or (op == "Dropout" and not any(
                    o in n.input for o in node.output[1:] if o for n in self.graph.node)):
                # Dropout is the identity at inference (when nothing reads its mask).
                self.alias[node.output[0]] = node.input[0]
                self.fused.add(i)
        self.node = None

    # -- graph input ---------------------------------------------------------------------
    def embeddings(self):
        """A ``Gather`` of a constant table by a graph input is an embedding lookup: it runs on the host
        (a table read, no arithmetic), and the network's input is its output, the embedded tensor."""
        self.host_inputs = {}       # graph input name -> (gather output, its shape)
        init = {t.name for t in self.graph.initializer}
        graph_inputs = {v.name: v for v in self.graph.input if v.name not in init}
        for i, node in enumerate(self.graph.node):
            if node.op_type != "Gather" or i in self.fused:
                continue
            data, idx = node.input[0], node.input[1]
            if self.canon(data) in self.consts and idx in graph_inputs:
                self.node = node
                table = self.consts[self.canon(data)].value
                if self.attr(node, "axis", 0) != 0 or table.ndim != 2:
                    self.fail("an embedding Gather needs a 2-D table gathered on axis 0")
                dims = graph_inputs[idx].type.tensor_type.shape.dim
                shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims) + (table.shape[1],)
                self.host_inputs[idx] = (node.output[0], shape)
                self.fused.add(i)
        self.node = None

    def inputs(self):
        init = {t.name for t in self.graph.initializer}
        ins = [v for v in self.graph.input if v.name not in init]
        if not ins:
            self.fail("the graph has no input")
        shapes = []
        for v in ins:
            dims = v.type.tensor_type.shape.dim
            for axis, d in enumerate(dims):
                if axis > 0 and not d.HasField("dim_value"):
                    self.fail(f"input {v.name!r}: dimension {axis} is symbolic ({d.dim_param or '?'}); allowed: "
                              f"a static size (only the batch, dimension 0, may be symbolic: it is taken as 1)")
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
            if not shape or any(d < 1 for d in shape):
                self.fail(f"input {v.name!r} needs a static shape, got {shape}")
            if v.name in self.host_inputs:
                shapes.append(self.host_inputs[v.name])
                continue
            shapes.append((v.name, shape))
        main_name, main_shape = shapes[0]
        builder = NetworkBuilder(self.name, self.to_ir(main_shape, main_name), kind="cnn")
        self.builder = builder
        self.taken = {"input"}
        self.values[main_name] = _Val(builder.input, main_shape)
        for name, shape in shapes[1:]:
            t = builder.add_input(name, self.to_ir(shape, name))
            self.taken.add(name)
            self.values[name] = _Val(t, shape)
        self.input_names = [n for n, _ in shapes]

    def to_ir(self, shape, name):
        if len(shape) == 4:
            n, c, h, w = shape
            return (n, h, w, c)
        if len(shape) == 2:
            return tuple(shape)
        if len(shape) == 3:                 # an LSTM sequence (T, N, C)
            t, n, c = shape
            if n != 1:
                self.fail(f"tensor {name!r}: sequences need batch 1, got shape {shape}")
            return (1, t, c)
        self.fail(f"tensor {name!r}: rank {len(shape)} is not supported (NCHW, (N, C) or (T, N, C))")

    # -- activation fusion ------------------------------------------------------------------
    def fuse_activation(self, out):
        """If the only reader of ``out`` is an activation, fuse it; return (activation, output tensor)."""
        users = self.consumers(out)
        if len(users) != 1:
            return Activation.NONE, out
        i = users[0]
        node = self.graph.node[i]
        act = None
        if node.op_type in _ACTIVATIONS:
            act = _ACTIVATIONS[node.op_type]
        elif node.op_type == "HardSigmoid":
            alpha, beta = self.attr(node, "alpha", 0.2), self.attr(node, "beta", 0.5)
            if not (abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6):
                self.fail(f"HardSigmoid alpha={alpha} beta={beta}; only 1/6 and 0.5 (hard sigmoid) are supported",
                          node)
            act = Activation.HARD_SIGMOID
        elif node.op_type == "Clip":
            lo = self.attr(node, "min")
            hi = self.attr(node, "max")
            if len(node.input) > 1 and node.input[1]:
                lo = float(self.const(node.input[1]).value)
            if len(node.input) > 2 and node.input[2]:
                hi = float(self.const(node.input[2]).value)
            if lo == 0 and hi == 6:
                act = Activation.RELU6
            elif lo == 0 and hi is None:
                act = Activation.RELU
            else:
                self.fail(f"Clip({lo}, {hi}) is not a ReLU or ReLU6", node)
        if act is None:
            return Activation.NONE, out
        self.fused.add(i)
        return act, node.output[0]

    # -- node handlers -----------------------------------------------------------------------
    def emit(self, node, make, in_tensors, out, *, weights=None, activation=True):
        """Make one layer: ``make(activation, name)`` returns the builder's Tensor."""
        act, final = (self.fuse_activation(out) if activation else (Activation.NONE, out))
        name = self.layer_name(node)
        try:
            t = make(act, name)
        except (LayerError, ValueError, TypeError) as e:
            self.fail(e, node)
        final = self.canon(final)
        self.values[final] = _Val(t, self.from_ir(t.shape), seq=len(t.shape) == 3)
        if final != self.canon(out):
            self.pre_act[name] = self.qinfo.get(self.canon(out))
        self.layer_in[name] = [self.canon(x) for x in in_tensors]
        self.layer_out[name] = final
        if weights is not None:
            self.weights[name] = weights
        return t

    @staticmethod
    def from_ir(shape):
        if len(shape) == 4:
            n, h, w, c = shape
            return (n, c, h, w)
        if len(shape) == 3:
            n, t, c = shape
            return (t, n, c)
        return tuple(shape)

    def conv(self, node, x, w, b, wq=None, ws=None, bq=None):
        v = self.val(x)
        if len(v.onnx_shape) != 4 or v.chw is not None:
            self.fail(f"input shape {v.onnx_shape} is not NCHW")
        group = self.attr(node, "group", 1)
        kshape = tuple(self.attr(node, "kernel_shape", w.shape[2:]))
        strides = tuple(self.attr(node, "strides", (1, 1)))
        dil = tuple(self.attr(node, "dilations", (1, 1)))
        auto = self.attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if len(kshape) != 2 or w.ndim != 4:
            self.fail(f"only 2-D convolutions are supported, kernel {kshape}")
        if kshape != tuple(w.shape[2:]):
            self.fail(f"kernel_shape {kshape} but the weights are {tuple(w.shape[2:])}; allowed: the same")
        for what, pair in (("strides", strides), ("dilations", dil)):
            if len(pair) != 2 or min(pair) < 1:
                self.fail(f"{what} {pair}; allowed: two sizes of at least 1")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pad = "same"
            if auto == "SAME_LOWER":
                self.fail("auto_pad SAME_LOWER is not supported (use explicit pads or SAME_UPPER)")
        elif auto == "VALID":
            pad = "valid"
        else:
            p = tuple(self.attr(node, "pads", (0, 0, 0, 0)))
            if len(p) != 4 or min(p) < 0:
                self.fail(f"pads {p}; allowed: four sizes of at least 0 (top, left, bottom, right)")
            pad = (p[0], p[2], p[1], p[3])
        cin = v.onnx_shape[1]
        cout = w.shape[0]
        if group == 1 and w.shape[1] != cin:
            self.fail(f"weights of {w.shape[1]} input channels on an input of {cin}; allowed: {cin}")
        if group == 1:
            kind = "conv"
        elif group == cin and w.shape[1] == 1:
            kind = "depthwise"
        else:
            self.fail(f"grouped convolution with group={group} on {cin} channels is not supported "
                      "(only group 1 or depthwise)")
        out = node.output[0]
        users = self.consumers(out)
        if wq is None and len(users) == 1 and self.graph.node[users[0]].op_type == "BatchNormalization":
            # Fold an inference batch norm into the convolution's weights and bias.
            bn = self.graph.node[users[0]]
            gamma, beta, mean, var = (self.const(t, "batch-norm parameter").value.astype(np.float64)
                                      for t in bn.input[1:5])
            k = gamma / np.sqrt(var + self.attr(bn, "epsilon", 1e-5))
            w = w * k[:, None, None, None]
            b = ((0.0 if b is None else b) - mean) * k + beta
            self.fused.add(users[0])
            out = bn.output[0]
        hwio = np.transpose(w, (2, 3, 1, 0))

        def make(act, name):
            if kind == "conv":
                return self.builder.conv(v.tensor, cout, kshape, stride=strides, padding=pad, dilation=dil,
                                         activation=act, bias=b is not None, name=name)
            return self.builder.depthwise(v.tensor, kshape, stride=strides, padding=pad, dilation=dil,
                                          multiplier=cout // cin, activation=act, bias=b is not None, name=name)
        wts = dict(w=hwio, b=b)
        if wq is not None:
            wts.update(wq=np.transpose(wq, (2, 3, 1, 0)), ws=ws, bq=bq)
        return self.emit(node, make, [x], out, weights=wts)

    def fc(self, node, x, w_in_out, b, out, wq=None, ws=None, bq=None):
        v = self.val(x)
        if w_in_out.shape[0] != v.tensor.shape[-1]:
            self.fail(f"weight rows {w_in_out.shape[0]} do not match {v.tensor.shape[-1]} input features")
        if v.chw is not None:
            # ONNX flattened (C, H, W); the IR reads (H, W, C): permute the weight rows to match.
            c, h, w = v.chw
            perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            w_in_out = w_in_out[perm]
            wq = None if wq is None else wq[perm]
        if len(v.tensor.shape) not in (2, 3):
            self.fail(f"input shape {v.onnx_shape} must be (N, C) or (T, N, C); flatten it first")
        if w_in_out.shape[0] != v.tensor.shape[-1]:
            self.fail(f"weight rows {w_in_out.shape[0]} do not match {v.tensor.shape[-1]} input features")
        cout = w_in_out.shape[1]

        def make(act, name):
            return self.builder.fc(v.tensor, cout, activation=act, bias=b is not None, name=name)
        wts = dict(w=w_in_out, b=b)
        if wq is not None:
            wts.update(wq=wq, ws=ws, bq=bq)
        return self.emit(node, make, [x], out, weights=wts)

    def weight_q(self, c, axis_len):
        """Quantised weight constant -> (int8 values, per-output-channel scales), checked."""
        if c.q is None:
            return None, None
        if c.q.dtype != np.int8:
            self.fail(f"weights must be int8, not {c.q.dtype}")
        if np.any(c.zero_point != 0):
            self.fail("weights must be quantised symmetrically (zero point 0)")
        scales = np.broadcast_to(c.scale.astype(np.float64), (axis_len,)).copy()
        return c.q, scales

    def bias_q(self, c):
        if c is None or c.q is None:
            return None
        if c.q.dtype != np.int32:
            self.fail(f"bias must be int32, not {c.q.dtype}")
        return c.q

    def handle(self, i, node):
        op = node.op_type
        ins = list(node.input)
        if op == "Conv":
            c = self.const(ins[1], "weight")
            bc = self.const(ins[2], "bias") if len(ins) > 2 and ins[2] else None
            wq, ws = self.weight_q(c, c.value.shape[0])
            self.conv(node, ins[0], c.value, None if bc is None else bc.value, wq, ws, self.bias_q(bc))
        elif op == "QLinearConv":
            x, xs, xz, w, wsn, wz, ys, yz = ins[:8]
            self.set_q(x, self.scalar(xs), self.scalar(xz))
            self.set_q(node.output[0], self.scalar(ys), self.scalar(yz))
            wq = self.const(w, "weight").value
            if np.any(self.scalar(wz) != 0):
                self.fail("weights must be quantised symmetrically (zero point 0)")
            ws = np.broadcast_to(self.scalar(wsn).astype(np.float64), (wq.shape[0],)).copy()
            if wq.dtype != np.int8:
                self.fail(f"weights must be int8, not {wq.dtype}")
            bq = self.const(ins[8], "bias").value if len(ins) > 8 and ins[8] else None
            in_scale = self.qinfo[self.canon(x)].scale
            b = None if bq is None else bq.astype(np.float64) * in_scale * ws
            self.conv(node, x, wq.astype(np.float64) * ws[:, None, None, None], b, wq, ws,
                      None if bq is None else bq.astype(np.int32))
        elif op == "Gemm":
            if self.attr(node, "alpha", 1.0) != 1.0 or self.attr(node, "beta", 1.0) != 1.0 or self.attr(node, "transA", 0):
                self.fail("only Gemm with alpha = beta = 1 and transA = 0 is supported")
            c = self.const(ins[1], "weight")
            trans = self.attr(node, "transB", 0)
            w = c.value.T if trans else c.value
            bc = self.const(ins[2], "bias") if len(ins) > 2 and ins[2] else None
            wq, ws = self.weight_q(c, w.shape[1])
            if wq is not None:
                wq = wq.T if trans else wq
            b = None if bc is None else np.broadcast_to(bc.value, (w.shape[1],))
            self.fc(node, ins[0], w, b, node.output[0], wq, ws, self.bias_q(bc))
        elif op in ("MatMul", "QLinearMatMul"):
            if op == "QLinearMatMul":
                a, as_, az, bname, bs, bz, ys, yz = ins
                self.set_q(a, self.scalar(as_), self.scalar(az))
                self.set_q(node.output[0], self.scalar(ys), self.scalar(yz))
                wq = self.const(bname, "weight").value
                if wq.dtype != np.int8 or np.any(self.scalar(bz) != 0):
                    self.fail("weights must be int8 with zero point 0")
                ws = np.broadcast_to(self.scalar(bs).astype(np.float64), (wq.shape[1],)).copy()
                w, x = wq * ws[None, :], a
            else:
                c = self.const(ins[1], "weight")
                w, x = c.value, ins[0]
                wq, ws = self.weight_q(c, w.shape[1])
            if w.ndim != 2:
                self.fail(f"the constant operand must be a matrix, not shape {w.shape}")
            out, b, bq = node.output[0], None, None
            users = self.consumers(out)
            if op == "MatMul" and len(users) == 1 and self.graph.node[users[0]].op_type == "Add":
                add = self.graph.node[users[0]]
                other = [t for t in add.input if self.canon(t) != self.canon(out)]
                if other and self.canon(other[0]) in self.consts:
                    bc = self.consts[self.canon(other[0])]
                    b, bq = bc.value.reshape(-1), self.bias_q(bc)
                    self.fused.add(users[0])
                    self.alias[out] = add.output[0]
                    out = add.output[0]
            self.fc(node, x, w, b, out, wq, ws, bq)
        elif op in ("Add", "QLinearAdd") or (op == "Sum" and len(ins) == 2):
            if op == "QLinearAdd":
                a, as_, az, bb, bs, bz, ys, yz = ins
                self.set_q(a, self.scalar(as_), self.scalar(az))
                self.set_q(bb, self.scalar(bs), self.scalar(bz))
                self.set_q(node.output[0], self.scalar(ys), self.scalar(yz))
                pair = (a, bb)
            else:
                pair = (ins[0], ins[1])
            if any(self.canon(t) in self.consts for t in pair):
                self.fail("adding a constant is only supported as the bias of a MatMul")
            va, vb = self.val(pair[0]), self.val(pair[1])
            self.emit(node, lambda act, name: self.builder.add(va.tensor, vb.tensor, activation=act, name=name),
                      pair, node.output[0])
        elif op in ("MaxPool", "AveragePool"):
            v = self.val(ins[0])
            if op == "AveragePool" and self.attr(node, "count_include_pad", 0):
                self.fail("AveragePool with count_include_pad=1 is not supported")
            if self.attr(node, "ceil_mode", 0):
                self.fail("ceil_mode=1 is not supported")
            k = tuple(self.attr(node, "kernel_shape", ()))
            s = tuple(self.attr(node, "strides", k))
            p = tuple(self.attr(node, "pads", (0, 0, 0, 0)))
            if len(k) != 2 or min(k) < 1 or len(s) != 2 or min(s) < 1:
                self.fail(f"kernel_shape {k}, strides {s}; allowed: two sizes of at least 1 each")
            if len(p) != 4 or min(p) < 0:
                self.fail(f"pads {p}; allowed: four sizes of at least 0 (top, left, bottom, right)")
            pad = (p[0], p[2], p[1], p[3])
            if op == "AveragePool" and k == tuple(v.tensor.shape[1:3]) and not any(pad):
                # A window over the whole map is a global average pool: one op for one computation.
                self.emit(node, lambda act, name: self.builder.global_avgpool(v.tensor, name=name), ins[:1],
                          node.output[0], activation=False)
                self.same_q(ins[0], node.output[0])
                return
            fn = self.builder.maxpool if op == "MaxPool" else self.builder.avgpool
            self.emit(node, lambda act, name: fn(v.tensor, k, stride=s, padding=pad, name=name), ins[:1],
                      node.output[0], activation=False)
            if op == "MaxPool" or op == "AveragePool":
                self.same_q(ins[0], node.output[0])
        elif op in ("GlobalAveragePool", "QLinearGlobalAveragePool"):
            if op == "QLinearGlobalAveragePool":
                if self.attr(node, "channels_last", 0):
                    self.fail("channels_last=1 is not supported")
                x, xs, xz, ys, yz = ins
                self.set_q(x, self.scalar(xs), self.scalar(xz))
                self.set_q(node.output[0], self.scalar(ys), self.scalar(yz))
            v = self.val(ins[0])
            self.emit(node, lambda act, name: self.builder.global_avgpool(v.tensor, name=name), ins[:1],
                      node.output[0], activation=False)
        elif op == "Concat":
            self.concat(node, ins)
        elif op == "QLinearConcat":
            ys, yz = ins[0], ins[1]
            triples = [ins[k:k + 3] for k in range(2, len(ins), 3)]
            for x, xs, xz in triples:
                self.set_q(x, self.scalar(xs), self.scalar(xz))
            self.set_q(node.output[0], self.scalar(ys), self.scalar(yz))
            self.concat(node, [t[0] for t in triples])
        elif op == "ConvTranspose":
            self.conv_transpose(node, ins)
        elif op in ("Resize", "Upsample"):
            self.resize(node, ins)
        elif op in ("Mul", "QLinearMul"):
            self.mul(node, ins)
        elif op == "Gather":
            self.gather(node, ins)
        elif op in ("Reshape", "Flatten", "Squeeze"):
            self.view(node)
        elif op == "LSTM":
            self.lstm(node)
        elif op == "Softmax" and not self.consumers(node.output[0]) and \
                node.output[0] in {o.name for o in self.graph.output}:
            # A final softmax only ranks the scores; it runs on the host (as with an Edge TPU).
            self.alias[node.output[0]] = ins[0]
        elif op in (*_ACTIVATIONS, "Clip", "HardSigmoid"):
            self.fail(f"a {op} must follow a Conv, Gemm, MatMul or Add whose only reader it is")
        else:
            self.fail(f"operator {op} is not supported; supported: {', '.join(SUPPORTED_OPS)}")

    def concat(self, node, ins):
        vals = [self.val(t) for t in ins]
        axis = self.attr(node, "axis")
        rank = len(vals[0].onnx_shape)
        if axis is None or axis % rank != (1 if rank == 4 else rank - 1):
            self.fail(f"{node.op_type} on axis {axis} of a rank-{rank} tensor; only the channel axis is supported")
        self.emit(node, lambda act, name: self.builder.concat(*(v.tensor for v in vals), name=name), ins,
                  node.output[0], activation=False)

    def mul(self, node, ins):
        if node.op_type == "QLinearMul":
            a, as_, az, bb, bs, bz, ys, yz = ins
            self.set_q(a, self.scalar(as_), self.scalar(az))
            self.set_q(bb, self.scalar(bs), self.scalar(bz))
            self.set_q(node.output[0], self.scalar(ys), self.scalar(yz))
            pair = [a, bb]
        else:
            pair = [ins[0], ins[1]]
        if any(self.canon(t) in self.consts for t in pair):
            self.fail("multiplying by a constant is not supported; allowed: a tensor times a per-channel gate")
        va, vb = self.val(pair[0]), self.val(pair[1])
        if len(va.onnx_shape) == 4 and va.onnx_shape[2:] == (1, 1) and vb.onnx_shape[2:] != (1, 1):
            va, vb = vb, va
            pair.reverse()
        if len(va.onnx_shape) != 4 or vb.onnx_shape != (va.onnx_shape[0], va.onnx_shape[1], 1, 1):
            self.fail(f"{va.onnx_shape} times {vb.onnx_shape}; allowed: an NCHW map times an (N, C, 1, 1) gate")
        self.emit(node, lambda act, name: self.builder.mul(va.tensor, vb.tensor, name=name), pair,
                  node.output[0], activation=False)

    def conv_transpose(self, node, ins):
        v = self.val(ins[0])
        c = self.const(ins[1], "weight")
        w = c.value                                       # (C_in, C_out / group, KH, KW)
        if len(v.onnx_shape) != 4 or w.ndim != 4:
            self.fail(f"only 2-D transposed convolutions on NCHW are supported, input {v.onnx_shape}")
        if self.attr(node, "group", 1) != 1:
            self.fail(f"group={self.attr(node, 'group')}; allowed: 1")
        auto = self.attr(node, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "VALID") or self.attr(node, "output_shape") is not None:
            self.fail("auto_pad SAME_* and output_shape are not supported; allowed: pads and output_padding")
        k = tuple(self.attr(node, "kernel_shape", w.shape[2:]))
        s = tuple(self.attr(node, "strides", (1, 1)))
        d = tuple(self.attr(node, "dilations", (1, 1)))
        p = tuple(self.attr(node, "pads", (0, 0, 0, 0)))
        extra = tuple(self.attr(node, "output_padding", (0, 0)))
        if v.onnx_shape[1] != w.shape[0] or k != tuple(w.shape[2:]) or len(p) != 4 or len(extra) != 2:
            self.fail(f"weights {w.shape} on input {v.onnx_shape}, kernel_shape {k}, pads {p}; allowed: "
                      f"(C_in, C_out, KH, KW) weights and four pads")
        b = self.const(ins[2], "bias") if len(ins) > 2 and ins[2] else None
        wq, ws = self.weight_q(c, w.shape[1])
        if wq is not None and c.scale.size > 1:
            self.fail("per-channel quantised ConvTranspose weights are not supported")
        cout = w.shape[1]

        def make(act, name):
            return self.builder.conv_transpose(v.tensor, cout, k, stride=s, padding=(p[0], p[2], p[1], p[3]),
                                               output_padding=extra, dilation=d, activation=act,
                                               bias=b is not None, name=name)
        wts = dict(w=np.transpose(w, (2, 3, 0, 1)), b=None if b is None else b.value)
        if wq is not None:
            wts.update(wq=np.transpose(wq, (2, 3, 0, 1)), ws=ws, bq=self.bias_q(b))
        self.emit(node, make, ins[:1], node.output[0], weights=wts)

    def resize(self, node, ins):
        v = self.val(ins[0])
        mode = self.attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        coord = self.attr(node, "coordinate_transformation_mode", b"half_pixel")
        coord = coord.decode() if isinstance(coord, bytes) else coord
        nearest = self.attr(node, "nearest_mode", b"round_prefer_floor")
        nearest = nearest.decode() if isinstance(nearest, bytes) else nearest
        if mode != "nearest":
            self.fail(f"mode {mode!r}; allowed: 'nearest'")
        ok = (coord in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_floor", "round_prefer_ceil")) or \
             (coord == "asymmetric" and nearest == "floor") or node.op_type == "Upsample"
        if not ok:
            self.fail(f"coordinate_transformation_mode {coord!r} with nearest_mode {nearest!r}; allowed: half_pixel "
                      f"with round_prefer_floor or round_prefer_ceil, or asymmetric with floor, which repeat each pixel")
        if len(v.onnx_shape) != 4:
            self.fail(f"input {v.onnx_shape} is not NCHW")
        n, c, h, w = v.onnx_shape
        scales = sizes = None
        if node.op_type == "Upsample":
            scales = self.const(ins[1], "scales").value.reshape(-1) if len(ins) > 1 else \
                np.array(self.attr(node, "scales"), dtype=np.float64)
        else:
            if len(ins) > 3 and ins[3]:
                sizes = self.const(ins[3], "sizes").value.reshape(-1)
            elif len(ins) > 2 and ins[2]:
                scales = self.const(ins[2], "scales").value.reshape(-1)
        if sizes is None:
            if scales is None or len(scales) != 4:
                self.fail("needs four scales or sizes")
            sizes = np.array([n * scales[0], c * scales[1], h * scales[2], w * scales[3]])
        sizes = tuple(int(round(float(x))) for x in sizes)
        if sizes[:2] != (n, c) or sizes[2] % h or sizes[3] % w or sizes[2] < h or sizes[3] < w:
            self.fail(f"{v.onnx_shape} to {sizes}; allowed: H and W scaled up by whole factors, N and C kept")
        self.emit(node, lambda act, name: self.builder.resize(v.tensor, (sizes[2] // h, sizes[3] // w), name=name),
                  ins[:1], node.output[0], activation=False)
        self.same_q(ins[0], node.output[0])

    def gather(self, node, ins):
        v = self.val(ins[0])
        idx = self.const(ins[1], "indices").value.reshape(-1)
        rank = len(v.onnx_shape)
        axis = self.attr(node, "axis", 0) % rank
        channel = 1 if rank == 4 else rank - 1
        if axis != channel or not np.array_equal(idx, np.arange(len(idx))) or not len(idx):
            self.fail(f"Gather of indices {idx.tolist()[:8]} on axis {axis}; allowed: an embedding table gathered "
                      f"by the graph input, or the first channels (0, 1, 2, ...) of a tensor")
        t = self.builder.truncate(v.tensor, len(idx))
        shape = list(v.onnx_shape)
        shape[channel] = len(idx)
        self.values[node.output[0]] = _Val(t, tuple(shape), seq=v.seq)
        self.same_q(ins[0], node.output[0])

    def same_q(self, src, dst):
        src = self.canon(src)
        if src in self.qinfo and self.canon(dst) not in self.qinfo:
            self.qinfo[self.canon(dst)] = self.qinfo[src]

    def view(self, node):
        op = node.op_type
        v = self.val(node.input[0])
        shape = v.onnx_shape
        n = int(np.prod(shape))
        if v.seq:
            # A sequence keeps its IR shape (1, T, C); only squeezing the unit axes is meaningful.
            new = tuple(d for d in shape if d != 1)
            if op != "Squeeze" or len(new) > 2:
                self.fail(f"only Squeeze of the unit axes of a sequence {shape} is supported")
            self.values[node.output[0]] = _Val(v.tensor, (shape[0], 1, shape[-1]), seq=True)
            self.same_q(node.input[0], node.output[0])
            return
        if op == "Flatten":
            axis = self.attr(node, "axis", 1) % len(shape)
            new = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
        elif op == "Squeeze":
            axes = self.attr(node, "axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = self.const(node.input[1]).value.reshape(-1).tolist()
            axes = [a % len(shape) for a in (axes if axes is not None else [i for i, d in enumerate(shape) if d == 1])]
            new = tuple(d for i, d in enumerate(shape) if i not in axes)
        else:
            target = [int(d) for d in self.const(node.input[1], "shape").value.reshape(-1)]
            target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
            if -1 in target:
                known = int(np.prod([d for d in target if d != -1]))
                target[target.index(-1)] = n // known
            new = tuple(target)
        if int(np.prod(new)) != n:
            self.fail(f"cannot reshape {shape} to {new}")
        chw = None
        if len(shape) == 4 and len(new) == 2 and new[0] == shape[0]:
            _, c, h, w = shape
            ir = (shape[0], c * h * w)
            chw = (c, h, w) if h * w > 1 else None
        elif len(shape) == 4 and len(new) == 4 and new[0] == shape[0] and new[1] == shape[1] * shape[2] * shape[3] \
                and new[2:] == (1, 1):
            ir = (new[0], 1, 1, new[1])
            if shape[2] * shape[3] > 1:
                self.fail("reshaping an NCHW map with H * W > 1 into channels is not supported")
        elif len(shape) == 4 and len(new) == 4 and shape[2:] == (1, 1) and new[2:] == (1, 1):
            ir = (new[0], 1, 1, new[1])
        elif len(shape) == 4 and shape[2:] != (1, 1) and len(new) != 2:
            self.fail(f"reshaping NCHW {shape} to {new} has no NHWC equivalent")
        else:
            ir = self.to_ir(new, node.output[0]) if len(new) in (2, 3, 4) else None
            if ir is None:
                self.fail(f"reshape to rank {len(new)} is not supported")
        try:
            t = self.builder.reshape(v.tensor, ir)
        except LayerError as e:
            self.fail(e)
        self.values[node.output[0]] = _Val(t, new, chw if chw else (v.chw if len(new) == 2 else None))
        self.same_q(node.input[0], node.output[0])

    def lstm(self, node):
        ins = list(node.input) + [""] * 8
        if self.attr(node, "direction", b"forward") not in (b"forward", "forward"):
            self.fail("only forward LSTMs are supported")
        if self.attr(node, "layout", 0) or self.attr(node, "input_forget", 0) or self.attr(node, "clip") is not None:
            self.fail("layout=1, input_forget and clip are not supported")
        if self.attr(node, "activations") not in (None, [b"Sigmoid", b"Tanh", b"Tanh"]):
            self.fail("only the default activations (Sigmoid, Tanh, Tanh) are supported")
        if ins[4] or ins[5] or ins[6] or ins[7]:
            self.fail("sequence_lens, initial states and peepholes are not supported")
        if any(o for o in node.output[1:]):
            self.fail("only the Y output of an LSTM is supported (Y_h / Y_c are not)")
        v = self.val(ins[0])
        W = self.const(ins[1], "W").value
        R = self.const(ins[2], "R").value
        hidden = self.attr(node, "hidden_size", R.shape[-1])
        if W.shape[0] != 1:
            self.fail("only one direction is supported")
        order = [0, 2, 3, 1]        # ONNX i, o, f, c -> golden i, f, g(c), o

        def gates(m):
            return np.concatenate([m[k * hidden:(k + 1) * hidden] for k in order], axis=0)
        w = np.concatenate([gates(W[0]).T, gates(R[0]).T], axis=0)
        b = None
        if ins[3]:
            B = self.const(ins[3], "B").value[0]
            b = gates(B[:4 * hidden]) + gates(B[4 * hidden:])
        if len(v.tensor.shape) != 3:
            self.fail(f"input shape {v.onnx_shape} is not (T, 1, C)")
        out = node.output[0]
        # Y is (T, 1, 1, H): let the Squeeze that usually follows read it as (T, 1, H).
        t = self.emit(node, lambda act, name: self.builder.lstm(v.tensor, hidden, name=name), ins[:1], out,
                      weights=dict(w=w, b=b), activation=False)
        self.values[self.canon(out)] = _Val(t, (t.shape[1], 1, 1, hidden), seq=True)

    # -- run --------------------------------------------------------------------------------
    def run(self):
        self.prepass()
        self.embeddings()
        self.inputs()
        for i, node in enumerate(self.graph.node):
            if i in self.fused:
                continue
            self.node = node
            self.handle(i, node)
            self.fused.add(i)
        self.node = None
        try:
            net = self.builder.build()
        except ValueError as e:
            self.fail(e)
        kinds = {layer.op.value for layer in net.layers}
        kind = "lstm" if kinds == {"lstm"} or kinds <= {"lstm", "fc"} else ("hybrid" if "lstm" in kinds else "cnn")
        net = replace(net, kind=kind)
        return self.finish(net)

    def finish(self, net):

        float_params = {}
        for layer in net.layers:
            wts = self.weights.get(layer.name)
            if wts is not None:
                float_params[layer.name] = FloatParams(weights=wts["w"], bias=wts.get("b"))
        quantized = bool(self.qinfo)
        if not quantized:
            return ImportedModel(net, float_params, None, False)
        def q_of(tensor, layer):
            q = self.qinfo.get(self.canon(tensor))
            if q is None:
                raise OnnxImportError(f"{self.name}: layer {layer!r}: tensor {tensor!r} has no quantisation "
                                      "(a graph must be quantised throughout)")
            return q
        layers, params = [], {}
        for layer in net.layers:
            ins = tuple(q_of(t, layer.name) for t in self.layer_in[layer.name])
            out = q_of(self.layer_out[layer.name], layer.name)
            pre = None
            if layer.activation in golden.TABLE_ACTIVATIONS:
                pre = self.pre_act.get(layer.name)
                if pre is None:
                    raise OnnxImportError(f"{self.name}: layer {layer.name!r}: the input of its "
                                          f"{layer.activation.value} has no quantisation")
            wts = self.weights.get(layer.name, {})
            if wts and layer.op.value == "lstm":
                raise OnnxImportError(f"{self.name}: layer {layer.name!r}: quantised LSTMs are not supported "
                                      "(import the float model and quantise it with mensa.core.quant)")
            if wts and wts.get("wq") is None:
                raise OnnxImportError(f"{self.name}: layer {layer.name!r}: float weights in a quantised graph")
            ws = tuple(float(s) for s in wts["ws"]) if wts else ()
            ql = replace(layer, quant=LayerQuant(inputs=ins, output=out, weight_scales=ws, pre_activation=pre))
            try:
                params[layer.name] = golden.layer_params(
                    ql, weights=None if not wts else wts["wq"].astype(np.int8),
                    bias=None if not wts or wts.get("bq") is None else wts["bq"].astype(np.int32).reshape(-1))
            except LayerError as e:
                raise OnnxImportError(f"{self.name}: {_one_line(e)}") from None
            layers.append(ql)
        net = replace(net, layers=tuple(layers), input_quant=self.qinfo.get(self.canon(self.input_names[0])))
        return ImportedModel(net, float_params, params, True)


def import_onnx(source, *, name=None):
    """Import an ONNX model (a path, bytes or an ``onnx.ModelProto``) as an :class:`ImportedModel`."""
    import onnx
    from google.protobuf.message import DecodeError

    label = name
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = label or path.stem
        data = read_bytes_file(path, "ONNX model", ONNX_BYTES_MAX, OnnxImportError)
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = None
        model = source
    label = label or "model"
    if data is not None:
        if not data:
            raise OnnxImportError(f"{label}: empty file, not an ONNX model")
        try:
            model = onnx.load_model_from_string(data)
        except (DecodeError, RuntimeError, ValueError, TypeError) as e:
            raise OnnxImportError(f"{label}: not an ONNX model (protobuf parse failed: {_one_line(e)})") from None
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"source must be a path, bytes or onnx.ModelProto, not {type(source).__name__}")
    if not model.graph.node:
        raise OnnxImportError(f"{label}: not an ONNX model or a truncated one (the graph has no nodes)")
    supported = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not 1 <= opset.version <= supported:
            raise OnnxImportError(f"{label}: opset {opset.version}; allowed: 1..{supported} (the onnx "
                                  f"{onnx.__version__} this mensa is built with)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:      # the checker raises several types; each means a malformed model
        raise OnnxImportError(f"{label}: malformed ONNX model: {_one_line(str(e).splitlines()[0] if str(e) else e)}") \
            from None
    return _Importer(model, label).run()
