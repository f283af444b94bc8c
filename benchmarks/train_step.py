"""Seconds per training step: plain pixel loss vs JDRL, same network, crop and batch (target: <= 1.6x).

    python benchmarks/train_step.py                       # full-width UNet, crop 256, batch 1, CPU
    python benchmarks/train_step.py --device cuda --amp bf16
    python benchmarks/train_step.py --width 0.25 --crop 128 --steps 5

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


def time_steps(net, loss_fn, blur, sharp, stage: str, steps: int, amp: str | None) -> float:
    params = [*net.parameters(), *loss_fn.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-6)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    times = []
    for index in range(steps + 1):
        if blur.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=blur.device.type, dtype=dtype, enabled=dtype is not None):
            restored = net(blur)
        total, _ = loss_fn(restored, blur, sharp, stage=stage)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if blur.is_cuda:
            torch.cuda.synchronize()
        if index:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    parser.add_argument("--flow", default="dis")
    parser.add_argument("--flow-weights")
    args = parser.parse_args()

    torch.manual_seed(0)
    options = {"width": args.width} if args.net == "unet" else {}
    net = create_net(args.net, **options).to(args.device).train()
    blur, sharp = make_batch(args.crop, args.batch, args.device)
    rows = []
    configs = {
        "pixel": (JDRLConfig(objective="pixel"), "full"),
        "jdrl (warm-up stage)": (JDRLConfig(flow=args.flow, flow_weights=args.flow_weights), "warmup"),
        "jdrl (full objective)": (JDRLConfig(flow=args.flow, flow_weights=args.flow_weights), "full"),
    }
    for name, (config, stage) in configs.items():
        loss_fn = JDRLLoss(config).to(args.device)
        rows.append((name, time_steps(net, loss_fn, blur, sharp, stage, args.steps, args.amp)))
    base = rows[0][1]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"# {args.net} width {args.width}, crop {args.crop}, batch {args.batch}, flow {args.flow}, "
          f"amp {args.amp or 'off'}; {device}; torch {torch.__version__}")
    print("| objective | s / step | vs pixel |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
