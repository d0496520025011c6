"""MobileNetV2 (Sandler et al., CVPR 2018) and MobileNetV3 small / large (Howard et al., ICCV 2019)."""

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation
from mensa.model.zoo._blocks import inverted_bottleneck, make_divisible

__all__ = ["mobilenet_v2", "mobilenet_v2_features", "mobilenet_v3_large", "mobilenet_v3_small"]

RELU, RELU6, HSWISH = Activation.RELU, Activation.RELU6, Activation.HARD_SWISH

# (expansion t, output channels c, repeats n, first stride s): Sandler et al., Table 2.
_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _check(resolution, width):
    if not isinstance(resolution, int) or resolution < 32:
        raise ValueError(f"resolution must be an int of at least 32, not {resolution!r}")
    if not width > 0:
        raise ValueError(f"width must be positive, not {width!r}")


def mobilenet_v2_features(b, x, *, width=1.0, taps=None):
    """The MobileNetV2 feature extractor up to its 1x1 head convolution (1280 channels); returns
    the head's output. ``taps``, a dict, receives the output of each expansion layer by block
    prefix (SSD reads its first feature map from one)."""
    x = b.conv(x, make_divisible(32 * width), 3, stride=2, activation=RELU6, name="stem")
    for stage, (t, c, n, s) in enumerate(_V2_BLOCKS):
        for i in range(n):
            x = inverted_bottleneck(b, x, out_channels=make_divisible(c * width), expanded=x.shape[-1] * t,
                                    stride=s if i == 0 else 1, prefix=f"b{stage}_{i}", taps=taps)
    return b.pointwise(x, make_divisible(1280 * max(width, 1.0)), activation=RELU6, name="head")


def mobilenet_v2(resolution=224, width=1.0, *, classes=1000):
    """MobileNetV2 with the width multiplier ``width``; ReLU6, linear bottlenecks, batch norm folded
    into the convolution biases."""
    _check(resolution, width)
    b = NetworkBuilder(f"mobilenet_v2_{width:g}_{resolution}", (1, resolution, resolution, 3), kind="cnn")
    x = mobilenet_v2_features(b, b.input, width=width)
    x = b.global_avgpool(x, name="pool")
    b.fc(b.flatten(x), classes, name="logits")
    return b.build()


# (kernel, expanded, out, squeeze-excite, activation, stride): Howard et al., Tables 1 and 2.
_V3_LARGE = ((3, 16, 16, False, RELU, 1), (3, 64, 24, False, RELU, 2), (3, 72, 24, False, RELU, 1),
             (5, 72, 40, True, RELU, 2), (5, 120, 40, True, RELU, 1), (5, 120, 40, True, RELU, 1),
             (3, 240, 80, False, HSWISH, 2), (3, 200, 80, False, HSWISH, 1), (3, 184, 80, False, HSWISH, 1),
             (3, 184, 80, False, HSWISH, 1), (3, 480, 112, True, HSWISH, 1), (3, 672, 112, True, HSWISH, 1),
             (5, 672, 160, True, HSWISH, 2), (5, 960, 160, True, HSWISH, 1), (5, 960, 160, True, HSWISH, 1))
_V3_SMALL = ((3, 16, 16, True, RELU, 2), (3, 72, 24, False, RELU, 2), (3, 88, 24, False, RELU, 1),
             (5, 96, 40, True, HSWISH, 2), (5, 240, 40, True, HSWISH, 1), (5, 240, 40, True, HSWISH, 1),
             (5, 120, 48, True, HSWISH, 1), (5, 144, 48, True, HSWISH, 1), (5, 288, 96, True, HSWISH, 2),
             (5, 576, 96, True, HSWISH, 1), (5, 576, 96, True, HSWISH, 1))


def _mobilenet_v3(name, blocks, last_conv, head, resolution, width, classes):
    _check(resolution, width)
    b = NetworkBuilder(f"{name}_{width:g}_{resolution}", (1, resolution, resolution, 3), kind="cnn")
    x = b.conv(b.input, make_divisible(16 * width), 3, stride=2, activation=HSWISH, name="stem")
    for i, (k, exp, out, se, act, s) in enumerate(blocks):
        expanded = make_divisible(exp * width)
        x = inverted_bottleneck(b, x, out_channels=make_divisible(out * width), expanded=expanded, kernel=k,
                                stride=s, activation=act, se_channels=make_divisible(expanded // 4) if se else 0,
                                prefix=f"b{i}")
    x = b.pointwise(x, make_divisible(last_conv * width), activation=HSWISH, name="last_conv")
    x = b.global_avgpool(x, name="pool")
    # The head is a 1x1 convolution without batch norm on the pooled features (Howard et al., Fig. 5).
    x = b.fc(b.flatten(x), head, activation=HSWISH, name="head")
    b.fc(x, classes, name="logits")
    return b.build()


def mobilenet_v3_large(resolution=224, width=1.0, *, classes=1000):
    """MobileNetV3-Large: hard-swish, squeeze-excite with hard-sigmoid gates."""
    return _mobilenet_v3("mobilenet_v3_large", _V3_LARGE, 960, 1280, resolution, width, classes)


def mobilenet_v3_small(resolution=224, width=1.0, *, classes=1000):
    """MobileNetV3-Small."""
    return _mobilenet_v3("mobilenet_v3_small", _V3_SMALL, 576, 1024, resolution, width, classes)
