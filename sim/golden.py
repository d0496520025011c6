"""The bit-exact numpy golden model: the definition every RTL test is measured against."""

import numpy as np

__all__ = ["matmul"]


def matmul(a, b):
    """int8 x int8 -> int32 matrix product ``a @ b`` (A: M x K, B: K x N), exact."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not chain")
    # float64 BLAS is exact here: |a*b| < 2**15 and K < 2**37 keeps every partial sum below 2**53.
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64).astype(np.int32)
