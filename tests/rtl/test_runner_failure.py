"""A failing cocotb test names its seed and keeps the waveform of its own rerun (mensa.sim.runner)."""

import json
import re
import time
from pathlib import Path

import pytest

from mensa.core.config import ArrayConfig, to_dict
from mensa.hw.systolic import SystolicArray
from mensa.sim.runner import SimulationFailed, run, simulators


@pytest.mark.parametrize("sim", simulators())
def test_a_failing_test_names_its_seed_and_keeps_its_own_waveform(sim, tmp_path):
    config = ArrayConfig(rows=1, cols=1)
    # accumulators read 8 bits wide: the testbench's bit-exact check fails on the first beat
    params = dict(to_dict(config), shapes=1, max_dim=3, gap=0.3, acc_bits=8)
    for attempt in range(2):        # the second failure must not take the first one's waveform
        start = time.time()
        with pytest.raises(SimulationFailed) as failure:
            run(SystolicArray(config), name="systolic_array", key=config, sim=sim,
                test_module="mensa.sim.tb_systolic", test_name=f"fails-{tmp_path.name}",
                extra_env={"MENSA_TB": json.dumps(params)}, seed=1234)
        message = str(failure.value)
        assert "COCOTB_RANDOM_SEED=1234" in message, message
        wave = Path(re.search(r"waveform (\S+)$", message)[1])
        assert wave.suffix in (".fst", ".vcd") and wave.parent.name == f"fails-{tmp_path.name}", message
        assert wave.stat().st_mtime >= start - 1, f"attempt {attempt}: {wave} is not this rerun's waveform"
        assert wave.stat().st_size > 0, f"{wave} is empty"
        log = (wave.parent / "sim.log").read_text()
        assert "outputs differ" in log or "expected" in log, log[-2000:]
        assert "replay with COCOTB_RANDOM_SEED=1234" in log
