"""The systolic array's Verilog multiplies random int8 matrices bit-exactly (cocotb)."""

import dataclasses
import json

import pytest

from mensa.hw.config import ArrayConfig, Dataflow, to_dict
from mensa.hw.systolic import SystolicArray
from mensa.sim.runner import run, simulators

ARRAYS = [(1, 1), (2, 2), (4, 4), (8, 8), (4, 8)]


@pytest.mark.parametrize("sim", simulators())
@pytest.mark.parametrize("dataflow", [d.value for d in Dataflow])
@pytest.mark.parametrize("rows,cols", ARRAYS, ids=[f"{r}x{c}" for r, c in ARRAYS])
def test_gemm_random_shapes_bit_exact(rows, cols, dataflow, sim, tmp_path):
    config = ArrayConfig(rows=rows, cols=cols, dataflow=Dataflow(dataflow))
    params = dict(to_dict(config), shapes=20, max_dim=3 * max(rows, cols) + 2, gap=0.3,
                  result=str(tmp_path / "figures.json"))
    run(SystolicArray(config), name="systolic_array", key=config, sim=sim,
        test_module="mensa.sim.tb_systolic", test_name=f"gemm-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert len(figures) == 20
    assert any(f["K"] == 1 for f in figures)
