"""Reads in flight: how long a stream of bursts takes when at most :data:`READS_IN_FLIGHT` are outstanding.

A read stream is a sequence of bursts of at most ``burst`` bus words, ``cpw`` cycles a word.
Burst ``j``'s data starts no earlier than the end of burst ``j - 1`` (one bus) and no earlier
than ``held`` cycles (the DRAM latency and the slot's turnaround) after the data of burst
``j - F`` ended (its slot is reused), ``F = READS_IN_FLIGHT``. The stream's time is the
longest path through edges ``j -> j + 1`` (``b_j`` cycles) and ``j -> j + F`` (``b_j +
held``). A long stream that repeats a pattern runs at the pattern's rate
(:func:`burst_chain`); a short one is solved burst by burst (:func:`short_stream`).
"""

import math

import numpy as np

from mensa.contract.numeric import READS_IN_FLIGHT
from mensa.model.tiling import cdiv

__all__ = ["burst_chain", "short_stream", "SHORT_BURSTS"]

#: Longest K-tile burst pattern whose read rate is solved exactly; longer ones (hundreds of
#: activation rows per tile) take the average bound, within a burst of the exact one.
_CHAIN_BURSTS = 16


def burst_chain(w_words, a_words, burst, held, cpw):
    """Cycles per K tile of a repeating pattern of reads: the longest path per period (module docstring).

    A K tile reads ``w_words`` then ``a_words`` bus words, each in bursts of ``burst`` beats
    (the last one short). Where the pattern is at most ``_CHAIN_BURSTS`` bursts and a slot's
    reuse can beat the bus, a dynamic programme over the pattern repeated finds the rate
    (states: bursts still skipped by the last ``j -> j + F`` edge); elsewhere the average
    bound holds, every burst holding a slot: ``max(words, (words + bursts held) / F)``.
    """
    F = READS_IN_FLIGHT
    w_words, a_words, burst, held, cpw = np.broadcast_arrays(w_words, a_words, burst, held, cpw)
    nw, na = cdiv(w_words, burst) * (w_words > 0), cdiv(a_words, burst) * (a_words > 0)
    p = nw + na
    total = (w_words + a_words) * cpw
    out = np.maximum(total, (total + p * held) / F)        # the average bound: every burst's slot
    # Exact where the pattern is short and some j -> j + F edge can beat the bus (its latency
    # exceeds the three bursts it skips), once per distinct pattern.
    last_w = np.where(w_words > 0, w_words - (nw - 1) * burst, burst)       # the short last bursts
    last_a = np.where(a_words > 0, a_words - (na - 1) * burst, burst)
    least = np.where(p >= 3, np.minimum(np.minimum(last_w, last_a), burst), 0.0) * cpw
    exact = (p > 0) & (p <= _CHAIN_BURSTS) & (held > 3 * least)
    if exact.any():
        # w_words, burst, held and cpw are the accelerator's (the last axis); a_words the layer's
        col = np.broadcast_to(np.arange(p.shape[-1] if p.ndim else 1), p.shape)
        key = ((a_words[exact].astype(np.int64) * 2 + (w_words[exact] > 0)) * (col.max() + 1) + col[exact])
        _, first, back = np.unique(key, return_index=True, return_inverse=True)
        w_words, a_words, burst, held, cpw = (v[exact][first] for v in (w_words, a_words, burst, held, cpw))
        nw, na = cdiv(w_words, burst) * (w_words > 0), cdiv(a_words, burst) * (a_words > 0)
        p = nw + na
        rw, ra = w_words - (nw - 1) * burst, a_words - (na - 1) * burst
        periods = 8
        value = [np.zeros(p.shape)] + [np.full(p.shape, -np.inf)] * (F - 1)
        at = {periods // 2: np.zeros(p.shape), periods: np.zeros(p.shape)}
        for t in range(int(p.max()) * periods):
            i = t % p
            b = np.where(i < nw, np.where(i < nw - 1, burst, rw),
                         np.where(i - nw < na - 1, burst, ra)) * cpw
            v0 = value[0]
            value = [np.maximum(v0 + b, value[1]), *value[2:], v0 + b + held]
            for k in at:
                hit = t + 1 == k * p
                if hit.any():
                    at[k] = np.where(hit, np.maximum.reduce(value), at[k])
        out[exact] = ((at[periods] - at[periods // 2]) / (periods - periods // 2))[back.reshape(-1)]
    return out


#: Layers of at most this many bursts get their read stream solved burst by burst.
SHORT_BURSTS = 128


def short_stream(where, a_words, w_words, q_words, kt, tiles, burst, held, cpw):
    """Cycles of a whole read stream of few bursts: the longest path of :func:`burst_chain` through
    the actual sequence (``tiles`` N tiles, each its record of ``q_words``, then ``kt`` K tiles of
    weights and activations), from the first burst's data to the last's end. Evaluated where
    ``where``, once per distinct layer shape.
    """
    F = READS_IN_FLIGHT
    shape = where.shape
    col = np.broadcast_to(np.arange(shape[-1] if len(shape) else 1), shape)
    fields = [np.broadcast_to(v, shape)[where] for v in (a_words, w_words, q_words, kt, tiles, burst, held, cpw)]
    # q, w, burst, held and cpw are the accelerator's (the last axis); a, kt and tiles the layer's,
    # each below 2**13 in a stream of at most SHORT_BURSTS (<= 512) bursts
    a, kt, tiles = (f.astype(np.int64) for f in fields[0:1] + fields[3:5])
    key = ((a << 26) + (kt << 13) + tiles) * (int(col.max()) + 1) + col[where]
    _, first, back = np.unique(key, return_index=True, return_inverse=True)
    a, w, q, kt, tiles, burst, held, cpw = (v[first] for v in fields)
    na, nw, nq = (cdiv(v, burst) * (v > 0) for v in (a, w, q))
    per_k = nw + na
    per_n = nq + kt * per_k
    n = tiles * per_n
    last = lambda v, k: v - (k - 1) * burst                 # the short last burst of v words
    if n.size <= 8:
        # a few layers (a lone evaluation): the same recurrence on Python floats, without numpy's
        # per-call overhead on every burst
        total = np.array([_stream_path(*(float(x[i]) for x in (q, w, a, kt, tiles, burst, held, cpw)))
                          for i in range(n.size)])
        out = np.zeros(shape)
        out[where] = total[back.reshape(-1)]
        return out
    value = [np.zeros(n.shape)] + [np.full(n.shape, -np.inf)] * (F - 1)
    total = np.zeros(n.shape)
    for t in range(int(n.max())):
        u = t % np.maximum(per_n, 1)
        v = (u - nq) % np.maximum(per_k, 1)
        b = np.where(u < nq, np.where(u < nq - 1, burst, last(q, nq)),
                     np.where(v < nw, np.where(v < nw - 1, burst, last(w, nw)),
                              np.where(v - nw < na - 1, burst, last(a, na)))) * cpw
        v0 = value[0]
        total = np.where(t == n - 1, v0 + b, total)         # the last burst's end (no slot reuse after it)
        value = [np.maximum(v0 + b, value[1]), *value[2:], v0 + b + held]
    out = np.zeros(shape)
    out[where] = total[back.reshape(-1)]
    return out


def _stream_path(q, w, a, kt, tiles, burst, held, cpw):
    """:func:`short_stream` of one layer, on Python floats (no numpy call per burst)."""
    def bursts(words):
        full, rest = divmod(words, burst) if words > 0 else (0, 0)
        return [burst * cpw] * int(full) + ([rest * cpw] if rest else [])
    tile = bursts(w) + bursts(a)
    sizes = (bursts(q) + tile * int(kt)) * int(tiles)
    value = [0.0] + [-math.inf] * (READS_IN_FLIGHT - 1)
    total = 0.0
    for b in sizes:
        v0 = value[0]
        total = v0 + b
        value = [max(v0 + b, value[1]), *value[2:], v0 + b + held]
    return total
