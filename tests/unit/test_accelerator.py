"""The systolic accelerator top is sized from the one config and refuses configs it cannot build."""

import pytest
from amaranth.lib.wiring import In, Out

from mensa.hw.accelerator import Accelerator
from mensa.core.config import AcceleratorConfig, ArrayConfig, BufferConfig, ConfigError, Dataflow, MemoryConfig
from mensa.contract.gemm import GemmGeometry


def config(rows=4, cols=4, data_bits=64, addr_bits=32, acc_kib=16, dataflow=Dataflow.WEIGHT_STATIONARY):
    return AcceleratorConfig(name="t", array=ArrayConfig(rows=rows, cols=cols, dataflow=dataflow),
                             buffers=BufferConfig(acc_kib=acc_kib),
                             memory=MemoryConfig(data_bits=data_bits, addr_bits=addr_bits))


def test_ports_follow_the_config():
    top = Accelerator(config(data_bits=128, addr_bits=40))
    members = top.signature.members
    assert top.m_axi_wdata.shape().width == 128 and top.m_axi_araddr.shape().width == 40
    assert members["m_axi_arvalid"].flow is Out and members["s_axil_awvalid"].flow is In
    assert top.s_axil_awaddr.shape().width == top.regmap.addr_bits
    # 40-bit DRAM addresses: the descriptor's addresses are _LO/_HI register pairs
    assert "INPUT_ADDR_LO" in top.regmap and "INPUT_ADDR_HI" in top.regmap


@pytest.mark.parametrize("rows,cols,data_bits,acc_kib,expect", [
    (4, 4, 64, 16, (1, 1, 1, 1024, 5)),         # 36-byte quantisation record: 5 words of 8
    (12, 12, 64, 16, (2, 2, 2, 256, 14)),       # 16 KiB / 48 bytes = 341 -> 256 entries
    (32, 8, 256, 64, (1, 1, 1, 2048, 3)),
])
def test_geometry_from_the_config(rows, cols, data_bits, acc_kib, expect):
    g = GemmGeometry.of(config(rows, cols, data_bits, acc_kib=acc_kib))
    assert (g.act_words, g.weight_words, g.out_words, g.acc_depth, g.quant_words) == expect


def test_output_stationary_and_other_widths_are_config_errors():
    with pytest.raises(ConfigError, match=r"^accelerator 't': array.dataflow 'os' .*allowed: 'ws'$"):
        Accelerator(config(dataflow=Dataflow.OUTPUT_STATIONARY))
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        Accelerator(config().array)
