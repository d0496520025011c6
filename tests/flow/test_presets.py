"""Every preset in configs/ loads, is documented, and the FPGA-sized ones fit an ECP5-85F."""

import re
from pathlib import Path

import pytest

from mensa.core.config import CoreKind, load

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = sorted(CONFIGS.glob("*.toml"))

# Lattice LFE5U-85F (ECP5 family data sheet): DSP multipliers, block RAM (208 x 18 Kbit).
ECP5_85F_MULT18 = 156
ECP5_85F_EBR_KIB = 208 * 18 * 1024 // 8 // 1024


def test_the_issue_presets_are_there():
    names = {p.stem for p in PRESETS}
    assert {"edgetpu", "edgetpu-fpga", "pascal", "pascal-fpga", "mensa-g", "mensa-g-fpga"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_says_why(path):
    system = load(path)
    assert system.name == path.stem
    assert system.description
    head = path.read_text().split("\nname = ")[0]
    # The leading comment block says why these sizes: a SEEDS citation or mensa's own choice.
    assert head.startswith("#") and re.search(r"SEEDS|mensa's own choice", head, re.I), path.name


@pytest.mark.parametrize("path", [p for p in PRESETS if p.stem.endswith("-fpga")], ids=lambda p: p.stem)
def test_fpga_variant_fits_an_ecp5_85f(path):
    system = load(path)
    mults = kib = 0
    for acc in system.accelerator:
        if acc.kind is CoreKind.SYSTOLIC:
            mults += acc.array.pes                              # one MULT18X18D per int8 MAC
            if acc.edgetpu is not None:
                t = acc.edgetpu
                pes = t.pe_rows * t.pe_cols
                kib += t.core_mem_kib * t.cores_per_pe * pes + t.pe_mem_kib * pes + acc.buffers.acc_kib
            else:
                kib += acc.buffers.weight_kib + acc.buffers.act_kib + acc.buffers.acc_kib
        else:
            mults += acc.nearmem.vaults * acc.nearmem.lanes
            kib += acc.nearmem.vaults * acc.nearmem.local_kib
    assert mults <= ECP5_85F_MULT18, f"{mults} multipliers"
    assert kib <= ECP5_85F_EBR_KIB, f"{kib} KiB of on-chip memory"
    full = load(CONFIGS / f"{path.stem.removesuffix('-fpga')}.toml")
    assert [a.name for a in system.accelerator] == [a.name for a in full.accelerator]


@pytest.mark.parametrize("stem", ["edgetpu", "edgetpu-fpga", "edgetpu-v1", "edgetpu-v2", "edgetpu-v3"])
def test_edgetpu_array_has_the_templates_macs(stem):
    acc = load(CONFIGS / f"{stem}.toml")["edgetpu"]
    t = acc.edgetpu
    assert t is not None
    assert t.pe_rows * t.pe_cols * t.cores_per_pe * t.lanes_per_core == acc.array.pes


def test_edgetpu_is_the_seeds_baseline():
    # SEEDS: "baseline array 64x64 PEs"; template class V1: 800 MHz, 4x4 PEs (edgetpu-v1); the edgetpu
    # preset models the Coral chip: the same 4096 MACs at 500 MHz, 4 TOPS int8.
    v1 = load(CONFIGS / "edgetpu-v1.toml")["edgetpu"]
    assert (v1.array.rows, v1.array.cols, v1.clock_mhz) == (64, 64, 800.0)
    assert (v1.edgetpu.pe_rows, v1.edgetpu.pe_cols) == (4, 4)
    coral = load(CONFIGS / "edgetpu.toml")["edgetpu"]
    assert coral.array.pes == 4096 and 3.9e12 < 2 * coral.array.pes * coral.clock_mhz * 1e6 < 4.2e12


@pytest.mark.parametrize("variant", ["", "-fpga"])
def test_mensa_g_shares_its_parts_with_the_single_presets(variant):
    system = load(CONFIGS / f"mensa-g{variant}.toml")
    assert [a.name for a in system.accelerator] == ["pascal", "pavlov", "jacquard"]
    pascal = load(CONFIGS / f"pascal{variant}.toml")["pascal"]
    if variant:
        # the FPGA system's pascal is a 4x4 array with 4 vector lanes on a 32-bit bus, so that the three fit
        # the ECP5-85F's DSP blocks (configs/mensa-g-fpga.toml); its buffers and dataflow are pascal-fpga's
        ours = system["pascal"]
        assert (ours.array.rows, ours.array.cols, ours.vector.lanes, ours.memory.data_bits) == (4, 4, 4, 32)
        assert (ours.buffers, ours.array.dataflow, ours.clock_mhz) == (pascal.buffers, pascal.array.dataflow,
                                                                     pascal.clock_mhz)
    else:
        assert system["pascal"] == pascal
    for name in ("pavlov", "jacquard"):
        own = CONFIGS / f"{name}{variant}.toml"
        if own.exists():    # the near-memory presets, written alongside
            assert system[name].nearmem == load(own)[name].nearmem
    # the baseline at equal technology: the template's V1 class (the Coral-modelled edgetpu preset runs at
    # the chip's own 500 MHz), or its FPGA variant
    base = load(CONFIGS / f"edgetpu{variant or '-v1'}.toml")
    assert system.dram == base.dram
    assert {a.clock_mhz for a in system.accelerator} == {base["edgetpu"].clock_mhz}
