"""Verilog text of an Amaranth component: the one conversion every emitter and runner uses."""

from amaranth.back import verilog

__all__ = ["convert"]


def convert(component, name):
    """Verilog text of a component, with no source locations (stable across checkouts)."""
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
