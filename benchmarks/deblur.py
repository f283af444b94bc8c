"""Inference benchmark: ``jdrl deblur`` on a large image, tiled (target: peak RSS <= 4 GB on CPU).

    python benchmarks/deblur.py                          # CPU: 4096x2160 tiled, plus whole 512^2 and 1024^2
    python benchmarks/deblur.py --device cuda            # the same on the GPU
    python benchmarks/deblur.py --tile 1024 --size 4096x2160 --whole 512 1024

The network is the paper's full-width UNet (31M parameters) with random weights,
saved as a jdrl checkpoint in a temporary folder; the large image is synthetic
texture, written as an 8-bit PNG. Every measurement runs in a fresh process:

* tiled: the real command line, ``python -m jdrl deblur IMAGE -o OUT --checkpoint
  CKPT --tile ... --overlap ...``, started by a small wrapper process that reports
  the command's wall time and its peak resident set size
  (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the whole process: Python, torch,
  weights, image, output, tiles). Seconds include start-up, loading and PNG I/O.
* whole: ``jdrl.inference.deblur_image`` on a random image of each size, timed after
  a small warm-up, giving megapixels per second; peak RSS of that process (and
  ``torch.cuda.max_memory_allocated`` on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1e9


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> ``(width, height)``."""
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


# ---------------------------------------------------------------- child processes


def measure_command(command: list[str]) -> dict:
    """Run ``command``; its wall time and peak RSS (this wrapper has no other child)."""
    start = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"rc": completed.returncode, "seconds": seconds, "peak_rss": peak_kb * 1024,
            "output": (completed.stdout + completed.stderr)[-2000:]}


def measure_whole(height: int, width: int, device: str, net_width: float, repeats: int) -> dict:
    """Seconds per whole-image ``deblur_image`` at one size (after a warm-up), peak memory."""
    import numpy as np
    import torch

    from jdrl.inference import deblur_image
    from jdrl.nets import create_net

    torch.manual_seed(0)
    net = create_net("unet", width=net_width).eval().to(device)
    if device.startswith("cuda"):
        net.to(memory_format=torch.channels_last)
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    deblur_image(net, image[:64, :64])  # warm-up: allocator, kernels
    if device.startswith("cuda"):
        deblur_image(net, image)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        deblur_image(net, image)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result = {"seconds": min(times), "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if device.startswith("cuda"):
        result["peak_gpu"] = torch.cuda.max_memory_allocated()
    return result


def _child(args: list[str]) -> dict:
    """Run ``benchmarks/deblur.py`` again in a fresh process with ``args``; its JSON answer."""
    completed = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {args} failed:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------- set-up


def save_random_unet(path: Path, net_width: float) -> Path:
    """A jdrl checkpoint of a randomly initialised UNet (as a training run would save it)."""
    import torch

    from jdrl.checkpoint import write_checkpoint
    from jdrl.nets.factory import network_checkpoint
    from jdrl.nets import create_net

    torch.manual_seed(0)
    return write_checkpoint(network_checkpoint(create_net("unet", width=net_width)), path)


def write_texture(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """An 8-bit PNG of smooth colour structure plus fine noise (photo-like, incompressible)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 32 + 2, width // 32 + 2, 3), dtype=np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += 0.08 * rng.standard_normal((height, width, 3), dtype=np.float32)
    if not cv2.imwrite(str(path), np.clip(image * 255, 0, 255).astype(np.uint8)):
        raise OSError(f"could not write {path}")
    return path


def machine_details(device: str) -> list[str]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"# {cpu}; {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
             f"{platform.system()} {platform.release()}, Python {platform.python_version()}"]
    if device.startswith("cuda"):
        lines.append(f"# GPU: {torch.cuda.get_device_name(device)}")
    lines.append("# load average at start (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    return lines


# ---------------------------------------------------------------- main


def tiled_row(args: argparse.Namespace, folder: Path, checkpoint: Path) -> str:
    width, height = args.size
    image = write_texture(folder / "large.png", width, height)
    command = [sys.executable, "-m", "jdrl", "deblur", str(image), "-o", str(folder / "out"), "--checkpoint",
               str(checkpoint), "--tile", str(args.tile), "--overlap", str(args.overlap), "--device", args.device,
               "--quiet"]
    print("# tiled command: " + " ".join(command[1:]), flush=True)
    result = _child(["--measure-command", json.dumps(command)])
    if result["rc"] != 0:
        raise RuntimeError(f"jdrl deblur failed:\n{result['output']}")
    from jdrl.inference import count_tiles, resolve_tile

    tile = resolve_tile(args.tile, height, width, args.device)
    tiles = count_tiles(height, width, tile, args.overlap, multiple=16)
    megapixels = width * height / 1e6
    verdict = "yes" if result["peak_rss"] <= 4 * GB else "NO"
    return (f"| jdrl deblur, tiled | {width}x{height} | {tile} / {args.overlap} ({tiles} tiles) | {args.device} | "
            f"{result['seconds']:.1f} | "
            f"{megapixels / result['seconds']:.3f} | {result['peak_rss'] / GB:.2f} (<= 4 GB: {verdict}) | - |")


def whole_row(args: argparse.Namespace, side: int) -> str:
    result = _child(["--measure-whole", str(side), str(side), args.device, str(args.net_width), str(args.repeats)])
    megapixels = side * side / 1e6
    gpu = f"{result['peak_gpu'] / GB:.2f}" if "peak_gpu" in result else "-"
    return (f"| deblur_image, whole | {side}x{side} | - | {args.device} | {result['seconds']:.1f} | "
            f"{megapixels / result['seconds']:.3f} | {result['peak_rss'] / GB:.2f} | {gpu} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, default=(4096, 2160), help="tiled image WxH (default: 4096x2160)")
    parser.add_argument("--tile", default="auto", help="jdrl deblur --tile (default: auto = 512 on CPU, 1024 on CUDA)")
    parser.add_argument("--overlap", type=int, default=256, help="jdrl deblur --overlap (default: %(default)s)")
    parser.add_argument("--whole", type=int, nargs="*", default=[512, 1024],
                        help="sides of whole-image runs; none to skip (default: 512 1024)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed whole-image runs, best kept (default: 1 on CPU, 5 on CUDA)")
    parser.add_argument("--net-width", type=float, default=1.0,
                        help="UNet width; 1.0 is the paper's net (default: %(default)s)")
    parser.add_argument("--no-tiled", action="store_true", help="skip the large tiled run")
    parser.add_argument("--measure-command", help=argparse.SUPPRESS)
    parser.add_argument("--measure-whole", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_command:
        print(json.dumps(measure_command(json.loads(args.measure_command))))
        return
    if args.measure_whole:
        height, width, device, net_width, repeats = args.measure_whole
        print(json.dumps(measure_whole(int(height), int(width), device, float(net_width), int(repeats))))
        return
    args.repeats = args.repeats or (5 if args.device.startswith("cuda") else 1)

    print(f"# jdrl inference, UNet width {args.net_width:g} (random weights), device {args.device}")
    for line in machine_details(args.device):
        print(line)
    print("| case | size | tile / overlap | device | seconds | MP/s | peak RSS GB | peak GPU GB |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jdrl-bench-") as tmp:
        folder = Path(tmp)
        if not args.no_tiled:
            checkpoint = save_random_unet(folder / "unet.pt", args.net_width)
            print(tiled_row(args, folder, checkpoint), flush=True)
        for side in args.whole:
            print(whole_row(args, side), flush=True)
    print(f"# total {time.perf_counter() - start:.0f} s; load average at end: "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
