"""The program compiler of the near-memory accelerator: a layer -> descriptor registers, DRAM image, vault images.

:func:`compile_nearmem_layer` wraps :func:`mensa.contract.nearmem.compile_nearmem` (which lays the
weights and requantisation records out in the vaults and checks what the unit runs) for the
peripheral :class:`~mensa.hw.nearmem_accelerator.NearMemAccelerator`: the descriptor becomes the
values of the registers of :func:`mensa.contract.regs.register_map`, and the layer's input and
output vectors get DRAM regions the accelerator's DMA reads and writes. The weights stay in the
vaults (``vault_images``): the host loads them once, as a stacked memory's logic layer keeps them.

DRAM layout, each region on its own 4 KiB page (:data:`~mensa.contract.gemm_program.ALIGN`):

input
    ``M`` vectors (batch rows or pixels of an FC or pointwise layer, an LSTM's time steps
    x_0 .. x_{T-1}), one after another, each :func:`vector_bytes` of ``K``: element ``k`` in
    byte ``k``, zeros to the vector's end. A vector takes ``IN_VECTOR_WORDS`` whole bus words
    and a whole number of lane words (``lanes`` bytes), so the DMA reads each vector as one
    command and hands the unit whole lane beats.
output
    ``M`` int8 vectors (LSTM: h_0 .. h_{T-1}), each :func:`vector_bytes` of the unit's
    ``vaults * out_groups * lanes`` output channels: channel ``n`` in byte ``n``; the first
    ``N`` channels are the layer's, then what the unit emits for its padding channels (zero
    weights; a reader ignores them), then zeros to the word's end.

The bus (``memory.data_bits / 8`` bytes) and the lanes must divide one another (:func:`bus_ratio`),
as a vault word and the lanes must.
"""

import math
from dataclasses import dataclass

import numpy as np

from mensa.contract.gemm_program import ALIGN, Layout, LayerProgram, address_registers
from mensa.contract.nearmem import NearMemGeometry, NearMemProgram, compile_nearmem
from mensa.contract.regs import NEARMEM_FIELDS, register_map
from mensa.core.config import AcceleratorConfig, ConfigError, CoreKind
from mensa.core.errors import CompileError

__all__ = ["NearMemLayerProgram", "compile_nearmem_layer", "nearmem_layouts", "bus_ratio", "vector_bytes"]


def _up(n, to):
    return -(-n // to) * to


def bus_ratio(config):
    """``(wide, ratio)``: lane words a bus word holds (``wide``) or bus words a lane word takes, of the
    near-memory accelerator ``config``; a :class:`ConfigError` if the two do not divide one another."""
    lanes, word = config.nearmem.lanes, config.memory.data_bits // 8
    if word % lanes and lanes % word:
        raise ConfigError(f"accelerator {config.name!r}: memory.data_bits {config.memory.data_bits} ({word} bytes) "
                          f"and nearmem.lanes {lanes} do not divide one another; allowed: lanes a divisor or a "
                          f"multiple of data_bits / 8")
    return (True, word // lanes) if word >= lanes else (False, lanes // word)


def vector_bytes(config, channels):
    """Bytes of one vector of ``channels`` int8 elements in DRAM: whole bus words and whole lane words."""
    bus_ratio(config)
    return _up(channels, max(config.nearmem.lanes, config.memory.data_bits // 8))


@dataclass(frozen=True, eq=False)
class NearMemLayerProgram(LayerProgram):
    """One layer compiled for the near-memory accelerator.

    Members
    -------
    registers : dict
        Descriptor register name -> value (wide ones split into ``_LO``/``_HI`` as the map has them).
    image : numpy.ndarray
        uint8 DRAM image from ``base``: the input region, then the output region (zero).
    base : int
        DRAM byte address of ``image[0]``.
    regions, layouts : dict
        ``input`` and ``output``; see :class:`~mensa.contract.gemm_program.LayerProgram`.
    unit : :class:`~mensa.contract.nearmem.NearMemProgram`
        The layer as the unit runs it: its descriptor, vault images and input vectors.
    out_shape : tuple
        The layer's output shape.
    """
    registers: dict
    image: np.ndarray
    base: int
    regions: dict
    layouts: dict
    unit: NearMemProgram
    out_shape: tuple

    @property
    def geometry(self):
        return self.unit.geometry

    @property
    def vault_images(self):
        """Vault ``v``'s bytes from word :attr:`vault_base` (the host loads them before START)."""
        return self.unit.images

    @property
    def vault_base(self):
        return self.unit.descriptor["base"]

    @property
    def m(self):
        return self.unit.vectors

    @property
    def output_bytes(self):
        return self.regions["output"][1]

    def output(self, region):
        """The layer's int8 output from the bytes of the output region (``output_bytes`` of them)."""
        raw = self.region_bytes(region).reshape(self.m, -1)
        return raw[:, :self.unit.out_channels].reshape(self.out_shape).copy()


def nearmem_layouts(config, layer):
    """``{"input": Layout, "output": Layout}`` of ``layer`` on the near-memory accelerator ``config``, from its
    shapes: one vector a row (an LSTM's time step), its channels one after another (:func:`vector_bytes`); the
    unit emits whole groups of every vault's lanes."""
    g = NearMemGeometry.of(config.nearmem)
    *before, k = layer.in_shape
    *lead, n = layer.out_shape
    width = g.vaults * g.lanes
    have, want = vector_bytes(config, k), vector_bytes(config, -(-n // width) * width)
    return {"input": Layout(have, have, math.prod(before), k), "output": Layout(want, want, math.prod(lead), n)}


def compile_nearmem_layer(config, layer, params, x, *, base=0, vault_base=0):
    """Compile ``layer`` for the near-memory accelerator ``config``.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig` of kind ``nearmem``
    layer, params, x
        As :func:`mensa.contract.nearmem.compile_nearmem` takes them.
    base : int
        DRAM byte address of the image, a multiple of 4096.
    vault_base : int
        First vault word of the layer's vault images.

    Raises
    ------
    CompileError
        The unit cannot run the layer (:func:`mensa.contract.nearmem.nearmem_refusal`), or its DRAM image
        does not fit the address space.
    """
    if not isinstance(config, AcceleratorConfig) or config.kind is not CoreKind.NEARMEM:
        raise TypeError(f"config must be an AcceleratorConfig of kind nearmem, not {config!r}")
    if not isinstance(base, int) or base < 0 or base % ALIGN:
        raise ValueError(f"base must be a non-negative multiple of {ALIGN}, not {base!r}")
    geometry = NearMemGeometry.of(config.nearmem)
    unit = compile_nearmem(geometry, layer, params, x, base=vault_base)
    assert not unit.descriptor["raw"], "the accelerator writes int8 outputs"
    m, k = unit.inputs.shape
    in_bytes = vector_bytes(config, k)
    out_bytes = vector_bytes(config, unit.out_beats * geometry.lanes)
    inp = np.zeros((m, in_bytes), np.int8)
    inp[:, :k] = unit.inputs
    sizes = {"input": inp.nbytes, "output": m * out_bytes}
    regions, addr = {}, base
    for name, size in sizes.items():
        regions[name] = addr, size
        addr += _up(size, ALIGN)
    if addr > 1 << config.memory.addr_bits:
        raise CompileError(f"layer {layer.name!r}: its image ends at {addr:#x}, beyond the "
                           f"{config.memory.addr_bits}-bit address space")
    image = np.zeros(addr - base, np.uint8)
    image[:inp.nbytes] = inp.reshape(-1).view(np.uint8)

    regmap = register_map(config)
    registers = {}
    for name in NEARMEM_FIELDS:
        value = int(unit.descriptor[name])
        if name.upper() in regmap:
            registers[name.upper()] = value
        else:
            registers[f"{name.upper()}_LO"] = value & 0xFFFFFFFF
            registers[f"{name.upper()}_HI"] = value >> 32
    registers["IN_VECTOR_WORDS"] = in_bytes // (config.memory.data_bits // 8)
    registers.update(address_registers(regmap, {name: at for name, (at, _) in regions.items()}))
    for name in registers:
        assert name in regmap, name         # the map and the compiler are one description
    layouts = nearmem_layouts(config, layer)
    assert layouts["input"].vector_bytes == in_bytes and layouts["output"].vector_bytes == out_bytes
    return NearMemLayerProgram(registers=registers, image=image, base=base, regions=regions, layouts=layouts,
                               unit=unit, out_shape=tuple(layer.out_shape))
