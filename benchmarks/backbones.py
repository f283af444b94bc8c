"""Every backbone side by side: parameters, MACs, CPU deblurring speed, JDRL/pixel step cost, tiled-deblur memory.

    python benchmarks/backbones.py                          # every registered network, CPU
    python benchmarks/backbones.py --nets unet nafnet_w32 --device cuda

Per network (random weights; speed does not depend on them), each measurement in a fresh process:

* parameters and multiply-accumulates of one forward at 256x256 (PyTorch's FLOP counter, on the meta device);
* seconds to deblur one 512x512 image whole (``jdrl.inference.deblur_image``, after a warm-up);
* seconds per training step at ``--crop`` (batch 1) with the pixel loss and with JDRL (full objective,
  DIS flow), and their ratio;
* peak resident memory of ``jdrl.deblurring.deblur_files`` on a 4096x2160 photo with ``--tile auto``
  (the network's tile hint, ``jdrl.nets.tiling``; 512 px tiles and 256 px overlap on the CPU before
  hints existed), stopped after ``--rss-tiles`` tiles: every tile repeats the
  same work, and the image, its padded copy and the output accumulator are allocated before the first tile,
  so the peak is reached by then (the whole run would take up to hours per network on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def child_speed(name: str, device: str, crop: int, steps: int) -> dict:
    import numpy as np
    import torch

    from jdrl.inference import deblur_image
    from jdrl.losses import JDRLConfig, JDRLLoss
    from jdrl.nets import create_net

    torch.manual_seed(0)
    net = create_net(name).to(device).eval()
    image = np.random.default_rng(0).random((512, 512, 3), dtype=np.float32)
    deblur_image(net, image[:128, :128])
    start = time.perf_counter()
    deblur_image(net, image)
    seconds = time.perf_counter() - start
    net.train()
    blur = torch.rand(1, 3, crop, crop, device=device)
    sharp = torch.roll(blur, 2, dims=3)
    result = {"deblur_512_s": seconds}
    for objective in ("pixel", "jdrl"):
        loss = JDRLLoss(JDRLConfig(objective=objective, flow="dis"), device=device).to(device)
        optimizer = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=1e-7)
        times = []
        for index in range(steps + 1):
            start = time.perf_counter()
            total, _ = loss(net(blur), blur, sharp)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if index:
                times.append(time.perf_counter() - start)
        result[f"step_{objective}_s"] = sorted(times)[len(times) // 2]
    return result


class _EnoughTiles(Exception):
    pass


def child_rss(name: str, tiles: int, folder: str) -> dict:
    import cv2
    import numpy as np
    import torch

    from jdrl import deblurring
    from jdrl.nets import create_net

    torch.manual_seed(0)
    path = os.path.join(folder, "photo.png")
    rng = np.random.default_rng(0)
    coarse = rng.random((2160 // 32 + 2, 4096 // 32 + 2, 3), dtype=np.float32)
    image = cv2.resize(coarse, (4096, 2160), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(path, np.clip(image * 255, 0, 255).astype(np.uint8))
    del image, coarse
    net = create_net(name).eval()
    seen = {"tiles": 0}

    def counting_bar(desc, quiet):  # the tile progress wrapper: count tiles, stop after enough
        def wrap(iterable):
            for item in iterable:
                if seen["tiles"] >= tiles:
                    raise _EnoughTiles
                seen["tiles"] += 1
                yield item
        return wrap

    import jdrl.progress

    jdrl.progress.bar = counting_bar
    start = time.perf_counter()
    try:
        deblurring.deblur_files([path], os.path.join(folder, "out"), net, tile="auto")
    except _EnoughTiles:
        pass
    with open("/proc/self/status") as handle:
        peak = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM"))
    return {"rss_peak_gb": peak / 2**30, "rss_tiles": seen["tiles"], "rss_seconds": time.perf_counter() - start}


def run_child(args: list[str]) -> dict:
    completed = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        return {"error": (completed.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", help="default: every registered network")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rss-tiles", type=int, default=2)
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--no-speed", action="store_true", help="only the memory column")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name = args.child[:2]
        if kind == "speed":
            print(json.dumps(child_speed(name, args.device, args.crop, args.steps)))
        else:
            print(json.dumps(child_rss(name, args.rss_tiles, args.child[2])))
        return

    import tempfile

    import torch

    from jdrl.cli.nets import count_macs
    from jdrl.nets import count_parameters, create_net, net_names

    names = args.nets or net_names()
    print(f"`python benchmarks/backbones.py {' '.join(sys.argv[1:])}` — {platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, device {args.device}, "
          f"{time.strftime('%Y-%m-%d')}; step at {args.crop}² batch 1, DIS flow; RSS over the first "
          f"{args.rss_tiles} tiles of a 4096x2160 photo (--tile auto)\n")
    print("| network | parameters | GMACs @256² | deblur 512² s | pixel step s | JDRL step s | JDRL / pixel | "
          "peak RSS 4096x2160 GB |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for name in names:
        with torch.device("meta"):
            net = create_net(name).eval()
        params, macs = count_parameters(net), count_macs(net) / 1e9
        speed = {"error": "not measured (--no-speed)"} if args.no_speed else run_child(
            ["--device", args.device, "--crop", str(args.crop), "--steps", str(args.steps), "--child", "speed", name])
        rss: dict = {}
        if not args.no_rss:
            with tempfile.TemporaryDirectory() as folder:
                rss = run_child(["--rss-tiles", str(args.rss_tiles), "--child", "rss", name, folder])
        if "error" in speed:
            cells = [f"error: {speed['error']}"] + [""] * 3
        else:
            ratio = speed["step_jdrl_s"] / speed["step_pixel_s"]
            cells = [f"{speed['deblur_512_s']:.2f}", f"{speed['step_pixel_s']:.2f}", f"{speed['step_jdrl_s']:.2f}",
                     f"{ratio:.2f}x"]
        cells.append(f"{rss['rss_peak_gb']:.2f}" if "rss_peak_gb" in rss else rss.get("error", "not measured"))
        print(f"| {name} | {params:,} | {macs:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
