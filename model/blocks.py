"""The EfficientNet-EdgeTPU question: a depthwise inverted bottleneck or a fused one?

EfficientNet-EdgeTPU (Gupta & Akin 2020) replaced the depthwise inverted bottlenecks (1x1
expansion, kxk depthwise, 1x1 projection) of its early stages by fused ones (a full kxk
convolution, then the 1x1 projection), because the Edge TPU ran them faster despite their
extra MACs. :func:`compare_blocks` asks the same of any system, stage by stage, at the block
shapes of EfficientNet-EdgeTPU-S (read from the zoo's network, so they are its shapes).
"""

from dataclasses import dataclass

from mensa.core.builder import NetworkBuilder
from mensa.core.ir import Activation
from mensa.model.schedule import schedule
from mensa.model.zoo import get
from mensa.model.zoo._blocks import fused_inverted_bottleneck, inverted_bottleneck
from mensa.model.zoo.edgetpu import _EFFNET_EDGETPU

__all__ = ["BlockShape", "effnet_s_blocks", "block_network", "compare_blocks", "stage_totals"]


@dataclass(frozen=True)
class BlockShape:
    """One block of a stage: its input (N, H, W, C), expanded channels, kernel, stride, output channels,
    and how many blocks of this shape the stage has."""
    stage: int
    in_shape: tuple
    expanded: int
    kernel: int
    stride: int
    out_channels: int
    repeats: int
    fused_in_model: bool


def effnet_s_blocks():
    """The distinct block shapes of EfficientNet-EdgeTPU-S: per stage its first block and (when the
    stage has more) the shape its other blocks repeat. Stage 0 is left out: its expansion is sized
    from a nominal 24-channel input, a shape neither block has."""
    net = get("efficientnet_edgetpu_s")
    out = []
    for stage, (fused, repeats, k, s, e, c) in enumerate(_EFFNET_EDGETPU):
        if stage == 0:
            continue
        for i, count in ((0, 1), (1, repeats - 1)):
            if count <= 0:
                continue
            prefix = f"b{stage}_{i}"
            first = net[f"{prefix}_fused" if fused else f"{prefix}_expand"]
            out.append(BlockShape(stage, first.in_shape, first.in_shape[-1] * e, k, s if i == 0 else 1,
                                  net[f"{prefix}_project"].out_channels, count, fused))
    return out


def block_network(shape, fused):
    """A network of the one block, fused or depthwise (ReLU, as EfficientNet-EdgeTPU)."""
    kind = "fused" if fused else "ibn"
    b = NetworkBuilder(f"effnet_s_stage{shape.stage}_{kind}_{shape.stride}", shape.in_shape)
    if fused:
        fused_inverted_bottleneck(b, b.input, out_channels=shape.out_channels, expanded=shape.expanded,
                                  kernel=shape.kernel, stride=shape.stride, prefix="block")
    else:
        inverted_bottleneck(b, b.input, out_channels=shape.out_channels, expanded=shape.expanded,
                            kernel=shape.kernel, stride=shape.stride, activation=Activation.RELU, prefix="block")
    return b.build()


def compare_blocks(systems):
    """Latency (ms) and energy (uJ) of each block shape, depthwise and fused, on each system.

    Returns one dict per (shape, system): the shape's fields, the system's name, MACs of both
    variants, and ``ibn_ms``, ``fused_ms``, ``ibn_uj``, ``fused_uj``; ``stage_*`` multiply by the repeats.
    """
    rows = []
    for shape in effnet_s_blocks():
        nets = {v: block_network(shape, v == "fused") for v in ("ibn", "fused")}
        for system in systems:
            row = {"stage": shape.stage, "in_shape": list(shape.in_shape), "expanded": shape.expanded,
                   "kernel": shape.kernel, "stride": shape.stride, "out_channels": shape.out_channels,
                   "repeats": shape.repeats, "fused_in_model": shape.fused_in_model, "system": system.name}
            for v, net in nets.items():
                s = schedule(net, system)
                row[f"{v}_macs"] = float(net.macs)
                row[f"{v}_ms"] = s.latency_s * 1e3
                row[f"{v}_uj"] = s.energy_pj * 1e-6
            row["faster"] = "fused" if row["fused_ms"] < row["ibn_ms"] else "ibn"
            rows.append(row)
    return rows


def stage_totals(rows):
    """Per (stage, system): the stage's latency and energy with every block depthwise or every block fused."""
    out = {}
    for r in rows:
        key = (r["stage"], r["system"])
        t = out.setdefault(key, {"stage": r["stage"], "system": r["system"], "ibn_ms": 0.0, "fused_ms": 0.0,
                                 "ibn_uj": 0.0, "fused_uj": 0.0, "fused_in_model": r["fused_in_model"]})
        for f in ("ibn_ms", "fused_ms", "ibn_uj", "fused_uj"):
            t[f] += r[f] * r["repeats"]
    return list(out.values())

