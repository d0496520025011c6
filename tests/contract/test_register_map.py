"""The register map follows the config, and the C header written from it says the same offsets."""

import shutil
import subprocess

import pytest

from mensa.contract.header import header
from mensa.core.config import AcceleratorConfig, ArrayConfig, Dataflow, MemoryConfig
from mensa.contract.regs import Access, Register, RegisterMap, register_map


def _config(rows=8, cols=8, addr_bits=32, dataflow=Dataflow.WEIGHT_STATIONARY):
    return AcceleratorConfig(name="acc", array=ArrayConfig(rows=rows, cols=cols, dataflow=dataflow),
                             memory=MemoryConfig(addr_bits=addr_bits))


def test_constant_registers_follow_the_array_size():
    small, big = register_map(_config(4, 4)), register_map(_config(16, 8, dataflow=Dataflow.OUTPUT_STATIONARY))
    assert (small["ROWS"].const, small["COLS"].const, small["DATAFLOW"].const) == (4, 4, 0)
    assert (big["ROWS"].const, big["COLS"].const, big["DATAFLOW"].const) == (16, 8, 1)
    assert "#define ACC_COLS_VALUE" in header(big, prefix="acc") and "16" in header(big, prefix="acc")


def test_wide_addresses_split_into_lo_and_hi_registers():
    narrow, wide = register_map(_config(addr_bits=32)), register_map(_config(addr_bits=40))
    assert narrow["INPUT_ADDR"].width == 32 and "INPUT_ADDR_LO" not in narrow
    assert (wide["INPUT_ADDR_LO"].width, wide["INPUT_ADDR_HI"].width) == (32, 8)
    assert wide["INPUT_ADDR_HI"].offset == wide["INPUT_ADDR_LO"].offset + 4


def test_offsets_are_distinct_words_inside_the_decoded_space():
    rm = register_map(_config(addr_bits=48))
    offsets = [r.offset for r in rm]
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < rm.size for o in offsets)
    assert rm.size == 1 << rm.addr_bits


def test_bad_descriptions_are_refused():
    with pytest.raises(ValueError, match="share offset"):
        RegisterMap((Register("A", 0, 8, Access.RW, "a"), Register("B", 0, 8, Access.RW, "b")))
    with pytest.raises(ValueError, match="described twice"):
        RegisterMap((Register("A", 0, 8, Access.RW, "a"), Register("A", 4, 8, Access.RW, "b")))
    with pytest.raises(ValueError, match="word-aligned"):
        Register("A", 2, 8, Access.RW, "a")
    with pytest.raises(ValueError, match="width"):
        Register("A", 0, 33, Access.RW, "a")
    with pytest.raises(ValueError, match="constant"):
        Register("A", 0, 8, Access.RW, "a", const=3)
    with pytest.raises(TypeError, match="config"):
        register_map(ArrayConfig())


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")
@pytest.mark.parametrize("rows,cols,addr_bits", [(4, 4, 32), (16, 8, 40)])
def test_c_compiler_reads_the_offsets_of_the_map(rows, cols, addr_bits, tmp_path):
    rm = register_map(_config(rows, cols, addr_bits))
    (tmp_path / "acc_regs.h").write_text(header(rm, prefix="acc"))
    prints = "\n".join(f'    printf("{r.name} %u %u\\n", (unsigned)ACC_{r.name}_OFFSET, (unsigned)ACC_{r.name}_WIDTH);'
                       for r in rm)
    (tmp_path / "main.c").write_text(
        f'#include <stdio.h>\n#include "acc_regs.h"\nint main(void)\n{{\n{prints}\n'
        f'    printf("COLS_VALUE %u\\n", (unsigned)ACC_COLS_VALUE);\n    return 0;\n}}\n')
    cc = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", str(tmp_path / "main"),
                         str(tmp_path / "main.c")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:-2] == [f"{r.name} {r.offset} {r.width}" for r in rm]
    assert out[-2] == f"COLS_VALUE {cols}"


@pytest.mark.parametrize("rows,cols", [(2, 3), (8, 8)])
def test_emit_writes_the_header_of_the_config_next_to_the_verilog(rows, cols, tmp_path):
    from mensa.gen.verilog import emit
    from mensa.core.config import loads
    from mensa.sim.tb_regs import parse_header
    system = loads(f'name = "soc"\n[[accelerator]]\nname = "sa"\n[accelerator.array]\nrows = {rows}\ncols = {cols}\n')
    written = dict(emit(system, tmp_path))
    assert tmp_path / "soc_sa.v" in written and tmp_path / "soc_sa_regs.h" in written
    offsets, values = parse_header((tmp_path / "soc_sa_regs.h").read_text())
    rm = register_map(system["sa"])
    assert offsets == {r.name: r.offset for r in rm}
    assert (values["ROWS"], values["COLS"]) == (rows, cols)


def test_every_kind_has_the_run_control_registers_at_the_same_offsets():
    """One runtime starts and waits for every accelerator of a system: ID, CTRL .. CYCLES_* at one place."""
    from mensa.core.config import load
    system = load("mensa-g-fpga")
    maps = [register_map(a) for a in system.accelerator]
    assert {a.kind.value for a in system.accelerator} == {"systolic", "nearmem"}
    shared = ["ID", "CTRL", "STATUS", "IRQ_ENABLE", "IRQ_STATUS"] + [
        f"CYCLES_{n}_{half}" for n in ("TOTAL", "BUSY", "STALL") for half in ("LO", "HI")]
    offsets = [[m[name].offset for name in shared] for m in maps]
    assert offsets[0] == [4 * i for i in range(len(shared))]
    assert all(o == offsets[0] for o in offsets)
