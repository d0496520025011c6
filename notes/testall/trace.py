import json, sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mensa.gen.validate import ACCELERATORS, accelerator_suite, _accelerator_spec
from mensa.hw.accelerator import Accelerator
from mensa.sim.runner import run
from mensa.sim.tb_accelerator import accelerator_config
name, lat, idx, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), os.path.abspath(sys.argv[4])
acc = ACCELERATORS[name]; layer = accelerator_suite(name, large=True)[idx]
cfg = {"rows": acc.array.rows, "cols": acc.array.cols, "data_bits": acc.memory.data_bits,
       "acc_kib": acc.buffers.acc_kib, "act_kib": acc.buffers.act_kib, "weight_kib": acc.buffers.weight_kib}
built = accelerator_config(cfg)
params = {"config": cfg, "layers": [_accelerator_spec(layer, idx)], "pause": 0.0, "latency": [lat, lat], "trace": out}
run(Accelerator(built), name="accelerator", key=("accelerator", built), sim="verilator", test_module="tb_trace",
    test_name=f"trace-{name}-{lat}-{idx}", extra_env={"MENSA_TB": json.dumps(params)})
