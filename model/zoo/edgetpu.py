"""Networks searched for the Edge TPU: EfficientNet-EdgeTPU S/M/L (Gupta & Akin, 2020) and
MobileNetEdgeTPU (the ``V3_EDGETPU`` definition of TensorFlow's slim MobileNet code).

Both replace the depthwise inverted bottlenecks of the early stages by fused inverted bottlenecks
(a full kxk convolution in place of the 1x1 expansion and the depthwise) and use ReLU without
squeeze-excite.
"""

import math

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation
from mensa.model.zoo._blocks import fused_inverted_bottleneck, inverted_bottleneck, make_divisible

__all__ = ["efficientnet_edgetpu_s", "efficientnet_edgetpu_m", "efficientnet_edgetpu_l", "mobilenet_edgetpu"]

RELU = Activation.RELU

# (fused, repeats, kernel, first stride, expansion, output channels); the first stage computes its
# expansion from 24 input channels although the stem gives 32 (the reference's ``i24`` block
# argument), and it has no residual. EfficientNet-EdgeTPU builder, block arguments of the S model.
_EFFNET_EDGETPU = ((True, 1, 3, 1, 4, 24), (True, 2, 3, 2, 8, 32), (True, 4, 3, 2, 8, 48),
                   (False, 5, 5, 2, 8, 96), (False, 4, 5, 1, 8, 144), (False, 2, 5, 2, 8, 192))


def _efficientnet_edgetpu(variant, width, depth, resolution, classes):
    b = NetworkBuilder(f"efficientnet_edgetpu_{variant}", (1, resolution, resolution, 3), kind="cnn")
    x = b.conv(b.input, make_divisible(32 * width), 3, stride=2, activation=RELU, name="stem")
    for stage, (fused, repeats, k, s, e, c) in enumerate(_EFFNET_EDGETPU):
        out = make_divisible(c * width)
        for i in range(math.ceil(repeats * depth)):
            prefix = f"b{stage}_{i}"
            stride = s if i == 0 else 1
            if stage == 0:
                # The first stage's expansion is sized from its nominal 24-channel input; it never adds.
                x = b.conv(x, make_divisible(24 * width) * e, k, stride=stride, activation=RELU,
                           name=f"{prefix}_fused")
                x = b.pointwise(x, out, name=f"{prefix}_project")
            elif fused:
                x = fused_inverted_bottleneck(b, x, out_channels=out, expanded=x.shape[-1] * e, kernel=k,
                                              stride=stride, prefix=prefix)
            else:
                x = inverted_bottleneck(b, x, out_channels=out, expanded=x.shape[-1] * e, kernel=k,
                                        stride=stride, activation=RELU, prefix=prefix)
    x = b.pointwise(x, make_divisible(1280 * width), activation=RELU, name="head")
    x = b.global_avgpool(x, name="pool")
    b.fc(b.flatten(x), classes, name="logits")
    return b.build()


def efficientnet_edgetpu_s(*, classes=1000):
    """EfficientNet-EdgeTPU-S at 224x224."""
    return _efficientnet_edgetpu("s", 1.0, 1.0, 224, classes)


def efficientnet_edgetpu_m(*, classes=1000):
    """EfficientNet-EdgeTPU-M: depth x1.1 at 240x240."""
    return _efficientnet_edgetpu("m", 1.0, 1.1, 240, classes)


def efficientnet_edgetpu_l(*, classes=1000):
    """EfficientNet-EdgeTPU-L: width x1.2, depth x1.4 at 300x300."""
    return _efficientnet_edgetpu("l", 1.2, 1.4, 300, classes)


# (fused, kernel, stride, expansion factor, output channels, residual): slim ``V3_EDGETPU``.
_MOBILENET_EDGETPU = (
    (True, 3, 1, 1, 16, True),
    (True, 3, 2, 8, 32, True), (True, 3, 1, 4, 32, True), (True, 3, 1, 4, 32, True), (True, 3, 1, 4, 32, True),
    (True, 3, 2, 8, 48, True), (True, 3, 1, 4, 48, True), (True, 3, 1, 4, 48, True), (True, 3, 1, 4, 48, True),
    (False, 3, 2, 8, 96, True), (False, 3, 1, 4, 96, True), (False, 3, 1, 4, 96, True), (False, 3, 1, 4, 96, True),
    (False, 3, 1, 8, 96, False), (False, 3, 1, 4, 96, True), (False, 3, 1, 4, 96, True), (False, 3, 1, 4, 96, True),
    (False, 5, 2, 8, 160, True), (False, 5, 1, 4, 160, True), (False, 5, 1, 4, 160, True),
    (False, 5, 1, 4, 160, True),
    (False, 3, 1, 8, 192, True))


def mobilenet_edgetpu(resolution=224, *, classes=1000):
    """MobileNetEdgeTPU (1.0, 224 by default)."""
    b = NetworkBuilder("mobilenet_edgetpu", (1, resolution, resolution, 3), kind="cnn")
    x = b.conv(b.input, 32, 3, stride=2, activation=RELU, name="stem")
    for i, (fused, k, s, e, c, residual) in enumerate(_MOBILENET_EDGETPU):
        prefix = f"b{i}"
        inp = x
        expanded = x.shape[-1] * e
        if fused:
            # Expansion factor 1 leaves only the projection (slim expands only to a wider tensor).
            if expanded > x.shape[-1]:
                x = b.conv(x, expanded, k, stride=s, activation=RELU, name=f"{prefix}_fused")
        else:
            x = b.pointwise(x, expanded, activation=RELU, name=f"{prefix}_expand")
            x = b.depthwise(x, k, stride=s, activation=RELU, name=f"{prefix}_dw")
        x = b.pointwise(x, c, name=f"{prefix}_project")
        if residual and s == 1 and inp.shape[-1] == c:
            x = b.add(x, inp, name=f"{prefix}_add")
    x = b.pointwise(x, 1280, activation=RELU, name="head")
    x = b.global_avgpool(x, name="pool")
    b.fc(b.flatten(x), classes, name="logits")
    return b.build()
