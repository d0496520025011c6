"""The self-test's AXI4 slave RAM keeps the AXI4 protocol (amaranth.sim).

A Python AXI4 master drives random bursts — INCR, FIXED and WRAP, full width and narrow,
unaligned starts, 1 to 256 beats, byte strobes, addresses beyond the RAM — with random
pauses on WVALID, RREADY and BREADY and several read addresses queued back to back. The
reference is the AXI4 specification's address sequence over a byte array: every read
beat's data, RLAST, RRESP and RID, every write response, and the memory afterwards.
"""

import random

import pytest
from amaranth.sim import Simulator

from mensa.hw.axi_ram import BURST_FIXED, BURST_WRAP, RESP_DECERR, RESP_OKAY, AxiRam
from mensa.contract.numeric import BURST_INCR

WORD = 4                    # 32-bit bus
DEPTH = 256                 # 1 KiB of RAM in a 4 KiB address space (12 bits): a quarter answers
ADDR_BITS = 12


def beat_addresses(addr, length, size, burst):
    """The byte address of each beat (AXI4 spec A3.4.1)."""
    n, nb = length + 1, 1 << size
    if burst == BURST_FIXED:
        return [addr] * n
    if burst == BURST_INCR:
        aligned = addr & ~(nb - 1)
        return [addr] + [aligned + i * nb for i in range(1, n)]
    total = n * nb
    lower = addr // total * total
    out, a = [], addr
    for _ in range(n):
        out.append(a)
        a += nb
        if a >= lower + total:
            a = lower
    return out


def random_burst(r):
    burst = r.choice([BURST_INCR, BURST_INCR, BURST_FIXED, BURST_WRAP])
    size = r.randint(0, 2)
    nb = 1 << size
    if burst == BURST_WRAP:
        length = r.choice([1, 3, 7, 15])
        addr = r.randrange(0, 1 << ADDR_BITS, nb)                      # WRAP starts aligned
    else:
        length = r.choice([0, 1, 2, 7, 15, r.randint(0, 40), 255 if size == 2 else 63])
        addr = r.randrange(0, 1 << ADDR_BITS)
        if burst == BURST_INCR:     # an INCR burst stays within its 4 KiB page
            addr = min(addr, (1 << ADDR_BITS) - (length + 1) * nb)
    return addr, length, size, burst


def word_of(mem, a):
    w = a // WORD * WORD
    return int.from_bytes(mem[w:w + WORD], "little")


@pytest.mark.parametrize("seed,depth", [(1, DEPTH), (3, 200), pytest.param(2, DEPTH, marks=pytest.mark.slow)])
def test_random_bursts_follow_the_axi4_address_sequence(seed, depth):
    # depth 200: a RAM of no power of two of words (the block RAMs an image needs) answers DECERR beyond it
    print(f"seed {seed}, {depth} words")
    r = random.Random(seed)
    init = bytes(r.randrange(256) for _ in range(depth * WORD))
    dut = AxiRam(data_bits=32, addr_bits=ADDR_BITS, depth=depth, init=init, prefix="s")
    model = bytearray(init)
    ram_bytes = depth * WORD
    reads = []              # (data, last, resp, id) expected per read beat, in order
    where = []              # which burst and beat each is, for the failure message
    log = {"reads": 0, "writes": 0, "decerr": 0}

    def p(name):
        return getattr(dut, f"s_{name}")

    async def writer(ctx):
        ctx.set(p("awsize"), 2)
        for i in range(40):
            addr, length, size, burst = random_burst(r)
            wid = r.randrange(2)
            addrs = beat_addresses(addr, length, size, burst)
            beats = [(r.getrandbits(32), r.getrandbits(4)) for _ in addrs]
            for name, v in (("awaddr", addr), ("awlen", length), ("awsize", size), ("awburst", burst),
                            ("awid", wid), ("awvalid", 1)):
                ctx.set(p(name), v)
            aw_pending, beat, err = True, 0, False
            ctx.set(p("wvalid"), 0)
            while aw_pending or beat < len(beats):
                if beat < len(beats) and not ctx.get(p("wvalid")) and r.random() > 0.3:
                    data, strb = beats[beat]
                    ctx.set(p("wdata"), data)
                    ctx.set(p("wstrb"), strb)
                    ctx.set(p("wlast"), beat == len(beats) - 1)
                    ctx.set(p("wvalid"), 1)
                awr, wr, wv = ctx.get(p("awready")), ctx.get(p("wready")), ctx.get(p("wvalid"))
                await ctx.tick()
                if aw_pending and awr:
                    aw_pending = False
                    ctx.set(p("awvalid"), 0)
                if wv and wr:
                    data, strb = beats[beat]
                    a = addrs[beat]
                    if a >= ram_bytes:
                        err = True
                    else:
                        w = a // WORD * WORD
                        for b in range(WORD):
                            if strb >> b & 1:
                                model[w + b] = data >> 8 * b & 0xFF
                    beat += 1
                    ctx.set(p("wvalid"), 0)
            ctx.set(p("bready"), 0)
            while True:
                if r.random() > 0.4:
                    ctx.set(p("bready"), 1)
                bv, br = ctx.get(p("bvalid")), ctx.get(p("bready"))
                resp, bid = ctx.get(p("bresp")), ctx.get(p("bid"))
                await ctx.tick()
                if bv and br:
                    break
            ctx.set(p("bready"), 0)
            assert (resp, bid) == (RESP_DECERR if err else RESP_OKAY, wid), f"write burst {i}"
            log["writes"] += 1
            log["decerr"] += err
        # Reads start once every write is answered: the two directions are independent, so
        # a read overlapping a write's burst would race it.
        for i in range(60):
            addr, length, size, burst = random_burst(r)
            rid = r.randrange(2)
            addrs = beat_addresses(addr, length, size, burst)
            for k, a in enumerate(addrs):
                inside = a < ram_bytes
                reads.append((word_of(model, a) if inside else 0, int(k == len(addrs) - 1),
                              RESP_OKAY if inside else RESP_DECERR, rid))
                where.append(f"read burst {i} {(hex(addr), length, size, burst)} beat {k} at {a:#x}")
            state["issued"] = i + 1 == 60
            for name, v in (("araddr", addr), ("arlen", length), ("arsize", size), ("arburst", burst),
                            ("arid", rid), ("arvalid", 1)):
                ctx.set(p(name), v)
            while True:             # the next address follows at once: several are queued
                ready = ctx.get(p("arready"))
                await ctx.tick()
                if ready:
                    break
            ctx.set(p("arvalid"), 0)
        while "consumed" not in state:
            await ctx.tick()
        # The memory afterwards, through the peek port.
        ctx.set(dut.peek_sel, 1)
        for i in range(depth):
            ctx.set(dut.peek_addr, i)
            await ctx.tick()
            assert ctx.get(dut.peek_data) == word_of(model, i * WORD), f"word {i} after the writes"
        state["peeked"] = True

    state = {}

    async def consumer(ctx):
        got = 0
        while True:
            ctx.set(p("rready"), r.random() > 0.3)
            rv, rr = ctx.get(p("rvalid")), ctx.get(p("rready"))
            beat = (ctx.get(p("rdata")), ctx.get(p("rlast")), ctx.get(p("rresp")), ctx.get(p("rid")))
            await ctx.tick()
            if rv and rr:
                assert got < len(reads), "a read beat nobody asked for"
                assert beat == reads[got], f"{where[got]}: {beat} != {reads[got]}; words {[hex(j * WORD) for j in range(depth) if word_of(model, j * WORD) == beat[0]]}"
                got += 1
            if state.get("issued") and got == len(reads):
                break
        ctx.set(p("rready"), 0)
        log["reads"] = got
        state["consumed"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(writer)
    sim.add_testbench(consumer)
    sim.run()
    assert state.get("peeked") and log["reads"] == len(reads) > 500 and log["writes"] == 40 and log["decerr"] > 0, log
