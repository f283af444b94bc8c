"""How much tile overlap each network needs, and how much memory a pixel costs (the numbers of ``jdrl.nets.tiling``).

    nice -n 10 python benchmarks/tiling.py                         # every registered network, CPU, 1 thread
    python benchmarks/tiling.py --nets unet ifan --validate        # also a real tiled run
    python benchmarks/tiling.py --nets unet --options '{"width": 0.0625}' --size 128 --crop 64   # a smoke run

Per network (default, full-size configuration; PyTorch's default initialisation after
``torch.manual_seed(0)``, then :func:`wake_dead_branches`: NAFNet's layer scales start at zero,
which makes every block the identity and would hide the network's reach), each in a fresh
process:

* **edge profile.** The network runs on a ``--size`` square image whole and on its top-left
  ``--crop`` square (aligned with the pooling grid, as every tile is). A crop pixel at
  distance ``d`` from the crop's inner (right/bottom) edges lacks the context beyond that
  edge, exactly as a tile pixel ``d`` pixels from an inner tile edge does. ``err(d)`` is
  the largest absolute difference (any channel) between crop and whole output at that
  distance. One crop thus measures every overlap at once: :func:`jdrl.inference.axis_weights`
  keeps only pixels at least ``(overlap - BLEND_WIDTH) / 2`` from an inner edge, so a tiled
  run with ``overlap`` differs from the whole image by about ``max(err(d), d >= that margin)``.
  Networks whose receptive field is finite (the paper's UNet) reach float rounding
  (``exact``); networks with global operations (channel-attention pooling, Restormer's
  channel attention, MPRNet's fixed quarter split) keep a floor that no overlap removes.
* **memory.** Peak resident memory after the crop and after the whole image (``ru_maxrss``,
  the crop first): their difference over the difference in pixels is the activation memory
  per pixel of one forward, weights and start-up cancelled.
* **validation** (``--validate``): one real tiled run (:func:`jdrl.inference.deblur_tensor`,
  tiles of ``--validate-tile``, the overlap the profile suggests for ``--tolerance``)
  against the whole image.
* **suggested hint** (:func:`suggest`, what ``jdrl.nets.tiling.TILE_HINTS`` holds): the overlap
  that reaches float rounding where one does; else the one for ``--tolerance``; else (a
  global network) the smallest within 5 % of the level the error settles at, as more overlap
  buys nothing. The CPU tile takes the activation memory the paper's UNet takes at 512 px
  (``512 * sqrt(UNet's bytes per pixel / the network's)``, down to a multiple of 64), and at
  least twice the overlap; images run whole up to the pixels whose memory the UNet has at 2 MP.
  ``--from-json`` re-renders saved rows (several runs into one table).

The input is a real defocused photo (the first image of ``../shared/data/dpdd1024/blur``,
where present) or else a deterministic texture; ``--image`` picks another. Random weights
are not trained ones: a trained network may depend more (or less) on far context, so the
finite-receptive-field numbers (``exact``) are architectural facts, the tolerance numbers
of global networks an indication.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OVERLAPS = (0, 32, 64, 96, 128, 192, 256, 320, 384, 448)
UNET_KB_PER_PIXEL = 2.77  # the reference (measured by this script) when a table has no unet row
UNET_TILE, UNET_WHOLE_PIXELS = 512, 2_000_000  # the paper's UNet's tiling (jdrl.nets.tiling.FALLBACK)
PLATEAU = 1.05  # a global network's overlap: within 5 % of where the error settles
EXACT = 1e-5  # float rounding: convolutions of different sizes may pick different kernels
DPDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "dpdd1024" / "blur"


def edge_profile(whole: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """``err[d]``: max |crop - whole| over the crop pixels ``d`` px from its right/bottom edge (``(C, T, T)`` arrays)."""
    side = crop.shape[-1]
    difference = np.abs(crop - whole[..., :side, :side]).max(axis=0)
    index = np.arange(side)
    distance = np.minimum.outer(side - 1 - index, side - 1 - index)
    profile = np.zeros(side)
    np.maximum.at(profile, distance.ravel(), difference.ravel())
    return profile


def tail_max(profile: np.ndarray) -> np.ndarray:
    """``E[m] = max(profile[m:])``: the worst difference of every pixel at least ``m`` px from an inner edge."""
    return np.maximum.accumulate(profile[::-1])[::-1]


def error_at_overlap(profile: np.ndarray, overlap: int, blend: int) -> float | None:
    """Expected max |tiled - whole| with ``overlap`` (``None`` when the crop is too small to tell)."""
    margin = max(0, (overlap - blend) // 2)
    if margin >= (len(profile) + 1) // 2:
        return None
    return float(tail_max(profile)[margin])


def overlap_for(profile: np.ndarray, tolerance: float, blend: int, multiple: int) -> int | None:
    """The smallest overlap (a multiple of ``multiple``) whose expected error is <= ``tolerance``; None if none fits."""
    tail = tail_max(profile)
    usable = (len(profile) + 1) // 2  # beyond the crop's middle the far (image) border takes over
    for margin in range(usable):
        if tail[margin] <= tolerance:
            overlap = 2 * margin + blend
            return -(-overlap // multiple) * multiple
    return None


def suggest(row: dict, reference_kb: float, blend: int = 32) -> dict:
    """The tile hint the measurements of one network suggest (see the module docstring)."""
    import math

    profile = np.asarray(row["profile"])
    tail, usable, multiple = tail_max(profile), (len(profile) + 1) // 2, row["multiple"]
    if row["overlap_exact"]:
        overlap, basis = row["overlap_exact"], "exact"
    elif row["overlap_for_tolerance"]:
        overlap, basis = row["overlap_for_tolerance"], f"{row['tolerance']:g}"
    else:
        level = tail[usable // 2]
        margin = int(np.argmax(tail <= PLATEAU * level))
        overlap, basis = -(-(2 * margin + blend) // multiple) * multiple, "plateau"
    error = error_at_overlap(profile, overlap, blend)
    kb = row["bytes_per_pixel"] / 1024
    memory_tile = max(64, int(UNET_TILE * math.sqrt(reference_kb / kb)) // 64 * 64)
    tile = max(memory_tile, -(-2 * overlap // 64) * 64)
    whole = int(UNET_WHOLE_PIXELS * reference_kb / kb) // 100_000 * 100_000
    return {"overlap": overlap, "basis": basis, "error": error, "tile": tile, "memory_tile": memory_tile,
            "max_whole_pixels": whole}


def load_image(path: str | None, size: int) -> tuple[np.ndarray, str]:
    """A ``size`` square float32 RGB image in [0, 1] and what it is."""
    if path is None and DPDD.is_dir():
        found = sorted(DPDD.glob("*.png"))
        path = str(found[0]) if found else None
    if path is not None:
        from jdrl.images import read_image

        image = read_image(path)
        if min(image.shape[:2]) < size:
            raise SystemExit(f"{path} is smaller than --size {size}")
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        return np.ascontiguousarray(image[top : top + size, left : left + size]), os.path.relpath(path)
    import cv2

    noise = np.random.default_rng(0).random((size // 4 + 1, size // 4 + 1, 3)).astype(np.float32)
    return np.clip(cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1), "texture (seed 0)"


def wake_dead_branches(net, std: float = 0.1) -> list[str]:
    """Give every all-zero parameter that is not a bias (layer scales such as NAFNet's beta, gamma) N(0, std^2)
    values (one generator seeded by its index); returns their names. A no-op for networks without such parameters."""
    import torch

    woken = []
    with torch.no_grad():
        for index, (name, parameter) in enumerate(net.named_parameters()):
            if not name.endswith("bias") and parameter.numel() > 1 and not bool(parameter.any()):
                generator = torch.Generator().manual_seed(index)
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
                woken.append(name)
    return woken


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(name: str, options: dict, size: int, crop: int, image_path: str | None, tolerance: float,
            validate: bool, validate_tile: int) -> dict:
    """Everything for one network, in this process (call it in a fresh one for the memory figure)."""
    import torch

    from jdrl.inference import BLEND_WIDTH, deblur_tensor
    from jdrl.nets import create_net

    torch.manual_seed(0)
    net = create_net(name, **options).eval()
    woken = wake_dead_branches(net)
    multiple = net.size_multiple
    if size % multiple or crop % multiple:
        raise SystemExit(f"--size and --crop must be multiples of {multiple} for {name}")
    image, source = load_image(image_path, size)
    batch = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        start_rss = peak_rss()
        start = time.perf_counter()
        crop_out = net(batch[..., :crop, :crop]).float().clamp(0, 1)
        crop_seconds = time.perf_counter() - start
        crop_rss = peak_rss()
        start = time.perf_counter()
        whole_out = net(batch).float().clamp(0, 1)
        whole_seconds = time.perf_counter() - start
        whole_rss = peak_rss()
    profile = edge_profile(whole_out[0].numpy(), crop_out[0].numpy())
    result = {
        "net": name, "options": options, "size": size, "crop": crop, "image": source, "multiple": multiple,
        "woken_parameters": len(woken), "profile": profile.tolist(),
        "errors": {str(o): error_at_overlap(profile, o, BLEND_WIDTH) for o in OVERLAPS},
        "tolerance": tolerance,
        "overlap_for_tolerance": overlap_for(profile, tolerance, BLEND_WIDTH, multiple),
        "overlap_exact": overlap_for(profile, EXACT, BLEND_WIDTH, multiple),
        "floor": float(tail_max(profile)[(crop - 1) // 2]),
        "bytes_per_pixel": (whole_rss - crop_rss) / (size * size - crop * crop),
        "rss_before_gb": start_rss / 2**30, "rss_whole_gb": whole_rss / 2**30,
        "seconds_whole": whole_seconds, "seconds_crop": crop_seconds,
    }
    if validate:
        overlap = result["overlap_for_tolerance"] or BLEND_WIDTH
        start = time.perf_counter()
        tiled = deblur_tensor(net, batch, tile=validate_tile, overlap=min(overlap, validate_tile - multiple))
        result["validation"] = {"tile": validate_tile, "overlap": overlap,
                                "max_abs": float((tiled - whole_out).abs().max()),
                                "seconds": time.perf_counter() - start}
    return result


def run_child(args: argparse.Namespace, name: str) -> dict:
    command = [sys.executable, __file__, "--child", name, "--size", str(args.size), "--crop", str(args.crop),
               "--options", json.dumps(args.options), "--tolerance", str(args.tolerance), "--threads",
               str(args.threads), "--validate-tile", str(args.validate_tile)]
    if args.image:
        command += ["--image", args.image]
    if args.validate:
        command.append("--validate")
    completed = subprocess.run(command, capture_output=True, text=True)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        return {"net": name, "error": (completed.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def _number(value: float | None) -> str:
    return "n/a" if value is None else ("0" if value == 0 else f"{value:.1e}")


def table(rows: list[dict], tolerance: float) -> str:
    shown = (0, 64, 128, 192, 256)
    head = " | ".join(f"err @{o}" for o in shown)
    lines = [f"| network | {head} | overlap for {tolerance:g} | exact from | floor | KB/px | whole s | tiled check | "
             "suggested hint: overlap (basis, err) / CPU tile / whole up to |",
             "|---|" + "---|" * (len(shown) + 7)]
    measured = [row for row in rows if "error" not in row]
    reference = next((row["bytes_per_pixel"] / 1024 for row in measured if row["net"] == "unet"
                      and not row["options"]), UNET_KB_PER_PIXEL)
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['net']} | failed: {row['error']} |")
            continue
        errors = " | ".join(_number(row["errors"][str(o)]) for o in shown)
        check = row.get("validation")
        check_text = (f"{check['max_abs']:.1e} (tile {check['tile']}, overlap {check['overlap']})" if check else "-")
        hint = suggest(row, reference)
        lines.append(f"| {row['net']} | {errors} | {row['overlap_for_tolerance'] or 'not reached'} | "
                     f"{row['overlap_exact'] or 'never'} | {_number(row['floor'])} | "
                     f"{row['bytes_per_pixel'] / 1024:.2f} | {row['seconds_whole']:.1f} | {check_text} | "
                     f"{hint['overlap']} ({hint['basis']}, {_number(hint['error'])}) / {hint['tile']} / "
                     f"{hint['max_whole_pixels'] / 1e6:.1f} MP |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", help="default: every registered network")
    parser.add_argument("--options", type=json.loads, default={}, help="JSON network options (default: none)")
    parser.add_argument("--size", type=int, default=512, help="whole image side (default: %(default)s)")
    parser.add_argument("--crop", type=int, default=256, help="crop (tile) side (default: %(default)s)")
    parser.add_argument("--image", help="input image (default: the first DPDD blur image, else a texture)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs difference (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--validate", action="store_true", help="also one real tiled run at the suggested overlap")
    parser.add_argument("--validate-tile", type=int, default=384, help="its tile side (default: %(default)s)")
    parser.add_argument("--json", help="also write every row (with the whole profile) to this file")
    parser.add_argument("--from-json", nargs="+", metavar="JSON", help="only print the table of saved rows "
                        "(a later file's row replaces an earlier one of the same network)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.from_json:
        saved: dict[str, dict] = {}
        for path in args.from_json:
            saved.update((row["net"], row) for row in json.loads(Path(path).read_text()))
        print(table(list(saved.values()), args.tolerance))
        return
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.options, args.size, args.crop, args.image, args.tolerance,
                                 args.validate, args.validate_tile)))
        return
    from jdrl.nets import net_names

    rows = []
    for name in args.nets or net_names():
        start = time.perf_counter()
        rows.append(run_child(args, name))
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    source = next((row["image"] for row in rows if "image" in row), "?")
    print(f"`python benchmarks/tiling.py {' '.join(sys.argv[1:])}` — {platform.machine()}, {args.threads} thread(s), "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; whole {args.size}², crop {args.crop}², "
          f"image {source}; err @N: expected max |tiled - whole| with overlap N px\n")
    print(table(rows, args.tolerance))


if __name__ == "__main__":
    main()
