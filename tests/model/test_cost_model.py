"""The analytical cost model: tile-by-tile timing references, DRAM traffic, near-memory bounds, energy tables."""

import math
import random

import numpy as np
import pytest

from mensa.contract.gemm_program import tap_packed

from mensa.core.config import ConfigError, from_dict
from mensa.contract.nearmem import HEADER_WORDS
from mensa.model.cost import AcceleratorTable, Calibration, LayerTable, evaluate
from mensa.model.energy import (AreaTable, EnergyTable, accelerator_area_um2, energy_from_dict, layer_energy,
                                sram_pj_per_byte)
from mensa.contract.gemm import GemmGeometry, LayerWalk
from mensa.core.ir import Layer, LayerQuant, Op, QuantParams, same_padding
from mensa.model.zoo import get


def systolic(name="sa", rows=8, cols=8, dataflow="ws", weight_kib=64, act_kib=64, acc_kib=64, data_bits=64,
             bw=25.6, latency=20, clock=200.0):
    return from_dict({"name": "s", "dram": {"bandwidth_gbps": bw, "latency_cycles": latency},
                      "accelerator": [{"name": name, "clock_mhz": clock,
                                       "array": {"rows": rows, "cols": cols, "dataflow": dataflow},
                                       "buffers": {"weight_kib": weight_kib, "act_kib": act_kib, "acc_kib": acc_kib},
                                       "memory": {"data_bits": data_bits}}]})


def nearmem(vaults=8, lanes=8, vault_bits=64, vault_kib=1024, local_kib=4, latency=20):
    return from_dict({"name": "n", "dram": {"latency_cycles": latency},
                      "accelerator": [{"name": "nm", "kind": "nearmem",
                                       "nearmem": {"vaults": vaults, "lanes": lanes, "vault_bits": vault_bits,
                                                   "vault_kib": vault_kib, "local_kib": local_kib}}]})


def fc(k, n, batch=1, name="fc"):
    return Layer(name, Op.FC, (batch, k), (batch, n))


def one(layer, system, **kw):
    c = evaluate([layer], system.accelerator, system.dram, **kw)
    return c, {f: c.row(0, 0)[f] for f in ("cycles", "compute", "load", "fill", "dma", "stall")}


def ws_reference(M, K, N, rows, cols, m_tile):
    """Event-by-event WS timing as the RTL runs (tests/rtl/test_cost_vs_rtl.py): two weight banks, one vector
    per cycle; a bank reloads once its tile's last vector has left the far corner PE."""
    tiles = [min(m_tile, M - m0) for m0 in range(0, M, m_tile)
             for _ in range(math.ceil(N / cols)) for _ in range(math.ceil(K / rows))]
    load_end, comp_end, bank_free = 0, 0, [0, 0]
    for i, m in enumerate(tiles):
        start = max(load_end, bank_free[i % 2])
        load_end = start + rows
        comp_start = max(load_end, comp_end)
        comp_end = comp_start + m
        bank_free[i % 2] = comp_end + rows + cols - 1
    return comp_end + rows + cols + 6       # + the PEs' 4 multiplier stages, the output FIFO's 2 cycles


def os_reference(M, K, N, rows, cols):
    """Event-by-event OS timing as the RTL runs: K beats per tile; a tile's last beat waits until the
    previous tile's last result row is out (rows + cols + 4 cycles after its last beat, the PEs' 4
    multiplier stages included, one more to free)."""
    last, drain_end = 0, 0
    for _ in range(math.ceil(M / rows) * math.ceil(N / cols)):
        last = max(last + K, drain_end)
        drain_end = last + rows + cols + 4 + 1
    return last + rows + cols + 4


def _gemm_layer(M, K, N):
    return Layer("g", Op.FC, (M, K), (M, N), bias=False)


def test_ws_cycles_match_the_tile_by_tile_reference_when_operands_are_on_chip():
    rng = random.Random(1)
    for _ in range(60):
        rows, cols = rng.choice([4, 8, 16, 32]), rng.choice([4, 8, 16, 32])
        M, K, N = rng.randint(1, 300), rng.randint(1, 200), rng.randint(1, 200)
        acc_kib = rng.choice([1, 4, 64])
        sys_ = systolic(rows=rows, cols=cols, weight_kib=1024, act_kib=1024, acc_kib=acc_kib, latency=0)
        c, parts = one(_gemm_layer(M, K, N), sys_)
        m_tile = min(M, acc_kib * 1024 // (cols * 4))
        ref = ws_reference(M, K, N, rows, cols, m_tile)
        busy = parts["compute"] + parts["load"] + parts["fill"]
        assert busy == ref, (M, K, N, rows, cols, acc_kib)


def test_os_cycles_match_the_tile_by_tile_reference():
    rng = random.Random(2)
    for _ in range(60):
        rows, cols = rng.choice([4, 8, 16]), rng.choice([4, 8, 16])
        M, K, N = rng.randint(1, 200), rng.randint(1, 64), rng.randint(1, 100)
        sys_ = systolic(rows=rows, cols=cols, dataflow="os", weight_kib=1024, act_kib=1024, latency=0)
        _, parts = one(_gemm_layer(M, K, N), sys_)
        assert parts["compute"] + parts["load"] + parts["fill"] == os_reference(M, K, N, rows, cols)


def test_large_gemm_reaches_full_utilisation_on_ws():
    # 256^3 on 8x8: every weight load hidden, fill paid once -> 262144 + 16 + 6 cycles of streaming.
    c, parts = one(_gemm_layer(256, 256, 256), systolic(weight_kib=1024, act_kib=1024, acc_kib=64))
    assert parts["compute"] == 256 ** 3 / 64
    assert parts["load"] == 8 and parts["fill"] == 16 + 6     # + multiplier stages and output FIFO
    assert c.utilisation[0, 0] > 0.99


def test_fc_with_weights_off_chip_is_bound_by_dram_bandwidth():
    # 1 MiB of weights at 0.8 GB/s = 4 bytes per 200 MHz cycle: no fewer than 2^18 cycles. The array
    # alone (batch 1: a weight bank turns around in 2*8 + 8 - 1 cycles per two 8x8 tiles, one vector
    # each, as the RTL measures) would need only ~1.5 * 2^17.
    layer = fc(1024, 1024)
    c, parts = one(layer, systolic(weight_kib=64, data_bits=64, bw=0.8, clock=200.0))
    dram = 1024 * 1024 + 4 * 1024
    assert c.dram_weight_bytes[0, 0] == dram
    assert not c.params_fit[0, 0]
    assert parts["compute"] + parts["load"] == pytest.approx(1.5 * 2 ** 17, rel=0.01)
    assert parts["cycles"] == pytest.approx(dram / 4, rel=0.01)
    assert parts["stall"] > 0.2 * parts["cycles"]


def test_params_fit_flag_is_the_compilers_weights_resident():
    """mensa's WS RTL keeps a layer's weights on chip when its weight tiles, padded to the array, fit the
    weight buffer (the compiler's WEIGHTS_RESIDENT); the biases travel in the quantisation records."""
    from mensa.contract.gemm_program import compile_gemm
    from mensa.core import golden
    for k, n, kib, fits in [(256, 256, 64, True),       # 64 KiB of weight tiles and 1 KiB of biases
                            (260, 256, 64, False),      # K padded to 264 rows: 66 KiB
                            (260, 256, 66, True),
                            (256, 250, 64, True)]:      # N padded to 256 columns
        acc = systolic(weight_kib=kib).accelerator
        quant = LayerQuant(inputs=(QuantParams(0.05, 0),), output=QuantParams(0.1, 0), weight_scales=(0.01,) * n)
        layer = Layer("f", Op.FC, (4096, k), (4096, n), quant=quant)     # several M tiles
        assert evaluate([layer], acc).params_fit[0, 0] == fits, (k, n, kib)
        x = np.zeros(layer.in_shape, np.int8)
        p = golden.LayerParams(weights=np.zeros(golden.weight_shape(layer), np.int8), bias=np.zeros(n, np.int32),
                               multiplier=1 << 30, shift=0)
        regs = compile_gemm(acc[0], layer, p, x).registers
        assert regs["WEIGHTS_RESIDENT"] == fits, (k, n, kib)


def test_lstm_weights_are_refetched_every_time_step_when_they_do_not_fit():
    lstm = Layer("l", Op.LSTM, (1, 10, 64), (1, 10, 128), hidden=128)
    w = (64 + 128) * 4 * 128
    small = evaluate([lstm], systolic(weight_kib=64).accelerator)
    big = evaluate([lstm], systolic(weight_kib=256).accelerator)
    assert small.dram_weight_bytes[0, 0] == 10 * w + 4 * 4 * 128
    assert big.dram_weight_bytes[0, 0] == w + 4 * 4 * 128


def test_activations_stream_through_dram_on_built_arrays_and_stay_on_chip_on_modelled_ones_that_fit():
    conv = Layer("c", Op.CONV2D, (1, 32, 32, 32), (1, 32, 32, 32), kernel=(3, 3), padding=(1, 1, 1, 1))
    # an output-stationary array is modelled (no RTL): what fits its buffer stays on chip
    assert evaluate([conv], systolic(dataflow="os", act_kib=128).accelerator).dram_act_bytes[0, 0] == 0
    assert evaluate([conv], systolic(dataflow="os", act_kib=32).accelerator).dram_act_bytes[0, 0] > 0
    # mensa's WS accelerator reads every layer's input from DRAM and writes its output there
    big = evaluate([conv], systolic(act_kib=128).accelerator)
    assert big.dram_act_bytes[0, 0] >= 2 * 32 * 32 * 32
    spilled = evaluate([conv], systolic(act_kib=32).accelerator)
    # Spilled: the input is read once per M tile window -- the tiles the compiler picks, 14 output
    # rows whose 16-row windows (their kernels' halo rows) fit a 16 KiB half of the scratchpad --
    # not once per N tile; the output is written once.
    acc = systolic(act_kib=32).accelerator[0]
    g = GemmGeometry.of(acc)
    walk = LayerWalk(k=32, in_h=32, in_w=32, out_h=32, out_w=32, kernel=(3, 3), pad_top=1, pad_left=1)
    tiles = list(walk.m_tiles(*g.tiling(walk)))
    rows_read = sum(hi - lo for lo, hi, _, _ in (walk.window(*t) for t in tiles))
    assert g.tiling(walk) == (14, 32) and len(tiles) == 3 and rows_read == 32 + 2 + 2
    assert spilled.dram_act_bytes[0, 0] == rows_read * 32 * 32 + 32 * 32 * 32


def test_a_concat_is_free_where_it_is_a_layout_and_a_vector_pass_elsewhere():
    cat = Layer("cat", Op.CONCAT, (1, 8, 8, 16), (1, 8, 8, 24), inputs=("a", "b"), extra_in_shapes=((1, 8, 8, 8),))
    odd = Layer("odd", Op.CONCAT, (1, 8, 8, 12), (1, 8, 8, 20), inputs=("a", "b"), extra_in_shapes=((1, 8, 8, 8),))
    built = evaluate([cat, odd], systolic(rows=8, cols=8).accelerator)
    # 16 channels are two whole tiles of the 8 columns: the producers write side by side, nothing runs
    assert built.cycles[0, 0] == 0 and built.dram_bytes[0, 0] == 0 and built.requant_ops[0, 0] == 0
    # 12 channels end inside a tile: no hardware lays it out, the modelled vector pass stands in
    assert 0 < built.cycles[1, 0] < np.inf and built.dram_bytes[1, 0] > 0
    modelled = evaluate([cat], systolic(rows=8, cols=8, dataflow="os").accelerator)
    assert modelled.cycles[0, 0] > 0


def _walk(layer):
    """The sequencer's walk of a conv or FC ``layer`` (mensa.contract.gemm_program lays them out so: a
    few-channel conv over its im2col rows)."""
    layer = tap_packed(layer) or layer
    if layer.op is Op.FC or (layer.kernel, layer.stride, layer.padding) == ((1, 1), (1, 1), (0, 0, 0, 0)):
        m = layer.macs // (layer.in_channels * layer.out_channels)
        return LayerWalk(k=layer.in_channels, in_h=1, in_w=m, out_h=1, out_w=m)
    _, ih, iw, c = layer.in_shape
    _, oh, ow, _ = layer.out_shape
    return LayerWalk(k=c, in_h=ih, in_w=iw, out_h=oh, out_w=ow, kernel=layer.kernel, stride=layer.stride,
                     pad_top=layer.padding[0], pad_left=layer.padding[2])


def test_ws_m_tiles_and_windows_are_the_compilers():
    """The model's M tiles are the ones GemmGeometry.tiling picks (accumulator and window bound), and
    its window vectors those LayerWalk.window reads: exactly for FC layers, stride-1 convs and the first
    window; within 5% for stride 2 (a last tile of one row reads only the columns under it)."""
    from mensa.model.tiling import Window, ws_tiling
    rng = random.Random(5)
    checked = 0
    for trial in range(300):
        rows, cols = rng.choice([(4, 4), (8, 8), (6, 4)])
        acc = systolic(rows=rows, cols=cols, act_kib=rng.choice([1, 2, 4, 8]),
                       acc_kib=rng.choice([1, 2])).accelerator[0]
        g = GemmGeometry.of(acc)
        if trial % 3 == 0:
            m = rng.randint(1, 300)
            layer = Layer("f", Op.FC, (m, rng.randint(1, 1500)), (m, 5))
        else:
            h, w, c = rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 80)
            k, s = rng.choice([1, 3, 5]), rng.choice([1, 2])
            ph, pw = same_padding(h, k, s), same_padding(w, k, s)
            layer = Layer("c", Op.CONV2D, (1, h, w, c), (1, -(-h // s), -(-w // s), 7), kernel=(k, k), stride=(s, s),
                          padding=(*ph, *pw))
        walk = _walk(layer)
        try:
            tile = g.tiling(walk)
        except ValueError:
            continue
        tiles = list(walk.m_tiles(*tile))
        ct = -(-walk.k // rows)
        vectors = [(b - a) * (d - c_) * ct for a, b, c_, d in (walk.window(*t) for t in tiles)]
        t = ws_tiling(Window(LayerTable([layer]), lambda x: x[:, None]), AcceleratorTable([acc]))
        assert (t.pixels[0, 0], t.tiles[0, 0], t.first[0, 0]) == (tile[0] * tile[1], len(tiles), vectors[0]), layer
        if layer.stride == (1, 1):
            assert t.vectors[0, 0] == sum(vectors), layer
        else:
            assert t.vectors[0, 0] == pytest.approx(sum(vectors), rel=0.05), layer
        checked += 1
    assert checked > 200


def test_ws_conv_walks_k_tap_by_tap():
    """A WS conv's K tiles are its kernel taps times its channel tiles, as the sequencer walks them
    (3x3 taps of 6 channels on 4 rows: 18 K tiles, not ceil(54 / 4) = 14)."""
    conv = Layer("c", Op.CONV2D, (1, 8, 8, 6), (1, 8, 8, 4), kernel=(3, 3), padding=(1, 1, 1, 1))
    c = evaluate([conv], systolic(rows=4, cols=4).accelerator)
    assert c.compute[0, 0] == 64 * 9 * 2
    pw = Layer("p", Op.CONV2D, (1, 8, 8, 6), (1, 8, 8, 4))
    assert evaluate([pw], systolic(rows=4, cols=4).accelerator).compute[0, 0] == 64 * 2


def test_nearmem_is_port_bound_beyond_the_vault_width():
    layer = fc(1024, 1024)
    _, eight = one(layer, nearmem(lanes=8, vault_bits=64))
    _, sixteen = one(layer, nearmem(lanes=16, vault_bits=64))
    _, wide = one(layer, nearmem(lanes=16, vault_bits=128))
    per_vault = 1024 * 1024 / 8
    # Every group of lanes also streams HEADER_WORDS lane words (bias, requantisation) first.
    assert eight["compute"] == per_vault / 8 and eight["load"] == 16 * HEADER_WORDS
    # 16 lanes but only 8 weights per cycle from the port: no faster.
    assert sixteen["compute"] + sixteen["load"] == per_vault / 8 + 16 * HEADER_WORDS
    assert wide["compute"] + wide["load"] == per_vault / 16 + 8 * HEADER_WORDS


def test_nearmem_batch_reuses_each_weight_read():
    _, b1 = one(fc(512, 512, batch=1), nearmem(lanes=8, vault_bits=64))
    _, b4 = one(fc(512, 512, batch=4), nearmem(lanes=8, vault_bits=64))
    # Four inputs per weight: lane-bound, four times the compute, no more port time.
    assert b4["compute"] == 4 * b1["compute"]


def test_conv_on_nearmem_is_infinite_with_a_reason():
    conv = Layer("c", Op.CONV2D, (1, 8, 8, 8), (1, 6, 6, 8), kernel=(3, 3))
    c = evaluate([conv], nearmem().accelerator)
    assert c.cycles[0, 0] == math.inf and not c.supported[0, 0]
    assert "conv2d with a 3x3 kernel" in c.reason(0, 0)
    assert all(np.isinf(v[0, 0]) for v in layer_energy(c).values())


def test_layer_larger_than_the_vaults_is_unsupported():
    c = evaluate([fc(1024, 256)], nearmem(vaults=2, vault_kib=64, local_kib=64).accelerator)
    assert not c.supported[0, 0] and "exceed the vault's" in c.reason(0, 0)


def test_grid_evaluation_equals_pairwise_evaluation():
    net = get("ds_cnn")
    accs = systolic(rows=16, cols=16).accelerator + systolic(name="o", dataflow="os").accelerator \
        + nearmem().accelerator
    grid = evaluate(net.layers, accs)
    for i, layer in enumerate(net.layers):
        for j, acc in enumerate(accs):
            single = evaluate([layer], [acc])
            for f in ("cycles", "dram_bytes", "wbuf_bytes", "vault_bytes"):
                assert getattr(single, f)[0, 0] == getattr(grid, f)[i, j], (layer.name, acc.name, f)


@pytest.mark.parametrize("model", ["mobilenet_v2", "rnnt", "ssd_mobilenet_v2"])
def test_utilisation_never_exceeds_peak(model):
    net = get(model)
    accs = systolic(rows=64, cols=64, weight_kib=4096, act_kib=4096).accelerator + \
        systolic(name="o", rows=16, cols=16, dataflow="os").accelerator + nearmem(vault_kib=65536).accelerator
    c = evaluate(net.layers, accs)
    assert (c.utilisation <= 1.0 + 1e-9).all()
    ok = c.supported
    assert (c.cycles[ok] > 0).all()
    assert np.allclose(c.macs[:, 0], [l.macs for l in net.layers])


def test_calibration_constants_move_the_fill_latency():
    layer = _gemm_layer(64, 64, 64)
    _, base = one(layer, systolic())
    _, cal = one(layer, systolic(), calibration=Calibration(ws_fill_extra=Calibration().ws_fill_extra + 3))
    assert cal["fill"] == base["fill"] + 3


def test_sram_energy_interpolates_the_horowitz_points():
    assert sram_pj_per_byte(8) == pytest.approx(10 / 8)
    assert sram_pj_per_byte(32) == pytest.approx(20 / 8)
    assert sram_pj_per_byte(1024) == pytest.approx(100 / 8)
    assert sram_pj_per_byte(4) < sram_pj_per_byte(8) < sram_pj_per_byte(16) < sram_pj_per_byte(32)
    assert sram_pj_per_byte(4096) > sram_pj_per_byte(1024)


def test_mac_energy_is_horowitz_int8_multiply_plus_int32_add():
    c = evaluate([_gemm_layer(16, 16, 16)], systolic().accelerator)
    assert layer_energy(c)["mac"][0, 0] == pytest.approx(16 ** 3 * (0.2 + 0.1))


def test_energy_table_from_dict_checks_fields():
    assert energy_from_dict({"mac_pj": 0.5}).mac_pj == 0.5
    with pytest.raises(ConfigError, match="energy.mac: unknown field"):
        energy_from_dict({"mac": 1})
    with pytest.raises(ConfigError, match="non-negative number"):
        energy_from_dict({"dram_pj_per_byte": "a lot"})
    half = EnergyTable().scaled(0.5, 22)
    assert half.mac_pj == pytest.approx(0.15) and half.node_nm == 22
    assert half.sram_points_pj_per_byte[0] == pytest.approx(10 / 16)


def test_area_grows_with_pes_and_buffers():
    small = accelerator_area_um2(systolic(rows=8, cols=8).accelerator[0])
    more_pes = accelerator_area_um2(systolic(rows=16, cols=16).accelerator[0])
    more_sram = accelerator_area_um2(systolic(weight_kib=128).accelerator[0])
    t = AreaTable()
    assert more_pes - small == pytest.approx((256 - 64) * t.mac_um2 + 8 * t.vector_lane_um2)
    assert more_sram - small == pytest.approx(64 * t.sram_um2_per_kib)


def test_cycle_errors_compares_the_model_with_measured_cycles():
    sys_ = systolic()
    layer = _gemm_layer(64, 64, 64)
    exact = evaluate([layer], sys_.accelerator, sys_.dram).cycles[0, 0]
    from mensa.model.cost import cycle_errors
    model, err = cycle_errors([(layer, sys_.accelerator[0], sys_.dram, exact),
                               (layer, sys_.accelerator[0], sys_.dram, exact * 2)])
    assert model.tolist() == [exact, exact] and err == pytest.approx([0.0, -0.5])


def test_behind_the_arbiter_a_projection_keeping_its_weights_streams_on_while_a_record_waits():
    # An accelerator of a system reaches the DRAM through the system top's arbiter, whose read buffer takes
    # the bursts behind a quantisation record the weight feed is not ready for: the DRAM goes on meanwhile.
    # On pascal-fpga's 8x8 array at mensa-g-fpga's DRAM, a projection keeping its weights (b2_0_project) is
    # then faster; an expansion (no window behind a record) is not; the scheduler evaluates a system of
    # several accelerators so.
    from mensa.core.config import load
    from mensa.model.schedule import schedule
    system = load("mensa-g-fpga")
    net = get("mobilenet_v2")
    layers = [l for l in net.layers if l.name in ("b2_0_project", "b1_0_expand")]
    array8 = load("pascal-fpga").accelerator[:1]
    alone, arbitrated = (evaluate(layers, AcceleratorTable(array8, system.dram, arbitrated=a)).cycles
                         for a in (False, True))
    assert arbitrated[0, 0] == alone[0, 0]                              # b1_0_expand
    assert arbitrated[1, 0] < 0.99 * alone[1, 0]                        # b2_0_project
    placed = {p.layer: p for p in schedule(net, system).placements}
    assert placed["b2_0_project"].accelerator == "pascal"
    ours = evaluate(layers, AcceleratorTable(system.accelerator[:1], system.dram, arbitrated=True)).cycles
    assert placed["b2_0_project"].cycles == pytest.approx(ours[1, 0])
