"""cocotb testbench of the systolic accelerator top: whole layers from DRAM, bit-exact with the golden model.

Parameters come in ``MENSA_TB`` (JSON): ``config`` (the accelerator config as a dict of
``rows``, ``cols``, ``data_bits``, ``acc_kib``), ``layers`` (a list of layer specs: ``op``
"fc", "pointwise", "conv2d" or "depthwise", ``in_shape``, ``out_channels``, ``activation``,
``zp_in``, ``zp_out``, ``in_scale``, ``out_scale`` (a table activation: also ``pre_scale`` and
``zp_pre``, the requantisation to the table's input), and for conv2d/depthwise optionally
``kernel`` [kh, kw], ``stride`` [sh, sw], ``padding`` [top, bottom, left, right] or "same"
(TFLite's, the odd pixel at the bottom/right) or "valid", ``dilation`` [dh, dw]; default
1x1, stride 1, valid, dilation 1), ``pause`` (probability that an AXI channel of the RAM
pauses in a cycle), ``latency`` ([lo, hi] cycles from a read burst's address to its data,
drawn per burst), ``ram_bytes`` (the DRAM's size, default 1 MiB), ``result`` (a JSON file
for the measurements).

The ``result`` file is a JSON list, one object per layer, in order: ``layer`` (name),
``op``, ``m``, ``k``, ``n`` (the implicit GEMM: output pixels, kernel taps x input
channels per output channel, output channels), ``macs``, ``cycles`` (CYCLES_TOTAL),
``busy`` (CYCLES_BUSY), ``stall`` (CYCLES_STALL), ``utilisation`` (macs / (rows * cols *
cycles), or macs / (lanes * cycles) for a layer on the vector unit: ``engine`` "array" or
"vector", ``lanes`` the MACs per cycle of that engine), ``dram_read_bytes`` and
``dram_write_bytes`` (AXI R and W beats times the bus width, counted on the bus from START to
the interrupt), ``rows`` and ``cols`` (the array size the RTL reports in its ROWS and COLS
registers).

Driver: per layer, :func:`mensa.contract.compiler.compile_layer` of a random layer (weights,
bias, input from the test seed) into the RAM, the descriptor through cocotbext-axi's
AxiLiteMaster, IRQ_ENABLE, then CTRL.START. Monitor: the interrupt line, STATUS and the
performance counters. Checker: the output region against
:func:`mensa.core.golden.run_layer`, byte for byte; the interrupt clears on a write of 1.
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from mensa.contract.compiler import compile_layer
from mensa.core.config import AcceleratorConfig, ArrayConfig, BufferConfig, MemoryConfig, VectorConfig, from_dict
from mensa.contract.regs import register_map
from mensa.contract.gemm import GemmGeometry
from mensa.contract.vector_program import VectorProgram
from mensa.core.ir import Activation, Layer, LayerQuant, Op, QuantParams, conv_out_size, same_padding
from mensa.core import golden
from mensa.sim.testbench import TB, assert_bit_exact

RAM_BYTES = 1 << 22       # MobileNetV2's 1280 x 1000 classifier: 1.3 MB of weights
TIMEOUT = 200_000       # cycles a layer may take, beyond its bound below, before the test calls it hung


def accelerator_config(p):
    """The config under test: a whole accelerator table (``{"accelerator": to_dict(acc)}``, as
    ``mensa run-layer`` passes it) or the short form of ``rows``, ``cols``, ``data_bits``,
    ``acc_kib`` (and ``act_kib``, ``weight_kib``: the defaults if not given; ``lanes`` and
    ``line_kib``: a vector unit)."""
    if "accelerator" in p:
        return from_dict({"name": "dut", "accelerator": [p["accelerator"]]}).accelerator[0]
    vector = VectorConfig(lanes=p["lanes"], line_kib=p.get("line_kib", VectorConfig.line_kib)) if "lanes" in p else None
    return AcceleratorConfig(name="dut", array=ArrayConfig(rows=p["rows"], cols=p["cols"]),
                             buffers=BufferConfig(acc_kib=p["acc_kib"], act_kib=p.get("act_kib", BufferConfig.act_kib),
                                                  weight_kib=p.get("weight_kib", BufferConfig.weight_kib)),
                             memory=MemoryConfig(data_bits=p["data_bits"]), vector=vector)


def make_layer(spec, index):
    """A quantised Layer IR layer from a spec (random scales drawn by the caller's spec)."""
    shape = tuple(spec["in_shape"])
    cout = spec["out_channels"]
    # a table activation requantises to ``pre_scale``/``zp_pre`` (its table's input) first
    pre = QuantParams(spec["pre_scale"], spec["zp_pre"]) if "pre_scale" in spec else None
    quant = LayerQuant(inputs=(QuantParams(spec["in_scale"], spec["zp_in"]),),
                       output=QuantParams(spec["out_scale"], spec["zp_out"]),
                       weight_scales=tuple(np.linspace(0.002, 0.02, cout)), pre_activation=pre)
    if spec["op"] == "fc":
        return Layer(name=f"layer{index}", op=Op.FC, in_shape=shape, out_shape=(shape[0], cout),
                     activation=Activation(spec["activation"]), quant=quant)
    if spec["op"] in POOLS:
        return _pool_layer(spec, index, shape)
    if spec["op"] in ("add", "mul"):
        quant = LayerQuant(inputs=(QuantParams(spec["in_scale"], spec["zp_in"]),
                                   QuantParams(spec["in2_scale"], spec["zp_in2"])),
                           output=QuantParams(spec["out_scale"], spec["zp_out"]), pre_activation=pre)
        other = shape if spec["op"] == "add" else (1, 1, 1, shape[3])
        return Layer(name=f"layer{index}", op=Op(spec["op"]), in_shape=shape, out_shape=shape, inputs=("a", "b"),
                     extra_in_shapes=(other,), activation=Activation(spec["activation"]), quant=quant)
    kernel = tuple(spec.get("kernel", (1, 1)))
    stride = tuple(spec.get("stride", (1, 1)))
    dilation = tuple(spec.get("dilation", (1, 1)))
    pad = _padding(spec, shape, kernel, stride, dilation)
    oh = conv_out_size(shape[1], kernel[0], stride[0], pad[0], pad[1], dilation[0])
    ow = conv_out_size(shape[2], kernel[1], stride[1], pad[2], pad[3], dilation[1])
    op = Op.DEPTHWISE if spec["op"] == "depthwise" else Op.CONV2D
    return Layer(name=f"layer{index}", op=op, in_shape=shape, out_shape=(shape[0], oh, ow, cout),
                 kernel=kernel, stride=stride, padding=pad, dilation=dilation,
                 groups=shape[3] if op is Op.DEPTHWISE else 1,
                 activation=Activation(spec["activation"]), quant=quant)


#: the pooling ops of a spec, and their IR op
POOLS = {"maxpool": Op.MAXPOOL, "avgpool": Op.AVGPOOL, "global_avgpool": Op.GLOBAL_AVGPOOL}


def _padding(spec, shape, kernel, stride, dilation):
    """A spec's padding: [top, bottom, left, right], "same" (TFLite's) or "valid" (the default)."""
    pad = spec.get("padding", "valid")
    if pad == "same":
        return (*same_padding(shape[1], kernel[0], stride[0], dilation[0]),
                *same_padding(shape[2], kernel[1], stride[1], dilation[1]))
    return (0, 0, 0, 0) if pad == "valid" else tuple(pad)


def _pool_layer(spec, index, shape):
    """A pooling layer: max and average pools keep the input's quantisation (``zp_in``, ``in_scale``)."""
    op = POOLS[spec["op"]]
    act = Activation(spec["activation"])
    if op is Op.GLOBAL_AVGPOOL:
        quant = LayerQuant(inputs=(QuantParams(spec["in_scale"], spec["zp_in"]),),
                           output=QuantParams(spec["out_scale"], spec["zp_out"]))
        return Layer(name=f"layer{index}", op=op, in_shape=shape, out_shape=(1, 1, 1, shape[3]), activation=act,
                     quant=quant)
    q = QuantParams(spec["in_scale"], spec["zp_in"])
    kernel, stride = tuple(spec.get("kernel", (1, 1))), tuple(spec.get("stride", (1, 1)))
    pad = _padding(spec, shape, kernel, stride, (1, 1))
    oh = conv_out_size(shape[1], kernel[0], stride[0], pad[0], pad[1], 1)
    ow = conv_out_size(shape[2], kernel[1], stride[1], pad[2], pad[3], 1)
    return Layer(name=f"layer{index}", op=op, in_shape=shape, out_shape=(1, oh, ow, shape[3]), kernel=kernel,
                 stride=stride, padding=pad, activation=act, quant=LayerQuant(inputs=(q,), output=q))


class AcceleratorTB(TB):
    """The accelerator top: its registers through an AxiLiteMaster on ``s_axil``, its DRAM an
    AXI4 RAM on ``m_axi`` (``ram_bytes``, ``latency`` and ``pause`` parameters)."""

    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.acc = accelerator_config(p["config"])
        self.regmap = register_map(self.acc)
        self.ram_bytes = p.get("ram_bytes", RAM_BYTES)
        self.ram, self.ram_read = self.axi_ram("m_axi", size=self.ram_bytes, latency=p["latency"],
                                               pause=p["pause"], rnd=self.random(1))
        self.master = self.axil_master("s_axil")

    async def reset(self):
        await super().reset(cycles=3, settle=2)


def cycle_bound(acc, layer, prog):
    """A generous bound on a layer's cycles: per array pass (or per lane tap) and per bus word it reads."""
    if isinstance(prog, VectorProgram):
        g = prog.geometry
        planes = -(-layer.in_channels // g.lanes)
        pixels = layer.in_shape[1] * layer.in_shape[2]
        return planes * (pixels * layer.kernel[0] * layer.kernel[1] + pixels * g.pixel_words * 2)
    g = GemmGeometry.of(acc)
    k_tiles = layer.kernel[0] * layer.kernel[1] * -(-layer.in_channels // g.rows)
    n_tiles = -(-layer.out_channels // g.cols)
    words = n_tiles * k_tiles * (-(-prog.m // g.acc_depth) * g.rows * g.weight_words + prog.m * g.act_words)
    return -(-layer.macs // (g.rows * g.cols)) + words


#: the weights and biases the testbench draws: ``WEIGHT_MIN..127`` and ``-BIAS_MAX-1..BIAS_MAX``
WEIGHT_MIN, BIAS_MAX = -128, 19999


def draw_tensors(layer, spec, gen):
    """Weights, bias and input of a layer: uniform int8 and biases up to :data:`BIAS_MAX`.

    A spec with ``extreme`` takes the accumulator to its worst case instead: every input -128
    (so ``x - zero point`` is -255 at zero point 127), the bias :data:`BIAS_MAX`, and in output
    channel ``j`` of ``C`` the first ``K - j * K / C`` weights -128, the rest random, so the
    channels' sums step down from the largest the compiler accepts.
    """
    if layer.op in POOLS.values():
        return None, None, gen.integers(-128, 128, size=layer.in_shape).astype(np.int8)
    if layer.op in (Op.ADD, Op.MUL):
        return None, None, tuple(gen.integers(-128, 128, size=sh).astype(np.int8)
                                 for sh in (layer.in_shape, *layer.extra_in_shapes))
    shape = golden.weight_shape(layer)
    w = gen.integers(WEIGHT_MIN, 128, size=shape).astype(np.int8)
    if not spec.get("extreme"):
        b = gen.integers(-BIAS_MAX - 1, BIAS_MAX + 1, size=layer.out_channels).astype(np.int32)
        return w, b, gen.integers(-128, 128, size=layer.in_shape).astype(np.int8)
    cout = layer.out_channels
    flat = w.reshape(-1, cout)
    k = flat.shape[0]
    for j in range(cout):
        flat[:k - j * k // cout, j] = WEIGHT_MIN
    return flat.reshape(shape), np.full(cout, BIAS_MAX, np.int32), np.full(layer.in_shape, -128, np.int8)


@cocotb.test()
async def accelerator_runs_layers_bit_exact(dut):
    """Every layer's output bytes equal the golden model's; STATUS, the interrupt and the counters behave."""
    tb = AcceleratorTB(dut)
    p, acc, ram = tb.params, tb.acc, tb.ram
    await tb.reset()

    # the RTL was built for the array and bus of the config the compiler lays DRAM out for
    built = {name: await tb.read(name) for name in ("ROWS", "COLS", "BUS_BITS")}
    assert built == {"ROWS": acc.array.rows, "COLS": acc.array.cols, "BUS_BITS": acc.memory.data_bits}, built

    gen = tb.rng(2)
    results = []
    for i, spec in enumerate(p["layers"]):
        layer = make_layer(spec, i)
        w, b, x = draw_tensors(layer, spec, gen)
        params = golden.layer_params(layer) if w is None else golden.layer_params(layer, weights=w, bias=b)
        prog = compile_layer(acc, layer, params, x, base=0)
        assert prog.image.size <= tb.ram_bytes, f"{layer.name}: image of {prog.image.size} bytes"
        ram.write(0, prog.image.tobytes())
        for offset, value in prog.writes(tb.regmap):
            await tb.master.write_dword(offset, value)
        await tb.write("IRQ_ENABLE", 1)
        await tb.write("CTRL", 1)
        beats_in = beats_out = 0
        # hung: no interrupt after 4 cycles per array pass and per bus word of every weight
        # and activation tile the layer reads (a batch-1 FC layer is bound by its weights)
        limit = TIMEOUT + 4 * cycle_bound(acc, layer, prog)
        for cycle in range(limit):
            await RisingEdge(dut.clk)
            beats_in += int(dut.m_axi_rvalid.value) & int(dut.m_axi_rready.value)
            beats_out += int(dut.m_axi_wvalid.value) & int(dut.m_axi_wready.value)
            if int(dut.irq.value):
                break
        else:
            raise AssertionError(f"{layer.name}: no interrupt after {limit} cycles")
        assert await tb.read("STATUS") == 0b10, f"{layer.name}: STATUS is not DONE and idle"
        got = prog.output(ram.read(prog.output_addr, prog.output_bytes))
        expect = golden.run_layer(layer, params, *(x if isinstance(x, tuple) else (x,)))
        assert_bit_exact(got, expect, f"{layer.name} {spec}")
        total, busy, stall = [await tb.counter(n) for n in ("CYCLES_TOTAL", "CYCLES_BUSY", "CYCLES_STALL")]
        assert 0 < busy <= total and stall <= total, f"{layer.name}: counters {total} {busy} {stall}"
        await tb.write("IRQ_STATUS", 1)
        await tb.cycles(2)
        assert not int(dut.irq.value), f"{layer.name}: interrupt still raised after IRQ_STATUS was cleared"
        m, n = prog.m, layer.out_channels
        k = layer.macs // (m * n)
        lanes = prog.geometry.lanes if isinstance(prog, VectorProgram) else acc.array.rows * acc.array.cols
        util = layer.macs / (total * lanes)
        word = acc.memory.data_bits // 8
        tb.log.info(f"{layer.name}: {layer.op.value} {spec.get('kernel', [1, 1])} stride {spec.get('stride', [1, 1])} "
                    f"M={m} K={k} N={n} {layer.activation.value}: {expect.size} outputs bit-exact in {total} cycles "
                    f"(array busy {busy}, DRAM stall {stall}, utilisation {util:.1%}, DRAM read "
                    f"{beats_in * word} B, written {beats_out * word} B)")
        results.append({"layer": layer.name, "op": layer.op.value, "m": m, "k": k, "n": n, "macs": layer.macs,
                        "cycles": total, "busy": busy, "stall": stall, "utilisation": util,
                        "dram_read_bytes": beats_in * word, "dram_write_bytes": beats_out * word,
                        "rows": built["ROWS"], "cols": built["COLS"], "lanes": lanes,
                        "engine": "vector" if isinstance(prog, VectorProgram) else "array"})
    tb.write_result(results)
