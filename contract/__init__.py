"""mensa.contract: what the hardware and the software agree on, importable without Amaranth.

Geometry and tiling, register and descriptor layouts, opcodes, DRAM and vault memory
layouts, the C header text, and one program compiler per accelerator kind behind
:func:`mensa.contract.compiler.compile_layer`. Depends on :mod:`mensa.core` only.
"""
