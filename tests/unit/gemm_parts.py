"""What the GEMM sequencer parts' unit tests share: a small geometry, random layers, a runner."""

from amaranth.sim import Simulator

from mensa.contract.gemm import GemmGeometry, LayerWalk
from mensa.core.config import AcceleratorConfig, ArrayConfig, BufferConfig, MemoryConfig

ADDR_BITS = 32


def geometry(rows=6, cols=5, data_bits=32, act_kib=2, acc_kib=1, weight_kib=1):
    """6 x 5 on a 32-bit bus: every vector is two words (the last partial), 18-word records."""
    return GemmGeometry.of(AcceleratorConfig(
        name="t", array=ArrayConfig(rows=rows, cols=cols),
        buffers=BufferConfig(act_kib=act_kib, acc_kib=acc_kib, weight_kib=weight_kib),
        memory=MemoryConfig(data_bits=data_bits, addr_bits=ADDR_BITS)))


def random_walk(rng, k, *, max_hw=7):
    """A conv of ``k`` input channels: kernel 1..3, stride 1..2, dilation 1..2, some padding."""
    while True:
        kh, kw = rng.randint(1, 3), rng.randint(1, 3)
        sh, sw = rng.randint(1, 2), rng.randint(1, 2)
        dh, dw = rng.randint(1, 2), rng.randint(1, 2)
        in_h, in_w = rng.randint(1, max_hw), rng.randint(1, max_hw)
        span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        pt, pl = rng.randint(0, span_h - 1), rng.randint(0, span_w - 1)
        out_h = (in_h + 2 * pt - span_h) // sh + 1
        out_w = (in_w + 2 * pl - span_w) // sw + 1
        if out_h >= 1 and out_w >= 1:
            return LayerWalk(k=k, in_h=in_h, in_w=in_w, out_h=out_h, out_w=out_w, kernel=(kh, kw),
                             stride=(sh, sw), dilation=(dh, dw), pad_top=pt, pad_left=pl)


def random_tile(rng, walk):
    """Whole output rows, or part of one row."""
    if rng.random() < 0.5:
        return rng.randint(1, walk.out_h), walk.out_w
    return 1, rng.randint(1, walk.out_w)


def descriptor(walk, tile, *, n=1, depthwise=False, resident=False, input_addr=0, weight_addr=0,
               quant_addr=0, output_addr=0, in_zero_point=0, out_zero_point=0, qmin=0, qmax=0, table_addr=None):
    """The descriptor of ``walk`` in M tiles of ``tile`` (rows, cols), as a dict for ``ctx.set``; a
    ``table_addr`` sets ACT_TABLE (the activation table read from there)."""
    return {
        "m": walk.out_h * walk.out_w, "k": walk.k, "n": n, "depthwise": int(depthwise),
        "tile_rows": tile[0], "tile_cols": tile[1], "weights_resident": int(resident),
        "in_h": walk.in_h, "in_w": walk.in_w, "out_h": walk.out_h, "out_w": walk.out_w,
        "kernel_h": walk.kernel[0], "kernel_w": walk.kernel[1], "stride_h": walk.stride[0],
        "stride_w": walk.stride[1], "dilation_h": walk.dilation[0], "dilation_w": walk.dilation[1],
        "pad_top": walk.pad_top, "pad_left": walk.pad_left,
        "in_zero_point": in_zero_point & 0xFF, "out_zero_point": out_zero_point & 0xFF,
        "qmin": qmin & 0xFF, "qmax": qmax & 0xFF,
        "input_addr": input_addr, "weight_addr": weight_addr, "quant_addr": quant_addr,
        "output_addr": output_addr, "table": int(table_addr is not None), "table_addr": table_addr or 0,
    }


def run(dut, testbenches, processes=(), *, cycles=200_000):
    """Simulate until every testbench has returned; fails if that takes more than ``cycles``."""
    finished = []

    def tracked(bench):
        async def wrapper(ctx):
            await bench(ctx)
            finished.append(bench)
        return wrapper

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in testbenches:
        sim.add_testbench(tracked(bench))
    for process in processes:
        sim.add_process(process)
    elapsed = 0
    while len(finished) < len(testbenches):
        assert elapsed < cycles, f"{len(testbenches) - len(finished)} testbenches still waiting after {cycles} cycles"
        elapsed += 1000
        sim.run_until(elapsed * 1e-6)
