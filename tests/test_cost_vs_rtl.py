"""The cost model predicts the RTL's cycles within 5% on every validated layer (cocotb, Verilator).

Each accelerator's compute core runs the layers exactly as the model lowers them (im2col GEMMs,
depthwise channel by channel, M tiles of the accumulator buffer; FC and pointwise-shaped batches
on the near-memory unit), fed at full rate; the model's ``core_cycles`` (no DMA or DRAM term) is
compared with the cycles measured from the first input beat to the last output beat. One build
and one simulation per accelerator. The default run validates 48 layers over three systolic
arrays (WS 4x4, WS 8x8 with M tiling, OS 4x8) and two near-memory units; the slow sweep runs the
whole MobileNetV2 at 64x64 and bigger random layers.
"""

import pytest

from mensa.model.validate import CONFIGS, suite, summary, validate

BOUND = 0.05
SIM = "verilator"     # long runs: Icarus is several times slower


def _check(name, large):
    acc, dram = CONFIGS[name]
    layers = suite(name, large=large)
    records = validate(layers, acc, dram=dram, sim=SIM)
    assert len(records) == len(layers)
    bad = [f"{r.layer} {r.workload}: model {r.model:.0f}, RTL {r.measured} ({100 * r.error:+.1f}%)"
           for r in records if abs(r.error) > BOUND]
    assert not bad, f"{name}: {len(bad)} of {len(records)} layers beyond {BOUND:.0%}: " + "; ".join(bad)
    return records


def test_the_validation_covers_30_layers_3_configs_2_kinds():
    kinds = {acc.kind for acc, _ in CONFIGS.values()}
    assert len(kinds) == 2 and len(CONFIGS) >= 3
    assert sum(len(suite(name)) for name in CONFIGS) >= 30
    ops = {l.op.value for name in CONFIGS for l in suite(name)}
    assert {"conv2d", "depthwise", "fc"} <= ops


@pytest.mark.parametrize("name", CONFIGS)
def test_model_within_5_percent_of_rtl(name):
    records = _check(name, large=False)
    s = summary(records)
    print(f"{name}: {s}")


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_model_within_5_percent_of_rtl_sweep(name):
    _check(name, large=True)
