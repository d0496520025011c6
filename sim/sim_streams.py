"""``amaranth.sim`` testbench helpers for stream ports, with random handshake gaps.

The async counterparts of :mod:`mensa.sim.streams` (which drives Verilog under cocotb), in
Glasgow's manner: set the payload and ``valid``, then ``await ctx.tick().until(ready)``.
A ``gap`` is the probability of an idle cycle before each beat (a source) or of ``ready``
low in a cycle (a sink), drawn from the caller's ``random.Random`` so a seed replays it.
"""

__all__ = ["stream_put", "stream_get"]


async def stream_put(ctx, port, payload, *, rng=None, gap=0.0):
    """Offer one beat of ``payload`` on ``port`` (a stream the testbench drives) until taken."""
    while rng is not None and rng.random() < gap:
        await ctx.tick()
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, *, rng=None, gap=0.0):
    """Take one beat from ``port`` (a stream the testbench receives); returns its payload."""
    while rng is not None and rng.random() < gap:
        await ctx.tick()
    ctx.set(port.ready, 1)
    (payload,) = await ctx.tick().sample(port.payload).until(port.valid)
    ctx.set(port.ready, 0)
    return payload
