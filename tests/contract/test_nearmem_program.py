"""The near-memory unit's program side: what it accepts, what it refuses, and its memory images."""

import json

import numpy as np
import pytest

from mensa.core.config import NearMemConfig

from mensa.core.errors import UserError
from mensa.core.errors import CompileError
from mensa.contract.nearmem import HEADER_WORDS, NearMemGeometry, compile_nearmem, fc_program
from mensa.core.ir import Activation, Layer, LayerQuant, Op, QuantParams
from mensa.core import golden

GEOM = NearMemGeometry.of(NearMemConfig(vaults=4, lanes=8, vault_bits=128, vault_kib=64, local_kib=2))


def _layer(op, in_shape, out_shape, activation=Activation.NONE, **kw):
    cout = out_shape[-1]
    quant = LayerQuant(inputs=(QuantParams(0.05, 3),), output=QuantParams(0.1, -5),
                       weight_scales=tuple(np.linspace(0.001, 0.01, cout)),
                       pre_activation=QuantParams(0.05, 0) if activation is Activation.SIGMOID else None)
    return Layer(name="l", op=op, in_shape=in_shape, out_shape=out_shape, activation=activation,
                 quant=quant, **kw)


def _params(layer, rng):
    shape = golden.weight_shape(layer)
    w = rng.integers(-128, 128, size=shape).astype(np.int8)
    b = rng.integers(-1000, 1000, size=layer.out_channels).astype(np.int32)
    return golden.layer_params(layer, weights=w, bias=b)


def _compile(layer, rng=None):
    rng = rng or np.random.default_rng(0)
    x = rng.integers(-128, 128, size=layer.in_shape).astype(np.int8)
    return compile_nearmem(GEOM, layer, _params(layer, rng), x)


def test_conv3x3_is_refused_with_a_user_error_naming_the_kernel():
    layer = _layer(Op.CONV2D, (1, 8, 8, 16), (1, 8, 8, 16), kernel=(3, 3), padding=(1, 1, 1, 1))
    with pytest.raises(CompileError, match=r"layer 'l': conv2d with a 3x3 kernel .*allowed: fc") as e:
        _compile(layer)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)


@pytest.mark.parametrize("layer", [
    _layer(Op.DEPTHWISE, (1, 8, 8, 16), (1, 8, 8, 16), kernel=(3, 3), padding=(1, 1, 1, 1), groups=16),
    _layer(Op.CONV2D, (1, 8, 8, 16), (1, 4, 4, 16), stride=(2, 2)),
    _layer(Op.FC, (1, 64), (1, 32), activation=Activation.SIGMOID),
    _layer(Op.FC, (1, GEOM.max_in + 1), (1, 8)),
    _layer(Op.FC, (1, 8), (1, GEOM.max_groups * GEOM.lanes * GEOM.vaults + 1)),
], ids=["depthwise", "strided-pointwise", "sigmoid", "too-many-inputs", "too-many-outputs"])
def test_layers_the_unit_cannot_run_are_refused(layer):
    with pytest.raises(CompileError, match=r"^layer 'l': .*allowed"):
        _compile(layer)


def test_pointwise_conv_is_one_vector_per_pixel():
    layer = _layer(Op.CONV2D, (2, 3, 5, 16), (2, 3, 5, 24), activation=Activation.RELU)
    prog = _compile(layer)
    assert prog.vectors == 2 * 3 * 5 and prog.inputs.shape == (30, 16) and prog.out_channels == 24
    lo, _ = golden.activation_range(Activation.RELU, 0.1, -5)
    assert prog.descriptor["qmin"] == lo and prog.descriptor["x_zero_point"] == 3


def test_vault_images_hold_each_vaults_channels_header_then_weights():
    rng = np.random.default_rng(1)
    k, n = 13, 70                       # 70 channels on 4 vaults of 8 lanes: 3 groups a vault
    w = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
    bias = rng.integers(-(1 << 31), 1 << 31, size=n).astype(np.int32)
    mult, shift = golden.quantize_multiplier(rng.uniform(1e-4, 0.9, size=n))
    prog = fc_program(GEOM, w, np.zeros((1, k), np.int8), bias=bias, multiplier=mult, shift=shift)
    groups = prog.descriptor["groups"]
    assert groups == 3
    L = GEOM.lanes
    for v, image in enumerate(prog.images):
        assert image.size % GEOM.word_bytes == 0
        assert image.size // GEOM.word_bytes == GEOM.words(k, groups)
        words = image[:groups * (HEADER_WORDS + k) * L].reshape(groups, HEADER_WORDS + k, L)
        for g in range(groups):
            ch = v * groups * L + g * L + np.arange(L)
            real = ch < n
            got_bias = words[g, 0:4].T.copy().view("<i4").ravel()
            got_mult = words[g, 4:8].T.copy().view("<i4").ravel()
            got_shift = words[g, 8].view(np.int8)
            got_w = words[g, HEADER_WORDS:].view(np.int8)
            assert np.array_equal(got_bias[real], bias[ch[real]])
            assert np.array_equal(got_mult[real], mult[ch[real]])
            assert np.array_equal(got_shift[real], shift[ch[real]])
            assert np.array_equal(got_w[:, real], w[:, ch[real]])
            assert not got_w[:, ~real].any() and not got_bias[~real].any()


def test_vault_width_and_lanes_that_do_not_divide_are_a_config_error():
    with pytest.raises(UserError, match=r"^nearmem.vault_bits: 128 \(16 bytes\) and nearmem.lanes: 12 .*allowed"):
        NearMemGeometry.of(NearMemConfig(vaults=2, lanes=12, vault_bits=128, local_kib=4))


def test_mensa_verilog_emits_a_nearmem_accelerator_with_one_port_pair_per_vault(tmp_path):
    from mensa.gen.verilog import emit
    from mensa.core.config import loads
    system = loads('name = "t"\n[[accelerator]]\nname = "jq"\nkind = "nearmem"\n'
                   '[accelerator.nearmem]\nvaults = 3\nlanes = 4\nvault_bits = 32\nvault_kib = 16\nlocal_kib = 1\n')
    emit(system, tmp_path)
    modules = json.loads((tmp_path / "manifest.json").read_text())["modules"]
    assert [m["kind"] for m in modules] == ["nearmem", "system"]       # with the system top over it
    module = modules[0]
    ports = {p["name"]: (p["direction"], p["width"]) for p in module["ports"]}
    assert module["kind"] == "nearmem" and (tmp_path / "t_jq.v").exists()
    for v in range(3):
        assert ports[f"vault_req__{v}__payload"] == ("output", 12)      # 16 KiB of 4-byte words
        assert ports[f"vault_resp__{v}__payload"] == ("input", 32)
    assert "vault_req__3__payload" not in ports
    # the peripheral: registers, DMA and interrupt; the bare unit (--unit array) has the stream ports
    assert ports["s_axil_awaddr"][0] == "input" and ports["m_axi_rdata"] == ("input", 64) and ports["irq"] == ("output", 1)
    assert (tmp_path / "t_jq_regs.h").exists() and "outs__payload" not in ports
    emit(system, tmp_path / "unit", "array")
    (module,) = json.loads((tmp_path / "unit" / "manifest.json").read_text())["modules"]
    ports = {p["name"]: (p["direction"], p["width"]) for p in module["ports"]}
    assert ports["outs__payload"] == ("output", 4 * 8 + 1) and ports["accs__payload"] == ("output", 4 * 32 + 1)
