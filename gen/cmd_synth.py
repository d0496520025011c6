"""``mensa synth``: synthesise and place a configuration's accelerators (or its system top) on an FPGA."""

from pathlib import Path

from mensa.contract.network import peripherals
from mensa.gen.synth import TARGETS, synth
from mensa.gen.verilog import UNITS, add_time_limit_argument, check_elaboration
from mensa.core.config import load
from mensa.gen import args as types

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--config", type=Path, required=True, help="system config: a TOML file or a preset name")
    parser.add_argument("--target", choices=list(TARGETS), required=True, help="the FPGA")
    parser.add_argument("--accelerator", action="append", metavar="NAME",
                        help="only this accelerator (repeatable; default: all of the system)")
    parser.add_argument("--unit", choices=(*UNITS, "system"), default="accelerator",
                        help="the whole accelerator (default), its core alone (the PE array, the bare near-memory "
                             "unit), a systolic accelerator's requantiser alone, or the system top joining the "
                             "accelerators with registers and DMA")
    parser.add_argument("--seed", type=types.seed, default=1,
                        help="nextpnr's placer seed (default 1); Fmax moves with it, so compare several")
    parser.add_argument("--out", type=types.out_dir, default=None,
                        help="output folder (default: build/synth/<system>/<target>, with -seedN for a seed other than 1)")
    add_time_limit_argument(parser)


def run(args):
    system = load(args.config)
    out = args.out or Path("build/synth") / system.name / (args.target + (f"-seed{args.seed}" if args.seed != 1 else ""))
    chosen = [a for a in system.accelerator if not args.accelerator or a.name in args.accelerator]
    if args.unit == "system":
        chosen = list(peripherals(system))
    check_elaboration("synth", chosen, "accelerator" if args.unit == "system" else args.unit,
                      no_time_limit=args.no_time_limit)
    report = synth(system, args.target, out, accelerators=args.accelerator, unit=args.unit, seed=args.seed)
    for m in report["modules"]:
        r = m["resources"]
        clocks = ", ".join(f"{clk} {c['fmax_mhz']:.1f} MHz ({'meets' if c['met'] else 'misses'} "
                           f"{c['target_mhz']:g})" for clk, c in m["clocks"].items())
        print(f"{m['module']}: {r['luts']} LUTs, {r['ffs']} FFs, {r['dsps']} DSPs, {r['brams']} block RAMs; "
              f"{clocks}{' [cached]' if m['cached'] else ''}")
        for p in m["critical_paths"][:1]:
            print(f"  critical path: {p['start']} -> {p['end']} ({p['delay_ns']} ns)")
    print(f"wrote {out / 'synth.json'} and {out / 'synth.md'}")
    return 0
