"""Seconds per training step: plain pixel loss vs JDRL, same network, crop and batch (target: <= 1.6x).

    python benchmarks/train_step.py                       # full-width UNet, crop 256, batch 1, CPU
    python benchmarks/train_step.py --device cuda --amp bf16 --flow auto --batch 4 --crop 512
    python benchmarks/train_step.py --width 0.25 --crop 128 --steps 5
    python benchmarks/train_step.py --profile             # where the time goes, per part of the step

JDRL is measured in its full stage (two flow estimations, two warps, the masks
and the reblurring module, forward and backward) and in its warm-up stage.
Each row is the median of ``--steps`` optimizer steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def make_batch(crop: int, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    from jdrl.data.synthetic import SynthParams
    from jdrl.data.datasets import SyntheticPairs

    pairs = SyntheticPairs(batch, SynthParams(size=crop), seed=0, warn=lambda message: None)  # timing: any photo will do
    items = [pairs[i] for i in range(batch)]
    return (torch.stack([i["blur"] for i in items]).to(device), torch.stack([i["sharp"] for i in items]).to(device))


# the parts of a step the objective labels with torch.autograd.profiler.record_function (forward only)
PARTS = ("jdrl.network", "jdrl.flow", "jdrl.warp", "jdrl.mask", "jdrl.reblur_net", "jdrl.reblur_sums")


def _sync(tensor: torch.Tensor) -> None:
    if tensor.is_cuda:
        torch.cuda.synchronize()


def one_step(net, loss_fn, optimizer, blur, sharp, stage: str, dtype, clock: dict | None = None) -> None:
    """One optimizer step; ``clock`` (if given) receives the seconds of backward and optimizer."""
    from torch.autograd.profiler import record_function

    with torch.autocast(device_type=blur.device.type, dtype=dtype, enabled=dtype is not None):
        with record_function("jdrl.network"):
            restored = net(blur)
    total, _ = loss_fn(restored, blur, sharp, stage=stage)
    optimizer.zero_grad(set_to_none=True)
    _sync(blur)
    start = time.perf_counter()
    total.backward()
    _sync(blur)
    middle = time.perf_counter()
    optimizer.step()
    _sync(blur)
    if clock is not None:
        clock["backward"] = clock.get("backward", 0.0) + middle - start
        clock["optimizer"] = clock.get("optimizer", 0.0) + time.perf_counter() - middle


def time_steps(net, loss_fn, blur, sharp, stage: str, steps: int, amp: str | None) -> tuple[float, int | None]:
    """Median seconds per step after one warm-up step, and the peak CUDA memory of a step (bytes; None on the CPU)."""
    params = [*net.parameters(), *loss_fn.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-6)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    times = []
    for index in range(steps + 1):
        if index == 1 and blur.is_cuda:
            torch.cuda.reset_peak_memory_stats()
        _sync(blur)
        start = time.perf_counter()
        one_step(net, loss_fn, optimizer, blur, sharp, stage, dtype)
        if index:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if blur.is_cuda else None
    return statistics.median(times), peak


def profile_steps(net, loss_fn, blur, sharp, stage: str, steps: int, amp: str | None) -> dict[str, float]:
    """Seconds per step of each labelled part (forward), backward, optimizer and the rest."""
    from torch.profiler import ProfilerActivity, profile

    optimizer = torch.optim.Adam([*net.parameters(), *loss_fn.parameters()], lr=1e-6)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    one_step(net, loss_fn, optimizer, blur, sharp, stage, dtype)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if blur.is_cuda else [])
    clock: dict[str, float] = {}
    _sync(blur)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            one_step(net, loss_fn, optimizer, blur, sharp, stage, dtype, clock)
    _sync(blur)
    total = (time.perf_counter() - start) / steps
    found = {event.key: event for event in prof.key_averages()}
    parts = {}
    for name in PARTS:
        event = found.get(name)
        if event is not None:  # device time on CUDA (the kernels), wall time of the region on the CPU
            micros = getattr(event, "device_time_total", 0) if blur.is_cuda else event.cpu_time_total
            parts[name.removeprefix("jdrl.")] = micros / 1e6 / steps
    parts["backward"] = clock.get("backward", 0.0) / steps
    parts["optimizer"] = clock.get("optimizer", 0.0) / steps
    parts["other"] = max(total - sum(parts.values()), 0.0)
    parts["total"] = total
    return parts


def main() -> None:
    from jdrl.losses import JDRLConfig, JDRLLoss
    from jdrl.nets import create_net

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="unet")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"])
    parser.add_argument("--flow", default="dis", help="dis, auto (RAFT-small on CUDA), spynet, ...")
    parser.add_argument("--flow-weights")
    parser.add_argument("--reblur-impl", default="ring", choices=["ring", "direct", "compiled"])
    parser.add_argument("--reblur-amp", action="store_true", help="bf16 for R's networks on CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile the deblurring network")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also print where the time of a step goes")
    parser.add_argument("--options", default="{}", help="network options as YAML, e.g. '{width: 16}'")
    args = parser.parse_args()

    import yaml

    torch.manual_seed(0)
    options = {"width": args.width} if args.net == "unet" else {}
    options.update(yaml.safe_load(args.options) or {})
    net = create_net(args.net, **options).to(args.device).train()
    if args.channels_last:
        net.to(memory_format=torch.channels_last)
    forward = torch.compile(net) if args.compile else net
    blur, sharp = make_batch(args.crop, args.batch, args.device)
    jdrl = dict(flow=args.flow, flow_weights=args.flow_weights, reblur_impl=args.reblur_impl, reblur_amp=args.reblur_amp)
    configs = {
        "pixel": (JDRLConfig(objective="pixel"), "full"),
        "jdrl (warm-up stage)": (JDRLConfig(**jdrl), "warmup"),
        "jdrl (full objective)": (JDRLConfig(**jdrl), "full"),
    }
    rows, losses = [], {}
    for name, (config, stage) in configs.items():
        losses[name] = loss_fn = JDRLLoss(config, device=args.device).to(args.device)
        rows.append((name, *time_steps(forward, loss_fn, blur, sharp, stage, args.steps, args.amp)))
    _, base, base_peak = rows[0]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"# {args.net} {options}, crop {args.crop}, batch {args.batch}, flow {args.flow}, reblur {args.reblur_impl}"
          f"{' (bf16 nets)' if args.reblur_amp else ''}, amp {args.amp or 'off'}, compile {args.compile}, "
          f"channels_last {args.channels_last}; {device}; torch {torch.__version__}")
    print("| objective | s / step | vs pixel | peak GPU MB | vs pixel |")
    print("|---|---|---|---|---|")
    for name, seconds, peak in rows:
        memory = f"{peak / 2**20:.0f} | {peak / base_peak:.2f}x" if peak else "not measured (CPU) | -"
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f}x | {memory} |")
    if args.profile:
        print("\n| part (s / step) | " + " | ".join(configs) + " |")
        print("|---|" + "---|" * len(configs))
        profiles = {name: profile_steps(forward, losses[name], blur, sharp, stage, args.steps, args.amp)
                    for name, (_, stage) in configs.items()}
        keys = [k for k in ("network", "flow", "warp", "mask", "reblur_net", "reblur_sums", "backward", "optimizer",
                            "other", "total")]
        for key in keys:
            print(f"| {key} | " + " | ".join(f"{profiles[n].get(key, 0.0):.4f}" for n in configs) + " |")


if __name__ == "__main__":
    main()
