"""The golden model against an independent implementation: onnxruntime's integer operators.

int32 accumulators equal ConvInteger / MatMulInteger bit for bit; requantised int8 outputs
agree with QLinearConv / QLinearMatMul within 1 LSB, and at least 99% exactly. The only
difference allowed is the rounding of the requantisation: onnxruntime scales by a float
multiplier and rounds half to even, the golden model by TFLite's Q31 multiplier and shift.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mensa.core.ir import conv_out_size
from mensa.core import golden

_SO = ort.SessionOptions()
_SO.intra_op_num_threads = 1
_SO.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def _session(nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), _SO, providers=["CPUExecutionProvider"])


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _conv_attrs(w_hwio, stride, padding, dilation, groups):
    t, b, l, r = padding
    return dict(kernel_shape=list(w_hwio.shape[:2]), strides=list(stride), pads=[t, l, b, r],
                dilations=list(dilation), group=groups)


def ort_conv_integer(x, w, *, stride, padding, dilation, groups, x_zero_point):
    """ConvInteger on uint8 operands: x + 128 with zero point zp + 128, w + 128 with zero
    point 128, so ``(x_u - zp_u) * (w_u - 128) == (x - zp) * w`` term by term."""
    xu = (x.astype(np.int16) + 128).astype(np.uint8).transpose(0, 3, 1, 2)
    wu = (w.astype(np.int16) + 128).astype(np.uint8).transpose(3, 2, 0, 1)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"],
                            **_conv_attrs(w, stride, padding, dilation, groups))
    s = _session([node], [_vi("x", TensorProto.UINT8, xu.shape), _vi("w", TensorProto.UINT8, wu.shape),
                          _vi("xz", TensorProto.UINT8, ()), _vi("wz", TensorProto.UINT8, ())],
                 [_vi("y", TensorProto.INT32, [None] * 4)])
    y = s.run(None, {"x": xu, "w": wu, "xz": np.array(x_zero_point + 128, np.uint8), "wz": np.array(128, np.uint8)})[0]
    return y.transpose(0, 2, 3, 1)


def ort_qlinear_conv(x, w, bias, *, x_scale, x_zp, w_scales, y_scale, y_zp, stride, padding, dilation, groups):
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            **_conv_attrs(w, stride, padding, dilation, groups))
    cout = w.shape[3]
    s = _session([node], [_vi("x", TensorProto.INT8, [None] * 4), _vi("xs", TensorProto.FLOAT, ()),
                          _vi("xz", TensorProto.INT8, ()), _vi("w", TensorProto.INT8, [None] * 4),
                          _vi("ws", TensorProto.FLOAT, (cout,)), _vi("wz", TensorProto.INT8, (cout,)),
                          _vi("ys", TensorProto.FLOAT, ()), _vi("yz", TensorProto.INT8, ()),
                          _vi("b", TensorProto.INT32, (cout,))],
                 [_vi("y", TensorProto.INT8, [None] * 4)])
    y = s.run(None, {"x": x.transpose(0, 3, 1, 2).copy(), "xs": np.array(x_scale, np.float32),
                     "xz": np.array(x_zp, np.int8), "w": w.transpose(3, 2, 0, 1).copy(),
                     "ws": w_scales.astype(np.float32), "wz": np.zeros(cout, np.int8),
                     "ys": np.array(y_scale, np.float32), "yz": np.array(y_zp, np.int8), "b": bias})[0]
    return y.transpose(0, 2, 3, 1)


def ort_matmul_integer(a, b, *, a_zero_point):
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    s = _session([node], [_vi("a", TensorProto.INT8, a.shape), _vi("b", TensorProto.INT8, b.shape),
                          _vi("az", TensorProto.INT8, ()), _vi("bz", TensorProto.INT8, ())],
                 [_vi("y", TensorProto.INT32, [None, None])])
    return s.run(None, {"a": a, "b": b, "az": np.array(a_zero_point, np.int8), "bz": np.array(0, np.int8)})[0]


def ort_qlinear_matmul(a, b, *, a_scale, a_zp, b_scale, y_scale, y_zp):
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    s = _session([node], [_vi("a", TensorProto.INT8, a.shape), _vi("as", TensorProto.FLOAT, ()),
                          _vi("az", TensorProto.INT8, ()), _vi("b", TensorProto.INT8, b.shape),
                          _vi("bs", TensorProto.FLOAT, ()), _vi("bz", TensorProto.INT8, ()),
                          _vi("ys", TensorProto.FLOAT, ()), _vi("yz", TensorProto.INT8, ())],
                 [_vi("y", TensorProto.INT8, [None, None])])
    return s.run(None, {"a": a, "as": np.array(a_scale, np.float32), "az": np.array(a_zp, np.int8), "b": b,
                        "bs": np.array(b_scale, np.float32), "bz": np.array(0, np.int8),
                        "ys": np.array(y_scale, np.float32), "yz": np.array(y_zp, np.int8)})[0]


def random_conv(rng, *, depthwise=False):
    """A random valid conv: kernels 1-7, strides 1-2, dilations 1-2, paddings 0-3, groups."""
    while True:
        kh, kw = rng.integers(1, 8, 2)
        sh, sw = rng.integers(1, 3, 2)
        dh, dw = rng.integers(1, 3, 2)
        pad = tuple(int(p) for p in rng.integers(0, 4, 4))
        h, w = rng.integers(1, 18, 2)
        if depthwise:
            groups = int(rng.integers(1, 17))
            cin, cout = groups, groups * int(rng.integers(1, 3))
        else:
            groups = int(rng.choice([1, 1, 1, 2, 3, 4]))
            cin, cout = groups * int(rng.integers(1, 9)), groups * int(rng.integers(1, 9))
        oh = conv_out_size(h, kh, sh, pad[0], pad[1], dh)
        ow = conv_out_size(w, kw, sw, pad[2], pad[3], dw)
        if oh >= 1 and ow >= 1:
            break
    n = int(rng.integers(1, 3))
    x = rng.integers(-128, 128, (n, h, w, cin), dtype=np.int8)
    wt = rng.integers(-127, 128, (kh, kw, cin // groups, cout), dtype=np.int8)
    return x, wt, dict(stride=(int(sh), int(sw)), padding=pad, dilation=(int(dh), int(dw)), groups=groups,
                       x_zero_point=int(rng.integers(-128, 128)))


def _check_conv_integer(seed, depthwise):
    rng = np.random.default_rng(seed)
    x, w, kw = random_conv(rng, depthwise=depthwise)
    got = golden.conv2d_acc(x, w, **kw)
    want = ort_conv_integer(x, w, **kw)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}: x {x.shape} w {w.shape} {kw}")


@pytest.mark.parametrize("seed", range(200))
def test_conv2d_acc_equals_conv_integer(seed):
    _check_conv_integer(seed, depthwise=False)


@pytest.mark.parametrize("seed", range(1000, 1080))
def test_depthwise_acc_equals_conv_integer(seed):
    _check_conv_integer(seed, depthwise=True)


def _check_matmul_integer(seed, big=False):
    rng = np.random.default_rng(seed)
    m, k, n = rng.integers(1, 600 if big else 80, 3)
    if big:
        k = int(rng.integers(400, 3000))       # both sides of the float32 / float64 switch at K = 512
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (k, n), dtype=np.int8)
    zp = int(rng.integers(-128, 128))
    np.testing.assert_array_equal(golden.fully_connected_acc(a, b, x_zero_point=zp),
                                  ort_matmul_integer(a, b, a_zero_point=zp), err_msg=f"seed {seed}")


@pytest.mark.parametrize("seed", range(2000, 2060))
def test_fully_connected_acc_equals_matmul_integer(seed):
    _check_matmul_integer(seed)


@pytest.mark.parametrize("seed", range(2100, 2110))
def test_fully_connected_acc_equals_matmul_integer_long_k(seed):
    _check_matmul_integer(seed, big=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10_000, 12_000))
def test_conv_integer_sweep(seed):
    _check_conv_integer(seed, depthwise=seed % 4 == 0)
    if seed % 10 == 0:
        _check_matmul_integer(seed, big=seed % 20 == 0)


def _agreement(got, want):
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    return int(diff.max(initial=0)), int((diff == 0).sum()), diff.size


def _qlinear_conv_case(seed):
    rng = np.random.default_rng(seed)
    x, w, kw = random_conv(rng, depthwise=seed % 3 == 0)
    cout = w.shape[3]
    k = w.shape[0] * w.shape[1] * w.shape[2]
    x_scale = float(np.float32(rng.uniform(0.005, 0.1)))
    w_scales = rng.uniform(0.001, 0.05, cout).astype(np.float32)
    # an output scale that spreads the accumulators over the int8 range
    y_scale = float(np.float32(x_scale * float(w_scales.mean()) * 128 * np.sqrt(k) * 0.3))
    y_zp = int(rng.integers(-20, 21))
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    m, s = golden.quantize_multiplier(x_scale * w_scales.astype(np.float64) / y_scale)
    got = golden.conv2d(x, w, bias, m, s, out_zero_point=y_zp, **kw)
    want = ort_qlinear_conv(x, w, bias, x_scale=x_scale, x_zp=kw["x_zero_point"], w_scales=w_scales,
                            y_scale=y_scale, y_zp=y_zp, stride=kw["stride"], padding=kw["padding"],
                            dilation=kw["dilation"], groups=kw["groups"])
    return got, want


def _qlinear_matmul_case(seed):
    rng = np.random.default_rng(seed)
    m, k, n = (int(v) for v in rng.integers(1, 100, 3))
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (k, n), dtype=np.int8)
    a_scale, b_scale = (float(np.float32(v)) for v in rng.uniform(0.001, 0.1, 2))
    y_scale = float(np.float32(a_scale * b_scale * 128 * np.sqrt(k) * 0.3))
    a_zp, y_zp = (int(v) for v in rng.integers(-128, 128, 2))
    mult, sh = golden.quantize_multiplier(a_scale * b_scale / y_scale)
    got = golden.fully_connected(a, b, None, mult, sh, x_zero_point=a_zp, out_zero_point=y_zp)
    want = ort_qlinear_matmul(a, b, a_scale=a_scale, a_zp=a_zp, b_scale=b_scale, y_scale=y_scale, y_zp=y_zp)
    return got, want


@pytest.mark.parametrize("case", [_qlinear_conv_case, _qlinear_matmul_case], ids=["QLinearConv", "QLinearMatMul"])
def test_requantised_outputs_agree_with_qlinear_ops(case):
    worst, exact, total = 0, 0, 0
    for seed in range(60):
        got, want = case(seed)
        w_, e_, t_ = _agreement(got, want)
        worst, exact, total = max(worst, w_), exact + e_, total + t_
    print(f"{case.__name__}: {total} elements, {exact / total:.4%} exact, max |diff| {worst}")
    assert worst <= 1
    assert exact / total >= 0.99
