"""A product in a DSP block with its registers: the placement-tolerant way to multiply on an FPGA.

A ``*`` that Yosys maps to an ECP5 MULT18X18D leaves the block's registers unused, so the
routes into and out of the block and its 5.6-5.8 ns product share one cycle; where the block
is placed far from its registers (among the array's DSP columns) that path limits the clock.
:func:`registered_product` uses the block's input, pipeline and output registers instead:
every path around the block is a route alone.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Mux, Shape, Signal, signed

__all__ = ["PRODUCT_STAGES", "registered_product", "dsp_product", "lut_product", "on_ecp5"]


#: Register stages of :func:`registered_product`: input, pipeline, output (an ECP5 MULT18X18D
#: with all three register sets, the configuration nextpnr times fastest), then one flip-flop
#: in the fabric, so the route out of the DSP row and what follows are separate paths.
PRODUCT_STAGES = 4


def registered_product(m, platform, a, b, width, name):
    """``a * b`` as a signed ``width``-bit value, ``PRODUCT_STAGES`` cycles later.

    On an ECP5 (``platform.family == "ecp5"``: an amaranth-boards platform, or the
    synthesis flow's) this is one MULT18X18D with its input, pipeline and output
    registers, which Yosys does not infer from behavioural registers; elsewhere (simulation,
    other devices) the same registers and product in plain Amaranth, cycle for cycle. The
    last stage is a fabric register either way.
    """
    # No reset on any stage (the DSP block's registers have none here; the users' tags say what is valid).
    # (A reset on this fabric stage also trips a Yosys 0.70 abc9 reintegration assert on the 4x4 OS array.)
    p = Signal(signed(width), name=f"{name}_p", reset_less=True)
    if on_ecp5(platform):
        m.d.sync += p.eq(_mult18x18d(m, a, b, name, ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")))
        return p
    a_q = Signal(a.shape(), name=f"{name}_a", reset_less=True)
    b_q = Signal(b.shape(), name=f"{name}_b", reset_less=True)
    pipe = Signal(signed(len(a) + len(b)), name=f"{name}_pipe", reset_less=True)
    out = Signal(signed(len(a) + len(b)), name=f"{name}_out", reset_less=True)
    m.d.sync += a_q.eq(a), b_q.eq(b), pipe.eq(a_q * b_q), out.eq(pipe), p.eq(out)
    return p


def dsp_product(m, platform, a, b, shape, name, *, en=1):
    """``a * b`` as a value of ``shape`` a cycle later: the product of two registers into a register, as
    a pipeline writes it, but in a MULT18X18D's own output register on an ECP5 (Yosys leaves it
    unused: the route out of the block then shares the cycle with the route in and its 5.6-5.8 ns
    product). Elsewhere the same register in plain Amaranth. The register loads while ``en`` is 1
    (a stalling pipeline's stage enable: the block's clock enable)."""
    shape = Shape.cast(shape)
    if on_ecp5(platform):
        p36 = _mult18x18d(m, a, b, name, ("OUTPUT",), en=en)[:shape.width]
        return p36.as_signed() if shape.signed else p36
    p = Signal(shape, name=f"{name}_p", reset_less=True)
    with m.If(en):
        m.d.sync += p.eq(a * b)
    return p


def on_ecp5(platform):
    """Whether ``platform`` is an ECP5 (an amaranth-boards platform, or the synthesis flow's): where
    mensa instantiates the device's cells (MULT18X18D, TRELLIS_FF) instead of behavioural registers."""
    return getattr(platform, "family", None) == "ecp5"


def _mult18x18d(m, a, b, name, registers, *, en=1):
    """A MULT18X18D with the named register sets clocked, enabled by ``en`` (the others bypassed); returns
    its 36-bit product."""
    assert len(a) <= 18 and len(b) <= 18
    a18, b18, p36 = Signal(signed(18)), Signal(signed(18)), Signal(signed(36))
    m.d.comb += a18.eq(a), b18.eq(b)
    regs = {f"p_REG_{r}_{f}": (v if r in registers else "NONE") if f == "CLK" else v
            for r in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")
            for f, v in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))}
    m.submodules[name] = Instance(
        "MULT18X18D", **regs, p_GSR="DISABLED", p_RESETMODE="SYNC",
        **{f"i_A{k}": a18[k] for k in range(18)}, **{f"i_B{k}": b18[k] for k in range(18)},
        **{f"i_C{k}": Const(0) for k in range(18)},
        i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
        i_CLK0=ClockSignal("sync"), i_CE0=en, i_RST0=Const(0),
        **{f"o_P{k}": p36[k] for k in range(36)})
    return p36


def lut_product(a, b):
    """``a * b`` of unsigned values in LUTs: ``a`` shifted and added for each bit of ``b``.

    Yosys maps every ``*`` whose operands are both two bits or wider to a DSP block; a product of
    narrow fields (a few bits each) takes a few LUTs this way instead.
    """
    return sum(Mux(b[k], a << k, 0) for k in range(len(b)))
