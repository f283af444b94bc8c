"""``jdrl nets``: the deblurring networks jdrl can train and run."""

from __future__ import annotations

import argparse

HELP = "list the deblurring networks (parameters at default options, input size multiple)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the listing is always complete."""


def run(args: argparse.Namespace) -> int:
    import torch

    from jdrl.nets import count_parameters, create_net, net_names

    for name in net_names():
        # Built on the meta device: shapes only, no memory and no initialisation cost.
        with torch.device("meta"):
            net = create_net(name)
        print(f"{name:<8} {count_parameters(net):>12,} parameters   input H, W multiples of {net.size_multiple}")
    return 0
