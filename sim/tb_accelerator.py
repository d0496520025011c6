"""cocotb testbench of the systolic accelerator top: whole layers from DRAM, bit-exact with the golden model.

Parameters come in ``MENSA_TB`` (JSON): ``config`` (the accelerator config as a dict of
``rows``, ``cols``, ``data_bits``, ``acc_kib``), ``layers`` (a list of layer specs: ``op``
"fc" or "pointwise", ``in_shape``, ``out_channels``, ``activation``, ``zp_in``,
``zp_out``), ``pause`` (probability that an AXI channel of the RAM pauses in a cycle),
``latency`` ([lo, hi] cycles from a read burst's address to its data, drawn per burst),
``result`` (a JSON file for the measured cycles).

Driver: per layer, :func:`mensa.gen.program.compile_layer` of a random layer (weights,
bias, input from the test seed) into the RAM, the descriptor through cocotbext-axi's
AxiLiteMaster, IRQ_ENABLE, then CTRL.START. Monitor: the interrupt line, STATUS and the
performance counters. Checker: the output region against
:func:`mensa.sim.golden.run_layer`, byte for byte; the interrupt clears on a write of 1.
"""

import json
import logging
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster
from cocotbext.axi.axi_ram import AxiRamWrite

from mensa.gen.program import compile_layer
from mensa.hw.config import AcceleratorConfig, ArrayConfig, BufferConfig, MemoryConfig
from mensa.hw.regs import register_map
from mensa.model.ir import Activation, Layer, LayerQuant, Op, QuantParams
from mensa.sim import golden
from mensa.sim.streams import rng, seed
from mensa.sim.tb_dma import LatencyAxiRamRead

RAM_BYTES = 1 << 18
TIMEOUT = 200_000       # cycles a layer may take before the test calls the accelerator hung


def accelerator_config(p):
    return AcceleratorConfig(name="dut", array=ArrayConfig(rows=p["rows"], cols=p["cols"]),
                             buffers=BufferConfig(acc_kib=p["acc_kib"]), memory=MemoryConfig(data_bits=p["data_bits"]))


def make_layer(spec, index):
    """A quantised Layer IR layer from a spec (random scales drawn by the caller's spec)."""
    shape = tuple(spec["in_shape"])
    cout = spec["out_channels"]
    quant = LayerQuant(inputs=(QuantParams(spec["in_scale"], spec["zp_in"]),),
                       output=QuantParams(spec["out_scale"], spec["zp_out"]),
                       weight_scales=tuple(np.linspace(0.002, 0.02, cout)))
    if spec["op"] == "fc":
        op, out = Op.FC, (shape[0], cout)
    else:
        op, out = Op.CONV2D, (*shape[:3], cout)
    return Layer(name=f"layer{index}", op=op, in_shape=shape, out_shape=out,
                 activation=Activation(spec["activation"]), quant=quant)


@cocotb.test()
async def accelerator_runs_layers_bit_exact(dut):
    """Every layer's output bytes equal the golden model's; STATUS, the interrupt and the counters behave."""
    p = json.loads(os.environ["MENSA_TB"])
    acc = accelerator_config(p["config"])
    regmap = register_map(acc)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    rnd = random.Random(seed() + 1)
    bus = AxiBus.from_prefix(dut, "m_axi")
    ram = AxiRamWrite(bus.write, dut.clk, dut.rst, size=RAM_BYTES)
    ram_read = LatencyAxiRamRead(bus.read, dut.clk, dut.rst, latency=p["latency"], rnd=rnd,
                                 size=RAM_BYTES, mem=ram.mem)
    for ch in (ram.aw_channel, ram.w_channel, ram.b_channel, ram_read.ar_channel, ram_read.r_channel):
        ch.set_pause_generator(iter(lambda: rnd.random() < p["pause"], None))
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    for name in ("m_axi", "s_axil"):
        logging.getLogger(f"cocotb.{dut._name}.{name}").setLevel(logging.WARNING)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    async def read(name):
        return await master.read_dword(regmap[name].offset)

    async def counter(name):
        if name in regmap:
            return await read(name)
        return await read(f"{name}_LO") | (await read(f"{name}_HI")) << 32

    gen = rng(2)
    results = []
    for i, spec in enumerate(p["layers"]):
        layer = make_layer(spec, i)
        w = gen.integers(-128, 128, size=golden.weight_shape(layer)).astype(np.int8)
        b = gen.integers(-20000, 20000, size=layer.out_channels).astype(np.int32)
        params = golden.layer_params(layer, weights=w, bias=b)
        x = gen.integers(-128, 128, size=layer.in_shape).astype(np.int8)
        prog = compile_layer(layer, params, acc, x, base=0)
        assert prog.image.size <= RAM_BYTES, f"{layer.name}: image of {prog.image.size} bytes"
        ram.write(0, prog.image.tobytes())
        for offset, value in prog.writes(regmap):
            await master.write_dword(offset, value)
        await master.write_dword(regmap["IRQ_ENABLE"].offset, 1)
        await master.write_dword(regmap["CTRL"].offset, 1)
        for cycle in range(TIMEOUT):
            await RisingEdge(dut.clk)
            if int(dut.irq.value):
                break
        else:
            raise AssertionError(f"{layer.name}: no interrupt after {TIMEOUT} cycles")
        assert await read("STATUS") == 0b10, f"{layer.name}: STATUS is not DONE and idle"
        got = prog.output(ram.read(prog.output_addr, prog.output_bytes))
        expect = golden.run_layer(layer, params, x)
        bad = np.argwhere(got != expect)
        assert not bad.size, (f"{layer.name} {spec}: {len(bad)} of {expect.size} outputs differ, first at "
                              f"{tuple(bad[0])}: {got[tuple(bad[0])]} != {expect[tuple(bad[0])]}")
        total, busy, stall = [await counter(n) for n in ("CYCLES_TOTAL", "CYCLES_BUSY", "CYCLES_STALL")]
        assert 0 < busy <= total and stall <= total, f"{layer.name}: counters {total} {busy} {stall}"
        await master.write_dword(regmap["IRQ_STATUS"].offset, 1)
        await ClockCycles(dut.clk, 2)
        assert not int(dut.irq.value), f"{layer.name}: interrupt still raised after IRQ_STATUS was cleared"
        m, k, n = prog.m, layer.in_channels, layer.out_channels
        util = m * k * n / (total * acc.array.rows * acc.array.cols)
        dut._log.info(f"{layer.name}: {layer.op.value} M={m} K={k} N={n} {layer.activation.value}: "
                      f"{expect.size} outputs bit-exact in {total} cycles (array busy {busy}, DRAM stall {stall}, "
                      f"utilisation {util:.1%})")
        results.append({"layer": layer.name, "m": m, "k": k, "n": n, "cycles": total, "busy": busy, "stall": stall,
                        "utilisation": util})
    if p.get("result"):
        with open(p["result"], "w") as f:
            json.dump(results, f)
