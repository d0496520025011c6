"""The AXI4-Lite register file's Verilog answers at the offsets of the generated C header (cocotb)."""

import json

import pytest

from mensa.contract.header import header
from mensa.core.config import AcceleratorConfig, ArrayConfig, Dataflow, MemoryConfig
from mensa.contract.regs import register_map
from mensa.hw.regs import RegisterFile
from mensa.sim.runner import run, simulators


# (rows, cols, dataflow, DRAM address bits): 40-bit addresses split into _LO/_HI registers
CASES = [(4, 4, "ws", 32), (8, 2, "os", 40)]


# Verilator takes minutes to build each case here: the second one runs on it under `make test-all` (Icarus runs every case in the default suite).
RUNS = [pytest.param(*case, sim, id=f"{r}x{c}-{d}-a{a}-{sim}",
                     marks=[pytest.mark.slow] if sim == "verilator" else [])
        for i, case in enumerate(CASES) for r, c, d, a in [case] for sim in simulators()]


@pytest.mark.parametrize("rows,cols,dataflow,addr_bits,sim", RUNS)
def test_every_register_at_its_header_offset(rows, cols, dataflow, addr_bits, sim, tmp_path):
    config = AcceleratorConfig(name="dut", array=ArrayConfig(rows=rows, cols=cols, dataflow=Dataflow(dataflow)),
                               memory=MemoryConfig(addr_bits=addr_bits))
    regmap = register_map(config)
    path = tmp_path / "dut_regs.h"
    path.write_text(header(regmap, prefix="dut"))
    params = {"rows": rows, "cols": cols, "dataflow": dataflow, "addr_bits": addr_bits,
              "data_bits": config.memory.data_bits, "header": str(path), "gap": 0.3}
    run(RegisterFile(regmap), name="register_file", key=("register_file", regmap), sim=sim,
        test_module="mensa.sim.tb_regs", test_name=f"regs-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
