"""Keyword spotting: the depthwise-separable CNN (DS-CNN) of Zhang et al., "Hello Edge: Keyword
Spotting on Microcontrollers" (2017), small size, as used by MLPerf Tiny.

Input: 49 frames x 10 MFCC of one second of audio, one channel; output: 12 classes.
"""

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation

__all__ = ["ds_cnn"]

RELU = Activation.RELU


def ds_cnn(*, channels=64, blocks=4, classes=12):
    """DS-CNN: a 10x4 stride-2 convolution, ``blocks`` depthwise-separable blocks, average pool, FC."""
    b = NetworkBuilder("ds_cnn", (1, 49, 10, 1), kind="cnn")
    x = b.conv(b.input, channels, (10, 4), stride=2, activation=RELU, name="conv1")
    for i in range(blocks):
        x = b.depthwise(x, 3, activation=RELU, name=f"b{i}_dw")
        x = b.pointwise(x, channels, activation=RELU, name=f"b{i}_pw")
    x = b.global_avgpool(x, name="pool")
    b.fc(b.flatten(x), classes, name="fc")
    return b.build()
