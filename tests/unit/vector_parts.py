"""What the vector unit's unit tests share: a small config, random depthwise layers, a DRAM model."""

import dataclasses

import numpy as np

from mensa.contract.vector_program import compile_vector
from mensa.core import golden
from mensa.core.config import AcceleratorConfig, MemoryConfig, VectorConfig
from mensa.core.ir import Activation, Layer, LayerQuant, Op, QuantParams, conv_out_size

ADDR_BITS = 32


def vector_config(lanes=4, data_bits=32, line_kib=1):
    return AcceleratorConfig(name="v", memory=MemoryConfig(data_bits=data_bits, addr_bits=ADDR_BITS),
                             vector=VectorConfig(lanes=lanes, line_kib=line_kib))


def random_depthwise(rng, *, max_hw=7, max_c=9, max_k=3):
    """A depthwise layer: kernel 1..max_k (kh != kw), stride 1..2, dilation 1..2, padding up to the reach."""
    while True:
        kh, kw = rng.randint(1, max_k), rng.randint(1, max_k)
        sh, sw = rng.randint(1, 2), rng.randint(1, 2)
        dh, dw = rng.randint(1, 2), rng.randint(1, 2)
        h, w, c = rng.randint(1, max_hw), rng.randint(1, max_hw), rng.randint(1, max_c)
        pad = tuple(rng.randint(0, (k - 1) * d) for k, d in ((kh, dh), (kh, dh), (kw, dw), (kw, dw)))
        oh = conv_out_size(h, kh, sh, pad[0], pad[1], dh)
        ow = conv_out_size(w, kw, sw, pad[2], pad[3], dw)
        if oh >= 1 and ow >= 1:
            break
    quant = LayerQuant(inputs=(QuantParams(0.05, rng.randint(-128, 127)),),
                       output=QuantParams(rng.uniform(0.05, 0.5), rng.randint(-20, 20)),
                       weight_scales=tuple(np.linspace(0.002, 0.02, c)))
    return Layer(name="dw", op=Op.DEPTHWISE, in_shape=(1, h, w, c), out_shape=(1, oh, ow, c), kernel=(kh, kw),
                 stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=c,
                 activation=rng.choice(list(Activation)[:3]), quant=quant)


def random_pool(rng, *, max_hw=8, max_c=9):
    """A max, average or global average pool: kernel 1..4, stride 1..3, padding below the kernel."""
    op = rng.choice([Op.MAXPOOL, Op.AVGPOOL, Op.GLOBAL_AVGPOOL])
    h, w, c = rng.randint(1, max_hw), rng.randint(1, max_hw), rng.randint(1, max_c)
    zp = rng.randint(-128, 127)
    if op is Op.GLOBAL_AVGPOOL:
        quant = LayerQuant(inputs=(QuantParams(0.05, zp),), output=QuantParams(rng.uniform(0.01, 0.1),
                                                                              rng.randint(-20, 20)))
        return Layer(name="gap", op=op, in_shape=(1, h, w, c), out_shape=(1, 1, 1, c),
                     activation=rng.choice(list(Activation)[:3]), quant=quant)
    while True:
        kh, kw = rng.randint(1, min(4, h + 1)), rng.randint(1, min(4, w + 1))
        sh, sw = rng.randint(1, 3), rng.randint(1, 3)
        pad = (rng.randint(0, kh - 1), rng.randint(0, kh - 1), rng.randint(0, kw - 1), rng.randint(0, kw - 1))
        oh = conv_out_size(h, kh, sh, pad[0], pad[1], 1)
        ow = conv_out_size(w, kw, sw, pad[2], pad[3], 1)
        if oh >= 1 and ow >= 1:
            break
    quant = LayerQuant(inputs=(QuantParams(0.05, zp),), output=QuantParams(0.05, zp))
    return Layer(name="pool", op=op, in_shape=(1, h, w, c), out_shape=(1, oh, ow, c), kernel=(kh, kw),
                 stride=(sh, sw), padding=pad, activation=rng.choice(list(Activation)[:3]), quant=quant)


def random_mul(rng, *, max_hw=7, max_c=9):
    """A squeeze-excite mul: (1, H, W, C) by a (1, 1, 1, C) gate, each with its own zero point."""
    h, w, c = rng.randint(1, max_hw), rng.randint(1, max_hw), rng.randint(1, max_c)
    quant = LayerQuant(inputs=(QuantParams(0.05, rng.randint(-128, 127)), QuantParams(0.004, rng.randint(-128, 127))),
                       output=QuantParams(rng.uniform(0.01, 0.5), rng.randint(-20, 20)))
    return Layer(name="mul", op=Op.MUL, in_shape=(1, h, w, c), out_shape=(1, h, w, c), inputs=("x", "gate"),
                 extra_in_shapes=((1, 1, 1, c),), activation=rng.choice(list(Activation)[:3]), quant=quant)


def random_add(rng, *, max_hw=7, max_c=9):
    """An element-wise add of two (1, H, W, C) tensors, each with its own scale and zero point."""
    h, w, c = rng.randint(1, max_hw), rng.randint(1, max_hw), rng.randint(1, max_c)
    shape = (1, h, w, c)
    quant = LayerQuant(inputs=(QuantParams(rng.uniform(0.01, 0.1), rng.randint(-128, 127)),
                               QuantParams(rng.uniform(0.01, 0.1), rng.randint(-128, 127))),
                       output=QuantParams(rng.uniform(0.02, 0.2), rng.randint(-20, 20)))
    return Layer(name="add", op=Op.ADD, in_shape=shape, out_shape=shape, inputs=("a", "b"),
                 extra_in_shapes=(shape,), activation=rng.choice(list(Activation)[:3]), quant=quant)


def with_table(rng, layer):
    """``layer`` with a table activation (sigmoid, tanh, hard-swish or hard-sigmoid) after its requantisation."""
    act = rng.choice([Activation.SIGMOID, Activation.TANH, Activation.HARD_SWISH, Activation.HARD_SIGMOID])
    pre = QuantParams(rng.uniform(0.02, 0.1), rng.randint(-20, 20))
    out = QuantParams(1 / 128 if act is Activation.SIGMOID else 1 / 64, rng.randint(-30, 30))
    quant = dataclasses.replace(layer.quant, pre_activation=pre, output=out)
    return dataclasses.replace(layer, activation=act, quant=quant)


def compiled(config, layer, seed):
    """The program of ``layer`` with random weights, bias and input, and the golden output."""
    gen = np.random.default_rng(seed)
    x = gen.integers(-128, 128, size=layer.in_shape).astype(np.int8)
    if layer.op is Op.DEPTHWISE:
        w = gen.integers(-128, 128, size=golden.weight_shape(layer)).astype(np.int8)
        b = gen.integers(-20000, 20000, size=layer.out_channels).astype(np.int32)
        params = golden.layer_params(layer, weights=w, bias=b)
    else:
        params = golden.layer_params(layer)
    if layer.op in (Op.ADD, Op.MUL):
        gate = gen.integers(-128, 128, size=layer.extra_in_shapes[0]).astype(np.int8)
        return compile_vector(config, layer, params, (x, gate)), golden.run_layer(layer, params, x, gate)
    return compile_vector(config, layer, params, x), golden.run_layer(layer, params, x)


def descriptor(prog, lanes):
    """The vector unit's descriptor of ``prog`` (what the accelerator top derives from its registers)."""
    r = prog.registers
    return {
        "op": r["OP"], "in_h": r["IN_H"], "in_w": r["IN_W"], "out_h": r["OUT_H"], "out_w": r["OUT_W"],
        "tiles": -(-r["IN_C"] // lanes), "taps": r["KERNEL_H"] * r["KERNEL_W"], "m": r["OUT_H"] * r["OUT_W"],
        "kernel_h": r["KERNEL_H"], "kernel_w": r["KERNEL_W"], "stride_h": r["STRIDE_H"], "stride_w": r["STRIDE_W"],
        "dilation_h": r["DILATION_H"], "dilation_w": r["DILATION_W"], "pad_top": r["PAD_TOP"],
        "pad_bottom": r["PAD_BOTTOM"], "pad_left": r["PAD_LEFT"], "line_rows": r["LINE_ROWS"],
        "in_zero_point": r["IN_ZERO_POINT"] & 0xFF, "in2_zero_point": r.get("IN2_ZERO_POINT", 0) & 0xFF,
        "input2_addr": r.get("INPUT2_ADDR", 0), "in_multiplier": r.get("IN_MULTIPLIER", 0) & 0xFFFFFFFF,
        "in_shift": r.get("IN_SHIFT", 0) & 0xFF, "in2_multiplier": r.get("IN2_MULTIPLIER", 0) & 0xFFFFFFFF,
        "in2_shift": r.get("IN2_SHIFT", 0) & 0xFF, "table": r["ACT_TABLE"], "table_addr": r.get("TABLE_ADDR", 0),
        "out_zero_point": r["OUT_ZERO_POINT"] & 0xFF,
        "qmin": r["QMIN"] & 0xFF, "qmax": r["QMAX"] & 0xFF,
        "input_addr": r["INPUT_ADDR"], "weight_addr": r.get("WEIGHT_ADDR", 0), "quant_addr": r.get("QUANT_ADDR", 0),
        "output_addr": r["OUTPUT_ADDR"],
    }


class Dram:
    """A DRAM model on the DMA's client ports: reads answered after a random latency, words and
    handshakes with random gaps, writes acknowledged per command."""

    def __init__(self, image, word_bytes, rng, *, gap=0.3, latency=(1, 12)):
        self.mem = bytearray(image.tobytes())
        self.wb, self.rng, self.gap, self.latency = word_bytes, rng, gap, latency
        self.read_bytes = 0

    def word(self, addr):
        return int.from_bytes(self.mem[addr:addr + self.wb], "little")

    async def reads(self, ctx, dut, pending, clock):
        """Take read commands (into ``pending``: [first cycle to answer, addr, words])."""
        while True:
            ctx.set(dut.rd_cmd.ready, self.rng.random() >= self.gap)
            if ctx.get(dut.rd_cmd.valid) and ctx.get(dut.rd_cmd.ready):
                cmd = ctx.get(dut.rd_cmd.payload)
                pending.append([clock[0] + self.rng.randint(*self.latency), cmd.addr, cmd.count + 1])
            await ctx.tick()

    async def answers(self, ctx, dut, pending, clock):
        while True:
            offer = bool(pending) and pending[0][0] <= clock[0] and self.rng.random() >= self.gap
            ctx.set(dut.rd_data.valid, offer)
            if offer:
                _, addr, words = pending[0]
                ctx.set(dut.rd_data.payload, {"data": self.word(addr), "last": int(words == 1), "resp": 0})
                if ctx.get(dut.rd_data.ready):
                    self.read_bytes += self.wb
                    pending[0][1] += self.wb
                    pending[0][2] -= 1
                    if words == 1:
                        pending.pop(0)
            await ctx.tick()
            clock[0] += 1

    async def writes(self, ctx, dut):
        cmds, acks = [], 0
        while True:
            ctx.set(dut.wr_cmd.ready, self.rng.random() >= self.gap)
            ctx.set(dut.wr_data.ready, bool(cmds) and self.rng.random() >= self.gap)
            ctx.set(dut.wr_done.valid, acks > 0)
            if acks and ctx.get(dut.wr_done.ready):
                acks -= 1
            if ctx.get(dut.wr_cmd.valid) and ctx.get(dut.wr_cmd.ready):
                cmd = ctx.get(dut.wr_cmd.payload)
                cmds.append([cmd.addr, cmd.count + 1])
            if ctx.get(dut.wr_data.valid) and ctx.get(dut.wr_data.ready):
                beat = ctx.get(dut.wr_data.payload)
                addr = cmds[0][0]
                for i in range(self.wb):
                    if beat.strb >> i & 1:
                        self.mem[addr + i] = beat.data >> (8 * i) & 0xFF
                cmds[0][0] += self.wb
                cmds[0][1] -= 1
                if not cmds[0][1]:
                    cmds.pop(0)
                    acks += 1
            await ctx.tick()


