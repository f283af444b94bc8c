"""Ring vs direct reblurring: time and peak memory of forward + backward (target: >= 10x, >= 4x).

    python benchmarks/reblur.py                 # CPU, and CUDA when present
    python benchmarks/reblur.py --sizes 256 --repeats 3
    python benchmarks/reblur.py --devices cuda --sums shift conv    # both ways of summing the rings

Each (implementation, size, device) runs in its own process so that peak
memory is not polluted by the other runs. On the CPU, peak memory is the
largest resident set size (sampled every 0.2 ms by a thread) above the size
before the first step, with glibc told to return large blocks to the system at
once (``MALLOC_MMAP_THRESHOLD_``); on CUDA it is ``torch.cuda.max_memory_allocated``
above the memory held before the step. Time is the median of ``--repeats``
steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakRSS:
    """Samples the resident set size in a thread while the block runs."""

    def __enter__(self):
        self.base = self.peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(0.0002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def measure(impl: str, size: int, device: str, repeats: int, support: str, what: str) -> dict:
    import torch

    from jdrl.reblur import isotropic_reblur
    from jdrl.reblur.kernels import ring_reblur, split_seeds

    torch.manual_seed(0)
    make = lambda *shape: torch.rand(*shape, device=device, requires_grad=True)  # noqa: E731
    image, seeds = make(1, 3, size, size), make(1, 35, size, size)
    weights = torch.softmax(torch.randn(1, 8, size, size, device=device), 1).requires_grad_(True)

    def step():
        if impl.startswith("ring-"):  # ring-shift, ring-conv: one way of summing the rings, whatever the device
            out = ring_reblur(image, split_seeds(seeds), weights, support, sums=impl.split("-", 1)[1])
        else:
            out = isotropic_reblur(image, seeds, weights, impl=impl, support=support)
        out.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    if what == "memory":
        if device == "cuda":
            step()  # warm-up (kernels, allocator)
            for t in (image, seeds, weights):
                t.grad = None
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            return {"peak_bytes": torch.cuda.max_memory_allocated() - base}
        with PeakRSS() as rss:
            step()
        return {"peak_bytes": rss.growth}
    step()  # warm-up
    times = []
    for _ in range(repeats):
        for t in (image, seeds, weights):
            t.grad = None
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times)}


def _worker(impl: str, size: int, device: str, repeats: int, support: str, what: str) -> dict:
    command = [sys.executable, __file__, "--worker", impl, str(size), device, str(repeats), support, what]
    # memory: make glibc map/unmap large blocks so the resident size follows the live tensors
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072") if what == "memory" else None
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_isolated(impl: str, size: int, device: str, repeats: int, support: str) -> dict:
    """Time and memory of one configuration, each from a fresh process."""
    return {**_worker(impl, size, device, repeats, support, "time"), **_worker(impl, size, device, 1, support, "memory")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--support", default="square", choices=["square", "disk"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--sums", nargs="+", default=["auto"], choices=["auto", "shift", "conv"],
                        help="how the ring form sums its rings (default: auto = shift on CPU, conv on CUDA)")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, size, device, repeats, support, what = args.worker
        print(json.dumps(measure(impl, int(size), device, int(repeats), support, what)))
        return

    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"# reblurring, forward + backward, batch 1, support {args.support}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print("| device | size | ring sums | direct s | ring s | speed-up | direct peak MB | ring peak MB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    mb = lambda r: r["peak_bytes"] / 2**20  # noqa: E731
    for device in devices:
        for size in args.sizes:
            direct = run_isolated("direct", size, device, args.repeats, args.support)
            for sums in args.sums:
                ring = run_isolated("ring" if sums == "auto" else f"ring-{sums}", size, device, args.repeats,
                                    args.support)
                shown = sums if sums != "auto" else f"auto ({'conv' if device.startswith('cuda') else 'shift'})"
                print(f"| {device} | {size} | {shown} | {direct['seconds']:.3f} | {ring['seconds']:.4f} | "
                      f"{direct['seconds'] / ring['seconds']:.1f}x | {mb(direct):.0f} | {mb(ring):.0f} | "
                      f"{mb(direct) / max(mb(ring), 1e-9):.1f}x |", flush=True)


if __name__ == "__main__":
    main()
