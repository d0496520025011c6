"""The on-board network self-test: a whole network runs on a system's RTL from block RAM and checks itself.

:func:`network_selftest_case` takes a network (a zoo name or an ONNX file), quantises it with
random weights from a seed, places it with the Mensa scheduler and compiles it with the network
compiler (:func:`mensa.gen.network_run.compile_for_rtl`: the DRAM image, the vault contents and
the command list ``mensa run`` replays), draws an input, and computes the golden outputs with
:func:`mensa.core.golden.run_network`.

:class:`NetworkSelfTest` is a top that needs nothing but a clock. It holds the system top
(:class:`mensa.hw.system.SystemTop`) with its DRAM on block RAM (:class:`mensa.hw.axi_ram.AxiRam`)
and its vaults on block RAM (:class:`mensa.hw.vault_ram.VaultRam`), the command list in the
:class:`mensa.hw.replayer.Replayer` (the C runtime's algorithm in hardware), the golden output
regions in a ROM, and a UART. After configuration (or a press of the rerun button) it

1. resets the system, writes the network's input regions again and clears its output regions,
   so a rerun runs on the same input and cannot pass on a stale result;
2. replays the command list (independent layers at once on different accelerators), or fails
   when a watchdog of ten times the cost model's cycles expires;
3. compares every network output's region with the golden one, byte by byte (bytes the layout
   leaves unused are not compared);
4. sends one line over the UART, for example
   ``mensa self-test ds_cnn on mensa-g-fpga: PASS, 112809 cycles per inference at 62.5 MHz``,

and lights *pass* or *fail* (with *busy* while it runs, *done* at the end) as the layer self-test
does. ``corrupt_weight=True`` stores one weight byte changed (one whose change the golden model
shows in the network's outputs): the same top must then report FAIL.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Module, ResetInserter, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mensa.contract.network import address_map
from mensa.contract.nearmem import NearMemGeometry
from mensa.core import golden
from mensa.core.config import CoreKind
from mensa.core.errors import UserError
from mensa.core.ir import Network, Op
from mensa.gen.selftest import board_io
from mensa.hw.axi_ram import AxiRam, ram_words
from mensa.hw.pll import PllParams
from mensa.hw.replayer import Replayer
from mensa.hw.system import SystemTop
from mensa.hw.uart import UartTx
from mensa.hw.vault_ram import VaultRam, vault_words

__all__ = ["NetworkSelfTest", "NetworkSelfTestCase", "NetworkSelfTestError", "network_selftest_case", "output_region",
           "MAX_RAM_BYTES", "report_line"]

# Block RAM for the DRAM image and the vaults together: 320 KiB, 160 of the ECP5-85F's 208
# DP16KD (18 Kibit, 2 KiB of data each), so the accelerators' own buffers keep the rest.
MAX_RAM_BYTES = 320 * 1024


class NetworkSelfTestError(UserError):
    """The network self-test cannot host this network on this system; one line naming why."""


@dataclass(frozen=True, eq=False)
class NetworkSelfTestCase:
    """A network compiled for a system's self-test, with its input and golden outputs.

    Members
    -------
    network : :class:`~mensa.core.ir.Network` (quantised)
    system : :class:`~mensa.core.config.SystemConfig`
    program : :class:`~mensa.contract.network.NetworkProgram`
    image : numpy.ndarray
        uint8: the DRAM image with the input written in.
    inputs : list of (int, bytes)
        The input regions: byte address and bytes, written again before every run.
    outputs : list of (str, int, bytes, bytes)
        Per network output: its name, the byte address of its region, the golden region and the
        mask of the bytes the layout uses (1) and leaves unused (0).
    predicted_cycles : float
        The cost model's cycles of the inference's layers, one after another (the schedule's).
    corrupt_image, corrupt_vaults
        The image and vaults with one weight byte changed that changes the network's outputs.
    corrupt_at : tuple
        ``("dram", address)`` or ``("vault", unit, vault, byte)``: the changed byte.
    """
    network: object
    system: object
    program: object
    image: np.ndarray
    inputs: list
    outputs: list
    predicted_cycles: float
    corrupt_image: np.ndarray
    corrupt_vaults: tuple
    corrupt_at: tuple


def output_region(program, expected):
    """``(region, mask)``: the bytes a layer's ``program`` writes for its int8 output ``expected``, and
    1 for each byte :meth:`output` reads back (the layout's unused lanes and padding are 0).

    ``program.output`` is a gather of the region's bytes; decoding regions that hold each byte's
    own index, a digit of it at a time, finds which byte each output element comes from."""
    size = program.output_bytes
    at = np.arange(size, dtype=np.int64)
    source = np.zeros(expected.size, np.int64)
    for digit in range(max(1, (size - 1).bit_length() + 7 >> 3)):
        got = program.output(((at >> 8 * digit) & 0xFF).astype(np.uint8).tobytes())
        source |= got.reshape(-1).view(np.uint8).astype(np.int64) << 8 * digit
    region = np.zeros(size, np.uint8)
    mask = np.zeros(size, np.uint8)
    region[source] = expected.reshape(-1).view(np.uint8)
    mask[source] = 1
    # the gather, checked on the region and on a garbled one
    assert np.array_equal(program.output(region.tobytes()), expected), "output region layout"
    garbled = np.where(mask == 1, region, 0x5A).astype(np.uint8)
    assert np.array_equal(program.output(garbled.tobytes()), expected), "output region mask"
    return region.tobytes(), mask.tobytes()


def network_selftest_case(model, system, *, seed=0):
    """The self-test of network ``model`` (a zoo name or an .onnx file) on ``system``, from ``seed``.

    Raises
    ------
    NetworkSelfTestError
        The image and the vaults exceed :data:`MAX_RAM_BYTES`, a network output is not a layer's, or
        no weight's change shows in the outputs.
    """
    from mensa.gen.cmd_run import load_network, random_inputs
    from mensa.gen.network_run import compile_for_rtl, quantised
    from mensa.model.schedule import schedule

    net, weights, params = (model, None, None) if isinstance(model, Network) else load_network(model)
    qnet, params = (net, params) if params else quantised(net, seed, weights)
    sched = schedule(qnet, system)
    prog = compile_for_rtl(qnet, params, system, sched)
    x = random_inputs(qnet, seed, 1)
    image = prog.image.copy()
    inputs = [(int(addr), np.asarray(blob, np.uint8).tobytes()) for addr, blob in prog.input_writes(x)]
    for addr, blob in inputs:
        image[addr:addr + len(blob)] = np.frombuffer(blob, np.uint8)
    expect = golden.run_network(qnet, params, x[0])
    by_layer = {c.layer: c for c in prog.commands}
    outputs = []
    for name in qnet.outputs:
        if name not in by_layer:
            raise NetworkSelfTestError(f"network {qnet.name!r}: output {name!r} is not a layer's output; "
                                       f"allowed: networks whose outputs are conv, FC, pool, add or LSTM layers")
        cmd = by_layer[name]
        region, mask = output_region(cmd.program, expect[name])
        outputs.append((name, int(cmd.output[0]), region, mask))
    word = system.accelerator[0].memory.data_bits // 8
    ram = ram_words(image.size, word) * word + sum(v.size for vs in prog.vaults if vs for v in vs)
    if ram > MAX_RAM_BYTES:
        raise NetworkSelfTestError(f"network {qnet.name!r} on {system.name!r} needs {ram:,} bytes of DRAM image "
                                   f"and vaults; allowed: at most {MAX_RAM_BYTES:,} (the block RAM the self-test "
                                   f"keeps for them), e.g. ds_cnn")
    corrupt_image, corrupt_vaults, at = _corrupt(qnet, params, system, sched, prog, x[0], expect, seed)
    return NetworkSelfTestCase(network=qnet, system=system, program=prog, image=image, inputs=inputs,
                               outputs=outputs, predicted_cycles=float(sum(p.cycles for p in sched.placements)),
                               corrupt_image=corrupt_image, corrupt_vaults=corrupt_vaults, corrupt_at=at)


def _corrupt(net, params, system, sched, prog, x, expect, seed):
    """One weight's sign flipped, with its bias moved by ``zp_in * delta`` so only the weight's byte differs
    in the compiled network: the image (and vaults) and where the byte is. The weight is the first, in a
    seeded order over the layers from the last, that changes the network's outputs."""
    from mensa.gen.network_run import compile_for_rtl

    gen = np.random.default_rng([seed, 7])
    for layer in reversed(net.layers):
        p = params.get(layer.name)
        if layer.op not in (Op.CONV2D, Op.FC) or p is None or p.weights is None:
            continue
        zp_in = layer.quant.inputs[0].zero_point
        w = p.weights
        for flat in gen.permutation(w.size)[:16]:
            wc = w.copy().reshape(-1)
            wc[flat] ^= np.int8(-128)
            delta = int(wc[flat]) - int(w.reshape(-1)[flat])
            bc = p.bias.copy()
            bc[int(flat) % w.shape[-1]] += zp_in * delta
            changed = dict(params) | {layer.name: dataclasses.replace(p, weights=wc.reshape(w.shape), bias=bc)}
            out = golden.run_network(net, changed, x)
            if all(np.array_equal(out[n], expect[n]) for n in net.outputs):
                continue
            other = compile_for_rtl(net, changed, system, sched)
            diff = [("dram", int(a)) for a in np.flatnonzero(other.image != prog.image)]
            for unit, (vs, ws) in enumerate(zip(prog.vaults, other.vaults)):
                for v, (a, b) in enumerate(zip(vs or (), ws or ())):
                    diff += [("vault", unit, v, int(i)) for i in np.flatnonzero(a != b)]
            if len(diff) == 1:
                return other.image, other.vaults, diff[0]
    raise NetworkSelfTestError(f"network {net.name!r}, seed {seed}: no weight whose change alone shows in the "
                               f"outputs was found; allowed: another seed")


def report_line(case, *, passed, cycles, clock_mhz):
    """The line the self-test sends, as the hardware builds it (for the tests and the docs)."""
    verdict = "PASS" if passed else "FAIL"
    return (f"mensa self-test {case.network.name} on {case.system.name}: {verdict}, {cycles} cycles per "
            f"inference at {clock_mhz:g} MHz\r\n")


# Report tokens: a byte, a byte sent only on pass, only on fail, and the cycle count in decimal.
_BYTE, _IF_PASS, _IF_FAIL, _CYCLES = 0, 1, 2, 3
_DIGITS = 13                    # 10**12 < 2**40: the cycle counter in decimal


def _report_tokens(case, clock_mhz):
    head, tail = report_line(case, passed=True, cycles="#", clock_mhz=clock_mhz).split("PASS")
    before, after = tail.split("#")
    tokens = [(_BYTE, c) for c in head.encode()]
    tokens += [(_IF_PASS, c) for c in b"PASS"] + [(_IF_FAIL, c) for c in b"FAIL"]
    tokens += [(_BYTE, c) for c in before.encode()] + [(_CYCLES, 0)] + [(_BYTE, c) for c in after.encode()]
    return [kind << 8 | value for kind, value in tokens]


class NetworkSelfTest(wiring.Component):
    """Network self-test top: the system, its memories in block RAM, the replayer, a checker, a UART.

    Parameters
    ----------
    case : :class:`NetworkSelfTestCase`
    corrupt_weight : bool
        Store the image (or vault) with one weight byte changed: the test must then report FAIL.
    clock_mhz : float
        The design's clock, as the report states it.
    divisor : int
        Clock cycles per UART bit (:func:`mensa.hw.uart.uart_divisor`).
    watchdog_bits : int or None
        The run fails without a finish within ``2**watchdog_bits`` cycles (default: ten times the
        cost model's cycles, rounded up to a power of two).
    pll : :class:`~mensa.hw.pll.PllParams` or None
        On a board: clock the design from an ECP5 PLL so set (else from the board's oscillator).

    Members
    -------
    passed, failed, busy, done : ``Out(1)``
    rerun : ``In(1)``
        A rising edge after ``done`` runs the test again.
    tx : ``Out(1)``
        The UART line of the report.
    cycles : ``Out(40)``
        The cycles the report states: the last run's, from the first command's issue to the last's end.
    """

    def __init__(self, case, *, corrupt_weight=False, clock_mhz, divisor, watchdog_bits=None, pll=None):
        if not isinstance(case, NetworkSelfTestCase):
            raise TypeError(f"case must be a NetworkSelfTestCase, not {case!r}")
        if not isinstance(corrupt_weight, bool):
            raise TypeError(f"corrupt_weight must be a bool, not {corrupt_weight!r}")
        if pll is not None and not isinstance(pll, PllParams):
            raise TypeError(f"pll must be PllParams or None, not {pll!r}")
        if watchdog_bits is None:
            watchdog_bits = max(16, int(10 * case.predicted_cycles + 10_000).bit_length())
        self._case, self._corrupt, self._clock_mhz, self._divisor = case, corrupt_weight, clock_mhz, divisor
        self._watchdog_bits, self._pll = watchdog_bits, pll
        super().__init__({"passed": Out(1), "failed": Out(1), "busy": Out(1), "done": Out(1), "rerun": In(1),
                          "tx": Out(1, init=1), "cycles": Out(40)})

    @property
    def case(self):
        return self._case

    def elaborate(self, platform):
        m = Module()
        case = self._case
        prog, system = case.program, case.system
        image = case.corrupt_image if self._corrupt else case.image
        if self._corrupt:       # the corrupted image carries the same input
            image = image.copy()
            for addr, blob in case.inputs:
                image[addr:addr + len(blob)] = np.frombuffer(blob, np.uint8)
        vaults = case.corrupt_vaults if self._corrupt else prog.vaults
        system_reset = Signal()
        reset = ResetInserter({"sync": system_reset})

        m.submodules.system = top = reset(SystemTop(system))
        acc0 = prog.accelerators[0]
        data_bits, word = acc0.memory.data_bits, acc0.memory.data_bits // 8
        depth = ram_words(image.size, word)
        m.submodules.ram = ram = reset(AxiRam(data_bits=data_bits, addr_bits=acc0.memory.addr_bits, depth=depth,
                                              init=image.tobytes(), id_bits=len(top.m_axi_arid), prefix="s_axi"))
        for name, member in top.signature.members.items():
            if name.startswith("m_axi_"):
                ours, theirs = getattr(top, name), getattr(ram, "s_axi_" + name[len("m_axi_"):])
                m.d.comb += (theirs.eq(ours) if member.flow is Out else ours.eq(theirs))
        for i, acc in enumerate(prog.accelerators):
            if acc.kind is not CoreKind.NEARMEM:
                continue
            g = NearMemGeometry.of(acc.nearmem)
            for v in range(acc.nearmem.vaults):
                contents = vaults[i][v] if vaults[i] else np.zeros(0, np.uint8)
                vram = m.submodules[f"vault{i}_{v}"] = reset(VaultRam(
                    vault_words=g.vault_words, bits=acc.nearmem.vault_bits,
                    init=vault_words(contents, acc.nearmem.vault_bits)))
                wiring.connect(m, getattr(top, f"u{i}_vault_req")[v], vram.req)
                wiring.connect(m, vram.resp, getattr(top, f"u{i}_vault_resp")[v])

        window, _ = address_map(system)
        lite_bits = len(top.s_axil_awaddr)
        m.submodules.replayer = rep = reset(Replayer(prog, window=window, addr_bits=lite_bits))
        for name, member in rep.signature.members.items():
            if name.startswith("m_axil_"):
                ours, theirs = getattr(rep, name), getattr(top, "s_axil_" + name[len("m_axil_"):])
                m.d.comb += (theirs.eq(ours) if member.flow is Out else ours.eq(theirs))
        m.d.comb += rep.irq.eq(top.irq)

        # the words written before every run: zeros over the output regions, then the input regions (an output
        # may reuse an input's buffer once its reader is done)
        before = {}
        checks = []
        for _, addr, region, mask in case.outputs:
            assert addr % word == 0 and len(region) % word == 0, "output regions are whole words"
            for k in range(len(region) // word):
                data = int.from_bytes(region[k * word:(k + 1) * word], "little")
                keep = sum(1 << b for b in range(word) if mask[k * word + b])
                checks.append(((addr // word + k) << (data_bits + word)) | (keep << data_bits) | data)
                before[addr // word + k] = 0
        for addr, blob in case.inputs:
            for w in range(addr // word, -(-(addr + len(blob)) // word)):
                before[w] = int.from_bytes(image[w * word:(w + 1) * word].tobytes(), "little")
        abits = (depth - 1).bit_length()
        m.submodules.prepare = prepare = Memory(shape=abits + data_bits, depth=len(before),
                                                init=[w | d << abits for w, d in sorted(before.items())])
        m.submodules.golden = gold = Memory(shape=abits + data_bits + word, depth=len(checks), init=checks)
        prep_rd, gold_rd = prepare.read_port(domain="comb"), gold.read_port(domain="comb")

        tokens = _report_tokens(case, self._clock_mhz)
        m.submodules.message = message = Memory(shape=10, depth=len(tokens), init=tokens)
        msg_rd = message.read_port(domain="comb")
        m.submodules.uart = uart = UartTx(self._divisor)
        m.d.comb += self.tx.eq(uart.tx)

        idx = Signal(range(max(len(before), len(checks), len(tokens)) + 1))
        failed = Signal()
        compare = Signal()
        watchdog = Signal(self._watchdog_bits + 1)
        cycles = Signal(40)
        m.d.comb += self.cycles.eq(cycles)
        rerun, rerun_q = Signal(), Signal()
        m.d.comb += rerun.eq(self.rerun | (self._board(m, platform) if platform is not None else 0))
        m.d.sync += rerun_q.eq(rerun)
        m.d.comb += [prep_rd.addr.eq(idx), gold_rd.addr.eq(idx), msg_rd.addr.eq(idx),
                     self.failed.eq(self.done & failed), self.passed.eq(self.done & ~failed)]

        # checking: the previous cycle read a RAM word, and took its golden word and mask
        golden_q = Signal(data_bits + word)
        m.d.sync += [compare.eq(0), golden_q.eq(gold_rd.data[:data_bits + word])]
        differ = ram.peek_data ^ golden_q[:data_bits]
        keep = golden_q[data_bits:]
        with m.If(compare & Cat(differ.word_select(b, 8).any() & keep[b] for b in range(word)).any()):
            m.d.sync += failed.eq(1)

        # the report: powers of ten for the cycle count's digits
        powers = Memory(shape=40, depth=_DIGITS, init=[10 ** (_DIGITS - 1 - i) for i in range(_DIGITS)])
        m.submodules.powers = powers
        pow_rd = powers.read_port(domain="comb")
        digit_i = Signal(range(_DIGITS + 1))
        digit = Signal(4)
        rest = Signal(40)
        leading = Signal()          # no digit but zeros sent yet
        m.d.comb += pow_rd.addr.eq(digit_i)

        with m.FSM():
            with m.State("RESET"):
                m.d.comb += [self.busy.eq(1), system_reset.eq(1)]
                m.d.sync += [idx.eq(0), failed.eq(0)]
                m.next = "PREPARE"
            with m.State("PREPARE"):
                m.d.comb += [self.busy.eq(1), ram.peek_sel.eq(1), ram.peek_write.eq(1),
                             ram.peek_addr.eq(prep_rd.data[:abits]), ram.peek_wdata.eq(prep_rd.data[abits:])]
                m.d.sync += idx.eq(idx + 1)
                with m.If(idx == len(before) - 1):
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [self.busy.eq(1), rep.start.eq(1)]
                m.d.sync += watchdog.eq(0)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += watchdog.eq(watchdog + 1)
                with m.If(rep.done):
                    m.d.sync += [idx.eq(0), failed.eq(rep.error), cycles.eq(rep.cycles)]
                    m.next = "CHECK"
                with m.Elif(watchdog[-1]):
                    m.d.sync += [idx.eq(0), failed.eq(1), cycles.eq(watchdog)]
                    m.next = "LAST"
            with m.State("CHECK"):
                m.d.comb += [self.busy.eq(1), ram.peek_sel.eq(1), ram.peek_addr.eq(gold_rd.data[data_bits + word:])]
                m.d.sync += [compare.eq(1), idx.eq(idx + 1)]
                with m.If(idx == len(checks) - 1):
                    m.next = "LAST"
            with m.State("LAST"):           # the last word pair is compared in this cycle
                m.d.comb += self.busy.eq(1)
                m.d.sync += idx.eq(0)
                m.next = "REPORT"
            with m.State("REPORT"):         # the message, token by token
                m.d.comb += self.busy.eq(1)
                kind, value = msg_rd.data[8:], msg_rd.data[:8]
                send = (kind == _BYTE) | ((kind == _IF_PASS) & ~failed) | ((kind == _IF_FAIL) & failed)
                with m.If(idx == len(tokens)):
                    with m.If(uart.data.ready):     # the last byte's stop bit has been sent
                        m.next = "DONE"
                with m.Elif(kind == _CYCLES):
                    m.d.sync += [digit_i.eq(0), digit.eq(0), rest.eq(cycles), leading.eq(1)]
                    m.next = "DIGIT"
                with m.Elif(send):
                    m.d.comb += [uart.data.valid.eq(1), uart.data.payload.eq(value)]
                    with m.If(uart.data.ready):
                        m.d.sync += idx.eq(idx + 1)
                with m.Else():
                    m.d.sync += idx.eq(idx + 1)
            with m.State("DIGIT"):          # the count in decimal, by subtracting powers of ten
                m.d.comb += self.busy.eq(1)
                with m.If(digit_i == _DIGITS):
                    m.d.sync += idx.eq(idx + 1)
                    m.next = "REPORT"
                with m.Elif(rest >= pow_rd.data):
                    m.d.sync += [rest.eq(rest - pow_rd.data), digit.eq(digit + 1)]
                with m.Elif(leading & (digit == 0) & (digit_i != _DIGITS - 1)):
                    m.d.sync += digit_i.eq(digit_i + 1)
                with m.Else():
                    m.d.comb += [uart.data.valid.eq(1), uart.data.payload.eq(ord("0") + digit)]
                    with m.If(uart.data.ready):
                        m.d.sync += [digit_i.eq(digit_i + 1), digit.eq(0), leading.eq(0)]
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                with m.If(rerun & ~rerun_q):
                    m.next = "RESET"
        return m

    def _board(self, m, platform):
        """The LEDs, the PLL and the button as the layer self-test has them (:func:`~mensa.gen.selftest.board_io`),
        and the report's line on the UART's tx pin (the ULX3S's FTDI)."""
        m.submodules.uart_pin = pin = io.Buffer("o", platform.request("uart", 0, dir="-").tx)
        m.d.comb += pin.o.eq(self.tx)
        return board_io(m, platform, self._pll, (self.passed, self.failed, self.busy, self.done))
