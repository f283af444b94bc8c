"""``jdrl flows``: the optical-flow estimators and what each needs."""

from __future__ import annotations

import argparse

HELP = "list the optical-flow estimators"

NOTES = {
    "dis": "OpenCV Dense Inverse Search; classical, no weights (the default)",
    "spynet": "SpyNet; weights=PATH in BasicSR layout (e.g. spynet_sintel_final.pth)",
    "raft_small": "torchvision RAFT-small; weights=PATH or 'default' (torchvision's cache)",
    "raft_large": "torchvision RAFT-large; weights=PATH or 'default' (torchvision's cache)",
    "pwcnet": "PWC-Net as the paper used it; weights=PATH (the authors' file, pure-PyTorch cost volume)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from jdrl.flow import flow_names

    for name in flow_names():
        print(f"{name:11s} {NOTES.get(name, '')}")
    return 0
