"""A trace of the AXI read stream of one layer on the accelerator (debug, not part of mensa)."""
import json
import cocotb
from cocotb.triggers import RisingEdge
from mensa.contract.compiler import compile_layer
from mensa.core import golden
from mensa.sim.tb_accelerator import AcceleratorTB, make_layer, draw_tensors


@cocotb.test()
async def trace(dut):
    tb = AcceleratorTB(dut)
    p, acc, ram = tb.params, tb.acc, tb.ram
    await tb.reset()
    gen = tb.rng(2)
    spec = p["layers"][0]
    layer = make_layer(spec, 0)
    w, b, x = draw_tensors(layer, spec, gen)
    params = golden.layer_params(layer, weights=w, bias=b)
    prog = compile_layer(acc, layer, params, x, base=0)
    ram.write(0, prog.image.tobytes())
    for offset, value in prog.writes(tb.regmap):
        await tb.master.write_dword(offset, value)
    await tb.write("CTRL", 1)
    ev = []
    s = dut
    for cycle in range(400000):
        await RisingEdge(dut.clk)
        if int(s.m_axi_arvalid.value) and int(s.m_axi_arready.value):
            ev.append(("ar", cycle, int(s.m_axi_araddr.value), int(s.m_axi_arlen.value) + 1))
        rv, rr = int(s.m_axi_rvalid.value), int(s.m_axi_rready.value)
        if rv and rr:
            ev.append(("r", cycle, int(s.m_axi_rlast.value)))
        elif rv and not rr:
            ev.append(("rb", cycle))
        if int(dut.irq.value):
            break
    total = await tb.counter("CYCLES_TOTAL")
    regions = {k: v for k, v in prog.registers.items() if "ADDR" in k}
    with open(p["trace"], "w") as f:
        json.dump({"total": total, "regions": regions, "events": ev}, f)
