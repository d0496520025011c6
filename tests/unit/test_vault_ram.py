"""A vault on block RAM answers every request with its word, in order, under random request gaps and
response back-pressure; a word beyond those stored reads as zero."""

import random

from amaranth.sim import Simulator

from mensa.hw.vault_ram import VaultRam, vault_words
import numpy as np


def test_vault_words_are_little_endian_and_the_last_padded():
    assert vault_words(np.array([1, 2, 3, 4, 5], np.uint8), 32) == [0x04030201, 0x05]
    assert vault_words(np.zeros(0, np.uint8), 64) == []


def test_requests_answered_in_order_with_gaps_and_backpressure():
    seed = random.randrange(1 << 16)
    print(f"seed {seed}")
    rnd = random.Random(seed)
    init = [rnd.randrange(1 << 32) for _ in range(37)]
    dut = VaultRam(vault_words=1 << 16, bits=32, init=init)
    addrs = [rnd.randrange(48) for _ in range(200)] + [1 << 15, 65535]
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def requests(ctx):
        for a in addrs:
            while rnd.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.req.valid, 1)
            ctx.set(dut.req.payload, a)
            while not (await ctx.tick().sample(dut.req.ready))[2]:
                pass
            ctx.set(dut.req.valid, 0)

    async def responses(ctx):
        while len(got) < len(addrs):
            ready = rnd.random() < 0.6
            ctx.set(dut.resp.ready, ready)
            _, _, valid, data = await ctx.tick().sample(dut.resp.valid, dut.resp.payload)
            if ready and valid:
                got.append(data)

    sim.add_testbench(requests, background=True)
    sim.add_testbench(responses)
    sim.run()
    assert got == [init[a] if a < len(init) else 0 for a in addrs]
