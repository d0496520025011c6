"""Requantisation and the LSTM tables: the vectorised golden model against scalar
transcriptions of TFLite / gemmlowp's C++ (Python ints, C semantics), at the edges."""

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from mensa.core.ir import Activation
from mensa.core import golden

INT32 = st.integers(-(1 << 31), (1 << 31) - 1)


# -- scalar references, transcribed from tensorflow/lite/kernels/internal/common.h, gemmlowp --

def c_div(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ref_srdhm(a, b):
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def ref_rdbpot(x, exponent):
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def ref_mbqm(x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    x = max(-(1 << 31), min((1 << 31) - 1, x * (1 << left)))    # mensa saturates the left shift
    return ref_rdbpot(ref_srdhm(x, m), right)


def ref_quantize_multiplier(real):
    if real == 0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = math.floor(q * (1 << 31) + 0.5)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (1 << 31) - 1, 30
    return q_fixed, shift


# -- properties ------------------------------------------------------------------------------

REALS = st.one_of(st.floats(1e-12, 1e9, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0, 2.0 ** -31, 2.0 ** -32,
                                                                           2.0 ** 30, 1 - 2 ** -40]))


@given(REALS)
def test_quantize_multiplier_is_tflites(real):
    m, s = golden.quantize_multiplier(real)
    assert (m, s) == ref_quantize_multiplier(real)
    if m:
        assert (1 << 30) <= m < (1 << 31) and -31 <= s <= 30
        if 2.0 ** -31 <= real < 2.0 ** 30:
            assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0 ** -31


@given(st.lists(REALS, min_size=1, max_size=20))
def test_quantize_multiplier_vectorised_equals_scalar(reals):
    m, s = golden.quantize_multiplier(np.array(reals))
    assert m.dtype == np.int32 and s.dtype == np.int32
    assert [(int(a), int(b)) for a, b in zip(m, s)] == [golden.quantize_multiplier(r) for r in reals]


MULTIPLIERS = st.one_of(st.integers(1 << 30, (1 << 31) - 1), st.sampled_from([0, 1 << 30, (1 << 31) - 1]))
SHIFTS = st.integers(-31, 30)


@settings(max_examples=300)
@given(st.lists(st.one_of(INT32, st.sampled_from([-(1 << 31), (1 << 31) - 1, 0, -1, 1])), min_size=1, max_size=8),
       MULTIPLIERS, SHIFTS)
def test_multiply_by_quantized_multiplier_is_tflites(xs, m, shift):
    got = golden.multiply_by_quantized_multiplier(np.array(xs, dtype=np.int32), m, shift)
    assert got.tolist() == [ref_mbqm(x, m, shift) for x in xs]


@settings(max_examples=200)
@given(st.data(), st.integers(1, 6), st.integers(1, 5))
def test_requantize_per_channel_is_tflites(data, rows, channels):
    acc = np.array(data.draw(st.lists(INT32, min_size=rows * channels, max_size=rows * channels)),
                   dtype=np.int32).reshape(rows, channels)
    m = np.array(data.draw(st.lists(MULTIPLIERS, min_size=channels, max_size=channels)))
    s = np.array(data.draw(st.lists(st.integers(-31, 2), min_size=channels, max_size=channels)))
    zp = data.draw(st.integers(-128, 127))
    qmin = data.draw(st.integers(-128, 127))
    qmax = data.draw(st.integers(qmin, 127))
    got = golden.requantize(acc, m, s, zp, qmin, qmax)
    assert got.dtype == np.int8
    want = [[min(qmax, max(qmin, ref_mbqm(int(acc[r, c]), int(m[c]), int(s[c])) + zp)) for c in range(channels)]
            for r in range(rows)]
    assert got.tolist() == want


def test_requantize_to_int16_saturates_at_the_int16_range():
    out = golden.requantize(np.array([1 << 14, -(1 << 14), 1 << 20, -(1 << 20)]), 1 << 30, 0, 0, -32768, 32767)
    assert out.dtype == np.int16 and out.tolist() == [1 << 13, -(1 << 13), 32767, -32768]


@given(st.floats(1e-4, 1.0), st.integers(-128, 127))
def test_activation_range_is_tflites(scale, zp):
    assert golden.activation_range(Activation.NONE, scale, zp) == (-128, 127)
    assert golden.activation_range(Activation.RELU, scale, zp) == (zp, 127)
    lo, hi = golden.activation_range(Activation.RELU6, scale, zp)
    assert lo == zp and hi == min(127, zp + math.floor(6.0 / scale + 0.5))


# -- LSTM tables -----------------------------------------------------------------------------

def test_tables_are_their_defining_formula():
    xs = (np.arange(257) - 128) / 16.0
    for table, fn in ((golden.sigmoid_table(), lambda v: 1 / (1 + np.exp(-v))), (golden.tanh_table(), np.tanh)):
        assert table.shape == (257,) and table.dtype == np.int16
        assert np.all(np.abs(table - np.clip(fn(xs) * 32768, -32768, 32767)) <= 0.5)


def test_sigmoid_and_tanh_q15_track_the_functions_over_all_int16_inputs():
    pre = np.arange(-32768, 32768)
    x = pre / 4096.0
    sig = golden.sigmoid_q15(pre) / 32768.0
    tanh = golden.tanh_q15(pre) / 32768.0
    # linear interpolation on a 1/16 grid: error <= h^2/8 * max|f''| + table and interpolation rounding
    assert np.max(np.abs(sig - 1 / (1 + np.exp(-x)))) < (1 / 16) ** 2 / 8 * 0.1 + 2 / 32768
    assert np.max(np.abs(tanh - np.tanh(x))) < (1 / 16) ** 2 / 8 * 0.77 + 2 / 32768
    assert np.all(np.diff(golden.sigmoid_q15(pre).astype(int)) >= 0)
    assert np.all(np.diff(golden.tanh_q15(pre).astype(int)) >= 0)


@given(st.integers(-32768, 32767))
def test_table_lookup_is_its_integer_formula(pre):
    for table, fn in ((golden.sigmoid_table(), golden.sigmoid_q15), (golden.tanh_table(), golden.tanh_q15)):
        i, f = (pre >> 8) + 128, pre & 255
        lo, hi = int(table[i]), int(table[i + 1])
        assert int(fn(np.array([pre]))[0]) == lo + (((hi - lo) * f + 128) >> 8)
