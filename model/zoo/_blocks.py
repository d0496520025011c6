"""Blocks shared by the zoo's convolutional networks."""

from mensa.core.ir import Activation

__all__ = ["make_divisible", "inverted_bottleneck", "fused_inverted_bottleneck", "squeeze_excite"]


def make_divisible(value, divisor=8, min_value=None):
    """Round a channel count to a multiple of ``divisor``, never below 90% of it (the MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def squeeze_excite(b, x, reduced, *, prefix, inner=Activation.RELU, gate=Activation.HARD_SIGMOID):
    """Squeeze-and-excite: global pool, two 1x1 convolutions, then scale ``x`` channel by channel."""
    s = b.global_avgpool(x, name=f"{prefix}_se_pool")
    s = b.pointwise(s, reduced, activation=inner, name=f"{prefix}_se_reduce")
    s = b.pointwise(s, x.shape[-1], activation=gate, name=f"{prefix}_se_expand")
    return b.mul(x, s, name=f"{prefix}_se_scale")


def inverted_bottleneck(b, x, *, out_channels, expanded, kernel=3, stride=1, activation=Activation.RELU6,
                        se_channels=0, se_inner=Activation.RELU, se_gate=Activation.HARD_SIGMOID, prefix, taps=None):
    """MobileNetV2 inverted residual: 1x1 expansion (skipped when ``expanded`` equals the input
    channels), kxk depthwise, optional squeeze-excite, linear 1x1 projection; a residual add when
    the stride is 1 and the channel count is kept. ``taps``, a dict, receives the expansion's
    output under ``prefix`` (SSD reads a feature map there)."""
    inp = x
    if expanded != x.shape[-1]:
        x = b.pointwise(x, expanded, activation=activation, name=f"{prefix}_expand")
        if taps is not None:
            taps[prefix] = x
    x = b.depthwise(x, kernel, stride=stride, activation=activation, name=f"{prefix}_dw")
    if se_channels:
        x = squeeze_excite(b, x, se_channels, prefix=prefix, inner=se_inner, gate=se_gate)
    x = b.pointwise(x, out_channels, name=f"{prefix}_project")
    if stride == 1 and inp.shape[-1] == out_channels:
        x = b.add(x, inp, name=f"{prefix}_add")
    return x


def fused_inverted_bottleneck(b, x, *, out_channels, expanded, kernel=3, stride=1,
                              activation=Activation.RELU, prefix):
    """Fused inverted bottleneck (EfficientNet-EdgeTPU, MobileNetEdgeTPU): a full kxk convolution in
    place of the 1x1 expansion and the depthwise, then the linear 1x1 projection; residual as above."""
    inp = x
    x = b.conv(x, expanded, kernel, stride=stride, activation=activation, name=f"{prefix}_fused")
    x = b.pointwise(x, out_channels, name=f"{prefix}_project")
    if stride == 1 and inp.shape[-1] == out_channels:
        x = b.add(x, inp, name=f"{prefix}_add")
    return x
