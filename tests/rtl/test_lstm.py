"""The near-memory unit's LSTM datapath (Pavlov) runs whole sequences bit-exactly (cocotb):
gate products on the vault lanes, tables, cell and hidden state on chip, optional projection,
through vaults of random latency and backpressure."""

import dataclasses
import json

import pytest

from mensa.core.config import NearMemConfig, to_dict
from mensa.hw.nearmem import NearMemoryUnit
from tests.rtl.sims import each_simulator
from mensa.sim.runner import run, simulators

# The default suite builds one design: two lane words a vault word (as the presets).
WIDE = NearMemConfig(vaults=3, lanes=4, vault_bits=64, vault_kib=64, local_kib=4, lstm=True)
# Slow: sizes of the issue (input and hidden 32..256), one lane word a vault word.
BIG = NearMemConfig(vaults=4, lanes=8, vault_bits=64, vault_kib=512, local_kib=16, lstm=True)


def _run(config, sim, tmp_path, **params):
    params = dict(to_dict(config), result=str(tmp_path / "figures.json"), **params)
    run(NearMemoryUnit(config), name="nearmem", key=config, sim=sim,
        test_module="mensa.sim.tb_lstm", test_name=f"lstm-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    return json.loads((tmp_path / "figures.json").read_text())


def _check_bytes(config, figures):
    # Every vault reads its image once per time step: weights are re-read, never cached.
    word_bytes = config.vault_bits // 8
    for f in figures:
        assert f["bytes_per_vault"] == [f["T"] * f["words_per_step"] * word_bytes] * config.vaults, f


@pytest.mark.parametrize("sim", simulators()[:1])
def test_lstm_ragged_saturating_with_and_without_projection_random_latency_bit_exact(sim, tmp_path):
    # Sizes that are no multiple of lanes or vaults (padded hidden units and projection
    # channels), two lane words a vault word, every other layer with multipliers that
    # saturate the gates and the cell state; then 32-unit layers with and without projection;
    # then an input of one element (the input phase's first element is its last) between phases
    # of 2 and 3. (Every simulator runs the slow test below.)
    layers = [[5, 10, 6, 3], [16, 4, 0, 4], [32, 32, 0, 2], [40, 32, 24, 2], [1, 3, 2, 2]]
    figures = _run(WIDE, sim, tmp_path, layers=layers, latency=[1, 50], gap=0.3, outstanding=16, stress=True)
    assert [[f["C"], f["H"], f["T"], f["projection"]] for f in figures] == [[c, h, t, bool(p)] for c, h, p, t in layers]
    _check_bytes(WIDE, figures)


@pytest.mark.slow
@pytest.mark.parametrize("sim", each_simulator())
def test_lstm_256_and_20_steps_random_latency_bit_exact(sim, tmp_path):
    layers = [[256, 256, 0, 2], [256, 256, 128, 2], [64, 32, 0, 20], [32, 64, 48, 20], [200, 96, 0, 1],
              [33, 12, 5, 5], [48, 40, 24, 3]]
    figures = _run(BIG, sim, tmp_path, layers=layers, latency=[1, 50], gap=0.2, outstanding=64, stress=True)
    assert [(f["C"], f["H"], f["T"]) for f in figures] == [(c, h, t) for c, h, _, t in layers]
    _check_bytes(BIG, figures)


@pytest.mark.slow
@pytest.mark.parametrize("sim", simulators()[:1])
def test_lstm_lane_utilisation_at_least_90_percent_when_vault_bandwidth_matches_lanes(sim, tmp_path):
    assert BIG.vault_bits // 8 == BIG.lanes                 # one lane word a vault word a cycle
    figures = _run(BIG, sim, tmp_path, layers=[[128, 128, 0, 3]], latency=[20, 20], gap=0.0, outstanding=64)
    for f in figures:
        assert f["utilisation"] >= 0.9, f
    _check_bytes(BIG, figures)


@pytest.mark.parametrize("sim", simulators()[:1])
def test_fc_and_pointwise_on_the_lstm_unit_bit_exact(sim, tmp_path):
    # The LSTM datapath shares the lanes, gathers and requantiser with FC: FC layers still run.
    params = dict(to_dict(WIDE), result=str(tmp_path / "figures.json"), layers=3, max_k=40, max_n=30, max_m=2,
                  latency=[1, 50], gap=0.3, outstanding=16, raw=False, ir=True)
    run(NearMemoryUnit(WIDE), name="nearmem", key=WIDE, sim=sim, test_module="mensa.sim.tb_nearmem",
        test_name=f"fc-{tmp_path.name}", extra_env={"MENSA_TB": json.dumps(params)})
    assert len(json.loads((tmp_path / "figures.json").read_text())) == 3


#: The requantisers a lane a cycle (a quarter of the DSP blocks): a vector of four lanes in four passes.
PASSES = dataclasses.replace(WIDE, requant_passes=4)


@pytest.mark.parametrize("sim", simulators()[:1])
def test_lstm_and_fc_through_requantisers_of_four_passes_bit_exact(sim, tmp_path):
    # Gate halves, h (and the projection's m8) and FC outputs each leave the requantisers a lane a
    # cycle: a pass that took another lane's parameters or accumulator, or a vector assembled out of
    # order, differs from the golden model.
    figures = _run(PASSES, sim, tmp_path, layers=[[5, 10, 6, 3], [16, 4, 0, 2], [9, 20, 12, 2]], latency=[1, 40],
                   gap=0.3, outstanding=16, stress=True)
    assert [f["H"] for f in figures] == [10, 4, 20]
    params = dict(to_dict(PASSES), result=str(tmp_path / "fc.json"), layers=3, max_k=40, max_n=30, max_m=2,
                  latency=[1, 50], gap=0.3, outstanding=16, raw=False, ir=True)
    run(NearMemoryUnit(PASSES), name="nearmem", key=PASSES, sim=sim, test_module="mensa.sim.tb_nearmem",
        test_name=f"fc-{tmp_path.name}", extra_env={"MENSA_TB": json.dumps(params)})
    assert len(json.loads((tmp_path / "fc.json").read_text())) == 3
