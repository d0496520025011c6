"""The zoo's networks against their published MAC and parameter counts, and the IR's invariants."""

import math

import pytest

from mensa.core.errors import UserError
from mensa.model import zoo
from mensa.core.builder import NetworkBuilder
from mensa.core.ir import LayerError, Op

# (model, published MACs, published parameters, source of the figures)
PUBLISHED = [
    # Sandler et al., "MobileNetV2", CVPR 2018, Table 4 (300M MAdds, 3.4M params); TF-slim
    # mobilenet README for the 1.0/224 checkpoint: 300M MACs, 3.47M parameters.
    ("mobilenet_v2", 300e6, 3.47e6, "TF-slim mobilenet README"),
    # torchvision ResNet50_Weights.IMAGENET1K_V1 (v1.5): 4.09 GFLOPS (multiply-adds), 25.6M params.
    ("resnet50", 4.09e9, 25.6e6, "torchvision model docs"),
    # Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 3: Large 1.0 219M MAdds 5.4M params,
    # Table 4: Small 1.0 56M MAdds 2.5M params.
    ("mobilenet_v3_large", 219e6, 5.4e6, "Howard et al. 2019, Table 3"),
    ("mobilenet_v3_small", 56e6, 2.5e6, "Howard et al. 2019, Table 4"),
    # timm model card efficientnet_es.ra_in1k (EfficientNet-EdgeTPU-S, 224): 1.8 GMACs, 5.4M params;
    # efficientnet_em.ra2_in1k (240): 3.0 GMACs, 6.9M; efficientnet_el.ra_in1k (300): 8.0 GMACs, 10.6M.
    ("efficientnet_edgetpu_s", 1.8e9, 5.4e6, "timm model card efficientnet_es"),
    ("efficientnet_edgetpu_m", 3.0e9, 6.9e6, "timm model card efficientnet_em"),
    ("efficientnet_edgetpu_l", 8.0e9, 10.6e6, "timm model card efficientnet_el"),
]


@pytest.mark.parametrize("name, macs, params, source", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_zoo_matches_published_macs_and_params_within_2_percent(name, macs, params, source):
    net = zoo.get(name)
    assert net.macs == pytest.approx(macs, rel=0.02), f"MACs vs {source}"
    assert net.params == pytest.approx(params, rel=0.02), f"params vs {source}"


def test_zoo_has_at_least_12_models_of_every_kind():
    kinds = {zoo.get(n).kind for n in zoo.names()}
    assert len(zoo.names()) >= 12
    assert kinds == {"cnn", "lstm", "transducer", "hybrid"}


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_layers_check_and_chain(name):
    net = zoo.get(name)
    shapes = {"input": net.input_shape} | dict(net.extra_inputs)
    for layer in net.layers:
        assert layer.check() is layer
        # Every input is read with its producer's shape, or as a reshape of the same element count.
        srcs = [layer.in_shape, *layer.extra_in_shapes]
        for src, shape in zip(layer.inputs, srcs):
            assert math.prod(shapes[src]) == math.prod(shape), (layer.name, src)
        shapes[layer.name] = layer.out_shape
    assert net.outputs


def test_rnnt_has_the_published_encoder_and_prediction_network():
    # He et al. 2019: 8 encoder + 2 prediction LSTM layers of 2048 cells with a 640 projection.
    net = zoo.get("rnnt")
    lstms = [l for l in net.layers if l.op is Op.LSTM]
    assert len(lstms) == 10
    assert all(l.hidden == 2048 and l.projection == 640 for l in lstms)
    # Time reduction: the layer after it reads two stacked frames in one step.
    assert net["enc_lstm1"].out_shape == (1, 2, 640) and net["enc_lstm2"].in_shape == (1, 1, 1280)
    # Each such layer: 4 * 2048 * (in + 640) + 4 * 2048 biases + 2048 * 640 projection.
    assert net["enc_lstm3"].params == 4 * 2048 * (640 + 640) + 4 * 2048 + 2048 * 640


def test_unknown_model_is_a_user_error_naming_the_allowed_models():
    with pytest.raises(UserError, match="mobilenet_v2.*resnet50"):
        zoo.get("alexnet")


def test_builder_tracks_same_and_valid_padding():
    b = NetworkBuilder("t", (1, 15, 15, 8))
    same = b.conv(b.input, 4, 3, stride=2)          # TF SAME: ceil(15 / 2) = 8
    valid = b.conv(b.input, 4, 3, stride=2, padding="valid", name="v")   # (15 - 3) // 2 + 1 = 7
    dw = b.depthwise(same, 5, multiplier=2)
    assert same.shape == (1, 8, 8, 4) and valid.shape == (1, 7, 7, 4) and dw.shape == (1, 8, 8, 8)
    net = b.build()
    assert net["conv0"].padding == (1, 1, 1, 1)
    assert net["dw0"].macs == 8 * 8 * 8 * 25


def test_builder_rejects_impossible_layers():
    b = NetworkBuilder("t", (1, 4, 4, 8))
    with pytest.raises(LayerError):
        b.conv(b.input, 4, 7, padding="valid")
    with pytest.raises(LayerError):
        b.add(b.input, b.conv(b.input, 4, 1))
    with pytest.raises(LayerError):
        b.lstm(b.input, 16)
