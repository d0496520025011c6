"""cocotb testbench of the near-memory unit: random FC layers, bit-exact with the golden model.

Parameters come in ``MENSA_TB`` (JSON): the :class:`~mensa.core.config.NearMemConfig`
fields (``vaults``, ``lanes``, ``vault_bits``, ``vault_kib``, ``local_kib``), ``layers``
(a list of [K, N, M], or an int: that many random shapes up to ``max_k``, ``max_n``,
``max_m``), ``latency`` ([lo, hi] cycles of a vault read), ``gap`` (probability of a
valid/ready gap on every stream), ``outstanding`` (vault requests in flight at most),
``raw`` (int32 accumulators, else int8 outputs), ``ir`` (int8 only: every other layer is
a quantised IR layer, FC or pointwise conv, compiled by
:func:`mensa.contract.nearmem.compile_nearmem` and checked against
:func:`mensa.core.golden.run_layer`), ``result`` (a path for the figures).

Driver: lays each layer out with :func:`mensa.contract.nearmem.fc_program`, loads the vault
images into :class:`mensa.sim.vault.VaultArray`, sends the descriptor and the input
vectors. Monitor: collects the output beats. Model: :func:`mensa.core.golden.fully_connected_acc`
plus the bias (raw) or :func:`mensa.core.golden.fully_connected`. Checker: every vector
against the model, and ``last`` on each vector's final beat only.
"""

import cocotb
import numpy as np

from mensa.contract.nearmem import compile_nearmem, fc_program
from mensa.contract.numeric import ACC_BITS
from mensa.core.ir import Activation, Layer, LayerQuant, Op, QuantParams
from mensa.core import golden
from mensa.sim.testbench import assert_bit_exact
from mensa.sim.vault import NearMemTB


def _shapes(p, gen, geometry):
    layers = p["layers"]
    if isinstance(layers, list):
        return [tuple(s) for s in layers]
    max_k = min(p.get("max_k", geometry.max_in), geometry.max_in)
    max_n = min(p.get("max_n", 3 * geometry.vaults * geometry.lanes),
                geometry.max_groups * geometry.lanes * geometry.vaults)
    max_m = p.get("max_m", 3)
    out = [(1, 1, 1)]                                      # the smallest layer always covered
    while len(out) < layers:
        out.append((int(gen.integers(1, max_k + 1)), int(gen.integers(1, max_n + 1)),
                    int(gen.integers(1, max_m + 1))))
    return out


def _layer(gen, k, n, m):
    x = gen.integers(-128, 128, size=(m, k), dtype=np.int64).astype(np.int8)
    w = gen.integers(-128, 128, size=(k, n), dtype=np.int64).astype(np.int8)
    bias = gen.integers(-(1 << 31), 1 << 31, size=n, dtype=np.int64).astype(np.int32)
    if gen.random() < 0.5:      # small biases too, so that not every sum wraps
        bias = (bias >> 12).astype(np.int32)
    multiplier, shift = golden.quantize_multiplier(gen.uniform(1e-5, 0.5, size=n))
    x_zp = int(gen.integers(-128, 128))
    out_zp = int(gen.integers(-128, 128))
    qmin = int(gen.integers(-128, 0)) if gen.random() < 0.3 else -128
    qmax = int(gen.integers(qmin + 1, 128)) if gen.random() < 0.3 else 127
    return dict(x=x, w=w, bias=bias, multiplier=multiplier, shift=shift, x_zp=x_zp, out_zp=out_zp,
                qmin=qmin, qmax=qmax)


def _ir_layer(gen, geom, k, n, m, base):
    """A quantised FC or pointwise conv layer with m vectors: (program, expected int8 (m, n))."""
    activation = [Activation.NONE, Activation.RELU, Activation.RELU6][int(gen.integers(0, 3))]
    s_in = float(gen.uniform(0.01, 0.1))
    s_w = gen.uniform(0.002, 0.02, size=n)
    s_out = float(s_in * s_w.mean() * np.sqrt(k) * 40)
    quant = LayerQuant(inputs=(QuantParams(s_in, int(gen.integers(-128, 128))),),
                       output=QuantParams(s_out, int(gen.integers(-60, 60))), weight_scales=tuple(s_w))
    if gen.random() < 0.5:
        layer = Layer(name="fc", op=Op.FC, in_shape=(m, k), out_shape=(m, n), activation=activation, quant=quant)
    else:
        w = int(gen.integers(1, 3))
        h = -(-m // w)
        layer = Layer(name="pointwise", op=Op.CONV2D, in_shape=(1, h, w, k), out_shape=(1, h, w, n),
                      activation=activation, quant=quant)
    weights = gen.integers(-128, 128, size=golden.weight_shape(layer), dtype=np.int64).astype(np.int8)
    bias = gen.integers(-(1 << 16), 1 << 16, size=n, dtype=np.int64).astype(np.int32)
    params = golden.layer_params(layer, weights=weights, bias=bias)
    x = gen.integers(-128, 128, size=layer.in_shape, dtype=np.int64).astype(np.int8)
    prog = compile_nearmem(geom, layer, params, x, base=base)
    return layer, prog, golden.run_layer(layer, params, x).reshape(-1, n)


@cocotb.test()
async def fc_random_layers(dut):
    """Random FC layers, through vaults of random latency, equal the golden model bit for bit."""
    tb = NearMemTB(dut)
    p, geom = tb.params, tb.geom
    gen = tb.rng()
    await tb.start()
    raw = p["raw"]
    out_bits = ACC_BITS if raw else 8
    L = geom.lanes
    figures = []
    for index, (k, n, m) in enumerate(_shapes(p, gen, geom)):
        base = int(gen.integers(0, 4))
        if p.get("ir") and not raw and index % 2:
            ir, prog, expect = _ir_layer(gen, geom, k, n, m, base)
            m = prog.vectors
            what = f"{ir.op.value} layer {ir.in_shape} -> {ir.out_shape} ({ir.activation.value})"
        else:
            t = _layer(gen, k, n, m)
            prog = fc_program(geom, t["w"], t["x"], bias=t["bias"], multiplier=t["multiplier"], shift=t["shift"],
                              x_zero_point=t["x_zp"], out_zero_point=t["out_zp"], qmin=t["qmin"], qmax=t["qmax"],
                              raw=raw, base=base)
            acc = golden.fully_connected_acc(t["x"], t["w"], x_zero_point=t["x_zp"])
            if raw:                                          # model
                expect = acc + t["bias"]      # int32 wraps like the hardware adder
            else:
                expect = golden.requantize(acc + t["bias"], t["multiplier"], t["shift"], t["out_zp"],
                                           t["qmin"], t["qmax"])
            what = f"layer K={k} N={n} M={m}"
        # A hung unit fails the test: far more cycles than the vault traffic can take.
        words = m * geom.words(k, prog.descriptor["groups"])
        bound = 20 * (words * p["latency"][1] // min(tb.outstanding, p["latency"][1]) + 100 * m + 2000)
        got, cycles = await tb.run(prog, base, m, out_bits=out_bits, what=what, bound=bound)
        assert_bit_exact(got, expect, what, axes="(vector, channel)")
        util = k * n * m / (geom.vaults * L * cycles)
        tb.log.info(f"{what}: {cycles} cycles, lane utilisation {util:.3f}, "
                    f"bytes per vault {tb.vaults.bytes_read}")
        figures.append({"K": k, "N": n, "M": m, "cycles": cycles, "utilisation": util,
                        "bytes_per_vault": tb.vaults.bytes_read})
        await tb.wait_idle(settle=2)
    tb.write_result(figures)
