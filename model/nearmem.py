"""Cycles and bytes of matrix-vector products on a near-memory unit (``vaults`` x ``lanes``).

The weights live in the vaults: vault ``v`` holds ``groups = ceil(N / (vaults lanes))``
groups of ``lanes`` output channels, each a header of ``HEADER_WORDS`` lane words (bias,
requantisation) and K weight lane words. Every input vector is broadcast to every vault
(ping-pong, the next loads while the current computes) and streams the vault's whole image
again: one lane word per cycle (one input element times ``lanes`` weights), or ``lanes /
(vault_bits / 8)`` cycles per lane word when the vault port is narrower. The results of
every vault leave through one gather, vault by vault. The first MAC waits for the vault
read latency (the DRAM config's ``latency_cycles``) or the first vector's input beats,
whichever is longer, once per step (``Calibration.nearmem_pipeline``,
``Calibration.nearmem_input``).
"""

import numpy as np

from mensa.contract.nearmem import HEADER_WORDS
from mensa.model.tiling import cdiv

__all__ = ["nearmem_gemm"]


def nearmem_gemm(M, K, N, R, acc, cal):
    """Cycles and vault/local bytes of ``R`` sets of ``M`` matrix-vector products on the near-memory unit.

    Returns ``(compute, load, fill, vault bytes read, local buffer bytes read and written)``.
    """
    V, L = np.maximum(acc.vaults, 1), np.maximum(acc.lanes, 1)
    port = np.maximum(acc.vault_bpc, 1)                     # bytes per vault word
    groups = cdiv(N, V * L)                                 # lane groups of output channels per vault
    lane_words = groups * (HEADER_WORDS + K)                # one vault's image of the layer
    narrow = np.maximum(L / port, 1)                        # cycles per lane word: vault words it takes
    per_vector = np.maximum(lane_words * narrow, V * groups)   # lanes or port; the gather's beats
    compute = M * groups * K
    load = M * per_vector - compute                         # headers, a narrow port, a slow gather
    # The first MAC waits for the vault latency or the first vector's input beats; a narrow port's
    # first lane word assembles while the inputs load.
    start = np.maximum(acc.latency + cal.nearmem_pipeline, cdiv(K, L) + cal.nearmem_input + 1 - narrow)
    fill = np.where(M > 0, start + (V - 1) * groups, 0.0)   # the last vector's other vaults gathered
    vault_rd = M * V * cdiv(lane_words * L, port) * port    # every vector reads the image again
    local_rw = M * K * V + M * groups * K * V               # broadcast writes; a read per element and group
    return compute * R, load * R, fill * R, vault_rd * R, local_rw * R
