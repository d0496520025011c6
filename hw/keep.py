"""Copies of a register that synthesis keeps apart: one beside each group of its loads.

A net that reaches every column of the array crosses its DSP columns (docs/synth.md, timing rules:
"fan-out is distance"); the cure is a copy of the register per column. But Yosys merges flip-flops
with the same inputs (``opt_merge``), and a delayed copy of a signal is the same flip-flop as the
signal's own delay line: the bank bit that travels with each activation, one flip-flop per PE, is
merged into one per anti-diagonal, a net across the array again. A ``(* keep *)`` on the register's
wire does not stop it.

:func:`kept_register` is a register the merge cannot reach: on an ECP5 (:func:`~mensa.hw.dsp.on_ecp5`) one ``TRELLIS_FF`` per bit, instantiated (Yosys merges only the cells it knows the function
of); elsewhere (simulation, other devices) the same register in plain Amaranth.
"""

from amaranth.hdl import ClockSignal, Const, Instance, ResetSignal, Signal

from mensa.hw.dsp import on_ecp5

__all__ = ["kept_register"]


def kept_register(m, platform, value, name, *, init=0, reset_less=True):
    """``value`` a cycle later, in a register of its own named ``name``; reset to ``init`` with the
    domain unless ``reset_less`` (its power-up value is ``init`` either way)."""
    if not on_ecp5(platform):
        q = Signal(len(value), name=name, init=init, reset_less=reset_less)
        m.d.sync += q.eq(value)
        return q
    q, d = Signal(len(value), name=name), Signal(len(value), name=f"{name}_d")
    m.d.comb += d.eq(value)
    lsr = Const(0) if reset_less else ResetSignal("sync", allow_reset_less=True)
    for k in range(len(value)):
        m.submodules[f"{name}_ff{k}"] = Instance(
            "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_REGSET="SET" if init >> k & 1 else "RESET", p_SRMODE="LSR_OVER_CE",
            i_CLK=ClockSignal("sync"), i_LSR=lsr, i_CE=Const(1), i_DI=d[k], o_Q=q[k])
    return q
