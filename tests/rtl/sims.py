"""The simulators an RTL test runs on: every one present; the default suite takes the last (Icarus where it
is installed, as .ci/run installs it: it compiles a small design in seconds, where Verilator's C++ build of
each design takes tens of seconds to minutes, which a clean clone pays), the slow suite the others."""

import pytest

from mensa.sim.runner import simulators

__all__ = ["each_simulator"]


def each_simulator():
    """``pytest.param`` s of every simulator present, all but the last marked slow."""
    sims = simulators()
    return [pytest.param(s, id=s, marks=() if i == len(sims) - 1 else (pytest.mark.slow,)) for i, s in enumerate(sims)]
