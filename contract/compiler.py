"""One program compiler for every accelerator: a layer -> what its hardware runs.

:func:`compile_layer` is what the scheduler, the CLI and the testbenches call: it
picks the compiler of the engine that runs the layer (:func:`engine`). A layer an
accelerator cannot run is a :class:`~mensa.core.errors.CompileError`, whatever the kind,
and :func:`refusal` says so from the layer's shape alone, so what the scheduler may place
on an accelerator is exactly what this module accepts.
"""

import math

from mensa.contract.gemm_program import GEMM_OPS, compile_gemm, gemm_layouts, gemm_refusal
from mensa.contract.nearmem import NearMemGeometry, nearmem_refusal
from mensa.contract.nearmem_program import compile_nearmem_layer, nearmem_layouts
from mensa.contract.regs import VECTOR_OPS
from mensa.contract.vector_program import (TABLE_OPS as VECTOR_TABLE_OPS, compile_vector, vector_layouts,
                                           vector_refusal)
from mensa.core.config import AcceleratorConfig, CoreKind
from mensa.core.errors import CompileError  # noqa: F401  (raised by every compiler)
from mensa.core.golden import TABLE_ACTIVATIONS
from mensa.core.ir import Activation, Op

__all__ = ["compile_layer", "refusal", "engine", "CompileError", "HARDWARE_OPS", "HARDWARE_ACTIVATIONS",
           "TABLE_OPS", "in_hardware", "layout_refusal", "layouts"]

#: The ops and fused activations some accelerator mensa builds runs. Where a layer of these
#: may go is what :func:`refusal` says; a layer with an op or activation outside them has no
#: hardware yet (:func:`in_hardware`), and the cost model places it by its modelled op sets
#: (:data:`mensa.model.cost.SUPPORTED_OPS`).
HARDWARE_OPS = frozenset({Op.CONV2D, Op.DEPTHWISE, Op.FC, Op.LSTM, Op.MAXPOOL, Op.AVGPOOL, Op.GLOBAL_AVGPOOL,
                          Op.ADD, Op.MUL, Op.CONCAT})
HARDWARE_ACTIVATIONS = frozenset({Activation.NONE, Activation.RELU, Activation.RELU6})
#: The ops some accelerator runs with a table activation after them: the systolic array's (its
#: output through the table) and the vector unit's that requantise.
TABLE_OPS = frozenset(GEMM_OPS) | frozenset(VECTOR_TABLE_OPS)


def in_hardware(layer, accelerator=None):
    """True if some accelerator mensa builds runs layers of this op and activation: the clamps
    anywhere, the table activations after the ops that requantise (:data:`TABLE_OPS`). A concat is
    a layout, where its inputs lie side by side (on ``accelerator``, when given: :func:`layout_refusal`)."""
    if layer.op not in HARDWARE_OPS:
        return False
    if layer.op is Op.CONCAT:
        return accelerator is None or accelerator.kind is not CoreKind.SYSTOLIC \
            or not layout_refusal(accelerator, layer)
    return layer.activation in HARDWARE_ACTIVATIONS or (layer.activation in TABLE_ACTIVATIONS
                                                         and layer.op in TABLE_OPS)


def engine(accelerator, layer):
    """The engine of ``accelerator`` that runs ``layer``: ``"gemm"`` (the systolic array),
    ``"vector"`` (the vector unit beside it: depthwise convs and the vector ops, when the
    accelerator has one), ``"nearmem"``, or ``"layout"`` for a concat (no engine runs it: its
    producers write their outputs side by side, :func:`layout_refusal`)."""
    if layer.op is Op.CONCAT:
        return "layout"
    if accelerator.kind is not CoreKind.SYSTOLIC:
        return "nearmem"
    if accelerator.vector is not None and layer.op in VECTOR_OPS:
        return "vector"
    return "gemm"


def refusal(accelerator, layer):
    """Why ``accelerator`` cannot run ``layer`` ("" when it can): every rule of its compiler that
    depends on the layer's shape alone. The scheduler and the cost model place a layer only
    where this is empty; :func:`compile_layer` refuses with the same text (and further only on
    the layer's data: parameters that would overflow the accumulator).
    """
    if not isinstance(accelerator, AcceleratorConfig):
        raise TypeError(f"accelerator must be an AcceleratorConfig, not {accelerator!r}")
    kind = engine(accelerator, layer)
    if kind == "layout":
        return layout_refusal(accelerator, layer)
    if kind == "gemm":
        return gemm_refusal(accelerator, layer)
    if kind == "vector":
        return vector_refusal(accelerator, layer)
    return nearmem_refusal(NearMemGeometry.of(accelerator.nearmem), layer)


def layout_refusal(accelerator, layer):
    """Why a concat cannot be a layout on ``accelerator`` ("" when it can).

    An activation lies in DRAM as channel-tile planes (:class:`~mensa.contract.gemm_program.Layout`),
    so the planes of two tensors of the same pixels, one after the other, are their concatenation
    when every input but the last fills whole tiles: the network compiler
    (:mod:`mensa.contract.network`) gives each producer its offset in the concat's buffer, and
    the concat costs nothing. The inputs must share the output's quantisation (as TFLite's
    concat: :func:`mensa.core.quant.quantize_network` gives them the concat's), since nothing
    requantises them.
    """
    if accelerator.kind is not CoreKind.SYSTOLIC:
        return (f"{layer.name!r} (concat): the near-memory unit writes no DRAM activations; allowed: a concat "
                f"on an accelerator with a systolic array")
    tiles = sorted({accelerator.array.cols} | ({accelerator.vector.lanes} if accelerator.vector else set()))
    channels = [shape[-1] for shape in (layer.in_shape, *layer.extra_in_shapes)]
    for c in channels[:-1]:
        if any(c % t for t in tiles):
            return (f"{layer.name!r} (concat): an input of {c} channels ends inside a channel tile of "
                    f"{' and '.join(map(str, tiles))}; allowed: every input but the last a multiple of "
                    f"{math.lcm(*tiles)} channels")
    q = layer.quant
    if q is not None and any(qi != q.output for qi in q.inputs):
        return (f"{layer.name!r} (concat): its inputs are quantised unlike its output; allowed: inputs that "
                f"share the output's scale and zero point (nothing requantises them)")
    return ""


def layouts(accelerator, layer):
    """How ``layer`` on ``accelerator`` lays its activations out in DRAM, from its shapes alone:
    ``{"input": Layout, "output": Layout}`` (and ``"input2"`` for the vector unit's add and mul), the
    :class:`~mensa.contract.gemm_program.Layout` s its compiler gives the program (a test holds the two
    equal). The scheduler places a producer and a reader only where one feeds the other in place
    (:meth:`~mensa.contract.gemm_program.Layout.feeds`), as the network compiler requires. A tap-packed
    conv's input is its im2col rows, which only the host writes. Not for a concat (a layout itself)."""
    kind = engine(accelerator, layer)
    if kind == "gemm":
        return gemm_layouts(accelerator, layer)
    if kind == "vector":
        return vector_layouts(accelerator, layer)
    if kind == "nearmem":
        return nearmem_layouts(accelerator, layer)
    raise ValueError(f"{layer.name!r} (concat): a layout itself, with no layouts of its own")


def compile_layer(accelerator, layer, params, x, *, base=0, vault_base=0):
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
        DRAM byte address of the layer's image, a multiple of 4096.
    vault_base : int
        First vault word of a near-memory layer's vault images (the others have no vaults).

    Returns
    -------
    :class:`~mensa.contract.gemm_program.Program`, :class:`~mensa.contract.vector_program.VectorProgram`
    (a systolic accelerator with a vector unit runs depthwise and the vector ops there) or
    :class:`~mensa.contract.nearmem_program.NearMemLayerProgram`

    Raises
    ------
    CompileError
        The accelerator cannot run the layer; one line naming the layer and what is allowed.
    """
    if not isinstance(accelerator, AcceleratorConfig):
        raise TypeError(f"accelerator must be an AcceleratorConfig, not {accelerator!r}")
    kind = engine(accelerator, layer)
    if kind == "layout":
        raise CompileError(layout_refusal(accelerator, layer) or
                           f"{layer.name!r} (concat): a layout, not a layer an engine runs; its producers write "
                           f"into its buffer: run it within its network (mensa run)")
    if kind == "vector":
        return compile_vector(accelerator, layer, params, x, base=base)
    if kind == "gemm":
        return compile_gemm(accelerator, layer, params, x, base=base)
    return compile_nearmem_layer(accelerator, layer, params, x, base=base, vault_base=vault_base)
