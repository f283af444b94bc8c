"""``jdrl nets``: the deblurring networks jdrl can train and run (plugins included)."""

from __future__ import annotations

import argparse

from jdrl.models import DEFAULT_MODEL, MODELS, model_id

HELP = ("list the deblurring networks (parameters, MACs at 256x256, input size multiple, tiling of jdrl deblur) "
        "and the bundled models")
MACS_SIDE = 256  # px: the image side at which MACs are counted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-macs", action="store_true", help="skip counting multiply-accumulates (faster)")


def count_macs(net, side: int = MACS_SIDE) -> int:
    """Multiply-accumulates of one forward at ``side`` x ``side`` (PyTorch's FLOP counter; FLOPs / 2).

    The network lives on the meta device: the counter sees every operation and its shapes, no value is computed.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    multiple = net.size_multiple
    side = -(-side // multiple) * multiple
    with torch.device("meta"), FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.empty(1, 3, side, side))
    return counter.get_total_flops() // 2


def run(args: argparse.Namespace) -> int:
    import torch

    from jdrl.nets import count_parameters, create_net, net_names
    from jdrl.nets.tiling import tile_hint

    print(f"{'name':<16} {'parameters':>12} {'GMACs@256²':>11}   {'multiple of':<12} deblur tile / overlap (CPU)")
    for name in net_names():
        with torch.device("meta"):  # shapes only: no memory and no initialisation cost
            net = create_net(name).eval()
        macs = "" if args.no_macs else f"{count_macs(net) / 1e9:.1f}"
        hint = tile_hint(net)
        print(f"{name:<16} {count_parameters(net):>12,} {macs:>11}   {net.size_multiple:<12} "
              f"{hint.tile} / {hint.overlap}")
    print_models()
    return 0


def print_models() -> None:
    """The models that ship with jdrl (:mod:`jdrl.models`): read with --checkpoint jdrl:NAME."""

    print("\nbundled models (--checkpoint jdrl:NAME; create_net(checkpoint=\"jdrl:NAME\")):")
    for name, model in MODELS.items():
        default = "  [default of jdrl deblur, start of jdrl demo]" if name == DEFAULT_MODEL else ""
        print(f"{model_id(name):<24} {model.network}{default}\n{'':<24} {model.summary}")
