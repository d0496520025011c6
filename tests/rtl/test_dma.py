"""The AXI4 DMA's Verilog moves random bursts bit-exactly through cocotbext-axi's AxiRam (cocotb),
with random backpressure on every AXI channel and a read latency of 1 to 50 cycles per burst."""

import json

import pytest

from mensa.core.config import MemoryConfig
from mensa.hw.dma import DMA
from mensa.sim.runner import run, simulators


# (data_bits, max_burst, outstanding)
CASES = [(64, 16, 4), (32, 4, 1), (128, 256, 2)]


# Verilator takes minutes to build each case here: the other cases run on it under `make test-all` (Icarus runs every case in the default suite).
RUNS = [pytest.param(*case, sim, id=f"d{case[0]}-b{case[1]}-o{case[2]}-{sim}",
                     marks=[pytest.mark.slow] if sim == "verilator" else [])
        for i, case in enumerate(CASES) for sim in simulators()]


@pytest.mark.parametrize("data_bits,max_burst,outstanding,sim", RUNS)
def test_random_reads_and_writes_bit_exact(data_bits, max_burst, outstanding, sim, tmp_path):
    config = MemoryConfig(data_bits=data_bits, addr_bits=32, max_burst=max_burst)
    params = {"data_bits": data_bits, "addr_bits": 32, "max_burst": max_burst, "outstanding": outstanding,
              "commands": 12, "max_beats": 3 * max_burst + 1 if max_burst < 64 else 160,
              "gap": 0.3, "pause": 0.3, "latency": [1, 50], "stream_latency": 20, "result": str(tmp_path / "figures.json")}
    run(DMA(config, outstanding=outstanding), name="dma", key=("dma", config, outstanding), sim=sim,
        test_module="mensa.sim.tb_dma", test_name=f"dma-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    figures = json.loads((tmp_path / "figures.json").read_text())
    if (outstanding - 1) * max_burst >= figures["latency"]:
        # the bursts in flight cover the DRAM latency: one bus word per cycle after the first
        assert figures["read_cycles"] <= figures["beats"] + figures["latency"] + 8
    assert figures["write_cycles"] <= figures["beats"] + 8 or outstanding == 1
