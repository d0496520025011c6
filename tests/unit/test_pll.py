"""The ECP5 PLL: dividers as Project Trellis's ecppll computes them, every setting within the PLL's
ranges, a clock it cannot make refused in one line, and the self-test clocked from it on a board."""

import pytest
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from mensa.core.config import from_dict
from mensa.gen.selftest import SelfTest
from mensa.hw.pll import PllError, _settings, ecp5_pll

SMALL = from_dict({"name": "t", "accelerator": [{
    "name": "a", "array": {"rows": 2, "cols": 2}, "buffers": {"weight_kib": 1, "act_kib": 1, "acc_kib": 1},
    "memory": {"data_bits": 32}}]}).accelerator[0]


@pytest.mark.parametrize("fin, fout, dividers", [
    (12, 16, (3, 4, 37)),           # ecppll -i 12 -o 16 (olofk/serv's servant)
    (25, 137.5, (2, 11, 4)),        # ecppll -i 25 -o 137.5 (emard/ulx3s-misc)
    (25, 100, (1, 4, 6)),
])
def test_dividers_are_ecppll_s(fin, fout, dividers):
    p = ecp5_pll(fin, fout)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == dividers and p.fout_mhz == fout


@pytest.mark.parametrize("fin", [12, 25, 100])
def test_every_setting_is_within_the_pll_s_ranges(fin):
    found = _settings(fin)
    assert len(found) > 50
    for fout, p in found.items():
        assert 3.125 <= p.fpfd_mhz <= 400 and 400 <= p.fvco_mhz <= 800 and 10 <= fout <= 400
        assert 1 <= p.clki_div <= 128 and 1 <= p.clkfb_div <= 80 and 1 <= p.clkop_div <= 128
        assert abs(p.fout_mhz - fout) < 1e-6


@pytest.mark.parametrize("fout, words", [
    (123, ["123 MHz", "121.875 MHz or 125 MHz"]),
    (48, ["48 MHz", "46.875 MHz or 50 MHz"]),
    (5, ["5 MHz", "10 to 400 MHz"]),
    (401, ["401 MHz", "10 to 400 MHz"]),
])
def test_a_clock_the_pll_cannot_make_is_refused_naming_the_nearest(fout, words):
    with pytest.raises(PllError) as e:
        ecp5_pll(25, fout)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_the_self_test_runs_from_the_pll_at_its_clock_on_the_board():
    plan = ULX3S_85F_Platform().prepare(SelfTest(SMALL, pll=ecp5_pll(25, 62.5)), name="top")
    il = plan.files["top.il"]
    assert il.count("cell \\EHXPLLL") == 1
    for name, value in (("CLKI_DIV", 2), ("CLKFB_DIV", 5), ("CLKOP_DIV", 10), ("CLKOP_CPHASE", 5)):
        assert f"parameter \\{name} {value}\n" in il, name
    assert 'FREQUENCY NET "pll.clk_out" 62500000.0 HZ;' in plan.files["top.lpf"]
    # without a PLL the design runs from the oscillator, as before
    plain = ULX3S_85F_Platform().prepare(SelfTest(SMALL), name="top")
    assert "EHXPLLL" not in plain.files["top.il"]


def test_the_fastest_clock_within_an_fmax_is_one_the_pll_makes():
    from mensa.hw.pll import fastest_within
    closes = fastest_within(25, 28.78)          # the hybrid system's network self-test, placed at 40 MHz
    assert closes <= 28.78 and ecp5_pll(25, closes).fout_mhz == pytest.approx(closes)
    assert not any(closes < f <= 28.78 for f in _settings(25))
    assert fastest_within(25, 9) is None        # below the PLL's 10 MHz
