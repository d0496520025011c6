"""The near-memory accelerator's Verilog runs whole FC, pointwise and LSTM layers from AXI DRAM and its vaults
bit-exactly (cocotb).

Registers through cocotbext-axi's AxiLiteMaster, DRAM in its AxiRam with a read latency of 1 to 50
cycles per burst and random pauses on every AXI channel (the register master's too), the vaults
served from backdoor-loaded images with random latency and backpressure; random shapes (channel
counts no multiple of the lanes, vaults or bus); outputs against :func:`mensa.core.golden.run_layer`.
"""

import json
import random
from pathlib import Path

import pytest

from mensa.core.config import AcceleratorConfig, CoreKind, MemoryConfig, NearMemConfig, load, to_dict
from mensa.hw.nearmem_accelerator import NearMemAccelerator
from tests.rtl.sims import each_simulator
from mensa.sim.runner import run, simulators

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# A bus word holds two lane words, LSTM datapath (one build for the default suite).
WIDE = AcceleratorConfig(name="dut", kind=CoreKind.NEARMEM, memory=MemoryConfig(data_bits=64),
                         nearmem=NearMemConfig(vaults=3, lanes=4, vault_bits=64, vault_kib=64, local_kib=4, lstm=True))
# A lane word takes two bus words; short bursts, so a layer's writes take many commands.
NARROW = AcceleratorConfig(name="dut", kind=CoreKind.NEARMEM, memory=MemoryConfig(data_bits=32, max_burst=4),
                           nearmem=NearMemConfig(vaults=2, lanes=8, vault_bits=64, vault_kib=64, local_kib=2))
# Four lane words a bus word: vectors end in the middle of a bus word.
QUARTER = AcceleratorConfig(name="dut", kind=CoreKind.NEARMEM, memory=MemoryConfig(data_bits=64),
                            nearmem=NearMemConfig(vaults=2, lanes=2, vault_bits=16, vault_kib=16, local_kib=1))


def fc_specs(rng, count, *, max_k, max_n, max_m):
    """Random FC and pointwise layers (every other one), no activation, ReLU or ReLU6."""
    specs = []
    for i in range(count):
        cin, cout = rng.randint(1, max_k), rng.randint(1, max_n)
        if i % 2:
            h, w = rng.randint(1, 2), rng.randint(1, 3)
            shape, op = [1, h, w, cin], "pointwise"
        else:
            shape, op = [rng.randint(1, max_m), cin], "fc"
        specs.append({"op": op, "in_shape": shape, "out_channels": cout,
                      "activation": rng.choice(["none", "relu", "relu6"]),
                      "zp_in": rng.randint(-128, 127), "zp_out": rng.randint(-20, 20),
                      "in_scale": rng.uniform(0.02, 0.1), "out_scale": rng.uniform(0.05, 0.5) * cin ** 0.5})
    return specs


def lstm_specs(rng, count, *, max_c, max_h, max_t):
    """Random LSTM layers, every other one with a projection."""
    return [{"op": "lstm", "in": rng.randint(1, max_c), "hidden": rng.randint(1, max_h),
             "projection": rng.randint(1, max_h) if i % 2 else 0, "steps": rng.randint(1, max_t)}
            for i in range(count)]


def simulate(acc, layers, tmp_path, *, sim, pause=0.2, latency=(1, 50), vault_latency=(1, 30), gap=0.3):
    """Run ``layers`` on the accelerator ``acc``; the testbench's per-layer results."""
    result = tmp_path / "figures.json"
    table = to_dict(acc)
    del table["array"]          # a near-memory accelerator has none; the loader refuses the table
    params = {"config": {"accelerator": table}, "layers": layers, "pause": pause, "latency": list(latency),
              "vault_latency": list(vault_latency), "gap": gap, "outstanding": 16, "result": str(result)}
    run(NearMemAccelerator(acc), name="nearmem_accelerator", key=("nearmem_accelerator", acc), sim=sim,
        test_module="mensa.sim.tb_nearmem_accelerator", test_name="nma-" + "-".join(tmp_path.parts[-2:]),
        extra_env={"MENSA_TB": json.dumps(params)})
    figures = json.loads(result.read_text())
    assert len(figures) == len(layers)
    return figures


def _seed():
    seed = random.randrange(1 << 30)
    print(f"layer shapes from seed {seed}")
    return seed


@pytest.mark.parametrize("sim", simulators()[:1])
def test_fc_pointwise_and_lstm_layers_through_registers_dma_and_vaults_bit_exact(sim, tmp_path):
    rng = random.Random(_seed())
    layers = fc_specs(rng, 4, max_k=40, max_n=30, max_m=3) + lstm_specs(rng, 2, max_c=20, max_h=14, max_t=3)
    figures = simulate(WIDE, layers, tmp_path, sim=sim)
    assert [f["lstm"] for f in figures] == [False] * 4 + [True] * 2


@pytest.mark.slow
@pytest.mark.parametrize("sim", each_simulator())
@pytest.mark.parametrize("config", ["narrow", "quarter"])
def test_fc_and_pointwise_on_a_bus_narrower_or_four_lane_words_wide_bit_exact(config, sim, tmp_path):
    rng = random.Random(_seed())
    acc = {"narrow": NARROW, "quarter": QUARTER}[config]
    figures = simulate(acc, fc_specs(rng, 8, max_k=100, max_n=50, max_m=5), tmp_path, sim=sim)
    assert all(not f["lstm"] for f in figures)


@pytest.mark.slow
@pytest.mark.parametrize("sim", simulators()[:1])
def test_pavlov_fpga_fc_and_lstm_layers_bit_exact(sim, tmp_path):
    acc = load(CONFIGS / "pavlov-fpga.toml").accelerator[0]
    rng = random.Random(_seed())
    layers = (fc_specs(rng, 2, max_k=256, max_n=128, max_m=2)
              + [{"op": "lstm", "in": 64, "hidden": 64, "projection": 0, "steps": 3}]
              + lstm_specs(rng, 2, max_c=80, max_h=48, max_t=4))
    simulate(acc, layers, tmp_path, sim=sim)
