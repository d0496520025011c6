"""Benchmark: the deepest register-to-register paths of a synthesised ECP5 netlist, estimated in seconds.

nextpnr reports one critical path, after a place and route that takes the better part of an hour on
a whole accelerator; this ranks every path of the netlist ``mensa synth`` wrote (``<name>_shell.json``
in its folder), so the next few paths to pipeline are known before the router has run. A path's
delay is the sum of its cells' delays (a LUT4 0.45 ns, a carry cell 0.45 ns into the chain and
0.06 ns along it, a wide mux 0.25 ns, an unregistered MULT18X18D 5.8 ns; a DP16KD's read data 3.4 ns
and a flip-flop's 0.4 ns after the clock) and of a route a net: 0.9 ns, or, given nextpnr's placement
(``nextpnr-ecp5 ... --no-route --write placed.json``), nextpnr's own estimate from the distance
between the cells (``Arch::predictDelay`` of the ECP5, speed grade 6: 0.12 ns times 3, plus 2 a tile
up to 5 tiles in each direction, plus 1 a tile beyond). An estimate, not a timing report: it ranks
paths; nextpnr's routed report is the figure.

    python bench/paths.py build/synth/pascal-fpga/ecp5-85f/pascal_fpga_pascal
    python bench/paths.py DIR --placed DIR/placed.json --top 20

Prints the paths, deepest first (one per start and end register), and writes
bench/out/paths-<name>.json.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bench" / "out"
ROUTE_NS = 0.9                      # a route when the placement is not given
SEQUENTIAL = {"TRELLIS_FF": 0.4, "DP16KD": 3.4, "MULT18X18D": 1.0, "TRELLIS_DPR16X4": 0.45}


def _registered(cell):
    p = cell["parameters"]
    return any(p.get(f"REG_{r}_CLK", "NONE") != "NONE" for r in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"))


def cell_delay(cell, src, dst):
    """The delay through ``cell`` from input port ``src`` to output port ``dst``, or None where none is
    combinational (a register's ports, a block RAM's)."""
    kind = cell["type"]
    if kind == "LUT4":
        return 0.45
    if kind in ("PFUMX", "L6MUX21"):
        return 0.25
    if kind == "CCU2C":
        return (0.06 if dst == "COUT" else 0.3) if src == "CIN" else 0.45
    if kind == "TRELLIS_DPR16X4":
        return 0.45 if src.startswith("RAD") else None
    if kind == "MULT18X18D" and not _registered(cell) and src[0] in "AB" and dst.startswith("P"):
        return 5.8
    return None


class Netlist:
    """A flat Yosys JSON module: which cell port drives each bit and which ports each bit reaches."""

    def __init__(self, module, placement=None):
        self.cells = module["cells"]
        self.names = {}
        for name, net in module["netnames"].items():
            for i, bit in enumerate(net["bits"]):
                if isinstance(bit, int) and (bit not in self.names or self.names[bit][0].startswith("$")):
                    self.names[bit] = (name, i)
        self.driver, self.sinks = {}, defaultdict(list)
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                out = cell["port_directions"].get(port) == "output"
                for bit in bits:
                    if isinstance(bit, int):
                        if out:
                            self.driver[bit] = (name, port)
                        else:
                            self.sinks[bit].append((name, port))
        self.placement = placement or {}
        self.arrival, self.previous = {}, {}

    def route(self, bit, sink):
        """The route's delay from the driver of ``bit`` to cell ``sink``."""
        a = self.placement.get(self.driver.get(bit, (None,))[0])
        b = self.placement.get(sink)
        if a is None or b is None:
            return ROUTE_NS
        dx, dy = abs(a[0] - b[0]), abs(a[1] - b[1])
        return 0.12 * (3 + max(dx - 5, 0) + max(dy - 5, 0) + 2 * (min(dx, 5) + min(dy, 5)))

    def _inputs(self, bit):
        """The (port, bit) inputs of the cell driving ``bit`` that reach it combinationally."""
        name, out = self.driver[bit]
        cell = self.cells[name]
        return [(port, ib) for port, bits in cell["connections"].items()
                if cell["port_directions"].get(port) == "input" and cell_delay(cell, port, out) is not None
                for ib in bits if isinstance(ib, int)]

    def arrive(self, bit):
        """When ``bit`` settles after the clock: a depth-first walk without recursion, a combinational loop
        cut where it closes."""
        open_ = set()
        stack = [bit]
        while stack:
            b = stack[-1]
            if b in self.arrival:
                stack.pop()
                continue
            if b not in self.driver:
                self.arrival[b], self.previous[b] = 0.0, None
                stack.pop()
                continue
            name, out = self.driver[b]
            cell = self.cells[name]
            inputs = self._inputs(b)
            if not inputs:
                self.arrival[b], self.previous[b] = SEQUENTIAL.get(cell["type"], 0.0), None
                stack.pop()
                continue
            waiting = [ib for _, ib in inputs if ib not in self.arrival and ib not in open_]
            if waiting and b not in open_:
                open_.add(b)
                stack.extend(waiting)
                continue
            best, via = 0.0, None
            for port, ib in inputs:
                chained = (cell["type"] == "CCU2C" and port == "CIN") or \
                          (cell["type"] in ("PFUMX", "L6MUX21") and port in ("ALUT", "BLUT", "D0", "D1"))
                t = self.arrival.get(ib, 0.0) + cell_delay(cell, port, out) + (0.0 if chained else self.route(ib, name))
                if t > best:
                    best, via = t, ib
            self.arrival[b], self.previous[b] = best, via
            open_.discard(b)
            stack.pop()
        return self.arrival[bit]

    def endpoints(self):
        """Every register input and block RAM or registered DSP input, with the delay to it."""
        for name, cell in self.cells.items():
            if cell["type"] not in SEQUENTIAL:
                continue
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) != "input" or cell_delay(cell, port, "P0" if port[0] in "AB"
                                                                              else "DO0") is not None:
                    continue
                for bit in bits:
                    if isinstance(bit, int):
                        yield self.arrive(bit) + self.route(bit, name), name, port, bit

    def path(self, bit):
        """The nets of the deepest path into ``bit``, from its start register."""
        nets = []
        while bit is not None:
            nets.append(bit)
            bit = self.previous.get(bit)
        return nets[::-1]


def placement_of(placed, prefix):
    """Cell -> (x, y) from nextpnr's written design; the cells of a split carry cell share their name's."""
    loc = {}
    for module in placed["modules"].values():
        for name, cell in module.get("cells", {}).items():
            bel = cell.get("attributes", {}).get("NEXTPNR_BEL")
            if bel:
                x, y = bel.split("/")[:2]
                name = name[len(prefix):] if name.startswith(prefix) else name
                loc[name.split("$CCU2_COMB")[0]] = (int(x[1:]), int(y[1:]))
    return loc


def deepest(netlist, top):
    """The ``top`` deepest paths, one per (start register, end register), as dicts."""
    out, seen = [], set()
    for ns, cell, port, bit in sorted(netlist.endpoints(), key=lambda e: -e[0]):
        nets = netlist.path(bit)
        start = netlist.names.get(nets[0], ("?", 0))[0]
        key = (start, cell.split("_TRELLIS")[0])
        if key in seen:
            continue
        seen.add(key)
        out.append({"ns": round(ns, 2), "from": f"{start}[{netlist.names.get(nets[0], ('?', 0))[1]}]",
                    "to": f"{cell}.{port}", "nets": len(nets)})
        if len(out) == top:
            break
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a mensa synth output folder holding <name>_shell.json")
    ap.add_argument("--placed", type=Path, help="nextpnr's written design (--write), for route delays")
    ap.add_argument("--top", type=int, default=12, help="paths to print (default 12)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        ap.exit(2, f"paths.py: error: {args.folder} is not a folder; a mensa synth output folder is needed\n")
    if args.placed is not None and not args.placed.is_file():
        ap.exit(2, f"paths.py: error: --placed {args.placed} is not a file; nextpnr's --write output is needed\n")
    shells = sorted(args.folder.glob("*_shell.json"))
    if len(shells) != 1:
        ap.exit(2, f"paths.py: error: {args.folder} holds {len(shells)} *_shell.json netlists; one is needed "
                   f"(a mensa synth output folder)\n")
    if args.top < 1:
        ap.exit(2, f"paths.py: error: --top must be at least 1, not {args.top}\n")
    name = shells[0].name[:-len("_shell.json")]
    modules = json.loads(shells[0].read_text())["modules"]
    placement = placement_of(json.loads(args.placed.read_text()), "core.") if args.placed else None
    paths = deepest(Netlist(modules[name], placement), args.top)
    for p in paths:
        print(f"{p['ns']:6.2f} ns  {p['nets']:3d} nets  {p['from']} -> {p['to']}")
    args.out.mkdir(parents=True, exist_ok=True)
    dest = args.out / f"paths-{name}.json"
    dest.write_text(json.dumps({"netlist": str(shells[0]), "placed": str(args.placed) if args.placed else None,
                                "paths": paths}, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    sys.exit(main())
