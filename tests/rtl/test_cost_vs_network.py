"""The cost model predicts every layer's cycles on the RTL within 5% when DRAM bandwidth is below the bus's.

Networks run whole through the Verilator harness (:func:`mensa.gen.network_run.run_on_rtl`): the
network compiler's DRAM image and command list, the C runtime, and a DRAM that moves the system's
bandwidth in bytes per cycle, shared by reads and writes. Each layer's measured cycles (the
accelerator's counter) are compared with the cost model's (the schedule's). pascal-fpga's DRAM
gives 2 B/cycle to a 64-bit bus: the GEMM engine's final K tiles wait for their output writes,
the windows' reads share the bus with them and stand behind quantisation records, and the vector
unit streams at the DRAM's rate. On mensa-g-fpga the same accelerator reaches the DRAM through the
system top's arbiter, whose read buffer keeps the DRAM going while a record waits.
"""

import dataclasses

import numpy as np
import pytest

from mensa.core.builder import NetworkBuilder
from mensa.core.config import load
from mensa.core.ir import Activation
from mensa.gen.network_run import compile_for_rtl, quantised, run_on_rtl
from tests.rtl.test_network import small  # noqa: F401  (a fixture: the small system's TOML)
from mensa.model import zoo
from mensa.model.schedule import schedule

LAYER_BOUND = 0.05
TOTAL_BOUND = 0.03


def _system(bandwidth_gbps=None, latency=None):
    s = load("pascal-fpga")
    dram = dataclasses.replace(s.dram, **({"bandwidth_gbps": bandwidth_gbps} if bandwidth_gbps else {}),
                               **({"latency_cycles": latency} if latency else {}))
    return dataclasses.replace(s, dram=dram)


def _run(net, system, seed=1):
    qnet, params = quantised(net, seed)
    x = {"input": np.random.default_rng([seed, 1]).integers(-128, 128, size=qnet.input_shape, dtype=np.int8)}
    sched = schedule(qnet, system)
    return run_on_rtl(compile_for_rtl(qnet, params, system, sched), system, sched, [x])


def _check(result, label):
    rows = [f"{label} {r.layer} ({r.engine}): RTL {r.cycles}, model {r.predicted:.0f} ({100 * r.error:+.2f}%)"
            for r in result.layers]
    print("\n".join(rows))
    assert result.bit_exact
    bad = [row for row, r in zip(rows, result.layers) if abs(r.error) > LAYER_BOUND]
    assert not bad, f"{len(bad)} of {len(rows)} layers beyond {LAYER_BOUND:.0%}: " + "; ".join(bad)
    total = result.to_dict()["error"]
    assert abs(total) <= TOTAL_BOUND, f"{label}: network total {100 * total:+.2f}%"


def mobile_block_chain():
    """MobileNetV2's kinds of GEMM and vector layers at a small size: a tap-packed stem, expansions
    (few K tiles, many N tiles, M tiles of the accumulator), projections (many K tiles, M tiles of
    the window; more K tiles than the walk queues; weights kept and read again), depthwise convs,
    a global pool and an FC layer."""
    relu6 = Activation.RELU6
    b = NetworkBuilder("mobile_block_chain", (1, 96, 96, 3))
    x = b.conv(b.input, 16, 3, stride=2, activation=relu6, name="stem")
    x = b.pointwise(x, 96, activation=relu6, name="expand_96")
    x = b.depthwise(x, 3, stride=2, activation=relu6, name="dw_96")
    x = b.pointwise(x, 24, name="project_24")
    x = b.pointwise(x, 192, activation=relu6, name="expand_192")
    x = b.pointwise(x, 32, name="project_32")
    x = b.pointwise(x, 384, activation=relu6, name="expand_384")
    x = b.pointwise(x, 64, name="project_64")
    x = b.global_avgpool(x, name="pool")
    b.fc(b.flatten(x), 100, name="fc")
    return b.build()


def test_ds_cnn_within_5_percent_per_layer_on_a_small_system_at_its_dram_bandwidth(small):
    # a 4x4 array and a 4-lane vector unit at 0.4 GB/s and 100 MHz: 4 B a cycle on a 64-bit bus (the
    # harness shared with the other default network tests)
    _check(_run(zoo.get("ds_cnn"), load(small)), "ds_cnn on a small system")


@pytest.mark.slow
@pytest.mark.parametrize("system", ["pascal-fpga", "mensa-g-fpga"])
@pytest.mark.parametrize("model", ["ds_cnn", "mobilenet_v2"])
def test_zoo_networks_within_5_percent_per_layer_on_the_fpga_systems(model, system):
    # 0.4 GB/s, 2 B a cycle on a 64-bit bus; on mensa-g-fpga pascal's DMA reaches the DRAM through the
    # system top's arbiter, whose read buffer lets the DRAM go on while a quantisation record waits
    result = _run(zoo.get(model), load(system))
    print(f"{model} on {system}: {result.total_cycles:,} cycles in {result.wall_seconds:.1f} s")
    _check(result, f"{model} on {system}")


@pytest.mark.slow
@pytest.mark.parametrize("bandwidth_gbps", [0.4, 0.8])
def test_mobilenet_layers_within_5_percent_per_layer_below_the_bus_width(bandwidth_gbps):
    system = _system(bandwidth_gbps)
    label = f"{bandwidth_gbps * 1e3 / system.accelerator[0].clock_mhz:g} B/cycle"
    _check(_run(mobile_block_chain(), system), label)


def dram_paced_chain():
    """Shapes where pascal-fpga's DRAM (2 B a cycle) sets the pace in ways the model counts apart: a
    projection whose weights do not stay in the weight buffer, with K tiles as long as their weights
    take to cross (its next window waits behind every weight read, and each K tile behind its bank),
    and a squeeze-excite pair of one pixel (a few hundred cycles: the DRAM's credit and the last write)."""
    b = NetworkBuilder("dram_paced_chain", (1, 14, 14, 480))
    x = b.pointwise(b.input, 112, name="project_480")
    s = b.global_avgpool(x, name="pool")
    s = b.pointwise(s, 16, activation=Activation.RELU, name="se_reduce")
    b.pointwise(s, 112, name="se_expand")
    return b.build()


def kept_weights_projection():
    """A projection whose weights stay in the weight buffer, with as many K tiles as the walk can queue
    (MobileNet-EdgeTPU's 56x56 ones): each N tile's quantisation record, asked that far ahead, blocks the
    next window's reads until the weight feed takes it."""
    b = NetworkBuilder("kept_weights_projection", (1, 56, 56, 128))
    b.pointwise(b.input, 32, name="project_128")
    return b.build()


def weights_read_again():
    """A layer whose weights (64 KiB) are read again every M tile, its M tiles of ResNet-50's 28x28 ones:
    on a DRAM slower than the bus a K tile's weights wait for their bank, and behind mensa-g-fpga's
    arbiter they wait in its read buffer while the DRAM goes on reading."""
    b = NetworkBuilder("weights_read_again", (1, 28, 28, 512))
    b.pointwise(b.input, 128, name="conv_512")
    return b.build()


def weights_wait_for_banks():
    """A layer whose weights (128 KiB) are read again every M tile, with K tiles of fewer activations than
    their weights take to cross pascal-fpga's DRAM: with no arbiter, the read channel stalls while a K
    tile's weights wait for their bank, and the DRAM idles beyond its credit."""
    b = NetworkBuilder("weights_wait_for_banks", (1, 14, 14, 512))
    b.pointwise(b.input, 256, name="conv_512")
    return b.build()


@pytest.mark.slow
@pytest.mark.parametrize("network, system", [(dram_paced_chain, "pascal-fpga"),
                                             (kept_weights_projection, "pascal-fpga"),
                                             (weights_wait_for_banks, "pascal-fpga"),
                                             (weights_read_again, "mensa-g-fpga")])
def test_dram_paced_layers_within_5_percent_per_layer(network, system):
    _check(_run(network(), load(system)), f"{network.__name__} on {system}")


@pytest.mark.slow
def test_seq2seq_lstms_within_5_percent_per_layer_on_mensa_g_fpga():
    # pavlov's LSTMs and jacquard's vocabulary FC, their requantisers a lane a cycle (requant_passes = lanes):
    # the gather's beats, the cells' tail and the last output writes at the requantiser's pace
    from mensa.model.zoo.sequence import seq2seq
    system = load("mensa-g-fpga")
    qnet, params = quantised(seq2seq(source_length=6, embedding=96, units=128, vocabulary=200), 5)
    rng = np.random.default_rng(5)
    x = {n: rng.integers(-128, 128, size=s, dtype=np.int8) for n, s in (("input", qnet.input_shape),
                                                                        *qnet.extra_inputs)}
    sched = schedule(qnet, system)
    result = run_on_rtl(compile_for_rtl(qnet, params, system, sched), system, sched, [x])
    assert {r.accelerator for r in result.layers} == {"pavlov", "jacquard"}
    _check(result, "seq2seq on mensa-g-fpga")
