"""One program compiler for every accelerator: a layer -> what its hardware runs.

:func:`compile_layer` is what the scheduler, the CLI and the testbenches call: it
picks the compiler of the accelerator's kind. A layer an accelerator cannot run is a
:class:`~mensa.core.errors.CompileError`, whatever the kind, so what the scheduler may
place on an accelerator is exactly what this function accepts.
"""

from mensa.contract.gemm_program import compile_gemm
from mensa.contract.nearmem import NearMemGeometry, compile_nearmem
from mensa.contract.regs import VECTOR_OPS
from mensa.contract.vector_program import compile_vector
from mensa.core.config import AcceleratorConfig, CoreKind
from mensa.core.errors import CompileError  # noqa: F401  (raised by both compilers)

__all__ = ["compile_layer", "CompileError"]


def compile_layer(accelerator, layer, params, x, *, base=0):
    """Compile ``layer`` for ``accelerator``.

    Parameters
    ----------
    accelerator : :class:`~mensa.core.config.AcceleratorConfig`
        The accelerator (of a system config) that runs the layer; its kind picks the compiler.
    layer : :class:`~mensa.core.ir.Layer`
        A quantised layer.
    params : :class:`~mensa.core.golden.LayerParams`
    x : int8 array of ``layer.in_shape``, or a tuple of the inputs of a two-input op (mul)
    base : int
        Where the layer's image starts: a DRAM byte address (systolic, a multiple of 4096)
        or a vault word (near-memory).

    Returns
    -------
    :class:`~mensa.contract.gemm_program.Program`, :class:`~mensa.contract.vector_program.VectorProgram`
    (a systolic accelerator with a vector unit runs depthwise and the vector ops there) or
    :class:`~mensa.contract.nearmem.NearMemProgram`

    Raises
    ------
    CompileError
        The accelerator cannot run the layer; one line naming the layer and what is allowed.
    """
    if not isinstance(accelerator, AcceleratorConfig):
        raise TypeError(f"accelerator must be an AcceleratorConfig, not {accelerator!r}")
    if accelerator.kind is CoreKind.SYSTOLIC:
        if accelerator.vector is not None and layer.op in VECTOR_OPS:
            return compile_vector(accelerator, layer, params, x, base=base)
        return compile_gemm(accelerator, layer, params, x, base=base)
    return compile_nearmem(NearMemGeometry.of(accelerator.nearmem), layer, params, x, base=base)
