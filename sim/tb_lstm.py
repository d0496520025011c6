"""cocotb testbench of the near-memory unit's LSTM datapath: whole sequences, bit-exact with golden.

Parameters come in ``MENSA_TB`` (JSON): the :class:`~mensa.core.config.NearMemConfig` fields
(``lstm`` true), ``layers`` (a list of ``[C, H, P, T]``, ``P = 0`` for no projection),
``latency`` ([lo, hi] cycles of a vault read), ``gap`` (probability of a valid/ready gap on
every stream), ``outstanding`` (vault requests in flight at most), ``stress`` (every other
layer takes random requantisation multipliers far from a trained network's, so the gate
pre-activations and the cell state saturate and the tables' ends are used), ``result``
(a path for the figures).

Driver: a quantised IR LSTM layer (random weights and scales) compiled by
:func:`mensa.contract.nearmem.compile_nearmem`, or (stress) random integer parameters laid out by
:func:`mensa.contract.nearmem.lstm_program`; loads the vault images into
:class:`mensa.sim.vault.VaultArray`, sends the descriptor and every x_t at once (the unit
runs all T steps without the host). Monitor: collects h_t. Model:
:func:`mensa.core.golden.run_layer` / :func:`mensa.core.golden.lstm`. Checker: every h_t,
and ``last`` on each time step's final beat only.
"""

import cocotb
import numpy as np

from mensa.contract.nearmem import compile_nearmem, lstm_program
from mensa.core.ir import Layer, LayerQuant, Op, QuantParams
from mensa.core import golden
from mensa.sim.testbench import assert_bit_exact
from mensa.sim.vault import NearMemTB


def lstm_case(gen, c, h, p, t):
    """A quantised LSTM layer of ``c`` inputs, ``h`` hidden units, a projection to ``p`` (0: none) and ``t``
    time steps, with scales a trained network could have: (layer, params, x)."""
    out = p or h
    s_in = float(gen.uniform(0.02, 0.06))
    s_out = float(gen.uniform(0.006, 0.012))
    s_w = gen.uniform(0.5, 1.5, size=4 * h) * 2.0 / (127 * np.sqrt(c + out))
    scales = tuple(s_w) + (tuple(gen.uniform(0.5, 1.5, size=p) * 2.0 / (127 * np.sqrt(h))) if p else ())
    quant = LayerQuant(inputs=(QuantParams(s_in, int(gen.integers(-20, 20))),),
                       output=QuantParams(s_out, int(gen.integers(-20, 20))), weight_scales=scales)
    layer = Layer(name="lstm", op=Op.LSTM, in_shape=(1, t, c), out_shape=(1, t, out), hidden=h,
                  projection=p, quant=quant)
    w = gen.integers(-127, 128, size=golden.weight_shape(layer), dtype=np.int64).astype(np.int8)
    bias = gen.integers(-(1 << 14), 1 << 14, size=4 * h, dtype=np.int64).astype(np.int32)
    kw = {}
    if p:
        kw = dict(projection_weights=gen.integers(-127, 128, size=(h, p), dtype=np.int64).astype(np.int8),
                  projection_bias=gen.integers(-(1 << 12), 1 << 12, size=p, dtype=np.int64).astype(np.int32))
    params = golden.layer_params(layer, weights=w, bias=bias, **kw)
    x = gen.integers(-128, 128, size=layer.in_shape, dtype=np.int64).astype(np.int8)
    return layer, params, x


def _ir_case(gen, geom, c, h, p, t, base):
    """:func:`lstm_case` laid out for the unit: (program, expected (T, P))."""
    layer, params, x = lstm_case(gen, c, h, p, t)
    prog = compile_nearmem(geom, layer, params, x, base=base)
    return prog, golden.run_layer(layer, params, x)[0]


def _stress_case(gen, geom, c, h, p, t, base):
    """Random integer parameters with large multipliers: saturated gates and cell state."""
    out = p or h
    x = gen.integers(-128, 128, size=(t, c), dtype=np.int64).astype(np.int8)
    w = gen.integers(-128, 128, size=(c + out, 4 * h), dtype=np.int64).astype(np.int8)
    bias = gen.integers(-(1 << 20), 1 << 20, size=4 * h, dtype=np.int64).astype(np.int32)
    mi, si = golden.quantize_multiplier(gen.uniform(0.01, 4.0, size=4 * h))
    mr, sr = golden.quantize_multiplier(gen.uniform(0.01, 4.0, size=4 * h))
    mh, sh = golden.quantize_multiplier(float(gen.uniform(1e-8, 2e-7)))
    kw = dict(x_zero_point=int(gen.integers(-128, 128)), h_zero_point=int(gen.integers(-128, 128)),
              input_multiplier=mi, input_shift=si, recurrent_multiplier=mr, recurrent_shift=sr,
              hidden_multiplier=int(mh), hidden_shift=int(sh))
    if p:
        mp, sp = golden.quantize_multiplier(gen.uniform(1e-4, 1e-2, size=p))
        kw.update(projection_weights=gen.integers(-128, 128, size=(h, p), dtype=np.int64).astype(np.int8),
                  projection_bias=gen.integers(-(1 << 16), 1 << 16, size=p, dtype=np.int64).astype(np.int32),
                  projection_multiplier=mp, projection_shift=sp)
    prog = lstm_program(geom, x, w, bias, base=base, **kw)
    return prog, golden.lstm(x[None], w, bias, **kw)[0]


@cocotb.test()
async def lstm_random_sequences(dut):
    """Random LSTM layers, whole sequences through vaults of random latency, equal golden bit for bit."""
    tb = NearMemTB(dut)
    p, geom = tb.params, tb.geom
    gen = tb.rng()
    await tb.start()
    L, V = geom.lanes, geom.vaults
    figures = []
    for index, (c, h, proj, t) in enumerate(p["layers"]):
        base = int(gen.integers(0, 4))
        stress = p.get("stress") and index % 2
        prog, expect = (_stress_case if stress else _ir_case)(gen, geom, c, h, proj, t, base)
        what = f"lstm C={c} H={h} P={proj or h}{' (projection)' if proj else ''} T={t}{' stress' if stress else ''}"
        bound = 20 * (t * prog.words * p["latency"][1] // min(tb.outstanding, p["latency"][1])
                      + 200 * t * geom.max_blocks + 2000)
        got, cycles = await tb.run(prog, base, t, out_bits=8, what=what, bound=bound)
        assert_bit_exact(got, expect, what, axes="(step, unit)", row=True)
        out = proj or h
        macs = t * (4 * h * (c + out) + (h * proj if proj else 0))
        util = macs / (V * L * cycles)
        tb.log.info(f"{what}: {cycles} cycles, {cycles / t:.1f} per time step, lane utilisation "
                    f"{util:.3f}, bytes per vault {tb.vaults.bytes_read}")
        figures.append({"C": c, "H": h, "P": out, "projection": bool(proj), "T": t, "stress": bool(stress),
                        "cycles": cycles, "cycles_per_step": cycles / t, "utilisation": util,
                        "bytes_per_vault": tb.vaults.bytes_read, "words_per_step": prog.words})
        await tb.wait_idle(settle=2)
    tb.write_result(figures)
