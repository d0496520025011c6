"""Cycles and bytes of matrix-vector products and LSTMs on a near-memory unit (``vaults`` x ``lanes``).

The weights live in the vaults: vault ``v`` holds ``groups = ceil(N / (vaults lanes))``
groups of ``lanes`` output channels, each a header of ``HEADER_WORDS`` lane words (bias,
requantisation) and K weight lane words. Every input vector is broadcast to every vault
(ping-pong, the next loads while the current computes) and streams the vault's whole image
again: one lane word per cycle (one input element times ``lanes`` weights), or ``lanes /
(vault_bits / 8)`` cycles per lane word when the vault port is narrower. The results of
every vault leave through one gather, vault by vault. The first MAC waits for the vault
read latency (the DRAM config's ``latency_cycles``) or the first vector's input beats,
whichever is longer, once per layer (``Calibration.nearmem_pipeline``,
``Calibration.nearmem_input``).

An LSTM (:func:`nearmem_lstm`) streams, per time step, every gate group over x and over h, each
with its own header, and waits for its cell (:func:`cell_tail`) where the RTL does.

The near-memory accelerator around the unit (:func:`nearmem_dma`) reads the input vectors from DRAM
and writes the outputs back: the first vector's read and the last burst's write are its own cycles
(``Cost.dma``); the unit alone (``Cost.core_cycles``) is what gen/validate.py measures.
"""

import numpy as np

from mensa.contract.nearmem import GATES, HEADER_WORDS
from mensa.contract.numeric import DRAM_CREDIT_WORDS
from mensa.model.tiling import cdiv

__all__ = ["nearmem_gemm", "nearmem_lstm", "nearmem_dma", "unit_start", "cell_tail", "CYCLES_PER_BLOCK"]

#: Cycles the LSTM cell takes per block of ``lanes`` cells (:data:`mensa.hw.lstm.CYCLES_PER_BLOCK`: two a
#: gate, accept and table read; six for the cell: its two products, the cell state, the table address of
#: ``tanh(c)``, ``tanh(c)`` and ``o * tanh(c)``).
CYCLES_PER_BLOCK = 2 * GATES + 6


def nearmem_gemm(M, K, N, R, acc, cal):
    """Cycles and vault/local bytes of ``R`` sets of ``M`` matrix-vector products on the near-memory unit.

    Returns ``(compute, load, fill, vault bytes read, local buffer bytes read and written)``.
    """
    V, L = np.maximum(acc.vaults, 1), np.maximum(acc.lanes, 1)
    Q = np.maximum(acc.requant_passes, 1)                   # cycles a gathered beat takes in the requantiser
    port = np.maximum(acc.vault_bpc, 1)                     # bytes per vault word
    groups = cdiv(N, V * L)                                 # lane groups of output channels per vault
    lane_words = groups * (HEADER_WORDS + K)                # one vault's image of the layer
    narrow = np.maximum(L / port, 1)                        # cycles per lane word: vault words it takes
    stream = lane_words * narrow                            # a vector's lane words, one vault
    # a later vector waits for the lanes or the port, or for the gather's beats through the requantiser
    per_vector = np.maximum(stream, V * groups * Q)
    compute = M * groups * K
    load = np.where(M > 0, stream + (M - 1) * per_vector, 0.0) - compute   # headers, a narrow port, a slow gather
    # the last vector's other vaults gathered, and its last beat's passes
    fill = np.where(M > 0, unit_start(K, acc, cal) + (V - 1) * groups * Q + Q - 1, 0.0)
    vault_rd = M * V * cdiv(lane_words * L, port) * port    # every vector reads the image again
    local_rw = M * K * V + M * groups * K * V               # broadcast writes; a read per element and group
    return compute * R, load * R, fill * R, vault_rd * R, local_rw * R


def nearmem_lstm(M, C, H, P, T, acc, cal):
    """Cycles and vault/local bytes of an LSTM on the near-memory unit: ``T`` steps of ``M`` sequences,
    ``C`` inputs, ``H`` cells, ``P`` projection outputs (0: none).

    Returns ``(compute, load, fill, vault bytes read, local buffer bytes read and written)``, as
    :func:`nearmem_gemm`.

    The RTL (:mod:`mensa.hw.nearmem`): vault ``v`` holds ``blocks`` blocks of ``lanes`` cells, each
    block four gate groups; per step it streams every gate group twice, over x and over h (or the
    projection's output), each pass with its own header, then its projection groups over m8. The
    cell (:mod:`mensa.hw.lstm`) takes a block every ``CYCLES_PER_BLOCK`` cycles, behind the gather,
    which walks vault 0's groups (x then h), then vault 1's, ...: when the vaults finish a step's
    h groups, the later vaults' x groups still wait to be gathered and all their blocks to pass the
    cell (:func:`cell_tail`). With a projection a vault's projection groups wait for that every
    step (they multiply m8_t); without one, the next step's x groups hide it (the h groups wait
    for h_t), unless they are shorter.
    """
    V, L = np.maximum(acc.vaults, 1), np.maximum(acc.lanes, 1)
    port = np.maximum(acc.vault_bpc, 1)
    narrow = np.maximum(L / port, 1)
    blocks = cdiv(H, V * L)                                 # blocks of cells per vault
    groups = GATES * blocks                                 # gate groups per vault
    proj = cdiv(P, V * L)                                   # projection groups per vault
    rec = np.where(P > 0, P, H)                             # the recurrent inputs: h or the projection's
    lane_words = groups * (2 * HEADER_WORDS + C + rec) + proj * (HEADER_WORDS + H)
    compute = M * T * (groups * (C + rec) + proj * H)
    load = M * T * lane_words * narrow - compute
    start = unit_start(C, acc, cal)
    Q = np.maximum(acc.requant_passes, 1)
    cell = cell_tail(V, groups, blocks, Q, cal)
    x_phase = groups * (HEADER_WORDS + C) * narrow
    wait = cell + cal.nearmem_cell                          # to h_t (m8_t) in the input buffer
    per_step = np.where(P > 0, wait, np.maximum(wait - x_phase, 0))
    # the last step: its cells (the hidden requantiser's output is the last result's), and with a
    # projection, m8_t, then the later vaults' projection groups gathered
    last = cell + np.where(P > 0, cal.nearmem_cell + (V - 1) * proj * Q, 0)
    fill = np.where(M * T > 0, start + M * T * per_step + (last - per_step), 0.0)
    vault_rd = M * T * V * cdiv(lane_words * L, port) * port
    # broadcast x, written-back h (and m8) words; a read per element and group
    local_rw = M * T * V * (C + rec + H * (P > 0) + groups * (C + rec) + proj * H)
    return compute, load, fill, vault_rd, local_rw


def cell_tail(V, groups, blocks, Q, cal):
    """Cycles from the vaults' last h group of a step to h_t's (m8_t's with a projection) last block out of the cell.

    Vault 0's last block passes the cell; every later vault's ``groups`` x groups are gathered (a beat
    every ``Q`` cycles, the requantiser's passes) and its ``blocks`` blocks pass the cell
    (``CYCLES_PER_BLOCK`` each), or, when the requantiser is the slower, its x and h groups pass the
    requantiser. The hidden requantiser and the write-back into the input buffer take
    ``Calibration.nearmem_cell`` more, and with ``Q`` passes both requantisers' last beats ``Q - 1``.
    """
    later = np.maximum(groups * Q + blocks * CYCLES_PER_BLOCK - cal.nearmem_handover * Q, 2 * groups * Q - 1)
    return CYCLES_PER_BLOCK + 2 * (Q - 1) + (V - 1) * np.maximum(later, 0)


def unit_start(K, acc, cal):
    """The unit's first MAC and its last result's pipeline: the first MAC waits for the vault latency
    or the first vector's ``K`` input elements (a lane beat a cycle), whichever is longer; a narrow
    port's first lane word assembles while the inputs load."""
    L = np.maximum(acc.lanes, 1)
    narrow = np.maximum(L / np.maximum(acc.vault_bpc, 1), 1)
    return np.maximum(acc.latency + cal.nearmem_pipeline, cdiv(K, L) + cal.nearmem_input + 1 - narrow)


def nearmem_dma(M, K, out_beats, late, acc, cal):
    """Cycles the near-memory accelerator (:mod:`mensa.hw.nearmem_accelerator`) spends beyond its unit's.

    ``M`` vectors (time steps) of ``K`` int8 inputs read from DRAM and of ``out_beats`` output lane
    beats written back, ``late`` of the last vector's beats leaving after the vaults' last MAC (the
    gather's, counted in the unit's fill).

    The first vector's input comes from DRAM: the read issued at START, the DRAM latency, then its
    ``K`` bytes at the DRAM's rate or a lane beat a cycle, whichever is slower
    (``Calibration.nearmem_read``); the unit starts when both that and its vaults' first words are in.
    The outputs go to DRAM a burst of ``max_burst`` bus words at a time, a burst once its words are
    in: the bursts still to issue when the vaults finish (the words left over from the last full
    burst and the late beats') are written at the DRAM's rate, at the earliest once the gather has
    sent the late beats, at the latest when the last burst is written; then the last write is
    answered (``Calibration.nearmem_write``: the requantiser, the writer and the write response).
    An idle DRAM moves its first :data:`~mensa.contract.numeric.DRAM_CREDIT_WORDS` beats at the bus rate.
    """
    L, W = np.maximum(acc.lanes, 1), np.maximum(acc.word_bytes, 1)
    bpc = np.maximum(np.minimum(acc.bpc, W), 1e-9)          # bytes a cycle the DRAM moves on this bus
    credit = DRAM_CREDIT_WORDS * W

    def moving(n):      # cycles to move n bytes from an idle DRAM, beyond the bus's
        return cdiv(np.maximum(n - credit, 0), bpc)
    read = acc.latency + cal.nearmem_read + np.maximum(cdiv(K, L), moving(K))
    per_vector = cdiv(out_beats * L, W)                     # bus words, a vector's last one padded
    words = M * per_vector
    burst = np.maximum(acc.max_burst, 1)
    last = np.where(words > 0, (words - 1) % burst + 1, 0)  # the last burst's words
    late_words = np.minimum(late * L / W, words)
    left = (words - late_words) % burst + late_words        # words of the bursts issued after the last MAC
    first = np.minimum(late, (burst - (left - late_words)) * W / L)   # beats to the first of them
    Q = np.maximum(acc.requant_passes, 1)                   # cycles a late beat takes (the requantiser's passes)
    write = cal.nearmem_write + np.maximum(moving(last * W), first * Q + moving(left * W) - late * Q)
    return np.where(M > 0, np.maximum(read - unit_start(K, acc, cal), 0) + write, 0.0)
