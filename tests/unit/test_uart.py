"""The UART transmitter: bytes sent 8N1 at the divisor's bit time, read back by sampling each bit mid-way
(as a receiver does), with random gaps between the bytes offered; the divisor for a baud rate."""

import random

import pytest
from amaranth.sim import Simulator

from mensa.hw.uart import UartTx, uart_divisor


@pytest.mark.parametrize("divisor", [2, 3, 7])
def test_bytes_leave_8n1_at_the_divisor_s_bit_time(divisor):
    seed = random.randrange(1 << 16)
    print(f"seed {seed}")
    rnd = random.Random(seed)
    sent = bytes(rnd.randrange(256) for _ in range(12)) + b"\x00\xff"
    dut = UartTx(divisor)
    got = bytearray()
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def source(ctx):
        for byte in sent:
            for _ in range(rnd.choice([0, 0, 3, 25])):
                await ctx.tick()
            ctx.set(dut.data.valid, 1)
            ctx.set(dut.data.payload, byte)
            while not (await ctx.tick().sample(dut.data.ready))[2]:
                pass
            ctx.set(dut.data.valid, 0)

    async def receiver(ctx):
        while len(got) < len(sent):
            await ctx.tick()
            if ctx.get(dut.tx):
                continue
            if divisor > 2:
                await ctx.tick().repeat((divisor - 1) // 2)     # from a start bit's first cycle to its middle
            assert ctx.get(dut.tx) == 0, "start bit too short"
            byte = 0
            for bit in range(8):
                await ctx.tick().repeat(divisor)
                byte |= ctx.get(dut.tx) << bit
            await ctx.tick().repeat(divisor)
            assert ctx.get(dut.tx) == 1, "no stop bit"
            got.append(byte)

    sim.add_testbench(source, background=True)
    sim.add_testbench(receiver)
    sim.run()
    assert bytes(got) == sent


def test_the_line_idles_high():
    dut = UartTx(4)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for _ in range(20):
            assert ctx.get(dut.tx) == 1 and ctx.get(dut.data.ready) == 1
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()


def test_divisor_for_a_baud_rate():
    assert uart_divisor(25e6, 115_200) == 217
    assert uart_divisor(62.5e6, 115_200) == 543
    with pytest.raises(ValueError, match="at most"):
        uart_divisor(1e6, 600_000)
    with pytest.raises(ValueError, match="positive"):
        uart_divisor(25e6, 0)
