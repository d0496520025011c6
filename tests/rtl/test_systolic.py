"""The systolic array's Verilog multiplies random int8 matrices bit-exactly (cocotb)."""

import json
import os
import shutil
import sys

import pytest

from mensa.core.config import ArrayConfig, Dataflow, to_dict
from mensa.hw.systolic import SystolicArray
from tests.rtl.sims import each_simulator
from mensa.sim.runner import _icarus_time0, run

ARRAYS = [(1, 1), (2, 2), (4, 4), (8, 8), (4, 8)]


@pytest.mark.parametrize("sim", each_simulator())
@pytest.mark.parametrize("dataflow", [d.value for d in Dataflow])
@pytest.mark.parametrize("rows,cols", ARRAYS, ids=[f"{r}x{c}" for r, c in ARRAYS])
def test_gemm_random_shapes_bit_exact(rows, cols, dataflow, sim, tmp_path):
    config = ArrayConfig(rows=rows, cols=cols, dataflow=Dataflow(dataflow))
    params = dict(to_dict(config), shapes=20, max_dim=3 * max(rows, cols) + 2, gap=0.3,
                  result=str(tmp_path / "figures.json"))
    run(SystolicArray(config), name="systolic_array", key=config, sim=sim,
        test_module="mensa.sim.tb_systolic", test_name=f"gemm-{tmp_path.name}",
        extra_env={"MENSA_TB": json.dumps(params)})
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert len(figures) == 20
    assert any(f["K"] == 1 for f in figures)


def _mult18x18d_model():
    """Verilog of the Lattice ECP5 MULT18X18D as the array configures it (Lattice TN1267): signed
    18x18 product; the input (A, B), pipeline and output register sets each either on CLK0 with
    CE0 and a synchronous RST0 or bypassed ("NONE"), as the REG_*_CLK parameters say."""
    bits = lambda p, n: ", ".join(f"{p}{k}" for k in range(n))
    regs = ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")
    params = "\n".join(f'  parameter REG_{r}_{f} = "{d}";' for r in regs
                       for f, d in (("CLK", "NONE"), ("CE", "CE0"), ("RST", "RST0")))
    return f"""module MULT18X18D({bits("A", 18)}, {bits("B", 18)}, {bits("C", 18)},
  SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0, {bits("P", 36)});
{params}
  parameter GSR = "ENABLED";
  parameter RESETMODE = "SYNC";
  input {bits("A", 18)}, {bits("B", 18)}, {bits("C", 18)}, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
  output {bits("P", 36)};
  wire [17:0] a = {{{", ".join(f"A{k}" for k in reversed(range(18)))}}};
  wire [17:0] b = {{{", ".join(f"B{k}" for k in reversed(range(18)))}}};
  reg [17:0] a_q, b_q;
  reg [35:0] pipe_q, out_q;
  wire [17:0] a_s = REG_INPUTA_CLK == "NONE" ? a : a_q;
  wire [17:0] b_s = REG_INPUTB_CLK == "NONE" ? b : b_q;
  // (apart: a ?: with one unsigned arm would make the signed product unsigned too)
  wire signed [35:0] sprod = $signed(a_s) * $signed(b_s);
  wire [35:0] uprod = a_s * b_s;
  wire [35:0] prod = (SIGNEDA && SIGNEDB) ? sprod : uprod;
  wire [35:0] pipe_s = REG_PIPELINE_CLK == "NONE" ? prod : pipe_q;
  wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? pipe_s : out_q;
  always @(posedge CLK0)
    if (RST0) begin a_q <= 0; b_q <= 0; pipe_q <= 0; out_q <= 0; end
    else if (CE0) begin a_q <= a; b_q <= b; pipe_q <= prod; out_q <= pipe_s; end
  assign {{{", ".join(f"P{k}" for k in reversed(range(36)))}}} = p;
endmodule
"""


def _trellis_ff_model():
    """Verilog of the ECP5 TRELLIS_FF as ``mensa.hw.keep`` configures it: clocked on CLK, always enabled,
    LSR a synchronous set or reset to REGSET's value, which is also its power-up value."""
    return """module TRELLIS_FF(input CLK, input LSR, input CE, input DI, output reg Q);
  parameter GSR = "ENABLED";
  parameter CEMUX = "1";
  parameter CLKMUX = "CLK";
  parameter LSRMUX = "LSR";
  parameter REGSET = "RESET";
  parameter SRMODE = "LSR_OVER_CE";
  initial Q = REGSET == "SET";
  always @(posedge CLK)
    if (LSR) Q <= REGSET == "SET";
    else if (CE) Q <= DI;
endmodule
"""


@pytest.mark.skipif(not shutil.which("iverilog"), reason="needs Icarus")
@pytest.mark.parametrize("dataflow", [d.value for d in Dataflow])
def test_ecp5_dsp_netlist_is_bit_exact_too(dataflow, tmp_path):
    # The synthesis flow elaborates for ECP5, where each PE's multiplier is a MULT18X18D
    # instance instead of the behavioural stages the other tests run, and the kept registers
    # (the activations' bank bits, the psum columns' resets and write enables) TRELLIS_FF
    # instances. The same random GEMMs through that netlist (with models of both cells) check
    # its wiring: bit order, sign, register stages, reset values.
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner
    from cocotb_tools.check_results import get_results

    class Ecp5:
        family = "ecp5"

    config = ArrayConfig(rows=2, cols=3, dataflow=Dataflow(dataflow))
    text = verilog.convert(SystolicArray(config), name="systolic_array", platform=Ecp5(), emit_src=False)
    assert "MULT18X18D" in text
    (tmp_path / "array.v").write_text(_icarus_time0(text) + _mult18x18d_model() + _trellis_ff_model())
    params = dict(to_dict(config), shapes=6, max_dim=8, gap=0.3, result=str(tmp_path / "figures.json"))
    runner = get_runner("icarus")
    runner.build(sources=[tmp_path / "array.v"], hdl_toplevel="systolic_array", build_dir=tmp_path,
                 timescale=("1ns", "1ps"), log_file=tmp_path / "build.log")
    results = runner.test(test_module="mensa.sim.tb_systolic", hdl_toplevel="systolic_array",
                          build_dir=tmp_path, test_dir=tmp_path, timescale=("1ns", "1ps"),
                          extra_env={"MENSA_TB": json.dumps(params),
                                     "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                          log_file=tmp_path / "sim.log")
    _, failed = get_results(results)
    assert not failed, f"see {tmp_path / 'sim.log'}"
    assert len(json.loads((tmp_path / "figures.json").read_text())) == 6
