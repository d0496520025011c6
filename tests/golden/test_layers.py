"""Golden layers against float: dequantised int8 outputs stay within the quantisation error
bound; the LSTM stays within 3 output LSB (0.75 LSB mean) of a float LSTM over 50 time steps; impossible
layers raise one-line LayerErrors naming the layer and the field."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mensa.core.ir import Activation, Layer, LayerError, LayerQuant, Network, Op, QuantParams, conv_out_size
from mensa.core import golden, quant


def one_layer(layer, rng, n_cal=2, in_std=1.0):
    """Quantise a one-layer network on random float weights; returns (qlayer, params, float weights, x float, x q)."""
    net = Network("one", layer.in_shape, (layer,))
    fw = quant.random_float_params(net, rng)
    xf = rng.normal(0.0, in_std, layer.in_shape)
    qnet, params = quant.quantize_network(net, fw, [xf] + [rng.normal(0.0, in_std, layer.in_shape)
                                                           for _ in range(n_cal - 1)])
    return qnet, params, fw, xf, quant.quantize_tensor(xf, qnet.input_quant)


def random_conv_layer(rng, op=Op.CONV2D, activation=Activation.NONE):
    while True:
        kh, kw = (int(v) for v in rng.integers(1, 8, 2))
        s = tuple(int(v) for v in rng.integers(1, 3, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = tuple(int(v) for v in rng.integers(0, 4, 4))
        h, w = (int(v) for v in rng.integers(1, 16, 2))
        oh, ow = conv_out_size(h, kh, s[0], pad[0], pad[1], d[0]), conv_out_size(w, kw, s[1], pad[2], pad[3], d[1])
        if oh >= 1 and ow >= 1:
            break
    cin = int(rng.integers(1, 12))
    if op is Op.DEPTHWISE:
        groups, cout = cin, cin * int(rng.integers(1, 3))
    else:
        groups = int(rng.choice([1, 1, 2]))
        cin, cout = cin * groups, groups * int(rng.integers(1, 9))
    n = int(rng.integers(1, 3))
    return Layer("conv", op, (n, h, w, cin), (n, oh, ow, cout), kernel=(kh, kw), stride=s, padding=pad, dilation=d,
                 groups=groups, activation=activation)


def requant_bound(qlayer, fw, x_hat, conv):
    """Per-output bound of |dequantised int8 output - float output|: the weight and input
    rounding through the layer, the bias rounding, and one output LSB of requantisation."""
    q = qlayer.quant
    s_x, s_w, s_out = q.inputs[0].scale, np.array(q.weight_scales), q.output.scale
    w = fw[qlayer.name].weights
    return (conv(np.abs(x_hat), np.ones_like(w)) * s_w / 2 + conv(np.ones_like(x_hat), np.abs(w)) * s_x / 2
            + s_x * s_w / 2 + s_out)


@pytest.mark.parametrize("op", [Op.CONV2D, Op.DEPTHWISE])
@pytest.mark.parametrize("activation", [Activation.NONE, Activation.RELU, Activation.RELU6])
@pytest.mark.parametrize("seed", range(8))
def test_conv_within_quantisation_error_of_float(op, activation, seed):
    rng = np.random.default_rng(seed)
    layer = random_conv_layer(rng, op, activation)
    qnet, params, fw, xf, xq = one_layer(layer, rng)
    ql = qnet.layers[0]
    got = quant.dequantize(golden.run_layer(ql, params["conv"], xq), ql.quant.output)
    ref = quant.run_float(qnet, fw, xf)["conv"]

    def conv(a, w):
        return golden.conv2d_real(a, w, layer.stride, layer.padding, layer.dilation, layer.groups)
    bound = requant_bound(ql, fw, quant.dequantize(xq, qnet.input_quant), conv)
    assert np.all(np.abs(got - ref) <= bound), f"seed {seed}: worst excess {np.max(np.abs(got - ref) - bound)}"


@pytest.mark.parametrize("seed", range(8))
def test_fully_connected_within_quantisation_error_of_float(seed):
    rng = np.random.default_rng(seed)
    n, cin, cout = (int(v) for v in rng.integers(1, 200, 3))
    shape = (n, cin) if seed % 2 else (2, n % 7 + 1, cin)          # also FC over time steps
    layer = Layer("fc", Op.FC, shape, shape[:-1] + (cout,))
    qnet, params, fw, xf, xq = one_layer(layer, rng)
    ql = qnet.layers[0]
    got = quant.dequantize(golden.run_layer(ql, params["fc"], xq), ql.quant.output)
    ref = quant.run_float(qnet, fw, xf)["fc"]
    bound = requant_bound(ql, fw, quant.dequantize(xq, qnet.input_quant), lambda a, w: a @ w)
    assert np.all(np.abs(got - ref) <= bound)


def test_table_activation_within_one_lsb_of_float_on_the_pre_activation():
    rng = np.random.default_rng(5)
    for act in golden.TABLE_ACTIVATIONS:
        layer = Layer("conv", Op.CONV2D, (1, 8, 8, 4), (1, 8, 8, 6), kernel=(3, 3), padding=(1, 1, 1, 1),
                      activation=act)
        qnet, params, fw, xf, xq = one_layer(layer, rng)
        ql = qnet.layers[0]
        pre = ql.quant.pre_activation
        got = golden.run_layer(ql, params["conv"], xq)
        # the table is the function of the int8 pre-activation, rounded: within 0.5 LSB of it
        no_act = Layer("conv", Op.CONV2D, layer.in_shape, layer.out_shape, kernel=(3, 3), padding=(1, 1, 1, 1),
                       quant=LayerQuant(ql.quant.inputs, pre, ql.quant.weight_scales))
        pre_q = golden.run_layer(no_act, golden.layer_params(no_act, weights=params["conv"].weights,
                                                              bias=params["conv"].bias), xq)
        want = golden.activation_function(act)(quant.dequantize(pre_q, pre))
        assert np.all(np.abs(quant.dequantize(got, ql.quant.output) - want) <= ql.quant.output.scale * 0.5 + 1e-12)


QP = st.builds(QuantParams, st.floats(1e-3, 0.2), st.integers(-128, 127))


def requant_lsb(shift):
    """The worst rounding error of a requantisation, in output LSB: SaturatingRoundingDoublingHighMul
    rounds to 2**-right of an LSB before RoundingDivideByPOT rounds to the LSB (double rounding),
    plus the Q31 multiplier's relative error."""
    return 0.5 + 0.5 * 2.0 ** min(int(shift), 0) + 1e-6


@settings(max_examples=60, deadline=None)
@given(QP, QP, QP, st.integers(0, 2 ** 31 - 1))
def test_add_within_half_an_lsb_of_float(qa, qb, qo, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(-128, 128, (2, 5, 5, 3), dtype=np.int8) for _ in range(2))
    layer = Layer("add", Op.ADD, a.shape, a.shape, inputs=("x", "y"), extra_in_shapes=(a.shape,),
                  quant=LayerQuant((qa, qb), qo))
    got = golden.run_layer(layer, golden.layer_params(layer), a, b)
    ref = quant.dequantize(a, qa) + quant.dequantize(b, qb)
    twice_max = 2 * max(qa.scale, qb.scale)
    inside = np.abs(ref / qo.scale + qo.zero_point) < 127                   # not clamped
    err = np.abs(quant.dequantize(got, qo) - ref)[inside]
    assert np.all(err <= qo.scale * requant_lsb(golden.layer_params(layer).shift) + 2 * twice_max / 2 ** 20)


@settings(max_examples=40, deadline=None)
@given(QP, QP, QP, st.integers(0, 2 ** 31 - 1))
def test_mul_gate_within_half_an_lsb_of_float(qa, qg, qo, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (1, 4, 4, 3), dtype=np.int8)
    g = rng.integers(-128, 128, (1, 1, 1, 3), dtype=np.int8)
    layer = Layer("mul", Op.MUL, a.shape, a.shape, inputs=("x", "g"), extra_in_shapes=(g.shape,),
                  quant=LayerQuant((qa, qg), qo))
    lp = golden.layer_params(layer)
    got = golden.run_layer(layer, lp, a, g)
    ref = quant.dequantize(a, qa) * quant.dequantize(g, qg)
    inside = np.abs(ref / qo.scale + qo.zero_point) < 127
    assert np.all(np.abs(quant.dequantize(got, qo) - ref)[inside] <= qo.scale * requant_lsb(lp.shift))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 2), st.integers(0, 1), QP, st.integers(0, 2 ** 31 - 1))
def test_pools_against_float(kh, kw, stride, pad, q, seed):
    rng = np.random.default_rng(seed)
    h, w = kh + int(rng.integers(0, 6)), kw + int(rng.integers(0, 6))
    x = rng.integers(-128, 128, (1, h, w, 3), dtype=np.int8)
    pad = min(pad, kh - 1, kw - 1)                  # a window reading only padding is a LayerError
    p = (pad, pad, pad, pad)
    oh, ow = conv_out_size(h, kh, stride, pad, pad, 1), conv_out_size(w, kw, stride, pad, pad, 1)
    lq = LayerQuant((q,), q)
    for op in (Op.AVGPOOL, Op.MAXPOOL):
        layer = Layer("pool", op, x.shape, (1, oh, ow, 3), kernel=(kh, kw), stride=(stride, stride), padding=p, quant=lq)
        got = golden.run_layer(layer, golden.layer_params(layer), x).astype(np.float64)
        fl = quant._float_layer(layer, quant.FloatParams(), [x])[1]          # the float op on the int values
        if op is Op.AVGPOOL:
            assert np.all(np.abs(got - fl) <= 0.5)
        else:
            np.testing.assert_array_equal(got, fl)


@settings(max_examples=40, deadline=None)
@given(QP, QP, st.integers(1, 7), st.integers(0, 2 ** 31 - 1))
def test_global_avg_pool_and_concat_within_half_an_lsb(qi, qo, hw, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (2, hw, hw, 5), dtype=np.int8)
    gap = Layer("gap", Op.GLOBAL_AVGPOOL, x.shape, (2, 1, 1, 5), quant=LayerQuant((qi,), qo))
    ref = quant.dequantize(x, qi).mean(axis=(1, 2), keepdims=True)
    lp = golden.layer_params(gap)
    got = quant.dequantize(golden.run_layer(gap, lp, x), qo)
    inside = np.abs(ref / qo.scale + qo.zero_point) < 127
    assert np.all(np.abs(got - ref)[inside] <= qo.scale * requant_lsb(lp.shift))
    y = rng.integers(-128, 128, (2, hw, hw, 2), dtype=np.int8)
    cat = Layer("cat", Op.CONCAT, x.shape, (2, hw, hw, 7), inputs=("x", "y"), extra_in_shapes=(y.shape,),
                quant=LayerQuant((qi, qo), qo))
    lp = golden.layer_params(cat)
    out = golden.run_layer(cat, lp, x, y)
    np.testing.assert_array_equal(out[..., 5:], y)                            # same quantisation: passed through
    ref = quant.dequantize(x, qi)
    inside = np.abs(ref / qo.scale + qo.zero_point) < 127
    bound = qo.scale * (requant_lsb(lp.input_shifts[0]) if lp.input_shifts[0] is not None else 0.5)
    assert np.all(np.abs(quant.dequantize(out[..., :5], qo) - ref)[inside] <= bound)


@pytest.mark.parametrize("projection", [0, 16])
@pytest.mark.parametrize("seed", range(3))
def test_lstm_within_three_lsb_of_float_over_50_steps(projection, seed):
    rng = np.random.default_rng(seed)
    n, t, c, h = 4, 50, 20, 32
    p = projection or h
    layer = Layer("lstm", Op.LSTM, (n, t, c), (n, t, p), hidden=h, projection=projection)
    qnet, params, fw, xf, xq = one_layer(layer, rng)
    ql = qnet.layers[0]
    got = quant.dequantize(golden.run_layer(ql, params["lstm"], xq), ql.quant.output)
    ref = quant.run_float(qnet, fw, quant.dequantize(xq, qnet.input_quant))["lstm"]
    err = np.abs(got - ref) / ql.quant.output.scale
    print(f"LSTM projection={projection}: max {err.max():.2f} LSB, mean {err.mean():.3f} LSB")
    assert err.max() <= 3.0 and err.mean() <= 0.75
    assert err[:, -10:].mean() <= 2 * err[:, :10].mean() + 0.1                 # no drift over time


def test_network_dag_with_residual_add_and_concat_tracks_float():
    rng = np.random.default_rng(1)
    s = (1, 8, 8, 8)
    layers = (
        Layer("a", Op.CONV2D, s, s, kernel=(3, 3), padding=(1, 1, 1, 1), activation=Activation.RELU6),
        Layer("b", Op.DEPTHWISE, s, s, inputs=("a",), kernel=(3, 3), padding=(1, 1, 1, 1), groups=8,
              activation=Activation.RELU6),
        Layer("c", Op.CONV2D, s, s, inputs=("b",)),
        Layer("res", Op.ADD, s, s, inputs=("c", "input"), extra_in_shapes=(s,)),
        Layer("cat", Op.CONCAT, s, (1, 8, 8, 16), inputs=("res", "a"), extra_in_shapes=(s,)),
        Layer("mp", Op.MAXPOOL, (1, 8, 8, 16), (1, 4, 4, 16), inputs=("cat",), kernel=(2, 2), stride=(2, 2)),
        Layer("gap", Op.GLOBAL_AVGPOOL, (1, 4, 4, 16), (1, 1, 1, 16), inputs=("mp",)),
        Layer("fc", Op.FC, (1, 16), (1, 10), inputs=("gap",)),
    )
    net = Network("dag", s, layers)
    fw = quant.random_float_params(net, rng)
    cal = [rng.normal(0, 1, s) for _ in range(4)]
    qnet, params = quant.quantize_network(net, fw, cal)
    xf = cal[0]
    out = golden.run_network(qnet, params, quant.quantize_tensor(xf, qnet.input_quant))
    ref = quant.run_float(net, fw, xf)
    assert list(out) == [l.name for l in layers]
    for layer in qnet.layers:
        err = np.abs(quant.dequantize(out[layer.name], layer.quant.output) - ref[layer.name])
        # errors add up along the path; a few LSB of the layer's coarsest tensor at most for this shallow DAG
        # (the concat's inputs share its wider scale, as TFLite's: "a" is quantised for "res"'s range too)
        lsb = max(q.scale for q in (layer.quant.output, *layer.quant.inputs))
        assert err.max() <= 4 * lsb, layer.name
    assert qnet["a"].quant.output == qnet["cat"].quant.output == qnet["res"].quant.output
    assert params["cat"].input_multipliers == (None, None)


# -- impossible layers ---------------------------------------------------------------------

Q = LayerQuant((QuantParams(0.1),), QuantParams(0.1), (0.01,) * 8)


@pytest.mark.parametrize("layer, fieldname", [
    (Layer("big", Op.CONV2D, (1, 3, 3, 2), (1, 1, 1, 8), kernel=(5, 5), quant=Q), "kernel"),
    (Layer("zero", Op.CONV2D, (1, 0, 3, 2), (1, 1, 1, 8), quant=Q), "in_shape"),
    (Layer("shape", Op.CONV2D, (1, 4, 4, 2), (1, 3, 3, 8), quant=Q), "out_shape"),
    (Layer("grp", Op.CONV2D, (1, 4, 4, 3), (1, 4, 4, 8), groups=2, quant=Q), "groups"),
    (Layer("dw", Op.DEPTHWISE, (1, 4, 4, 3), (1, 4, 4, 8), groups=3, quant=Q), "groups"),
    (Layer("add", Op.ADD, (1, 4, 4, 3), (1, 4, 4, 3), inputs=("a", "b"), extra_in_shapes=((1, 4, 4, 2),), quant=Q),
     "extra_in_shapes"),
    (Layer("cat", Op.CONCAT, (1, 4, 4, 3), (1, 4, 4, 9), inputs=("a", "b"), extra_in_shapes=((1, 4, 4, 2),),
           quant=Q), "out_shape"),
    (Layer("fc", Op.FC, (1, 8), (2, 8), quant=Q), "out_shape"),
    (Layer("lstm", Op.LSTM, (1, 5, 4), (1, 5, 4), hidden=0, quant=Q), "hidden"),
    (Layer("pool", Op.MAXPOOL, (1, 4, 4, 8), (1, 4, 4, 8), activation=Activation.SIGMOID, quant=Q), "activation"),
    (Layer("pad", Op.AVGPOOL, (1, 4, 4, 8), (1, 6, 6, 8), padding=(1, 1, 1, 1), quant=Q), "padding"),
    (Layer("noq", Op.CONV2D, (1, 4, 4, 8), (1, 4, 4, 8)), "quant"),
    (Layer("w", Op.CONV2D, (1, 4, 4, 8), (1, 4, 4, 8), quant=Q), "weights"),
])
def test_impossible_layer_raises_one_line_naming_layer_and_field(layer, fieldname):
    with pytest.raises(LayerError) as info:
        golden.layer_params(layer, weights=np.zeros((1, 1, 4, 8), np.int8))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"layer {layer.name!r}: {fieldname}")


def test_unsupported_op_and_wrong_input_are_layer_errors():
    layer = Layer("x", Op.CONV2D, (1, 4, 4, 8), (1, 4, 4, 8), quant=Q)
    params = golden.layer_params(layer, weights=np.zeros((1, 1, 8, 8), np.int8))
    with pytest.raises(LayerError, match="layer 'x': in_shape"):
        golden.run_layer(layer, params, np.zeros((1, 4, 4, 7), np.int8))
    with pytest.raises(LayerError, match="layer 'x': inputs: input 0 is float64"):
        golden.run_layer(layer, params, np.zeros((1, 4, 4, 8)))
    with pytest.raises(LayerError, match="layer 'y': op"):
        golden.check_layer(Layer("y", "softmax", (1, 4), (1, 4)))


# -- the accumulator never wraps ----------------------------------------------------------

WORST_PRODUCT = 255 * 128            # (x - zero point) = -255, w = -128
K_WORST_MAX = ((1 << 31) - 1) // WORST_PRODUCT


@pytest.mark.parametrize("k", [K_WORST_MAX, K_WORST_MAX + 1])
def test_the_worst_case_accumulator_is_exact_or_refused(k):
    """At the worst case (x = -128, zero point 127, w = -128), K = 65,793 products are exact;
    one more leaves int32, and the model raises naming K instead of wrapping."""
    x = np.full((1, k), -128, dtype=np.int8)
    w = np.full((k, 2), -128, dtype=np.int8)
    if k == K_WORST_MAX:
        acc = golden.fully_connected_acc(x, w, x_zero_point=127)
        assert acc.dtype == np.int32 and (acc == k * WORST_PRODUCT).all()
        conv = golden.conv2d_acc(x.reshape(1, 1, 1, k), w.reshape(1, 1, k, 2), x_zero_point=127)
        assert (conv == k * WORST_PRODUCT).all()
    else:
        with pytest.raises(golden.AccumulatorOverflow, match=f"K = {k}"):
            golden.fully_connected_acc(x, w, x_zero_point=127)
        with pytest.raises(golden.AccumulatorOverflow, match=f"K = {k}"):
            golden.conv2d_acc(x.reshape(1, 1, 1, k), w.reshape(1, 1, k, 2), x_zero_point=127)


def test_a_bias_that_carries_the_sum_out_of_int32_is_refused():
    x = np.full((1, 4), 127, dtype=np.int8)
    w = np.full((4, 1), 127, dtype=np.int8)
    bias = np.array([(1 << 31) - 1], dtype=np.int32)
    with pytest.raises(golden.AccumulatorOverflow, match="plus bias"):
        golden.fully_connected(x, w, bias, 1 << 30, 0, x_zero_point=0, out_zero_point=0)
    bias = np.array([(1 << 31) - 1 - 4 * 127 * 127], dtype=np.int32)
    assert golden.fully_connected(x, w, bias, 1 << 30, 0, x_zero_point=0, out_zero_point=0)[0, 0] == 127
