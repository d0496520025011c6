"""The on-board self-test: the accelerator runs a stored layer and checks it against the golden result.

:class:`SelfTest` is a top that needs nothing but a clock. It holds the
:class:`~mensa.hw.accelerator.Accelerator`, an :class:`~mensa.hw.axi_ram.AxiRam` on block
RAM initialised with a layer's DRAM image (input, weights, quantisation records) in place
of DRAM, and a ROM with the golden output region. After configuration (or a press of the
rerun button) its controller

1. clears the output region of the RAM, so a rerun cannot pass on a stale result;
2. writes the layer's descriptor (:meth:`mensa.contract.gemm_program.Program.writes`), IRQ_ENABLE and
   CTRL.START over the AXI4-Lite port, as a driver would;
3. waits for the interrupt (or a watchdog of ``2**watchdog_bits`` cycles), then clears it;
4. compares the output region word by word with the golden ROM,

and shows *pass* or *fail* (a wrong word, an AXI error response or the watchdog), with
*busy* while it runs and *done* at the end. On a board (``elaborate`` given a platform)
these drive LEDs 0-3, LED 7 blinks to show the clock runs, and button ``fire`` 0
reruns the test.

The layer comes from a seed (:func:`selftest_case`): a fully connected or pointwise layer
of a few array tiles with random int8 weights, bias and input, its golden output computed
by :func:`mensa.core.golden.run_layer` at build time. ``corrupt_weight=True`` stores the
image with one weight byte changed (one whose change the golden model shows in the
output), so the same top must show *fail* — the check that the checker checks.
"""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mensa.contract.compiler import compile_layer
from mensa.hw.accelerator import Accelerator
from mensa.hw.axi_ram import AxiRam, ram_words
from mensa.hw.pll import Ecp5Pll, PllParams
from mensa.core.config import AcceleratorConfig, CoreKind
from mensa.core.errors import UserError
from mensa.core.ir import Activation, Layer, LayerQuant, Op, QuantParams
from mensa.core import golden

__all__ = ["SelfTest", "SelfTestCase", "SelfTestError", "selftest_case", "board_io", "MAX_IMAGE_BYTES"]

# The RAM standing in for DRAM: at most 64 KiB, 32 of the ECP5-85F's 208 DP16KD, so the
# accelerator's own buffers keep the rest.
MAX_IMAGE_BYTES = 64 * 1024


class SelfTestError(UserError):
    """The self-test cannot host this accelerator; one line naming why and what is allowed."""


@dataclass(frozen=True, eq=False)
class SelfTestCase:
    """The stored layer of a self-test.

    Members
    -------
    layer : :class:`~mensa.core.ir.Layer`
    program : :class:`~mensa.contract.gemm_program.Program`
        The layer compiled for the accelerator; ``program.image`` is the correct image.
    expected : numpy.ndarray
        The golden output (int8, ``layer.out_shape``).
    region : bytes
        The golden output region as the accelerator writes it (``program.output_bytes``).
    mask : bytes
        1 for each byte of ``region`` that :meth:`Program.output` reads, 0 for the lanes
        beyond N in the last tile and the padding of each vector, which the accelerator
        may fill with anything.
    corrupt_image : numpy.ndarray
        ``program.image`` with one weight byte changed so that the golden output changes.
    corrupt_at : int
        The byte offset of that weight in the image.
    """
    layer: Layer
    program: object
    expected: np.ndarray
    region: bytes
    mask: bytes
    corrupt_image: np.ndarray
    corrupt_at: int


def _check_config(config):
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if config.kind is not CoreKind.SYSTOLIC:
        raise SelfTestError(f"accelerator {config.name!r} is {config.kind.value}; the self-test hosts "
                            f"allowed: systolic accelerators")


def selftest_case(config, *, seed=0):
    """The layer of the self-test of ``config`` drawn from ``seed``, compiled, with its golden output.

    Raises
    ------
    SelfTestError
        The accelerator is not one the self-test hosts, or the layer's image exceeds
        :data:`MAX_IMAGE_BYTES`.
    """
    _check_config(config)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    rows, cols = config.array.rows, config.array.cols
    gen = np.random.default_rng(seed)
    # Two or three K tiles and one or two N tiles, the last of each mostly partial: the
    # accumulation across K tiles, the N tiling and the zero lanes of a partial tile run.
    k = rows * int(gen.integers(1, 3)) + int(gen.integers(1, rows + 1))
    n = cols * int(gen.integers(0, 2)) + int(gen.integers(1, cols + 1))
    activation = Activation(gen.choice(["none", "relu", "relu6"]))
    zp_in, zp_out = int(gen.integers(-20, 21)), int(gen.integers(-20, 21))
    if gen.integers(2):
        batch = int(gen.integers(3, 9))
        shape, op, out = (batch, k), Op.FC, (batch, n)
    else:
        h, w = int(gen.integers(1, 4)), int(gen.integers(2, 4))
        shape, op, out = (1, h, w, k), Op.CONV2D, (1, h, w, n)
    w8 = gen.integers(-128, 128, size=(k, n)).astype(np.int8)
    bias = gen.integers(-2000, 2000, size=n).astype(np.int32)
    x = gen.integers(-128, 128, size=shape).astype(np.int8)
    in_scale, w_scales = 0.05, tuple(float(s) for s in np.linspace(0.002, 0.02, n))
    # The output scale spreads the outputs over the int8 range (few clamp, few are zero).
    acc = (x.reshape(-1, k).astype(np.int64) - zp_in) @ w8.astype(np.int64) + bias
    real = acc * in_scale * np.asarray(w_scales)
    out_scale = float(max(np.abs(real).max(), 1e-3) / 100)

    def make(weights, b):
        layer = Layer(name=f"selftest{seed}", op=op, in_shape=shape, out_shape=out, activation=activation,
                      quant=LayerQuant(inputs=(QuantParams(in_scale, zp_in),), output=QuantParams(out_scale, zp_out),
                                       weight_scales=w_scales))
        wshape = golden.weight_shape(layer)
        return layer, golden.layer_params(layer, weights=weights.reshape(wshape), bias=b)

    layer, params = make(w8, bias)
    program = compile_layer(config, layer, params, x, base=0)
    if program.image.size > MAX_IMAGE_BYTES:
        raise SelfTestError(f"accelerator {config.name!r}: the self-test layer's image takes {program.image.size} "
                            f"bytes; allowed: at most {MAX_IMAGE_BYTES} (the on-chip RAM)")
    expected = golden.run_layer(layer, params, x)
    region, mask = _output_region(program, expected)

    # The corrupted weight: the first of a seeded order whose sign flip the golden model
    # shows. The bias moves by zp_in * delta so the image's folded bias stays the same:
    # only the weight byte differs between the two images.
    for flat in gen.permutation(k * n):
        kk, nn = divmod(int(flat), n)
        wc = w8.copy()
        wc[kk, nn] ^= np.int8(-128)
        delta = int(wc[kk, nn]) - int(w8[kk, nn])
        bc = bias.copy()
        bc[nn] += zp_in * delta
        layer_c, params_c = make(wc, bc)
        if np.array_equal(golden.run_layer(layer_c, params_c, x), expected):
            continue
        image_c = compile_layer(config, layer_c, params_c, x, base=0).image
        diff = np.flatnonzero(image_c != program.image)
        assert diff.size == 1, f"corrupting one weight changed {diff.size} image bytes"
        return SelfTestCase(layer=layer, program=program, expected=expected, region=region, mask=mask,
                            corrupt_image=image_c, corrupt_at=int(diff[0]))
    raise SelfTestError(f"seed {seed}: no single weight of the self-test layer changes its output; "
                        f"allowed: another seed")


def _output_region(program, expected):
    """The output region's bytes that :meth:`Program.output` reads back as ``expected``, and their mask."""
    g = program.geometry
    nt = -(-program.n // g.cols)
    tiles = np.zeros((nt, program.m, g.out_bytes), np.int8)
    mask = np.zeros_like(tiles)
    flat = expected.reshape(program.m, program.n)
    for t in range(nt):
        lo, hi = t * g.cols, min(program.n, (t + 1) * g.cols)
        tiles[t, :, :hi - lo] = flat[:, lo:hi]
        mask[t, :, :hi - lo] = 1
    region = tiles.tobytes()
    # The inverse of Program.output, checked: every byte it reads is one the mask keeps.
    assert np.array_equal(program.output(region), expected), "output region layout"
    garbled = np.where(mask.reshape(-1) == 1, tiles.reshape(-1), np.int8(0x5A)).tobytes()
    assert np.array_equal(program.output(garbled), expected), "output region mask"
    return region, mask.tobytes()


class SelfTest(wiring.Component):
    """Self-test top: the accelerator, its program and data in block RAM, a checker and LEDs.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig`
    seed : int
        Draws the stored layer (:func:`selftest_case`).
    corrupt_weight : bool
        Store the image with one weight byte changed: the test must then show *fail*.
    watchdog_bits : int
        The run fails if no interrupt comes within ``2**watchdog_bits`` cycles.
    pll : :class:`~mensa.hw.pll.PllParams` or None
        On a board: clock the design from an ECP5 PLL so set (else from the board's oscillator).

    Members
    -------
    passed, failed : ``Out(1)``
        The result, once ``done``.
    busy, done : ``Out(1)``
        A test is running; a test has finished.
    rerun : ``In(1)``
        A rising edge after ``done`` runs the test again.
    """

    def __init__(self, config, *, seed=0, corrupt_weight=False, watchdog_bits=24, pll=None):
        if not isinstance(corrupt_weight, bool):
            raise TypeError(f"corrupt_weight must be a bool, not {corrupt_weight!r}")
        if not isinstance(watchdog_bits, int) or not 4 <= watchdog_bits <= 40:
            raise ValueError(f"watchdog_bits must be an integer in 4..40, not {watchdog_bits!r}")
        self._case = selftest_case(config, seed=seed)
        self._config = config
        self._corrupt = corrupt_weight
        if pll is not None and not isinstance(pll, PllParams):
            raise TypeError(f"pll must be PllParams or None, not {pll!r}")
        self._watchdog_bits = watchdog_bits
        self._pll = pll
        super().__init__({"passed": Out(1), "failed": Out(1), "busy": Out(1), "done": Out(1), "rerun": In(1)})

    @property
    def case(self):
        return self._case

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        case, cfg = self._case, self._config
        prog = case.program
        m.submodules.acc = acc = Accelerator(cfg)
        regmap = acc.regmap
        data_bits, word = cfg.memory.data_bits, cfg.memory.data_bits // 8
        image = case.corrupt_image if self._corrupt else prog.image
        depth = ram_words(image.size, word)
        m.submodules.ram = ram = AxiRam(data_bits=data_bits, addr_bits=cfg.memory.addr_bits, depth=depth,
                                        init=image.tobytes(), prefix="s_axi")
        for name in acc.signature.members:
            if name.startswith("m_axi_"):
                ours, theirs = getattr(acc, name), getattr(ram, "s_axi_" + name[len("m_axi_"):])
                if acc.signature.members[name].flow is Out:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)

        # The register writes that run the layer, then the interrupt acknowledgement.
        writes = [*prog.writes(regmap), (regmap["IRQ_ENABLE"].offset, 1), (regmap["CTRL"].offset, 1)]
        n_start = len(writes)
        writes.append((regmap["IRQ_STATUS"].offset, 1))
        abits = regmap.addr_bits
        rom = Memory(shape=abits + 32, depth=len(writes), init=[a | v << abits for a, v in writes])
        m.submodules.writes = rom
        rom_rd = rom.read_port(domain="comb")

        out_word = (prog.output_addr - prog.base) // word
        n_words = len(case.region) // word
        def rom_word(i):
            data = int.from_bytes(case.region[i * word:(i + 1) * word], "little")
            keep = sum(1 << b for b in range(word) if case.mask[i * word + b])
            return data | keep << data_bits

        # Each golden word carries its byte mask above the data: bytes the layer's output
        # does not use are not compared.
        gold = Memory(shape=data_bits + word, depth=n_words, init=[rom_word(i) for i in range(n_words)])
        m.submodules.golden = gold
        gold_rd = gold.read_port()

        idx = Signal(range(max(len(writes), n_words + 1)))
        aw_done, w_done = Signal(), Signal()
        failed = Signal()
        watchdog = Signal(self._watchdog_bits + 1)
        compare = Signal()                  # the previous cycle read a word pair to compare
        rerun, rerun_q = Signal(), Signal()
        m.d.comb += rerun.eq(self.rerun | (self._board(m, platform) if platform is not None else 0))
        m.d.sync += rerun_q.eq(rerun)
        m.d.comb += [
            rom_rd.addr.eq(idx),
            acc.s_axil_awaddr.eq(rom_rd.data[:abits]), acc.s_axil_wdata.eq(rom_rd.data[abits:]),
            acc.s_axil_wstrb.eq(0b1111), acc.s_axil_bready.eq(1),
            ram.peek_addr.eq(out_word + idx), gold_rd.addr.eq(idx),
            self.failed.eq(self.done & failed), self.passed.eq(self.done & ~failed),
        ]
        m.d.sync += compare.eq(0)
        differ = ram.peek_data ^ gold_rd.data[:data_bits]
        keep = gold_rd.data[data_bits:]
        with m.If(compare & Cat(differ.word_select(b, 8).any() & keep[b] for b in range(word)).any()):
            m.d.sync += failed.eq(1)

        with m.FSM():
            with m.State("CLEAR"):
                m.d.comb += [self.busy.eq(1), ram.peek_sel.eq(1), ram.peek_write.eq(1)]
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == n_words - 1):
                    m.d.sync += [idx.eq(0), failed.eq(0), aw_done.eq(0), w_done.eq(0)]
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.busy.eq(1), acc.s_axil_awvalid.eq(~aw_done), acc.s_axil_wvalid.eq(~w_done)]
                aw = aw_done | acc.s_axil_awready
                w = w_done | acc.s_axil_wready
                m.d.sync += [aw_done.eq(aw), w_done.eq(w)]
                with m.If(aw & w):
                    m.next = "RESPONSE"
            with m.State("RESPONSE"):
                m.d.comb += self.busy.eq(1)
                with m.If(acc.s_axil_bvalid):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0), failed.eq(failed | (acc.s_axil_bresp != 0))]
                    with m.If(idx == n_start - 1):
                        m.d.sync += [watchdog.eq(0), idx.eq(idx + 1)]
                        m.next = "RUN"
                    with m.Elif(idx == len(writes) - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "CHECK"
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)
                        m.next = "WRITE"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += watchdog.eq(watchdog + 1)
                with m.If(acc.irq):
                    m.next = "WRITE"
                with m.Elif(watchdog[-1]):
                    m.d.sync += failed.eq(1)
                    m.next = "DONE"
            with m.State("CHECK"):
                m.d.comb += [self.busy.eq(1), ram.peek_sel.eq(1)]
                m.d.sync += [compare.eq(1), idx.eq(idx + 1)]
                with m.If(idx == n_words - 1):
                    m.next = "LAST"
            with m.State("LAST"):
                m.d.comb += self.busy.eq(1)     # the last word pair is compared in this cycle
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                with m.If(rerun & ~rerun_q):
                    m.d.sync += idx.eq(0)
                    m.next = "CLEAR"
        return m

    def _board(self, m, platform):
        return board_io(m, platform, self._pll, (self.passed, self.failed, self.busy, self.done))


def board_io(m, platform, pll, leds):
    """A self-test's pins on a board: ``leds`` (pass, fail, busy, done) on LEDs 0-3, LED 7 blinking (the clock
    runs); returns button fire 0, synchronised (it reruns the test). With ``pll``
    (:class:`~mensa.hw.pll.PllParams`), the design's clock is the PLL's output from the board's oscillator,
    held in reset until the PLL locks."""
    if pll is not None:
        m.domains.sync = ClockDomain("sync")
        m.submodules.clk_in = clk_in = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.pll = ecp5 = Ecp5Pll(pll)
        m.d.comb += [ecp5.clk_in.eq(clk_in.i), ClockSignal("sync").eq(ecp5.clk_out),
                     ResetSignal("sync").eq(~ecp5.locked)]
        platform.add_clock_constraint(ecp5.clk_out, pll.fout_mhz * 1e6)
    blink = Signal(24)
    m.d.sync += blink.eq(blink + 1)
    for i, value in zip((0, 1, 2, 3, 7), (*leds, blink[-1])):
        m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
        m.d.comb += led.o.eq(value)
    m.submodules.button = button = io.Buffer("i", platform.request("button_fire", 0, dir="-"))
    sync1, sync2 = Signal(), Signal()       # the button is asynchronous to the clock
    m.d.sync += [sync1.eq(button.i), sync2.eq(sync1)]
    return sync2
