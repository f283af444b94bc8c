"""Fine-tuning tries: key=value settings of DemoSettings (synth r_max via r_max=)."""
import json, sys, time
import torch
from dataclasses import replace
from jdrl.data.synthetic import SynthParams
from jdrl.demo import DemoSettings, run_demo
torch.set_num_threads(1)
name = sys.argv[1]
kw = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
r_max = kw.pop("r_max", 12.0); level = kw.pop("level", "sdd")
s = DemoSettings(**{"warmup": 0, **kw}, synth=SynthParams.with_misalignment(level, size=128, r_max=r_max, exposure=0.02, noise=0.005))
t = time.time()
table = run_demo(f"bench-out/ft/{name}", s, quiet=True)
print(name, json.dumps({k: {m: round(v, 3) for m, v in d.items()} for k, d in table.items()}), round(time.time() - t), flush=True)
