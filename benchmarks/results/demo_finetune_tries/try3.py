"""JDRL-only fine-tuning diagnostics: name, then key=value DemoSettings, then --o overrides of the variant."""
import json, sys, time
import torch
from jdrl.data.synthetic import SynthParams
from jdrl.demo import DemoSettings, Variant, run_variants, truth_table
from pathlib import Path
torch.set_num_threads(1)
name = sys.argv[1]
args = sys.argv[2:]
over = tuple(a[4:] for a in args if a.startswith("--o="))
kw = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args if not a.startswith("--o="))}
synth = {k[2:]: kw.pop(k) for k in list(kw) if k.startswith("s.")}
r_max = kw.pop("r_max", 12.0); level = kw.pop("level", "sdd")
s = DemoSettings(**{"warmup": 0, **kw}, synth=SynthParams.with_misalignment(level, size=128, r_max=r_max, exposure=0.02, noise=0.005, **synth))
t = time.time()
res = run_variants(s, [Variant("jdrl", "jdrl", over)], Path(f"bench-out/ft/{name}"), quiet=True)
res.pop("_seconds")
print(name, json.dumps({k: {m: round(v, 3) for m, v in d.items()} for k, d in truth_table(res).items()}), round(time.time() - t), flush=True)
