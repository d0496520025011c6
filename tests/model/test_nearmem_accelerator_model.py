"""The near-memory accelerator's cycles in the cost model: the unit's LSTM step as the RTL streams it,
its cell's wait, and the peripheral's DMA of the input and output vectors (the network harness's
measurements pin them)."""

import numpy as np
import pytest

from mensa.contract.nearmem import HEADER_WORDS
from mensa.core.config import from_dict
from mensa.core.ir import Layer, Op
from mensa.model.cost import Calibration, evaluate
from mensa.model.nearmem import CYCLES_PER_BLOCK


def system(vaults=2, lanes=4, vault_bits=32, clock=100.0, latency=20):
    """/work/notes/lstm_sys.toml's near-memory accelerator (vaults=2, lanes=4): 64-bit bus, DRAM at
    0.4 GB/s (4 B a cycle at 100 MHz); pavlov-fpga's with vaults=4, vault_bits=64, clock=200."""
    return from_dict({"name": "s", "dram": {"bandwidth_gbps": 0.4, "latency_cycles": latency},
                      "accelerator": [{"name": "nm", "kind": "nearmem", "clock_mhz": clock,
                                       "memory": {"data_bits": 64},
                                       "nearmem": {"vaults": vaults, "lanes": lanes, "vault_bits": vault_bits,
                                                   "vault_kib": 2048, "local_kib": 16, "lstm": True}}]})


def fc(T, C, N):
    return Layer(f"fc{N}", Op.FC, (1, T, C), (1, T, N))


def lstm(T, C, H, P=0):
    return Layer(f"l{H}p{P}", Op.LSTM, (1, T, C), (1, T, P or H), hidden=H, **({"projection": P} if P else {}))


# CYCLES_TOTAL of each layer alone in a network on the Verilator harness (gen.network_run.run_on_rtl,
# DRAM and vaults at latency 20), since the vault's lanes became a pipeline (hw.vault.LANE_STAGES: 6 more cycles
# a layer, and a step with a projection): (layer, measured cycles). At 3c0229e they were 74, 884, 1701, 12701,
# 2477 and 484, 3319, 9037; the model before the DMA and LSTM-step terms predicted 51, 833, 1518, 12010, 2078
# (2-31% under) and 451, 3346 for pavlov-fpga.
SMALL = [(fc(1, 16, 8), 76), (fc(4, 16, 64), 886), (lstm(4, 16, 16), 1703), (lstm(8, 48, 32), 12703),
         (lstm(4, 16, 24, 8), 2503)]
PAVLOV = [(fc(1, 16, 200), 490), (lstm(4, 16, 48, 16), 3349), (lstm(3, 100, 64), 9043)]


@pytest.mark.parametrize("acc, measured", [(system(), SMALL), (system(vaults=4, vault_bits=64, clock=200.0), PAVLOV)],
                         ids=["small-lstm", "pavlov-fpga"])
def test_nearmem_accelerator_cycles_within_5_percent_of_the_harness(acc, measured):
    layers, cycles = zip(*measured)
    c = evaluate(layers, acc.accelerator, acc.dram)
    error = c.cycles[:, 0] / np.array(cycles) - 1
    assert np.abs(error).max() < 0.05, dict(zip([l.name for l in layers], error))


def test_lstm_step_streams_every_gate_group_twice_with_its_header():
    # H=24 over 2 vaults of 4 lanes: 3 blocks (12 gate groups) a vault, each group over x (16 inputs) and
    # over the projection's 8 outputs; the projection: one group a vault over m8 (24)
    T, C, H, P = 4, 16, 24, 8
    c = evaluate([lstm(T, C, H, P)], system().accelerator, system().dram)
    step = 12 * (2 * HEADER_WORDS + C + P) + 1 * (HEADER_WORDS + H)
    assert c.compute[0, 0] + c.load[0, 0] == T * step
    # with a projection, every step waits for m8_t: vault 0's last block, then vault 1's 12 x groups
    # gathered and its 3 blocks through the cell, less the handover, and the write-back
    cal = Calibration()
    wait = CYCLES_PER_BLOCK + 12 + 3 * CYCLES_PER_BLOCK - cal.nearmem_handover + cal.nearmem_cell
    unit_start = 20 + cal.nearmem_pipeline
    assert c.fill[0, 0] == unit_start + T * wait + 1       # the last step's projection gathered from vault 1


def test_lstm_without_projection_hides_the_cell_behind_the_next_x_phase():
    one, four = (evaluate([lstm(T, 16, 16)], system().accelerator, system().dram) for T in (1, 4))
    assert four.fill[0, 0] == one.fill[0, 0]
    assert four.compute[0, 0] + four.load[0, 0] == 4 * (8 * (2 * HEADER_WORDS + 16 + 16))


def test_the_dma_is_the_accelerators_not_the_units():
    # gen/validate.py measures the unit alone (core_cycles): unchanged by the DMA term
    acc = system()
    c = evaluate([fc(4, 16, 64)], acc.accelerator, acc.dram)
    assert c.core_cycles[0, 0] == c.compute[0, 0] + c.load[0, 0] + c.fill[0, 0]
    assert c.cycles[0, 0] == c.core_cycles[0, 0] + c.dma[0, 0] + c.stall[0, 0]
    # the first input's read: issued, the DRAM latency, its 16 bytes a lane beat (4 B) a cycle, beyond the
    # vaults' first word; the 4 x 64 outputs, 32 bus words, two bursts of 16: the last one written after
    # the last result at 4 B a cycle beyond the DRAM's two-beat credit
    cal = Calibration()
    read = cal.nearmem_read + 16 / 4 - cal.nearmem_pipeline
    assert c.dma[0, 0] == read + cal.nearmem_write + (16 * 8 - 2 * 8) / 4
    assert c.dram_bytes[0, 0] == 4 * 16 + 4 * 64


def test_cell_cycles_match_the_rtl_cell():
    from mensa.hw.lstm import CYCLES_PER_BLOCK as RTL
    assert CYCLES_PER_BLOCK == RTL
