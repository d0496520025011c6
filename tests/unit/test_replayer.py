"""The command-list replayer against model accelerators: every command's descriptor writes reach its
unit's window before its START; a command starts only after every command it depends on has finished;
a unit runs one command at a time, in list order; independent commands overlap on different units;
an error response is reported; a second start replays the list again."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mensa.contract.network import LIST_MAGIC, LIST_VERSION
from mensa.contract.regs import register_map
from mensa.core.config import from_dict
from mensa.hw.replayer import Replayer

ACC = from_dict({"name": "t", "accelerator": [{
    "name": "a", "array": {"rows": 2, "cols": 2}, "buffers": {"weight_kib": 1, "act_kib": 1, "acc_kib": 1},
    "memory": {"data_bits": 32}}]}).accelerator[0]
REGS = register_map(ACC)
WINDOW = 256
CTRL, IRQ_STATUS, IRQ_ENABLE = (REGS[n].offset for n in ("CTRL", "IRQ_STATUS", "IRQ_ENABLE"))


class ListProgram:
    """What the replayer reads of a NetworkProgram: the accelerators and the command list."""

    def __init__(self, units, commands):
        self.accelerators = (ACC,) * units
        self.commands = commands        # (unit, deps, [(offset, value)])

    def command_list(self):
        words = [LIST_MAGIC, LIST_VERSION, len(self.commands)]
        for unit, deps, writes in self.commands:
            words += [unit, len(deps), len(writes), 0, 0, 0, *deps]
            for offset, value in writes:
                words += [offset, value]
        return np.array(words, dtype="<u4")


def random_list(rnd, units, count):
    commands = []
    for i in range(count):
        deps = sorted(rnd.sample(range(i), min(i, rnd.randrange(3))))
        writes = [(rnd.choice([0x20, 0x24, 0x28, 0x40]), rnd.randrange(1 << 32)) for _ in range(rnd.randrange(4))]
        commands.append((rnd.randrange(units), deps, writes))
    return commands


def replay(program, *, runs=1, error_at=None, seed=0):
    """Simulate the replayer on model units that finish a command 3-40 cycles after its START.
    Returns per run: the events [(cycle, kind, unit, value)], the cycles and error it reported."""
    rnd = random.Random(seed)
    units = len(program.accelerators)
    dut = Replayer(program, window=WINDOW, addr_bits=12)
    results = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        irq, finish = [0] * units, [None] * units
        cycle, writes = 0, 0
        for _ in range(runs):
            events = []
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            pending_b, got_a, got_w = None, None, None
            while True:
                # the model units' slave: address and data taken at random, each on its own; the response the
                # cycle after both
                aw_ready, w_ready = got_a is None and rnd.random() < 0.7, got_w is None and rnd.random() < 0.7
                ctx.set(dut.m_axil_awready, aw_ready)
                ctx.set(dut.m_axil_wready, w_ready)
                ctx.set(dut.m_axil_bvalid, pending_b is not None)
                ctx.set(dut.m_axil_bresp, 2 if pending_b is not None and pending_b == error_at else 0)
                ctx.set(dut.irq, sum(b << u for u, b in enumerate(irq)))
                _, _, awv, wv, addr, data, done = await ctx.tick().sample(
                    dut.m_axil_awvalid, dut.m_axil_wvalid, dut.m_axil_awaddr, dut.m_axil_wdata, dut.done)
                cycle += 1
                pending_b = None
                if awv and aw_ready:
                    got_a = addr
                if wv and w_ready:
                    got_w = data
                if got_a is not None and got_w is not None:
                    unit, offset = got_a // WINDOW, got_a % WINDOW
                    events.append((cycle, "write", unit, offset, got_w))
                    if offset == CTRL:
                        assert not irq[unit] and finish[unit] is None, f"unit {unit} started while busy"
                        finish[unit] = cycle + rnd.randrange(3, 40)
                    elif offset == IRQ_STATUS:
                        irq[unit] = 0
                        events.append((cycle, "ack", unit, None, None))
                    pending_b, got_a, got_w = writes, None, None
                    writes += 1
                for u in range(units):
                    if finish[u] is not None and cycle >= finish[u]:
                        irq[u], finish[u] = 1, None
                if done:
                    break
                assert cycle < 200_000, "the replayer hangs"
            results.append({"events": events, "cycles": ctx.get(dut.cycles), "error": ctx.get(dut.error)})

    sim.add_testbench(bench)
    sim.run()
    return results


def check(program, events):
    """The issue rules, from the writes the units saw."""
    order = {u: [i for i, c in enumerate(program.commands) if c[0] == u] for u in range(len(program.accelerators))}
    started, finished, issued, running = {}, {}, {u: [] for u in order}, {}
    for cycle, kind, unit, offset, data in events:
        if kind == "ack":
            finished[running.pop(unit)] = cycle
        elif offset == CTRL:
            index = order[unit][sum(i in started for i in order[unit])]     # the unit's next, in list order
            _, deps, writes = program.commands[index]
            for d in deps:
                assert d in finished, f"command {index} started before its dependency {d} finished"
            assert issued[unit][-len(writes) - 1:] == [(o, v) for o, v in writes] + [(IRQ_ENABLE, 1)], index
            assert data == 1
            started[index], running[unit] = cycle, index
            issued[unit].clear()
        else:
            issued[unit].append((offset, data))
    assert sorted(finished) == list(range(len(program.commands))), "every command runs once"
    return started, finished


@pytest.mark.parametrize("units, count", [(1, 5), (3, 14)])
def test_commands_run_by_the_rules(units, count):
    seed = random.randrange(1 << 16)
    print(f"seed {seed}")
    program = ListProgram(units, random_list(random.Random(seed), units, count))
    first, again = replay(program, runs=2, seed=seed)
    for run in (first, again):
        check(program, run["events"])
        assert not run["error"] and run["cycles"] > 0


def test_independent_commands_overlap_on_different_units():
    program = ListProgram(2, [(0, [], [(0x20, 5)]), (1, [], [(0x20, 6)]), (0, [0, 1], [])])
    (run,) = replay(program)
    started, finished = check(program, run["events"])
    assert started[1] < finished[0] and started[0] < finished[1]
    assert started[2] > max(finished[0], finished[1])


def test_an_error_response_is_reported():
    program = ListProgram(1, [(0, [], [(0x20, 1), (0x24, 2)])])
    (run,) = replay(program, error_at=1)
    assert run["error"]
