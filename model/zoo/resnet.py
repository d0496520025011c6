"""ResNet-50 (He et al., CVPR 2016), v1.5 as in torchvision and MLPerf: the stride of a
downsampling bottleneck sits on its 3x3 convolution."""

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation

__all__ = ["resnet50"]

RELU = Activation.RELU
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))   # (bottleneck width, blocks, first stride)


def resnet50(resolution=224, *, classes=1000):
    """ResNet-50 with batch norm folded into the convolution biases."""
    b = NetworkBuilder("resnet50", (1, resolution, resolution, 3), kind="cnn")
    x = b.conv(b.input, 64, 7, stride=2, padding=3, activation=RELU, name="conv1")
    x = b.maxpool(x, 3, stride=2, padding=1, name="pool1")
    for stage, (width, blocks, first_stride) in enumerate(_STAGES):
        for i in range(blocks):
            prefix = f"s{stage}_{i}"
            stride = first_stride if i == 0 else 1
            shortcut = x
            if i == 0:
                shortcut = b.conv(x, width * 4, 1, stride=stride, name=f"{prefix}_downsample")
            y = b.pointwise(x, width, activation=RELU, name=f"{prefix}_conv1")
            y = b.conv(y, width, 3, stride=stride, padding=1, activation=RELU, name=f"{prefix}_conv2")
            y = b.pointwise(y, width * 4, name=f"{prefix}_conv3")
            x = b.add(y, shortcut, activation=RELU, name=f"{prefix}_add")
    x = b.global_avgpool(x, name="pool")
    b.fc(b.flatten(x), classes, name="fc")
    return b.build()
