"""cocotb testbench of the near-memory accelerator: whole layers from DRAM and vaults, bit-exact with golden.

Parameters come in ``MENSA_TB`` (JSON): ``config`` (``{"accelerator": to_dict(acc)}``, an accelerator
of kind nearmem), ``layers`` (a list of layer specs: FC and pointwise as
:func:`mensa.sim.tb_accelerator.make_layer` takes them; ``{"op": "lstm", "in": C, "hidden": H,
"projection": P, "steps": T}`` an LSTM layer of :func:`mensa.sim.tb_lstm.lstm_case`), ``latency``
([lo, hi] cycles from a DRAM read burst's address to its data), ``pause`` (probability that an
AXI channel, of the DRAM or of the register master, pauses in a cycle), ``vault_latency`` ([lo,
hi] cycles of a vault read), ``gap`` (probability that a vault's request port is not ready in a
cycle), ``outstanding`` (vault reads in flight at most), ``result`` (a JSON file for the figures).

Driver: per layer, :func:`mensa.contract.compiler.compile_layer` of a random layer; its DRAM image
(the output region filled with random bytes, so a byte the accelerator does not write fails the
check) into cocotbext-axi's AXI RAM, its vault images into :class:`mensa.sim.vault.VaultArray` by
backdoor, the descriptor through an AxiLiteMaster, IRQ_ENABLE, CTRL.START. Monitor: the interrupt,
STATUS, the counters, the AXI beats. Checker: the output region against
:func:`mensa.core.golden.run_layer`, byte for byte; the interrupt clears on a write of 1.
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from mensa.contract.compiler import compile_layer
from mensa.contract.regs import register_map
from mensa.core import golden
from mensa.core.ir import Op
from mensa.sim.tb_accelerator import accelerator_config, draw_tensors, make_layer
from mensa.sim.tb_lstm import lstm_case
from mensa.sim.testbench import TB, assert_bit_exact
from mensa.sim.vault import VaultArray

RAM_BYTES = 1 << 20


def layer_of(spec, index, gen):
    """(layer, params, x) of a spec, its tensors drawn from ``gen``."""
    if spec["op"] == "lstm":
        layer, params, x = lstm_case(gen, spec["in"], spec["hidden"], spec.get("projection", 0), spec["steps"])
        return layer, params, x
    layer = make_layer(spec, index)
    w, b, x = draw_tensors(layer, spec, gen)
    return layer, golden.layer_params(layer, weights=w, bias=b), x


def cycle_bound(prog, vault_latency):
    """Far more cycles than a layer can take: every vault word read at its worst latency, one at a time."""
    steps = prog.m
    return steps * (prog.unit.words * vault_latency + 500) + 5000


class NearMemAcceleratorTB(TB):
    """The accelerator: registers through an AxiLiteMaster on ``s_axil``, DRAM an AXI4 RAM on ``m_axi``,
    the vaults a :class:`VaultArray` on ``vault_req``/``vault_resp``."""

    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.acc = accelerator_config(p["config"])
        self.regmap = register_map(self.acc)
        self.ram_bytes = p.get("ram_bytes", RAM_BYTES)
        self.ram, _ = self.axi_ram("m_axi", size=self.ram_bytes, latency=p["latency"], pause=p["pause"],
                                   rnd=self.random(1))
        self.master = self.axil_master("s_axil", pause=p["pause"], rnd=self.random(2))

    async def start(self):
        await self.reset(cycles=3, settle=2)
        p, nm = self.params, self.acc.nearmem
        self.vaults = VaultArray(self.dut, self.clk, vaults=nm.vaults, word_bytes=nm.vault_bits // 8,
                                 latency=tuple(p["vault_latency"]), gap=p["gap"],
                                 outstanding=p.get("outstanding", 16))


@cocotb.test()
async def nearmem_accelerator_runs_layers_bit_exact(dut):
    """Every layer's output bytes equal the golden model's; STATUS, the interrupt and the counters behave."""
    tb = NearMemAcceleratorTB(dut)
    p, acc, ram = tb.params, tb.acc, tb.ram
    await tb.start()
    nm = acc.nearmem
    built = {name: await tb.read(name) for name in ("VAULTS", "LANES", "BUS_BITS", "LSTM_DATAPATH")}
    assert built == {"VAULTS": nm.vaults, "LANES": nm.lanes, "BUS_BITS": acc.memory.data_bits,
                     "LSTM_DATAPATH": int(nm.lstm)}, built

    gen = tb.rng(3)
    word = acc.memory.data_bits // 8
    results = []
    for i, spec in enumerate(p["layers"]):
        layer, params, x = layer_of(spec, i, gen)
        prog = compile_layer(acc, layer, params, x, base=0)
        assert prog.image.size <= tb.ram_bytes, f"{layer.name}: image of {prog.image.size} bytes"
        image = prog.image.copy()
        out_addr, out_bytes = prog.regions["output"]
        image[out_addr - prog.base:out_addr - prog.base + out_bytes] = gen.integers(0, 256, out_bytes, np.uint8)
        ram.write(prog.base, image.tobytes())
        tb.vaults.load(prog.vault_images, prog.vault_base)
        for offset, value in prog.writes(tb.regmap):
            await tb.master.write_dword(offset, value)
        await tb.write("IRQ_ENABLE", 1)
        await tb.write("CTRL", 1)
        beats_in = beats_out = 0
        limit = cycle_bound(prog, p["vault_latency"][1])
        for _ in range(limit):
            await RisingEdge(dut.clk)
            beats_in += int(dut.m_axi_rvalid.value) & int(dut.m_axi_rready.value)
            beats_out += int(dut.m_axi_wvalid.value) & int(dut.m_axi_wready.value)
            if int(dut.irq.value):
                break
        else:
            raise AssertionError(f"{layer.name}: no interrupt after {limit} cycles")
        assert await tb.read("STATUS") == 0b10, f"{layer.name}: STATUS is not DONE and idle"
        got = prog.output(ram.read(out_addr, out_bytes))
        expect = golden.run_layer(layer, params, x)
        what = f"{layer.name} {layer.op.value} {layer.in_shape} -> {layer.out_shape} {spec}"
        assert_bit_exact(got.reshape(prog.m, -1), expect.reshape(prog.m, -1), what, axes="(vector, channel)",
                         row=True)
        # every input byte read once, every output byte written once
        assert beats_in * word == prog.regions["input"][1], f"{what}: {beats_in} words read"
        assert beats_out * word == out_bytes, f"{what}: {beats_out} words written"
        total, busy, stall = [await tb.counter(n) for n in ("CYCLES_TOTAL", "CYCLES_BUSY", "CYCLES_STALL")]
        assert 0 < busy <= total and stall <= total, f"{layer.name}: counters {total} {busy} {stall}"
        await tb.write("IRQ_STATUS", 1)
        await tb.cycles(2)
        assert not int(dut.irq.value), f"{layer.name}: interrupt still raised after IRQ_STATUS was cleared"
        macs = layer.macs
        util = macs / (total * nm.vaults * nm.lanes)
        tb.log.info(f"{what}: {expect.size} outputs bit-exact in {total} cycles (unit busy {busy}, DRAM wait "
                    f"{stall}, lane utilisation {util:.1%}, DRAM read {beats_in * word} B, written "
                    f"{beats_out * word} B, vault bytes {tb.vaults.bytes_read})")
        results.append({"layer": layer.name, "op": layer.op.value, "in_shape": list(layer.in_shape),
                        "out_shape": list(layer.out_shape), "lstm": layer.op is Op.LSTM, "macs": macs,
                        "cycles": total, "busy": busy, "stall": stall, "utilisation": util,
                        "dram_read_bytes": beats_in * word, "dram_write_bytes": beats_out * word,
                        "vault_bytes": tb.vaults.bytes_read, "vectors": prog.m,
                        "lanes": nm.vaults * nm.lanes})
    tb.write_result(results)
