"""cocotb testbench of the Requantizer: random tiles of int32 accumulators and random parameters.

Parameters come in ``MENSA_TB`` (JSON): ``lanes``, ``out_bits``, ``tiles`` (how many),
``max_rows`` (vectors per tile), ``gap`` (probability of a valid/ready gap), optionally
``out_gap`` (the same for ``outs``' ready alone: a consumer that stalls often, so the vectors
wait in the output ring up to the last credit).

Driver: one ``quant`` beat and a run of ``accs`` beats per tile. Monitor: the ``outs``
beats. Model: :func:`mensa.core.golden.requantize` of ``wrap32(acc + bias)``. Checker:
every beat, in order, with its ``last``. Payloads are packed from the component's own
stream layouts, so the bit positions are never written twice.
"""

import cocotb
import numpy as np

from mensa.hw.requant import acc_layout, out_layout, quant_layout
from mensa.core import golden
from mensa.sim.streams import pack_struct, unpack
from mensa.sim.testbench import TB

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _random_tile(gen, lanes, out_bits, max_rows):
    rows = int(gen.integers(1, max_rows + 1))
    kind = int(gen.integers(4))
    if kind == 0:       # extremes: saturating left shifts, INT32_MIN operands
        acc = gen.choice(np.array([INT32_MIN, INT32_MAX, -1, 0, 1]), (rows, lanes))
        mult = gen.choice(np.array([INT32_MIN, INT32_MAX, 1 << 30, 0]), lanes)
        shift = gen.integers(-32, 32, lanes)
    elif kind == 1:     # any 6-bit shift, any int32 multiplier
        acc = gen.integers(INT32_MIN, INT32_MAX + 1, (rows, lanes))
        mult = gen.integers(INT32_MIN, INT32_MAX + 1, lanes)
        shift = gen.integers(-32, 32, lanes)
    else:               # what quantize_multiplier gives for real layer scales
        acc = gen.integers(-(1 << 20), 1 << 20, (rows, lanes))
        mult, shift = golden.quantize_multiplier(gen.uniform(1e-5, 0.5, lanes) ** 1.5)
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    zp = int(gen.integers(lo, hi + 1))
    qmin = int(gen.integers(lo, hi + 1)) if gen.random() < 0.5 else lo
    qmax = int(gen.integers(qmin, hi + 1)) if gen.random() < 0.5 else hi
    bias = gen.integers(-(1 << 24), 1 << 24, lanes)
    return {"acc": acc, "bias": bias, "multiplier": mult, "shift": shift,
            "zero_point": zp, "qmin": qmin, "qmax": qmax}


@cocotb.test()
async def requantize_random_tiles(dut):
    """Random accumulators and parameters, streamed with gaps, equal the golden requantisation."""
    tb = TB(dut)
    p = tb.params
    lanes, out_bits = p["lanes"], p["out_bits"]
    gen = tb.rng()
    await tb.reset()
    quant, accs, outs = tb.source("quant", salt=1), tb.source("accs", salt=2), tb.sink("outs", salt=3, gap=p.get("out_gap"))
    qlayout, alayout = quant_layout(lanes, out_bits), acc_layout(lanes)
    olayout = out_layout(lanes, out_bits)

    tiles = [_random_tile(gen, lanes, out_bits, p["max_rows"]) for _ in range(p["tiles"])]
    for t in tiles:                                                   # driver
        quant.send(pack_struct(qlayout, t))
        for r, row in enumerate(t["acc"]):
            accs.send(pack_struct(alayout, {"data": row, "last": r == len(t["acc"]) - 1}))
    vectors = 0
    for n, t in enumerate(tiles):                                     # monitor, model, checker
        x = (t["acc"].astype(np.int64) + t["bias"]).astype(np.int32)
        expect = golden.requantize(x, t["multiplier"], t["shift"], t["zero_point"], t["qmin"], t["qmax"])
        for r in range(len(t["acc"])):
            word = await outs.recv()
            got = unpack(word, lanes, out_bits, olayout["data"].offset)
            last = (word >> olayout["last"].offset) & 1
            assert got == [int(v) for v in expect[r]], (
                f"tile {n} row {r}: got {got}, expected {expect[r].tolist()}; acc {t['acc'][r].tolist()}, "
                f"params { {k: v for k, v in t.items() if k != 'acc'} }")
            assert last == int(r == len(t["acc"]) - 1), f"tile {n} row {r}: last={last}"
            vectors += 1
    tb.log.info(f"{len(tiles)} tiles, {vectors} vectors of {lanes} lanes requantised bit-exactly")
