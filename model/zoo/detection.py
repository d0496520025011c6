"""SSD-MobileNetV2 object detector (Liu et al., ECCV 2016; Sandler et al., 2018), after the
TensorFlow Object Detection API's ``ssd_mobilenet_v2`` at 300x300 on COCO.

Feature maps: the expansion output of the first 160-channel block (19x19x576), the 1x1 head
(10x10x1280), then four extra stages (1x1 reduce, 3x3 stride-2 convolution) down to 1x1. Every map
gets a 3x3 box regressor (4 values per anchor) and a 3x3 classifier (``classes`` scores per
anchor, background included); 3 anchors on the first map, 6 on the others. Non-maximum suppression
runs on the host and is not a layer.
"""

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation
from mensa.model.zoo.mobilenet import mobilenet_v2_features

__all__ = ["ssd_mobilenet_v2"]

RELU6 = Activation.RELU6
_EXTRA = ((256, 512), (128, 256), (128, 256), (64, 128))   # (1x1 reduce, 3x3 stride-2 output)


def ssd_mobilenet_v2(resolution=300, *, classes=91):
    """SSD with a MobileNetV2 backbone and six detection heads."""
    b = NetworkBuilder("ssd_mobilenet_v2", (1, resolution, resolution, 3), kind="cnn")
    taps = {}
    x = mobilenet_v2_features(b, b.input, taps=taps)
    maps = [taps["b5_0"], x]
    for i, (reduce, out) in enumerate(_EXTRA):
        x = b.pointwise(x, reduce, activation=RELU6, name=f"extra{i}_reduce")
        x = b.conv(x, out, 3, stride=2, activation=RELU6, name=f"extra{i}_conv")
        maps.append(x)
    for i, fmap in enumerate(maps):
        anchors = 3 if i == 0 else 6
        b.conv(fmap, anchors * 4, 3, name=f"head{i}_box")
        b.conv(fmap, anchors * classes, 3, name=f"head{i}_class")
    return b.build()
