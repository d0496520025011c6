"""The near-memory unit's LSTM program side and config: what it accepts, refuses, and lays out."""

import numpy as np
import pytest

from mensa.core.config import ConfigError, NearMemConfig, loads

from mensa.core.errors import UserError
from mensa.core.errors import CompileError
from mensa.contract.nearmem import HEADER_WORDS, NearMemGeometry, compile_nearmem
from mensa.core.ir import Layer, LayerQuant, Op, QuantParams
from mensa.core import golden

LSTM = NearMemGeometry.of(NearMemConfig(vaults=2, lanes=4, vault_bits=32, vault_kib=64, local_kib=4, lstm=True))
FC_ONLY = NearMemGeometry.of(NearMemConfig(vaults=2, lanes=4, vault_bits=32, vault_kib=64, local_kib=4))


def _layer(c, h, p=0, t=3, n=1):
    out = p or h
    quant = LayerQuant(inputs=(QuantParams(0.05, 3),), output=QuantParams(0.01, -5),
                       weight_scales=tuple(np.full(4 * h + p, 0.004)))
    return Layer(name="l", op=Op.LSTM, in_shape=(n, t, c), out_shape=(n, t, out), hidden=h, projection=p,
                 quant=quant)


def _compile(geometry, layer, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=golden.weight_shape(layer)).astype(np.int8)
    kw = {}
    if layer.projection:
        kw = dict(projection_weights=rng.integers(-128, 128, size=(layer.hidden, layer.projection)).astype(np.int8))
    params = golden.layer_params(layer, weights=w, bias=rng.integers(-99, 99, 4 * layer.hidden).astype(np.int32),
                                 **kw)
    x = rng.integers(-128, 128, size=layer.in_shape).astype(np.int8)
    return compile_nearmem(geometry, layer, params, x), params


def test_lstm_on_a_unit_without_the_lstm_datapath_is_refused_in_one_line():
    with pytest.raises(CompileError, match=r"^layer 'l': lstm .*nearmem.lstm = false.*allowed") as e:
        _compile(FC_ONLY, _layer(8, 8))
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)


@pytest.mark.parametrize("layer, what", [
    (_layer(8, 8, n=2), "batch of 2"),
    (_layer(8, 4 * LSTM.max_groups // 4 * LSTM.lanes * LSTM.vaults), "hidden units"),
    (_layer(LSTM.max_in + 1, 8), "input features"),
], ids=["batch", "too-many-hidden", "too-many-inputs"])
def test_lstm_layers_the_unit_cannot_run_are_refused(layer, what):
    with pytest.raises(CompileError, match=rf"^layer 'l': .*{what}.*allowed"):
        _compile(LSTM, layer)


def test_conv3x3_is_still_refused_with_lstm():
    layer = Layer(name="l", op=Op.CONV2D, in_shape=(1, 8, 8, 16), out_shape=(1, 8, 8, 16), kernel=(3, 3),
                  padding=(1, 1, 1, 1), quant=LayerQuant(inputs=(QuantParams(0.05, 3),),
                                                         output=QuantParams(0.1, 0), weight_scales=(0.01,) * 16))
    params = golden.layer_params(layer, weights=np.zeros(golden.weight_shape(layer), np.int8))
    with pytest.raises(CompileError, match=r"3x3 kernel .*allowed: fc.*or lstm"):
        compile_nearmem(LSTM, layer, params, np.zeros(layer.in_shape, np.int8))


@pytest.mark.parametrize("p", [0, 6])
def test_lstm_image_holds_the_gate_groups_then_the_projection(p):
    c, h = 5, 10
    prog, params = _compile(LSTM, _layer(c, h, p))
    blocks = -(-(-(-h // LSTM.vaults)) // LSTM.lanes)                # 2 blocks of 4 hidden units a vault
    proj_groups = -(-(-(-p // LSTM.vaults)) // LSTM.lanes) if p else 0
    d = prog.descriptor
    assert (d["lstm"], d["groups"], d["proj_groups"]) == (1, 4 * blocks, proj_groups)
    assert (d["in_features"], d["recurrent"]) == (c, p or h)
    assert d["out_groups"] == (proj_groups or blocks) and prog.out_channels == (p or h)
    lane_words = 4 * blocks * (2 * HEADER_WORDS + c + (p or h)) + proj_groups * (HEADER_WORDS + h * bool(p))
    assert prog.words == lane_words and all(img.size == lane_words * 4 for img in prog.images)
    w = params.weights
    for v, img in enumerate(prog.images):
        words = img.reshape(-1, LSTM.lanes).view(np.int8)
        for b in range(blocks):
            for q in range(4):                                   # gates i, f, g, o
                units = (v * blocks + b) * LSTM.lanes + np.arange(LSTM.lanes)
                real = units < h
                cols = q * h + units[real]
                x_group = words[(b * 4 + q) * (HEADER_WORDS + c):][:HEADER_WORDS + c]
                np.testing.assert_array_equal(x_group[HEADER_WORDS:, real], w[:c, cols])
                assert not x_group[HEADER_WORDS:, ~real].any()    # padded hidden units: zero weights
                bias = x_group[:4].view(np.uint8).T.copy().view("<i4")[:, 0]
                np.testing.assert_array_equal(bias[real], params.bias[cols])
                h_at = 4 * blocks * (HEADER_WORDS + c) + (b * 4 + q) * (HEADER_WORDS + (p or h))
                h_group = words[h_at:][:HEADER_WORDS + (p or h)]
                np.testing.assert_array_equal(h_group[HEADER_WORDS:, real], w[c:, cols])
                assert not h_group[:4].any()                      # the recurrent half has no bias


def test_lstm_config_field_is_validated_in_one_line():
    text = ('name = "s"\n[[accelerator]]\nname = "a"\nkind = "nearmem"\n'
            '[accelerator.nearmem]\nlanes = 8\nlocal_kib = {kib}\nlstm = {lstm}\n')
    assert loads(text.format(kib=4, lstm="true"))["a"].nearmem.lstm is True
    with pytest.raises(ConfigError, match=r"accelerator\[0\]\.nearmem\.lstm: expected true or false"):
        loads(text.format(kib=4, lstm=1))
    with pytest.raises(ConfigError, match=r"nearmem.local_kib: 1 is too small for 8 lanes with lstm; allowed at least"):
        NearMemGeometry.of(loads(text.format(kib=1, lstm="true"))["a"].nearmem)
