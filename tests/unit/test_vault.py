"""One vault of the near-memory unit computes its lanes' FC accumulators bit-exactly, under random gaps.

The testbench stands in for the rest of the unit: it serves the vault's memory port from
the vault's image (random latency, ``ready`` gaps), loads the input vectors into the x
banks of an input buffer as the vault frees them, and takes the result queues with
random ``ready`` gaps. Every group's accumulators equal :func:`mensa.core.golden.fully_connected_acc`
plus the bias for that vault's channels; every group's parameters are its lanes' multipliers
and shifts.
"""

import collections
import gc
import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib import data, memory, wiring
from amaranth.sim import Simulator

from mensa.contract.nearmem import NearMemGeometry, fc_program
from mensa.core import golden
from mensa.core.config import NearMemConfig
from mensa.hw.vault import Vault
from mensa.sim.sim_streams import stream_get

# One vault word per lane word, two lane words per vault word, four vault words per lane word.
CONFIGS = {
    "v2l4w32": NearMemConfig(vaults=2, lanes=4, vault_bits=32, vault_kib=16, local_kib=1),
    "v3l4w64": NearMemConfig(vaults=3, lanes=4, vault_bits=64, vault_kib=16, local_kib=1),
    "v2l8w16": NearMemConfig(vaults=2, lanes=8, vault_bits=16, vault_kib=16, local_kib=1),
}
GAP = 0.3
OUTSTANDING = 6         # vault requests in flight at most
LATENCY = (1, 8)        # cycles of a vault read


class _VaultAndBuffer(Elaboratable):
    """A vault and an input buffer of the unit's shape, its read port connected."""

    def __init__(self, geometry):
        self.vault = Vault(geometry=geometry)
        self.inbuf = memory.Memory(shape=data.ArrayLayout(signed(8), geometry.lanes),
                                   depth=geometry.banks * geometry.in_words, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.vault = self.vault
        m.submodules.inbuf = self.inbuf
        wiring.connect(m, self.inbuf.read_port(transparent_for=()), self.vault.inbuf)
        return m


def _layer(gen, geom, vault):
    """A random FC layer: its program and, for ``vault``, the expected accumulator and parameter beats."""
    L, V = geom.lanes, geom.vaults
    k = int(gen.integers(1, min(geom.max_in, 40) + 1))
    n = int(gen.integers(1, min(geom.max_groups, 3) * L * V + 1))
    m = int(gen.integers(1, 4))
    x = gen.integers(-128, 128, size=(m, k), dtype=np.int64).astype(np.int8)
    w = gen.integers(-128, 128, size=(k, n), dtype=np.int64).astype(np.int8)
    bias = gen.integers(-(1 << 31), 1 << 31, size=n, dtype=np.int64)
    multiplier, shift = golden.quantize_multiplier(gen.uniform(1e-5, 0.5, size=n))
    x_zp = int(gen.integers(-128, 128))
    raw = bool(gen.integers(0, 2))
    prog = fc_program(geom, w, x, bias=bias, multiplier=multiplier, shift=shift, x_zero_point=x_zp,
                      raw=raw, base=int(gen.integers(0, 4)))
    groups = prog.descriptor["groups"]
    width = V * groups * L          # channels beyond n are zero-weight padding
    pad = lambda v: np.concatenate([np.asarray(v, dtype=np.int64), np.zeros(width - n, dtype=np.int64)])  # noqa: E731
    acc = golden.fully_connected_acc(x, np.pad(w, ((0, 0), (0, width - n))), x_zero_point=x_zp)
    acc = (acc.astype(np.int64) + pad(bias)).astype(np.int32)     # wraps like the lanes' adders
    mult, sh = pad(multiplier), pad(shift)
    first = vault * groups * L
    accs = [[int(a) for a in acc[vec, first + grp * L:first + (grp + 1) * L]]
            for vec in range(m) for grp in range(groups)]
    quant = [] if raw else [([int(a) for a in mult[first + grp * L:first + (grp + 1) * L]],
                             [int(a) for a in sh[first + grp * L:first + (grp + 1) * L]])
                            for _ in range(m) for grp in range(groups)]
    return prog, accs, quant


def _simulate(geom, vault_index, layers, seed):
    rng = random.Random(seed)
    dut = _VaultAndBuffer(geom)
    vault, inbuf = dut.vault, dut.inbuf
    L, IW, B = geom.lanes, geom.in_words, geom.word_bytes
    now = {"image": None, "base": 0, "vectors": [], "full": 0, "requests": 0}
    got_quant = []

    async def memory_port(ctx):          # the vault of the stacked memory
        r = random.Random(rng.random())
        pending = collections.deque()     # (due cycle, word address)
        cycle, offered = 0, False
        while True:
            if not offered and pending and pending[0][0] <= cycle:
                offset = (pending[0][1] - now["base"]) * B
                assert 0 <= offset < len(now["image"]), f"read of word {pending[0][1]} beyond the image"
                ctx.set(vault.resp.payload, int.from_bytes(now["image"][offset:offset + B].tobytes(), "little"))
                ctx.set(vault.resp.valid, 1)
                offered = True
            req_ready = len(pending) < OUTSTANDING and r.random() >= GAP
            ctx.set(vault.req.ready, req_ready)
            _, _, req_valid, addr, resp_ready = await ctx.tick().sample(
                vault.req.valid, vault.req.payload, vault.resp.ready)
            cycle += 1
            if offered and resp_ready:
                pending.popleft()
                offered = False
                ctx.set(vault.resp.valid, 0)
            if req_ready and req_valid:
                pending.append((cycle + r.randint(*LATENCY), addr))
                now["requests"] += 1

    async def loader(ctx):                # the unit's broadcast into the x banks
        r = random.Random(rng.random())
        bank = 0
        while True:
            _, _, clear = await ctx.tick().sample(vault.clear_full)
            now["full"] &= ~clear
            if now.pop("restart", False):
                bank = 0
            if now["vectors"] and not now["full"] >> bank & 1 and r.random() >= GAP:
                vector = now["vectors"].pop(0)
                for word in range(-(-len(vector) // L)):
                    lanes = [int(e) for e in vector[word * L:(word + 1) * L]]
                    ctx.set(inbuf.data[bank * IW + word], lanes + [0] * (L - len(lanes)))
                now["full"] |= 1 << bank
                bank ^= 1
            ctx.set(vault.full, now["full"])

    async def quant_sink(ctx):            # the gather of parameters, which may run ahead
        r = random.Random(rng.random())
        for _ in range(sum(len(quant) for _, _, quant in layers)):
            beat = await stream_get(ctx, vault.quant, rng=r, gap=GAP)
            got_quant.append(([int(v) for v in beat.multiplier], [int(v) for v in beat.shift]))

    async def driver(ctx):                # the unit's control, and the gather of accumulators
        r = random.Random(rng.random())
        for prog, accs, quant in layers:
            image = prog.images[vault_index]
            now.update(image=image, base=prog.descriptor["base"], requests=0)
            now.update(vectors=list(prog.inputs), full=0, restart=True)
            ctx.set(vault.running, 0)
            ctx.set(vault.start, 1)
            await ctx.tick()
            ctx.set(vault.start, 0)
            ctx.set(vault.desc, prog.descriptor)
            ctx.set(vault.running, 1)
            got = []
            for _ in accs:
                beat = await stream_get(ctx, vault.accs, rng=r, gap=GAP)
                got.append([int(v) for v in beat])
            assert got == accs, f"seed {seed}: accumulators differ from golden"
            assert now["requests"] == prog.vectors * prog.words, f"seed {seed}: {now['requests']} requests"
        ctx.set(vault.accs.ready, 1)
        for _ in range(40):              # nothing more comes out
            _, _, valid = await ctx.tick().sample(vault.accs.valid)
            assert not valid, f"seed {seed}: an accumulator beat beyond the layers'"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(memory_port, background=True)
    sim.add_testbench(loader, background=True)
    sim.add_testbench(quant_sink)
    sim.add_testbench(driver)
    sim.run()
    assert got_quant == [q for _, _, quant in layers for q in quant], \
        f"seed {seed}: requantisation parameters differ from the headers"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", CONFIGS)
def test_vault_accumulators_and_parameters_equal_golden_under_random_gaps(name, seed):
    print(f"seed {seed}")
    geom = NearMemGeometry.of(CONFIGS[name])
    gen = np.random.default_rng(seed)
    vault_index = int(gen.integers(0, geom.vaults))
    _simulate(geom, vault_index, [_layer(gen, geom, vault_index) for _ in range(3)], seed)


# The refused vaults are never elaborated: Amaranth's warning about that, when they are collected, is noise here.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_vault_takes_its_geometry_by_keyword_only():
    geom = NearMemGeometry.of(CONFIGS["v2l4w32"])
    with pytest.raises(TypeError, match="geometry must be a NearMemGeometry, not NearMemConfig"):
        Vault(geometry=CONFIGS["v2l4w32"])
    with pytest.raises(TypeError):
        Vault(geom)
    gc.collect()
