"""The near-memory accelerator's side of the contract: its register map holds the unit's descriptor, its
C header says the same offsets, and its layer program lays the vectors out in DRAM as documented."""

import shutil
import subprocess

import numpy as np
import pytest

from mensa.contract.compiler import compile_layer
from mensa.contract.header import header
from mensa.contract.nearmem import NearMemGeometry, compile_nearmem, descriptor_fields
from mensa.contract.nearmem_program import bus_ratio, vector_bytes
from mensa.contract.regs import NEARMEM_FIELDS, Access, register_map
from mensa.core import golden
from mensa.core.config import AcceleratorConfig, ArrayConfig, ConfigError, CoreKind, MemoryConfig, NearMemConfig
from mensa.core.errors import CompileError
from mensa.core.ir import Layer, LayerQuant, Op, QuantParams


def _config(lanes=4, data_bits=64, addr_bits=32, lstm=True, vaults=3, vault_bits=32):
    return AcceleratorConfig(name="nm", kind=CoreKind.NEARMEM, memory=MemoryConfig(data_bits=data_bits, addr_bits=addr_bits),
                             nearmem=NearMemConfig(vaults=vaults, lanes=lanes, vault_bits=vault_bits, vault_kib=64, local_kib=4,
                                                   lstm=lstm))


def _fc(m, k, n):
    quant = LayerQuant(inputs=(QuantParams(0.05, 3),), output=QuantParams(0.2, -5),
                       weight_scales=tuple(np.linspace(0.001, 0.01, n)))
    layer = Layer(name="fc", op=Op.FC, in_shape=(m, k), out_shape=(m, n), quant=quant)
    rng = np.random.default_rng(k * n)
    params = golden.layer_params(layer, weights=rng.integers(-128, 128, (k, n)).astype(np.int8),
                                 bias=rng.integers(-999, 999, n).astype(np.int32))
    return layer, params, rng.integers(-128, 128, (m, k)).astype(np.int8)


def test_the_descriptor_fields_are_registers_of_their_width_and_sign_but_raw():
    acc = _config()
    rm = register_map(acc)
    fields = {name: (bits, signed) for name, bits, signed in descriptor_fields(NearMemGeometry.of(acc.nearmem))}
    assert set(fields) - set(NEARMEM_FIELDS) == {"raw"} and "RAW" not in rm
    for name in NEARMEM_FIELDS:
        r = rm[name.upper()]
        assert (r.width, r.signed, r.access) == (*fields[name], Access.RW), name
    # run control and counters as on the systolic accelerator
    systolic = register_map(AcceleratorConfig(name="sa", array=ArrayConfig()))
    for name in ("CTRL", "STATUS", "IRQ_ENABLE", "IRQ_STATUS", "CYCLES_TOTAL_LO", "CYCLES_STALL_HI"):
        assert (rm[name].access, rm[name].width, rm[name].bits) == (systolic[name].access, systolic[name].width,
                                                                    systolic[name].bits), name
    assert (rm["VAULTS"].const, rm["LANES"].const, rm["LSTM_DATAPATH"].const) == (3, 4, 1)


def test_the_header_has_the_maps_offsets():
    rm = register_map(_config(addr_bits=40))
    text = header(rm, prefix="pavlov")
    for r in rm:
        assert f"#define PAVLOV_{r.name}_OFFSET" in text and f"0x{r.offset:02x}u" in text
    assert "PAVLOV_INPUT_ADDR_HI_OFFSET" in text and "PAVLOV_CTRL_START" in text


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")
def test_c_compiler_reads_the_offsets_and_constants_of_the_near_memory_map(tmp_path):
    rm = register_map(_config(vaults=5, lanes=8, addr_bits=40))
    (tmp_path / "nm_regs.h").write_text(header(rm, prefix="nm"))
    prints = "\n".join(f'    printf("{r.name} %u\\n", (unsigned)NM_{r.name}_OFFSET);' for r in rm)
    (tmp_path / "main.c").write_text(
        f'#include <stdio.h>\n#include "nm_regs.h"\nint main(void)\n{{\n{prints}\n'
        f'    printf("%u %u\\n", (unsigned)NM_VAULTS_VALUE, (unsigned)NM_LANES_VALUE);\n    return 0;\n}}\n')
    cc = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", str(tmp_path / "main"),
                         str(tmp_path / "main.c")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:-2] == [f"{r.name} {r.offset}" for r in rm] and out[-2] == "5 8"


@pytest.mark.parametrize("lanes, data_bits", [(4, 64), (8, 32), (8, 64), (12, 32)])
def test_vectors_lie_in_dram_as_documented_and_the_registers_are_the_descriptor(lanes, data_bits):
    acc = _config(lanes=lanes, data_bits=data_bits, lstm=False)
    layer, params, x = _fc(3, 21, 10)
    prog = compile_layer(acc, layer, params, x, base=0x2000)
    unit = compile_nearmem(NearMemGeometry.of(acc.nearmem), layer, params, x)
    word = data_bits // 8
    vb = -(-21 // max(lanes, word)) * max(lanes, word)
    assert vector_bytes(acc, 21) == vb and vb % word == 0 and vb % lanes == 0
    assert prog.regions["input"] == (0x2000, 3 * vb)
    out_vb = vector_bytes(acc, unit.out_beats * lanes)
    assert prog.regions["output"] == (0x3000, 3 * out_vb)
    region = prog.region("input").view(np.int8).reshape(3, vb)
    assert (region[:, :21] == x).all() and not region[:, 21:].any()
    assert prog.registers["IN_VECTOR_WORDS"] == vb // word
    assert {k: prog.registers[k.upper()] for k in NEARMEM_FIELDS} == {k: unit.descriptor[k] for k in NEARMEM_FIELDS}
    assert [i.tobytes() for i in prog.vault_images] == [i.tobytes() for i in unit.images]
    # the output region's first N channels of each vector are the layer's
    out = np.arange(3 * out_vb, dtype=np.int64).astype(np.int8).reshape(3, out_vb)
    assert (prog.output(out.view(np.uint8).tobytes()) == out[:, :10]).all()
    moved = prog.relocated(register_map(acc), {"input": 0x10000, "output": 0x20000})
    assert (moved["INPUT_ADDR"], moved["OUTPUT_ADDR"]) == (0x10000, 0x20000)


def test_a_bus_and_lanes_that_do_not_divide_one_another_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"memory.data_bits 64 \(8 bytes\) and nearmem.lanes 12 do not divide"):
        bus_ratio(_config(lanes=12, data_bits=64))


def test_a_layer_the_unit_cannot_run_is_refused_in_one_line():
    layer = Layer(name="c3", op=Op.CONV2D, in_shape=(1, 4, 4, 2), out_shape=(1, 2, 2, 2), kernel=(3, 3),
                  quant=LayerQuant(inputs=(QuantParams(0.05, 0),), output=QuantParams(0.1, 0), weight_scales=(0.01,) * 2))
    params = golden.layer_params(layer, weights=np.zeros(golden.weight_shape(layer), np.int8))
    with pytest.raises(CompileError, match="3x3 kernel") as e:
        compile_layer(_config(), layer, params, np.zeros(layer.in_shape, np.int8))
    assert "\n" not in str(e.value)
