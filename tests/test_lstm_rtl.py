"""The near-memory unit's LSTM datapath (Pavlov) runs whole sequences bit-exactly (cocotb):
gate products on the vault lanes, tables, cell and hidden state on chip, optional projection,
through vaults of random latency and backpressure."""

import json

import pytest

from mensa.hw.config import NearMemConfig, to_dict
from mensa.hw.nearmem import NearMemoryUnit
from mensa.sim.runner import run, simulators

# 4 bytes a vault word for 4 lanes (bandwidth matches), and two lane words per vault word.
SMALL = NearMemConfig(vaults=2, lanes=4, vault_bits=32, vault_kib=64, local_kib=4, lstm=True)
WIDE = NearMemConfig(vaults=3, lanes=4, vault_bits=64, vault_kib=64, local_kib=4, lstm=True)
# Sizes of the issue (input and hidden 32..256), one lane word a vault word.
BIG = NearMemConfig(vaults=4, lanes=8, vault_bits=64, vault_kib=512, local_kib=16, lstm=True)


def _run(config, sim, tmp_path, **params):
    params = dict(to_dict(config), result=str(tmp_path / "figures.json"), **params)
    run(NearMemoryUnit(config), name="nearmem", key=config, sim=sim,
        test_module="mensa.sim.tb_lstm", test_name=f"lstm-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    return json.loads((tmp_path / "figures.json").read_text())
