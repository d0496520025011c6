"""The near-memory unit's Verilog runs random FC layers bit-exactly (cocotb), through vaults
of random latency and backpressure."""

import json

import pytest

from mensa.core.config import NearMemConfig, to_dict
from mensa.hw.nearmem import NearMemoryUnit
from tests.rtl.sims import each_simulator
from mensa.sim.runner import run

# One vault word per lane word, two lane words per vault word, four vault words per lane word.
CONFIGS = {
    "v2l4w32": NearMemConfig(vaults=2, lanes=4, vault_bits=32, vault_kib=16, local_kib=1),
    "v3l4w64": NearMemConfig(vaults=3, lanes=4, vault_bits=64, vault_kib=16, local_kib=1),
    "v2l8w16": NearMemConfig(vaults=2, lanes=8, vault_bits=16, vault_kib=16, local_kib=1),
}


def _run(config, sim, tmp_path, **params):
    params = dict(to_dict(config), result=str(tmp_path / "figures.json"), **params)
    run(NearMemoryUnit(config), name="nearmem", key=config, sim=sim,
        test_module="mensa.sim.tb_nearmem", test_name=f"fc-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    return json.loads((tmp_path / "figures.json").read_text())


@pytest.mark.parametrize("sim", each_simulator())
def test_fc_accumulators_random_layers_random_latency_bit_exact(sim, tmp_path):
    # The int32 accumulators bypass the requantiser; the lanes are those of every config.
    figures = _run(CONFIGS["v3l4w64"], sim, tmp_path, layers=6, max_k=70, max_n=40, max_m=3,
                   latency=[1, 50], gap=0.3, outstanding=16, raw=True)
    assert len(figures) == 6


@pytest.mark.parametrize("sim", each_simulator())
@pytest.mark.parametrize("name", CONFIGS)
def test_fc_and_pointwise_int8_random_layers_random_latency_bit_exact(name, sim, tmp_path):
    figures = _run(CONFIGS[name], sim, tmp_path, layers=8, max_k=70, max_n=40, max_m=4,
                   latency=[1, 50], gap=0.3, outstanding=16, raw=False, ir=True)
    assert len(figures) == 8


@pytest.mark.parametrize("sim", each_simulator())
def test_fc_lane_utilisation_at_least_90_percent_when_vault_bandwidth_matches_lanes(sim, tmp_path):
    config = CONFIGS["v2l4w32"]                     # 4 bytes a vault word for 4 lanes
    assert config.vault_bits // 8 == config.lanes
    figures = _run(config, sim, tmp_path, layers=[[256, 56, 1], [256, 56, 4]], latency=[20, 20],
                   gap=0.0, outstanding=64, raw=False)
    for f in figures:
        assert f["utilisation"] >= 0.9, f
        # every vault reads its image once per vector: 7 groups of 9 header + 256 weight words
        assert f["bytes_per_vault"] == [f["M"] * 7 * (9 + 256) * 4] * 2, f


BIG = NearMemConfig(vaults=8, lanes=8, vault_bits=64, vault_kib=256, local_kib=8)


@pytest.mark.slow
@pytest.mark.parametrize("sim", each_simulator())
def test_fc_1024x1000_random_latency_bit_exact(sim, tmp_path):
    # The second layer is a quantised IR layer (FC or pointwise conv) through compile_layer.
    figures = _run(BIG, sim, tmp_path, layers=[[1024, 1000, 1], [1024, 1000, 1]],
                   latency=[1, 50], gap=0.2, outstanding=64, raw=False, ir=True)
    assert [(f["K"], f["N"]) for f in figures] == [(1024, 1000)] * 2
