import json, re, sys
out = open(".testlogs/rtl_partial.jsonl", "w")
for name, path in (("acc4x4d64", ".testlogs/sim_acc4x4d64_l1_partial.log"), ("acc8x8d64", ".testlogs/sim_acc8x8d64_l1_partial.log")):
    for line in open(path):
        m = re.search(r"layer(\d+): .* in (\d+) cycles \(array busy (\d+), DRAM stall (\d+), .*DRAM read (\d+) B, written (\d+) B", line)
        if m:
            i, cyc, busy, stall, rd, wr = map(int, m.groups())
            out.write(json.dumps(dict(accelerator=name, latency=1, index=i, cycles=cyc, busy=busy, stall=stall,
                                      dram_read_bytes=rd, dram_write_bytes=wr, source="bench/validate.py sim.log")) + "\n")
