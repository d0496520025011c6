"""Verilog text of an Amaranth component (the one conversion every emitter and runner uses) and its ports."""

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

__all__ = ["convert", "ports"]


def convert(component, name):
    """Verilog text of a component, with no source locations (stable across checkouts)."""
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)


def ports(component):
    """(Verilog port name, direction, width) of a component's interface, plus clk and rst."""
    result = [("clk", "input", 1), ("rst", "input", 1)]
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        result.append((name, "input" if member.flow == wiring.In else "output", len(Value.cast(value))))
    return result
