"""The ECP5 PLL (EHXPLLL) that clocks a design on a board, with its dividers computed for a clock.

:func:`ecp5_pll` searches the dividers as Project Trellis's ``ecppll`` does: the reference
divider ``CLKI_DIV`` (1..128) keeps the phase detector between 3.125 and 400 MHz, the feedback
divider ``CLKFB_DIV`` (1..80) multiplies it to the output, ``fout = fin * CLKFB_DIV / CLKI_DIV``,
and the output divider ``CLKOP_DIV`` (1..128) keeps the VCO (``fout * CLKOP_DIV``, fed back from
CLKOP) between 400 and 800 MHz; the output lies in 10..400 MHz. A clock no divider set makes
exactly is refused, naming the nearest clocks the PLL makes.
"""

from dataclasses import dataclass

from amaranth.hdl import Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mensa.core.errors import UserError

__all__ = ["PllError", "PllParams", "ecp5_pll", "fastest_within", "Ecp5Pll"]

PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
OUT_MHZ = (10.0, 400.0)


class PllError(UserError):
    """A clock the PLL cannot make; one line with the clocks it can make nearby."""


@dataclass(frozen=True)
class PllParams:
    fin_mhz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def fout_mhz(self):
        return self.fin_mhz * self.clkfb_div / self.clki_div

    @property
    def fvco_mhz(self):
        return self.fout_mhz * self.clkop_div

    @property
    def fpfd_mhz(self):
        return self.fin_mhz / self.clki_div


def _settings(fin_mhz):
    """A legal divider set per output clock from ``fin_mhz``: as ``ecppll``, the one whose VCO is
    nearest 600 MHz, the middle of its range."""
    found = {}
    for clki in range(1, 129):
        if not PFD_MHZ[0] <= fin_mhz / clki <= PFD_MHZ[1]:
            continue
        for clkfb in range(1, 81):
            fout = fin_mhz * clkfb / clki
            if not OUT_MHZ[0] <= fout <= OUT_MHZ[1]:
                continue
            for clkop in range(1, 129):
                if VCO_MHZ[0] <= fout * clkop <= VCO_MHZ[1]:
                    p, key = PllParams(fin_mhz, clki, clkfb, clkop), round(fout, 6)
                    if key not in found or abs(p.fvco_mhz - 600) < abs(found[key].fvco_mhz - 600):
                        found[key] = p
    return found


def ecp5_pll(fin_mhz, fout_mhz):
    """The EHXPLLL dividers that make exactly ``fout_mhz`` from ``fin_mhz``, or :class:`PllError`."""
    if not OUT_MHZ[0] <= fout_mhz <= OUT_MHZ[1]:
        raise PllError(f"clock {fout_mhz:g} MHz is outside the ECP5 PLL's output range; allowed: "
                       f"{OUT_MHZ[0]:g} to {OUT_MHZ[1]:g} MHz")
    found = _settings(fin_mhz)
    exact = found.get(round(fout_mhz, 6))
    if exact is None:
        below = max((f for f in found if f < fout_mhz), default=None)
        above = min((f for f in found if f > fout_mhz), default=None)
        near = " or ".join(f"{f:g} MHz" for f in (below, above) if f is not None)
        raise PllError(f"the ECP5 PLL cannot make {fout_mhz:g} MHz from the {fin_mhz:g} MHz oscillator; "
                       f"allowed: a clock it makes, e.g. {near}")
    return exact


def fastest_within(fin_mhz, fmax_mhz):
    """The fastest clock the PLL makes from ``fin_mhz`` at or below ``fmax_mhz`` (a design's Fmax), or None."""
    return max((f for f in _settings(fin_mhz) if f <= fmax_mhz), default=None)


class Ecp5Pll(wiring.Component):
    """An EHXPLLL: ``clk_out`` at ``params.fout_mhz`` from ``clk_in``, fed back from CLKOP; ``locked``.

    Members
    -------
    clk_in : ``In(1)``
    clk_out, locked : ``Out(1)``
    """

    def __init__(self, params):
        if not isinstance(params, PllParams):
            raise TypeError(f"params must be PllParams, not {params!r}")
        self._params = params
        super().__init__({"clk_in": In(1), "clk_out": Out(1), "locked": Out(1)})

    @property
    def params(self):
        return self._params

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{p.fin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{p.fout_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_div // 2, p_CLKOP_FPHASE=0,      # ecppll's: CLKOP shifted half a period
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, o_CLKOP=self.clk_out, i_CLKFB=self.clk_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked)
        return m
