"""One program compiler for every accelerator: a layer -> what its hardware runs.

:func:`compile_layer` is what the scheduler, the CLI and the testbenches call: it
picks the compiler of the accelerator's kind. A layer an accelerator cannot run is a
:class:`~mensa.core.errors.CompileError`, whatever the kind, so what the scheduler may
place on an accelerator is exactly what this function accepts.
"""

from mensa.contract.gemm_program import compile_gemm, gemm_refusal
from mensa.contract.nearmem import NearMemGeometry, compile_nearmem, nearmem_refusal
from mensa.core.config import AcceleratorConfig, CoreKind
from mensa.core.errors import CompileError  # noqa: F401  (raised by both compilers)
from mensa.core.ir import Activation, Op

__all__ = ["compile_layer", "refusal", "CompileError", "HARDWARE_OPS", "HARDWARE_ACTIVATIONS", "in_hardware"]

#: The ops and fused activations some accelerator mensa builds runs. Where a layer of these
#: may go is what :func:`refusal` says; a layer with an op or activation outside them has no
#: hardware yet (:func:`in_hardware`), and the cost model places it by its modelled op sets
#: (:data:`mensa.model.cost.SUPPORTED_OPS`).
HARDWARE_OPS = frozenset({Op.CONV2D, Op.DEPTHWISE, Op.FC, Op.LSTM})
HARDWARE_ACTIVATIONS = frozenset({Activation.NONE, Activation.RELU, Activation.RELU6})


def in_hardware(layer):
    """True if some accelerator mensa builds runs layers of this op and activation."""
    return layer.op in HARDWARE_OPS and layer.activation in HARDWARE_ACTIVATIONS


def refusal(accelerator, layer):
    """Why ``accelerator`` cannot run ``layer`` ("" when it can): every rule of its compiler that
    depends on the layer's shape alone. The scheduler and the cost model place a layer only
    where this is empty; :func:`compile_layer` refuses with the same text (and further only on
    the layer's data: parameters that would overflow the accumulator).
    """
    if not isinstance(accelerator, AcceleratorConfig):
        raise TypeError(f"accelerator must be an AcceleratorConfig, not {accelerator!r}")
    if accelerator.kind is CoreKind.SYSTOLIC:
        return gemm_refusal(accelerator, layer)
    return nearmem_refusal(NearMemGeometry.of(accelerator.nearmem), layer)


def compile_layer(accelerator, layer, params, x, *, base=0):
    """Compile ``layer`` for ``accelerator``.

    Parameters
    ----------
    accelerator : :class:`~mensa.core.config.AcceleratorConfig`
        The accelerator (of a system config) that runs the layer; its kind picks the compiler.
    layer : :class:`~mensa.core.ir.Layer`
        A quantised layer.
    params : :class:`~mensa.core.golden.LayerParams`
    x : int8 array of ``layer.in_shape``
    base : int
        Where the layer's image starts: a DRAM byte address (systolic, a multiple of 4096)
        or a vault word (near-memory).

    Returns
    -------
    :class:`~mensa.contract.gemm_program.Program` or :class:`~mensa.contract.nearmem.NearMemProgram`

    Raises
    ------
    CompileError
        The accelerator cannot run the layer; one line naming the layer and what is allowed.
    """
    if not isinstance(accelerator, AcceleratorConfig):
        raise TypeError(f"accelerator must be an AcceleratorConfig, not {accelerator!r}")
    if accelerator.kind is CoreKind.SYSTOLIC:
        return compile_gemm(accelerator, layer, params, x, base=base)
    return compile_nearmem(NearMemGeometry.of(accelerator.nearmem), layer, params, x, base=base)
