"""The program compiler lays conv2d and depthwise layers out for implicit im2col: a numpy model
of the sequencer's walk over the DRAM image (zero-point vectors for padded pixels, M tiles of
the accumulator's depth, diagonal depthwise tiles) reproduces the golden layer."""

import random

import numpy as np
import pytest

from mensa.contract.compiler import compile_layer
from mensa.core.errors import CompileError
from mensa.contract.gemm import GemmGeometry
from mensa.core import golden
from mensa.sim.tb_accelerator import make_layer

from tests.contract.test_gemm_program import config, sequencer_model


def random_conv_spec(r, *, max_hw=9, max_c=19):
    """A random conv2d/depthwise layer spec: kernels 1-5 (kh != kw), strides 1-2, paddings, dilation."""
    op = r.choice(["conv2d", "conv2d", "depthwise"])
    kh, kw = r.randint(1, 5), r.randint(1, 5)
    dil = [r.choice([1, 1, 2]), r.choice([1, 1, 2])]
    h = r.randint(dil[0] * (kh - 1) + 1, max_hw + dil[0] * (kh - 1))
    w = r.randint(dil[1] * (kw - 1) + 1, max_hw + dil[1] * (kw - 1))
    cin = r.randint(1, max_c)
    pad = r.choice(["same", "valid", [r.randint(0, 2) for _ in range(4)]])
    return {"op": op, "in_shape": [1, h, w, cin], "out_channels": cin if op == "depthwise" else r.randint(1, max_c),
            "kernel": [kh, kw], "stride": [r.randint(1, 2), r.randint(1, 2)], "padding": pad, "dilation": dil,
            "activation": r.choice(["none", "relu", "relu6"]), "zp_in": r.randint(-128, 127),
            "zp_out": r.randint(-20, 20), "in_scale": r.uniform(0.02, 0.1), "out_scale": r.uniform(0.5, 3.0)}


@pytest.mark.parametrize("seed", range(12))
def test_random_conv_image_walked_as_the_sequencer_walks_it_gives_the_golden_layer(seed):
    r = random.Random(seed)
    rows, cols = r.choice([(4, 4), (8, 8), (3, 5), (6, 4)])
    bits = r.choice([32, 64])
    lay = make_layer(random_conv_spec(r), 0)
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=golden.weight_shape(lay)).astype(np.int8)
    p = golden.layer_params(lay, weights=w, bias=rng.integers(-5000, 5000, size=lay.out_channels).astype(np.int32))
    x = rng.integers(-128, 128, size=lay.in_shape).astype(np.int8)
    # 1 KiB of accumulator: M tiles of 16..64 pixels; half the seeds with the smallest
    # scratchpad that holds one output pixel's window (tiles of part of a row)
    act_kib = r.choice([1, 32])
    while True:
        try:
            prog = compile_layer(config(rows, cols, data_bits=bits, acc_kib=1, act_kib=act_kib), lay, p, x,
                                 base=0x2000)
            break
        except CompileError as e:
            assert "activation scratchpad holds" in str(e)
            act_kib *= 2
    np.testing.assert_array_equal(sequencer_model(prog), golden.run_layer(lay, p, x))


def test_depthwise_walks_only_its_own_channel_tiles():
    g = GemmGeometry.of(config(4, 8))
    assert [list(g.channel_tiles(20, t, depthwise=True)) for t in range(3)] == [[0, 1], [2, 3], [4]]
    assert list(g.channel_tiles(20, 1, depthwise=False)) == [0, 1, 2, 3, 4]
    g = GemmGeometry.of(config(8, 4))
    assert [list(g.channel_tiles(12, t, depthwise=True)) for t in range(3)] == [[0], [0], [1]]


def test_input_is_channel_tiled_hwc_so_a_stride_1_row_is_one_burst():
    acc = config(4, 4)
    lay = make_layer({"op": "conv2d", "in_shape": [1, 5, 6, 6], "out_channels": 4, "kernel": [3, 3],
                      "padding": "same", "activation": "none", "zp_in": 0, "zp_out": 0, "in_scale": 0.1,
                      "out_scale": 1.0}, 0)
    rng = np.random.default_rng(0)
    p = golden.layer_params(lay, weights=rng.integers(-128, 128, golden.weight_shape(lay)).astype(np.int8))
    x = rng.integers(-128, 128, lay.in_shape).astype(np.int8)
    prog = compile_layer(acc, lay, p, x)
    g = prog.geometry
    img = prog.image.view(np.int8)[prog.registers["INPUT_ADDR"]:]
    # channel 5 is byte 1 of tile 1; pixel (y, x) of a tile at (y * 6 + x) vectors from its plane
    plane = 5 * 6 * g.act_bytes
    assert img[plane + (2 * 6 + 3) * g.act_bytes + 1] == x[0, 2, 3, 5]
    assert img[(4 * 6 + 5) * g.act_bytes + 3] == x[0, 4, 5, 3]
    assert (prog.registers["PAD_TOP"], prog.registers["PAD_LEFT"], prog.registers["OUT_W"]) == (1, 1, 6)
