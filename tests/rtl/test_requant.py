"""The Requantizer's Verilog requantises random accumulators bit-exactly (cocotb)."""

import json

import pytest

from mensa.hw.requant import Requantizer
from tests.rtl.sims import each_simulator
from mensa.sim.runner import run


# 8 lanes (the 8x8 array) takes minutes to build under Verilator: run by `make test-all`.
CASES = [(3, 8), pytest.param(8, 8, marks=pytest.mark.slow), pytest.param(2, 16, marks=pytest.mark.slow)]


@pytest.mark.parametrize("sim", each_simulator())
@pytest.mark.parametrize("lanes,out_bits", CASES, ids=["3lanes-int8", "8lanes-int8", "2lanes-int16"])
def test_requantize_random_tiles_bit_exact(lanes, out_bits, sim, tmp_path):
    params = {"lanes": lanes, "out_bits": out_bits, "tiles": 40, "max_rows": 6, "gap": 0.3}
    _run(lanes, out_bits, sim, tmp_path, params)


@pytest.mark.parametrize("sim", each_simulator())
def test_requantize_behind_a_stalling_consumer_bit_exact(sim, tmp_path):
    # vectors arrive every cycle and `outs` is ready one cycle in five: the pipeline never
    # stalls, so they pile up in the output ring, as many as the credits allow
    params = {"lanes": 3, "out_bits": 8, "tiles": 30, "max_rows": 6, "gap": 0.0, "out_gap": 0.8}
    _run(3, 8, sim, tmp_path, params)


def _run(lanes, out_bits, sim, tmp_path, params):
    run(Requantizer(lanes=lanes, out_bits=out_bits), name="requantizer", key=("requantizer", lanes, out_bits),
        sim=sim, test_module="mensa.sim.tb_requant", test_name=f"requant-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
