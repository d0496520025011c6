"""The systolic accelerator's program compiler: what it refuses, and a DRAM image that computes the layer.

A numpy model of the sequencer reads the image exactly as the RTL walks it (tiles of
bus words, the quantisation record per N tile) and must reproduce the golden layer.
"""

import numpy as np
import pytest

from mensa.contract.compiler import compile_layer
from mensa.core.errors import CompileError
from mensa.core.config import AcceleratorConfig, ArrayConfig, BufferConfig, ConfigError, Dataflow, MemoryConfig
from mensa.core.errors import UserError
from mensa.contract.regs import register_map
from mensa.contract.gemm import LayerWalk
from mensa.core.ir import Activation, Layer, LayerQuant, Op, QuantParams
from mensa.core import golden


def config(rows=4, cols=4, data_bits=64, acc_kib=16, dataflow=Dataflow.WEIGHT_STATIONARY, act_kib=32):
    return AcceleratorConfig(name="t", array=ArrayConfig(rows=rows, cols=cols, dataflow=dataflow),
                             buffers=BufferConfig(acc_kib=acc_kib, act_kib=act_kib),
                             memory=MemoryConfig(data_bits=data_bits))


def layer(op, in_shape, out_shape, activation=Activation.NONE, zp_in=3, zp_out=-5, pre=None, **kw):
    """A quantised layer; a table activation's requantises to ``pre`` (scale, zero point), the table's input."""
    cout = out_shape[-1]
    quant = LayerQuant(inputs=(QuantParams(0.05, zp_in),), output=QuantParams(0.1, zp_out),
                       weight_scales=tuple(np.linspace(0.001, 0.01, cout)),
                       pre_activation=None if pre is None else QuantParams(*pre))
    return Layer(name="l", op=op, in_shape=in_shape, out_shape=out_shape, activation=activation, quant=quant, **kw)


def params(lay, rng):
    w = rng.integers(-128, 128, size=golden.weight_shape(lay)).astype(np.int8)
    b = rng.integers(-5000, 5000, size=lay.out_channels).astype(np.int32)
    return golden.layer_params(lay, weights=w, bias=b)


def sequencer_model(prog):
    """What the sequencer computes from the image and the registers (numpy, not the RTL).

    It walks the loop nest of :mod:`mensa.hw.sequencer`: M tiles of TILE_ROWS x TILE_COLS,
    each tile's input window loaded from DRAM into a scratchpad half of ``act_depth``
    vectors (the loader's bursts), then N tiles, K tiles (ky, kx, channel tile) and per
    output row the zero-point and scratchpad-read segments, reading the scratchpad only
    inside the window.
    """
    g, r = prog.geometry, prog.registers
    img = prog.image.view(np.int8)
    R, C = g.rows, g.cols
    ab, wb, ob = g.act_bytes, g.weight_bytes, g.out_bytes
    in_h, in_w, out_h, out_w = r["IN_H"], r["IN_W"], r["OUT_H"], r["OUT_W"]
    k, n = r["IN_C"], r["OUT_C"]
    kh, kw, sh, sw = r["KERNEL_H"], r["KERNEL_W"], r["STRIDE_H"], r["STRIDE_W"]
    dh, dw, pt, pl = r["DILATION_H"], r["DILATION_W"], r["PAD_TOP"], r["PAD_LEFT"]
    walk = LayerWalk(k=k, in_h=in_h, in_w=in_w, out_h=out_h, out_w=out_w, kernel=(kh, kw), stride=(sh, sw),
                     dilation=(dh, dw), pad_top=pt, pad_left=pl)
    depthwise = r["OP"] == 1
    m = out_h * out_w
    nt, kt = -(-n // C), -(-k // R)
    plane = in_h * in_w * ab
    at = lambda name: r[name] - prog.base
    zp = np.full(R, r["IN_ZERO_POINT"], np.int64)
    out = bytearray(prog.output_bytes)
    m0 = 0
    for ty, tx, rows, cols in walk.m_tiles(r["TILE_ROWS"], r["TILE_COLS"]):
        mt = rows * cols
        assert mt <= g.acc_depth
        iy_lo, iy_hi, ix_lo, ix_hi = walk.window(ty, tx, rows, cols)
        ww = ix_hi - ix_lo
        spad = np.full((kt, iy_hi - iy_lo, ww, R), 99, np.int64)      # what the loader writes
        assert spad.shape[0] * spad.shape[1] * spad.shape[2] <= g.act_depth
        for ct in range(kt):
            for iy in range(iy_lo, iy_hi):
                o = at("INPUT_ADDR") + ct * plane + (iy * in_w + ix_lo) * ab
                spad[ct, iy - iy_lo] = img[o:o + ww * ab].reshape(ww, ab)[:, :R]
        w_at = at("WEIGHT_ADDR")
        for t in range(nt):
            rec = prog.image[at("QUANT_ADDR") + t * g.quant_bytes:][:9 * C]
            bias = rec[:4 * C].view("<i4")
            mult = rec[4 * C:8 * C].view("<i4")
            shift = rec[8 * C:9 * C].view(np.int8)
            acc = np.zeros((mt, C), np.int64)
            for ky in range(kh):
                for kx in range(kw):
                    for ct in g.channel_tiles(k, t, depthwise=depthwise):
                        w = img[w_at:][:R * wb].reshape(R, wb)[:, :C].astype(np.int64)
                        w_at += R * wb
                        a = np.empty((mt, R), np.int64)
                        for i, p in enumerate(range(m0, m0 + mt)):
                            oy, ox = divmod(p, out_w)
                            iy, ix = oy * sh - pt + ky * dh, ox * sw - pl + kx * dw
                            if 0 <= iy < in_h and 0 <= ix < in_w:
                                assert iy_lo <= iy < iy_hi and ix_lo <= ix < ix_hi, (iy, ix)
                                a[i] = spad[ct, iy - iy_lo, ix - ix_lo]
                            else:
                                a[i] = zp
                        acc += a @ w
            acc32 = ((acc + bias + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
            y = golden.requantize(acc32, mult, shift, r["OUT_ZERO_POINT"], r["QMIN"], r["QMAX"])
            if r["ACT_TABLE"]:
                y = img[at("TABLE_ADDR"):][:256][y.astype(np.int16) + 128]
            for i in range(mt):
                o = (t * m + m0 + i) * ob
                out[o:o + C] = y[i].astype(np.int8).tobytes()
        m0 += mt
    assert m0 == m
    return prog.output(out)


CASES = [
    (config(), layer(Op.FC, (3, 13), (3, 7))),
    (config(), layer(Op.FC, (1, 64), (1, 10), activation=Activation.RELU, zp_in=-128)),
    (config(8, 8), layer(Op.CONV2D, (1, 3, 5, 19), (1, 3, 5, 11), activation=Activation.RELU6)),
    (config(4, 8), layer(Op.CONV2D, (2, 2, 3, 5), (2, 2, 3, 17))),
    (config(2, 4, data_bits=32), layer(Op.FC, (5, 9), (5, 6), zp_in=0, zp_out=0)),
    (config(12, 12), layer(Op.FC, (4, 30), (4, 25))),                   # vectors of 2 words
    (config(9, 5, data_bits=32), layer(Op.CONV2D, (1, 2, 3, 20), (1, 2, 3, 11))),
    # table activations: the records requantise to the table's input, every output byte is looked up
    (config(), layer(Op.FC, (3, 13), (3, 7), activation=Activation.TANH, pre=(0.02, 6))),
    (config(4, 8), layer(Op.CONV2D, (1, 4, 5, 6), (1, 4, 5, 9), activation=Activation.HARD_SWISH, pre=(0.03, -9),
                         kernel=(3, 3), padding=(1, 1, 1, 1))),
    (config(2, 4, data_bits=32), layer(Op.CONV2D, (1, 3, 3, 5), (1, 3, 3, 6), activation=Activation.SIGMOID,
                                       pre=(0.05, 0))),
    (config(), layer(Op.DEPTHWISE, (1, 5, 4, 6), (1, 3, 2, 6), activation=Activation.HARD_SIGMOID,
                     pre=(0.04, 11), kernel=(3, 3), groups=6)),
]


@pytest.mark.parametrize("acc,lay", CASES, ids=[f"{c.array.rows}x{c.array.cols}-{l.op.value}-{i}"
                                                for i, (c, l) in enumerate(CASES)])
def test_image_walked_as_the_sequencer_walks_it_gives_the_golden_layer(acc, lay):
    rng = np.random.default_rng(7)
    p = params(lay, rng)
    x = rng.integers(-128, 128, size=lay.in_shape).astype(np.int8)
    prog = compile_layer(acc, lay, p, x, base=0x10000)
    np.testing.assert_array_equal(sequencer_model(prog), golden.run_layer(lay, p, x))


def test_registers_are_the_maps_and_regions_do_not_overlap():
    acc = config()
    lay = layer(Op.FC, (3, 13), (3, 7))
    rng = np.random.default_rng(1)
    prog = compile_layer(acc, lay, params(lay, rng), rng.integers(-128, 128, (3, 13)).astype(np.int8))
    regmap = register_map(acc)
    offsets = dict(prog.writes(regmap))
    assert offsets[regmap["IN_C"].offset] == 13 and offsets[regmap["OUT_C"].offset] == 7
    assert offsets[regmap["IN_ZERO_POINT"].offset] == 3
    assert offsets[regmap["OUT_ZERO_POINT"].offset] == (-5) & 0xFFFFFFFF
    starts = sorted(prog.registers[n] for n in ("INPUT_ADDR", "WEIGHT_ADDR", "QUANT_ADDR", "OUTPUT_ADDR"))
    assert len(set(starts)) == 4 and all(s % 4096 == 0 for s in starts)
    assert prog.output_addr + prog.output_bytes <= prog.base + prog.image.size


def test_layout_follows_the_array_size_in_the_config():
    lay = layer(Op.FC, (2, 16), (2, 16))
    rng = np.random.default_rng(2)
    p, x = params(lay, rng), rng.integers(-128, 128, (2, 16)).astype(np.int8)
    small, big = compile_layer(config(4, 4), lay, p, x), compile_layer(config(8, 8), lay, p, x)
    # 4 N tiles x 2 rows vs 2 N tiles x 2 rows of output words
    assert small.output_bytes == 4 * 2 * 8 and big.output_bytes == 2 * 2 * 8
    assert small.geometry.rows == 4 and big.geometry.rows == 8


@pytest.mark.parametrize("lay,match", [
    (layer(Op.CONV2D, (1, 9, 9, 8), (1, 3, 3, 8), kernel=(3, 3), stride=(3, 3)), r"stride \(3, 3\); allowed: 1 or 2"),
    (layer(Op.CONV2D, (1, 6, 6, 8), (1, 6, 6, 8), kernel=(3, 3), padding=(1, 1, 1, 1), groups=2),
     r"conv2d with groups 2; allowed: fc, conv2d \(groups 1\) or depthwise"),
    (layer(Op.DEPTHWISE, (1, 6, 6, 8), (1, 6, 6, 16), kernel=(3, 3), padding=(1, 1, 1, 1), groups=8),
     r"depthwise 8 -> 16 channels \(depth multiplier 2\)"),
    (layer(Op.CONV2D, (2, 6, 6, 8), (2, 4, 4, 8), kernel=(3, 3)), r"batch 2 with a 3x3 kernel; allowed: batch 1"),
    (layer(Op.FC, (1, 8), (1, 8), activation=Activation.SIGMOID),
     r"quant.pre_activation: missing; allowed: a sigmoid layer with it"),
], ids=["stride3", "grouped", "depth-multiplier", "batch", "sigmoid-without-its-table-input"])
def test_layers_it_cannot_run_are_one_line_user_errors(lay, match):
    rng = np.random.default_rng(3)
    if lay.activation is Activation.SIGMOID:
        p = golden.LayerParams(weights=np.zeros((8, 8), np.int8), bias=np.zeros(8, np.int32), multiplier=1 << 30,
                               shift=0)
    else:
        p = params(lay, rng)
    x = np.zeros(lay.in_shape, np.int8)
    with pytest.raises(CompileError, match=r"^layer 'l': " + match) as e:
        compile_layer(config(), lay, p, x)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)


def test_configs_the_top_cannot_build_are_config_errors():
    lay = layer(Op.FC, (1, 8), (1, 8))
    p = params(lay, np.random.default_rng(4))
    with pytest.raises(ConfigError, match="'os' has no accelerator top yet; allowed: 'ws'"):
        compile_layer(config(dataflow=Dataflow.OUTPUT_STATIONARY), lay, p, np.zeros((1, 8), np.int8))
    with pytest.raises(ConfigError, match=r"8/8/32"):
        acc = config()
        acc = AcceleratorConfig(name="t", array=ArrayConfig(rows=4, cols=4, acc_bits=24), memory=acc.memory)
        compile_layer(acc, lay, p, np.zeros((1, 8), np.int8))


def test_wide_vectors_take_whole_words():
    lay = layer(Op.FC, (3, 20), (3, 20))
    rng = np.random.default_rng(5)
    p, x = params(lay, rng), rng.integers(-128, 128, (3, 20)).astype(np.int8)
    prog = compile_layer(config(12, 10, data_bits=32), lay, p, x)
    g = prog.geometry
    assert (g.act_words, g.weight_words, g.out_words) == (3, 3, 3)
    assert prog.output_bytes == 2 * 3 * 12          # 2 N tiles x 3 rows x 3 words of 4 bytes


def test_a_table_activation_adds_its_table_and_requantises_to_the_table_input():
    """The table in its own region, ACT_TABLE and TABLE_ADDR set, the records' zero point the
    pre-activation's and no clamp; a layer without one writes ACT_TABLE 0 (the register persists)."""
    rng = np.random.default_rng(6)
    lay = layer(Op.FC, (2, 10), (2, 5), activation=Activation.HARD_SWISH, zp_out=-128, pre=(0.03, 7))
    x = rng.integers(-128, 128, lay.in_shape).astype(np.int8)
    prog = compile_layer(config(), lay, params(lay, rng), x, base=0x8000)
    r = prog.registers
    assert (r["ACT_TABLE"], r["OUT_ZERO_POINT"], r["QMIN"], r["QMAX"]) == (1, 7, -128, 127)
    table = golden.activation_table(lay.activation, lay.quant.pre_activation, lay.quant.output)
    at = r["TABLE_ADDR"] - prog.base
    np.testing.assert_array_equal(prog.image[at:at + 256].view(np.int8), table)
    assert r["QUANT_ADDR"] < r["TABLE_ADDR"] < r["OUTPUT_ADDR"] and r["TABLE_ADDR"] % 4096 == 0
    plain = layer(Op.FC, (2, 10), (2, 5), activation=Activation.RELU)
    r = compile_layer(config(), plain, params(plain, rng), x).registers
    assert r["ACT_TABLE"] == 0 and "TABLE_ADDR" not in r
