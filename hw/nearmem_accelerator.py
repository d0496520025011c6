"""The near-memory accelerator: a :class:`~mensa.hw.nearmem.NearMemoryUnit` as a complete peripheral.

Software loads the layer's vault images (:mod:`mensa.contract.nearmem_program` computes them, with
the descriptor and the DRAM image), writes the descriptor over the AXI4-Lite slave ``s_axil``
(:func:`mensa.contract.regs.register_map` of the config: the unit's descriptor fields, INPUT_ADDR,
OUTPUT_ADDR, IN_VECTOR_WORDS), writes ``CTRL.START`` and waits for ``STATUS.DONE`` or the ``irq``
line, as on the systolic :class:`~mensa.hw.accelerator.Accelerator`. The accelerator hands the
descriptor to the unit, reads the layer's input vectors (an LSTM's x_t) from DRAM over the AXI4
master ``m_axi`` into the unit's ``inputs`` (:class:`~mensa.hw.nearmem_dma.VectorReader`), and
writes its int8 outputs (an LSTM's h_t) back (:class:`~mensa.hw.nearmem_dma.VectorWriter`). The
performance counters count the run's cycles, the cycles the unit held the layer, and the cycles it
waited on DRAM: its input port asking for a beat the DMA had not delivered, or its output port
offering one the DMA could not take (the unit may be computing an earlier vector meanwhile).

The vaults stay ports of the peripheral, ``vault_req``/``vault_resp`` per vault as on the unit:
they are the memory the unit is near to, not DRAM behind the shared AXI port. On an FPGA board
(mensa-g-fpga: slices of the board's SDRAM) each vault is a memory port of its own; in simulation
each is served from a memory loaded by backdoor (:class:`mensa.sim.vault.VaultArray`). The weights
live there, loaded by the host before a layer runs; only activations cross the AXI port.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mensa.contract.nearmem import NearMemGeometry, descriptor_fields
from mensa.contract.nearmem_program import bus_ratio
from mensa.contract.regs import register_map
from mensa.core.config import AcceleratorConfig, CoreKind
from mensa.hw.accelerator import accelerator_members, forward
from mensa.hw.dma import DMA, axi4_master_members
from mensa.hw.nearmem import NearMemoryUnit
from mensa.hw.nearmem_dma import VectorReader, VectorWriter
from mensa.hw.regs import RegisterFile, RunControl, axi4lite_members, connect_run_control

__all__ = ["NearMemAccelerator", "nearmem_accelerator_members"]


def nearmem_accelerator_members(config):
    """The signature members of :class:`NearMemAccelerator` for ``config``: the accelerator's
    (:func:`~mensa.hw.accelerator.accelerator_members`) and its vault ports."""
    g = NearMemGeometry.of(config.nearmem)
    return {**accelerator_members(config),
            "vault_req": Out(stream.Signature(range(g.vault_words))).array(g.vaults),
            "vault_resp": In(stream.Signature(config.nearmem.vault_bits)).array(g.vaults)}


class NearMemAccelerator(wiring.Component):
    """A near-memory unit that runs a layer from DRAM and its vaults, sized from one config.

    Parameters
    ----------
    config : :class:`~mensa.core.config.AcceleratorConfig` of kind ``nearmem``

    Members
    -------
    s_axil_* : AXI4-Lite slave of :func:`~mensa.contract.regs.register_map`.
    m_axi_* : AXI4 master to DRAM, ``memory.data_bits`` wide.
    irq : ``Out(1)``
        IRQ_STATUS.DONE and IRQ_ENABLE.DONE.
    vault_req : ``Out(stream.Signature(range(vault_words))).array(vaults)``
        Each vault's read requests, one word address a beat (:class:`~mensa.hw.nearmem.NearMemoryUnit`).
    vault_resp : ``In(stream.Signature(vault_bits)).array(vaults)``
        The words read, in request order.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig) or config.kind is not CoreKind.NEARMEM:
            raise TypeError(f"config must be an AcceleratorConfig of kind nearmem, not {config!r}")
        bus_ratio(config)
        self._config = config
        self._geometry = NearMemGeometry.of(config.nearmem)
        self._regmap = register_map(config)
        mem = config.memory
        self._lite = axi4lite_members("s_axil", self._regmap.addr_bits)
        self._axi = axi4_master_members("m_axi", mem.addr_bits, mem.data_bits)
        super().__init__(nearmem_accelerator_members(config))

    @property
    def config(self):
        return self._config

    @property
    def regmap(self):
        return self._regmap

    def elaborate(self, platform):
        m = Module()
        rm, g, mem = self._regmap, self._geometry, self._config.memory
        m.submodules.regs = regs = RegisterFile(rm, prefix="s_axil")
        m.submodules.run = run = RunControl()
        m.submodules.dma = dma = DMA(mem, prefix="m_axi")
        m.submodules.unit = unit = NearMemoryUnit(self._config.nearmem)
        m.submodules.reader = reader = VectorReader(memory=mem, lanes=g.lanes, max_in=g.max_in)
        m.submodules.writer = writer = VectorWriter(memory=mem, lanes=g.lanes)
        forward(m, self, regs, self._lite)
        forward(m, self, dma, self._axi)
        r = regs.regs

        wide = regs.value
        # the descriptor: one beat on the unit's `layer`, offered from START until taken
        offered = Signal()
        go = Signal()
        m.d.comb += go.eq(regs.strobes.ctrl[0] & ~run.running)
        with m.If(unit.layer.valid & unit.layer.ready):
            m.d.sync += offered.eq(0)
        with m.If(go):
            m.d.sync += offered.eq(1)
        m.d.comb += unit.layer.valid.eq(offered)
        for name, _, _ in descriptor_fields(g):
            field = getattr(unit.layer.payload, name)
            m.d.comb += field.eq(0 if name == "raw" else wide(name.upper()))
        m.d.comb += unit.accs.ready.eq(0)           # raw is 0: the accumulators never leave the unit

        # the vectors: DRAM -> inputs, outs -> DRAM
        m.d.comb += [
            reader.start.eq(go), reader.input_addr.eq(wide("INPUT_ADDR")),
            reader.vector_words.eq(r.in_vector_words), reader.in_features.eq(wide("IN_FEATURES")),
            reader.vectors.eq(wide("VECTORS")),
            writer.start.eq(go), writer.output_addr.eq(wide("OUTPUT_ADDR")), writer.vectors.eq(wide("VECTORS")),
        ]
        wiring.connect(m, reader.rd_cmd, dma.rd_cmd)
        wiring.connect(m, dma.rd_data, reader.rd_data)
        wiring.connect(m, reader.inputs, unit.inputs)
        wiring.connect(m, unit.outs, writer.outs)
        wiring.connect(m, writer.wr_cmd, dma.wr_cmd)
        wiring.connect(m, writer.wr_data, dma.wr_data)
        wiring.connect(m, dma.wr_done, writer.wr_done)
        for v in range(g.vaults):
            wiring.connect(m, wiring.flipped(self.vault_req[v]), unit.vault_req[v])
            wiring.connect(m, unit.vault_resp[v], wiring.flipped(self.vault_resp[v]))

        # run control, interrupt, counters
        m.d.comb += [
            run.done.eq(writer.done),
            run.busy.eq(unit.busy),
            run.mem_stall.eq(unit.inputs.ready & ~unit.inputs.valid | unit.outs.valid & ~unit.outs.ready),
        ]
        connect_run_control(m, regs, run, self.irq)
        return m
