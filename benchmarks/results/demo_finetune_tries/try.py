"""Fine-tuning tries for the demo: which data/lr gives JDRL something to learn from the bundled model."""
import json, sys, time
import torch
from jdrl.data.synthetic import SynthParams
from jdrl.demo import DemoSettings, run_demo

name, r_max, lr, reblur_only, steps, level = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(int(sys.argv[7]) if len(sys.argv) > 7 else 1)
s = DemoSettings(steps=steps, lr=lr, reblur_only=reblur_only, warmup=0, oracle=sys.argv[8] == "oracle", val_every=100,
                 synth=SynthParams.with_misalignment(level, size=128, r_max=r_max, exposure=0.02, noise=0.005))
t = time.time()
table = run_demo(f"bench-out/ft/{name}", s, quiet=True)
print(name, json.dumps({k: {m: round(v, 3) for m, v in d.items()} for k, d in table.items()}), round(time.time() - t), flush=True)
