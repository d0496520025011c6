"""The cost model predicts the RTL's cycles within 5% on every validated layer (cocotb, Verilator).

Each accelerator's compute core runs the layers exactly as the model lowers them (im2col GEMMs,
depthwise channel by channel, M tiles of the accumulator buffer; FC and pointwise-shaped batches
on the near-memory unit), fed at full rate; the model's ``core_cycles`` (no DMA or DRAM term) is
compared with the cycles measured from the first input beat to the last output beat. One build
and one simulation per accelerator. The default run validates 48 layers over three systolic
arrays (WS 4x4, WS 8x8 with M tiling, OS 4x8) and two near-memory units; the slow sweep runs
every conv, depthwise and FC layer of MobileNetV2 (32x32, 100 classes) and bigger random layers.
"""

import pytest

from mensa.gen.validate import CONFIGS, suite, summary, validate
from mensa.core.ir import Layer, Op

BOUND = 0.05
SIM = "verilator"     # long runs: Icarus is several times slower


def _check(name, large):
    acc, dram = CONFIGS[name]
    layers = suite(name, large=large)
    records = validate(layers, acc, dram=dram, sim=SIM)
    assert len(records) == len(layers)
    bad = [f"{r.layer} {r.workload}: model {r.model:.0f}, RTL {r.measured} ({100 * r.error:+.1f}%)"
           for r in records if abs(r.error) > BOUND]
    assert not bad, f"{name}: {len(bad)} of {len(records)} layers beyond {BOUND:.0%}: " + "; ".join(bad)
    return records


def test_the_validation_covers_30_layers_3_configs_2_kinds():
    kinds = {acc.kind for acc, _ in CONFIGS.values()}
    assert len(kinds) == 2 and len(CONFIGS) >= 3
    assert sum(len(suite(name)) for name in CONFIGS) >= 30
    ops = {l.op.value for name in CONFIGS for l in suite(name)}
    assert {"conv2d", "depthwise", "fc"} <= ops


@pytest.mark.parametrize("name", CONFIGS)
def test_model_within_5_percent_of_rtl(name):
    records = _check(name, large=False)
    s = summary(records)
    print(f"{name}: {s}")


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_model_within_5_percent_of_rtl_sweep(name):
    _check(name, large=True)


def test_layers_lower_to_the_workloads_the_model_assumes():
    from mensa.core.ir import Layer, Op
    from mensa.gen.validate import nearmem_workload, systolic_workload
    ws4, _ = CONFIGS["ws4x4"]
    ws8, _ = CONFIGS["ws8x8"]
    os4, _ = CONFIGS["os4x8"]
    conv = Layer("c", Op.CONV2D, (1, 9, 9, 6), (1, 5, 5, 10), kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1))
    # K tap by tap as the sequencer walks it: 9 taps of 6 channels padded to 8 (two channel tiles)
    assert systolic_workload(conv, ws4) == (25, 72, 10, 1, 25)
    assert systolic_workload(conv, os4)[1] == 54
    dw = Layer("d", Op.DEPTHWISE, (1, 10, 10, 7), (1, 10, 10, 7), kernel=(3, 3), padding=(1, 1, 1, 1), groups=7)
    # Channel by channel; the input streams from DRAM, so the compiler's M tiles: 3 output rows of 10
    # (1 KiB of int32 partial sums for 8 columns would hold 32 pixels)
    assert systolic_workload(dw, ws8) == (100, 9, 1, 7, 30)
    assert systolic_workload(dw, os4) == (100, 9, 1, 7, 100)
    assert nearmem_workload(Layer("f", Op.FC, (3, 40), (3, 17))) == (40, 17, 3)
    with pytest.raises(ValueError, match="runs FC layers"):
        nearmem_workload(conv)
    with pytest.raises(ValueError, match="not a single GEMM"):
        systolic_workload(Layer("a", Op.ADD, (1, 4, 4, 8), (1, 4, 4, 8), extra_in_shapes=((1, 4, 4, 8),)), ws4)


def test_core_cycles_leave_out_the_dram_terms():
    from mensa.model.cost import cycle_errors, evaluate
    from mensa.core.ir import Layer, Op
    acc, dram = CONFIGS["ws8x8"]
    layer = Layer("f", Op.FC, (4, 300), (4, 200))
    c = evaluate([layer], [acc], dram)
    assert c.core_cycles[0, 0] == c.compute[0, 0] + c.load[0, 0] + c.fill[0, 0]
    assert c.cycles[0, 0] == c.core_cycles[0, 0] + c.dma[0, 0] + c.stall[0, 0] > c.core_cycles[0, 0]
    model, err = cycle_errors([(layer, acc, dram, c.core_cycles[0, 0])], core=True)
    assert model[0] == c.core_cycles[0, 0] and err[0] == 0


# -- the whole accelerator: DMA, sequencer, array, requantiser, from AXI DRAM ---------------------

def _check_accelerator(name, latencies, large):
    from mensa.gen.validate import ACCELERATORS, accelerator_suite, validate_accelerator
    acc = ACCELERATORS[name]
    layers = accelerator_suite(name, large=large)
    records = []
    for latency in latencies:
        records += validate_accelerator(layers, acc, latency=latency, sim=SIM)
    assert len(records) == len(layers) * len(latencies)
    bad = [f"{r.accelerator} {r.layer} {r.workload}: model {r.model:.0f}, RTL {r.measured} ({100 * r.error:+.1f}%)"
           for r in records if abs(r.error) > BOUND]
    assert not bad, f"{name}: {len(bad)} of {len(records)} layers beyond {BOUND:.0%}: " + "; ".join(bad)
    print(f"{name}: {summary(records)}")
    return records


def test_the_accelerator_validation_covers_30_layers_3_configs_3_latencies():
    from dataclasses import replace
    from mensa.contract.gemm import GemmGeometry, LayerWalk
    from mensa.model.cost import evaluate
    from mensa.gen.validate import ACCELERATORS, LATENCIES, accelerator_suite
    assert len(ACCELERATORS) >= 3 and len(LATENCIES) >= 3
    assert len({a.memory.data_bits for a in ACCELERATORS.values()}) >= 2
    assert sum(len(accelerator_suite(n, large=True)) for n in ACCELERATORS) >= 30
    kinds = set()
    for name, acc in ACCELERATORS.items():
        g = GemmGeometry.of(acc)
        unbounded = replace(g, act_depth=1 << 30)
        for large in (False, True):
            layers = accelerator_suite(name, large=large)
            assert {l.op.value for l in layers} == {"fc", "conv2d"} and any(l.kernel == (3, 3) for l in layers)
            c = evaluate(layers, [acc])
            # streamed from DRAM by the model as the RTL streams it
            assert (c.dram_act_bytes[:, 0] > 0).all()
            for i, l in enumerate(layers):
                # an FC or pointwise layer is one row of its pixels (mensa.contract.gemm_program lays it out so)
                m = l.macs // (l.in_channels * l.out_channels * l.kernel[0] * l.kernel[1])
                _, ih, iw, k = l.in_shape if l.kernel != (1, 1) else (1, 1, m, l.in_channels)
                _, oh, ow, _ = l.out_shape if l.kernel != (1, 1) else (1, 1, m, 0)
                walk = LayerWalk(k=k, in_h=ih, in_w=iw, out_h=oh, out_w=ow, kernel=l.kernel, stride=l.stride,
                                 pad_top=l.padding[0], pad_left=l.padding[2])
                tile = g.tiling(walk)
                tiles = len(list(walk.m_tiles(*tile)))
                assert c.m_tile[i, 0] == tile[0] * tile[1]
                # weights read once (resident in the weight buffer) in the model exactly where the RTL keeps
                # them (mensa.contract.gemm_program's WEIGHTS_RESIDENT: its padded weight tiles fit)
                taps = l.kernel[0] * l.kernel[1]
                padded = taps * -(-k // g.rows) * -(-l.out_channels // g.cols) * g.rows * g.cols
                resident = padded <= acc.buffers.weight_kib * 1024
                assert tiles == 1 or c.params_fit[i, 0] == resident
                kinds.add("one tile" if tiles == 1 else "weights resident" if resident else "weights streamed")
                kinds.add("whole rows" if tile[1] == ow else "part of a row")
                if unbounded.tiling(walk) != tile:
                    kinds.add("window-bound")
    assert kinds == {"one tile", "weights resident", "weights streamed", "whole rows", "part of a row",
                     "window-bound"}


@pytest.mark.slow
def test_model_within_5_percent_of_the_whole_accelerator():
    """4x4 array on a 64-bit bus at DRAM latencies 1, 20 and 50 (the default suite checks whole networks on
    a small system instead: tests/rtl/test_cost_vs_network.py)."""
    from mensa.gen.validate import LATENCIES
    _check_accelerator("acc4x4d64", LATENCIES, large=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["acc4x4d64", "acc8x8d64", "acc6x4d32"])
def test_model_within_5_percent_of_the_whole_accelerator_sweep(name):
    from mensa.gen.validate import LATENCIES
    _check_accelerator(name, LATENCIES, large=True)


def test_dram_latency_is_exposed_once_when_the_stream_is_bus_bound_and_per_burst_when_not():
    """The read-stream terms: long bursts hide a 20-cycle latency behind 4 reads in flight; a layer of
    one-pixel M tiles is bound by the reads in flight: its input windows are one one-word burst per
    channel tile, its K tiles one weight burst each, every burst holding a slot for the latency (the
    RTL at db09476: 13374 and 33894 cycles at latencies 20 and 60, 20520 apart)."""
    from mensa.core.config import DramConfig
    from mensa.contract.numeric import READS_IN_FLIGHT
    from mensa.model.cost import evaluate
    from mensa.gen.validate import ACCELERATORS
    acc = ACCELERATORS["acc4x4d64"]
    wide, narrow = Layer("w", Op.FC, (64, 64), (64, 64)), Layer("n", Op.FC, (2, 2048), (2, 4))
    at = {lat: evaluate([wide, narrow], [acc], DramConfig(latency_cycles=lat)) for lat in (1, 20, 60)}
    # bus-bound: the first read's latency and the second M tile window's (RTL: 16517 and 16584 cycles)
    assert at[20].cycles[0, 0] - at[1].cycles[0, 0] == 2 * 19
    assert at[1].cycles[0, 0] == pytest.approx(16517, rel=0.01)
    assert at[20].cycles[0, 0] == pytest.approx(16584, rel=0.01)
    assert READS_IN_FLIGHT == 4 and at[20].m_tile[1, 0] == 1 and not at[20].params_fit[1, 0]
    # latency-bound, 40 more cycles per burst over 4 slots: 2 M tiles of 512 K tiles' weights and two
    # windows of 512 channel tiles; the first 4 bursts' latency is the first latency (40 more)
    assert at[60].cycles[1, 0] - at[20].cycles[1, 0] == pytest.approx((2 * 512 + 2 * 512 - 4) * 40 / 4 + 40)
    assert at[60].cycles[1, 0] - at[20].cycles[1, 0] == pytest.approx(33894 - 13374, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, (acc, _) in CONFIGS.items() if acc.kind.value == "nearmem"])
def test_nearmem_model_within_5_percent_at_every_vault_latency(name):
    """The near-memory units at vault latencies 1, 20 and 50 (their configs' own is one of the defaults)."""
    from dataclasses import replace
    from mensa.gen.validate import LATENCIES
    acc, dram = CONFIGS[name]
    for latency in LATENCIES:
        records = validate(suite(name), acc, dram=replace(dram, latency_cycles=latency), sim=SIM)
        bad = [f"{r.layer} {r.workload}: model {r.model:.0f}, RTL {r.measured} ({100 * r.error:+.1f}%)"
               for r in records if abs(r.error) > BOUND]
        assert not bad, f"{name} at vault latency {latency}: " + "; ".join(bad)


# -- the vector unit: depthwise, pools, add, mul -----------------------------------------------------

def _check_vector(texts, latencies):
    from mensa.core.config import load
    from mensa.gen.validate import VECTOR_CONFIG, validate_vector
    acc = load(VECTOR_CONFIG).accelerator[0]
    records = []
    for latency in latencies:
        records += validate_vector(texts, acc, latency=latency, sim=SIM)
    bad = [f"{r.accelerator} {r.layer}: model {r.model:.0f}, RTL {r.measured} ({100 * r.error:+.1f}%)"
           for r in records if abs(r.error) > BOUND]
    assert not bad, f"vector unit: {len(bad)} of {len(records)} layers beyond {BOUND:.0%}: " + "; ".join(bad)
    print(f"vector unit: {summary(records)}")


@pytest.mark.slow
def test_vector_unit_model_within_5_percent_of_rtl():
    from mensa.gen.validate import VECTOR_FAST, VECTOR_LAYERS
    _check_vector(VECTOR_LAYERS[:VECTOR_FAST], (20,))


@pytest.mark.slow
def test_vector_unit_model_within_5_percent_of_rtl_sweep():
    from mensa.gen.validate import LATENCIES, VECTOR_LAYERS
    _check_vector(VECTOR_LAYERS, LATENCIES)


# -- a near-memory unit whose requantisers take a vector in passes ------------------------------------

def test_requantiser_passes_follow_the_rtl(tmp_path):
    # pavlov-fpga's unit with its requantisers a lane wide (4 passes a vector) and a lane a vector: FC layers
    # (small K: the requantiser paces the gather) and LSTMs with and without projection
    import dataclasses
    from mensa.core.builder import NetworkBuilder
    from mensa.core.config import AcceleratorConfig, CoreKind, DramConfig, NearMemConfig
    from mensa.model.cost import cycle_errors
    from tests.rtl.test_lstm import _run as run_lstm
    from tests.rtl.test_nearmem import _run as run_fc
    fc = [[64, 12, 1], [16, 40, 2], [8, 64, 3], [40, 30, 4]]
    lstm = [[16, 16, 0, 3], [32, 32, 16, 2], [8, 20, 0, 2], [24, 40, 24, 2]]
    layers = [Layer(f"fc{i}", Op.FC, (m, k), (m, n)) for i, (k, n, m) in enumerate(fc)]
    for i, (c, h, p, t) in enumerate(lstm):
        b = NetworkBuilder(f"lstm{i}", (1, t, c))
        b.lstm(b.input, h, projection=p or None, name=f"lstm{i}")
        layers += [l for l in b.build().layers if l.op is Op.LSTM]
    one = NearMemConfig(vaults=4, lanes=4, vault_bits=64, vault_kib=64, local_kib=16, lstm=True)
    dram = DramConfig(latency_cycles=20)
    model, rtl = {}, {}
    for passes in (1, 4):
        unit = dataclasses.replace(one, requant_passes=passes)
        tb = dict(latency=[20, 20], gap=0.0, outstanding=48)          # vaults answering after 20 cycles, no gaps
        rtl[passes] = [f["cycles"] for f in (run_fc(unit, SIM, tmp_path, layers=fc, raw=False, **tb)
                                             + run_lstm(unit, SIM, tmp_path, layers=lstm, **tb))]
        acc = AcceleratorConfig(name=f"passes{passes}", kind=CoreKind.NEARMEM, nearmem=unit)
        model[passes], _ = cycle_errors([(l, acc, dram, c) for l, c in zip(layers, rtl[passes])], core=True)
        print(f"{passes} passes: " + ", ".join(f"{l.name} RTL {c} model {m:.0f}" for l, c, m in
                                                zip(layers, rtl[passes], model[passes])))
    # FC: the model's unit cycles are the raw accumulators'; the requantised ones leave a fixed latency
    # later, so the passes' cycles are the model's exactly
    for i in range(len(fc)):
        assert rtl[4][i] - rtl[1][i] == model[4][i] - model[1][i], layers[i].name
    # LSTM: every layer within the bound, with either requantiser
    for passes in (1, 4):
        for l, c, m in list(zip(layers, rtl[passes], model[passes]))[len(fc):]:
            assert abs(m / c - 1) <= BOUND, (passes, l.name, c, m)
