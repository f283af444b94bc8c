"""``jdrl export``: a checkpoint's network as an ONNX model, verified with onnxruntime."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint's network to ONNX (dynamic batch/height/width), verified with onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a jdrl checkpoint or an authors' released file")
    parser.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    parser.add_argument("--net", help="network name, to check the checkpoint or pick one in a released file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    parser.add_argument("--height", type=int, default=256, help="example height used for tracing (default: %(default)s)")
    parser.add_argument("--width", type=int, default=256, help="example width used for tracing (default: %(default)s)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jdrl.export import export_onnx
    from jdrl.nets import count_parameters, create_net, describe

    net = create_net(args.net, checkpoint=args.checkpoint)
    info = describe(net).as_dict()
    metadata = {"jdrl.net": info["name"], "jdrl.options": repr(info["options"]), "jdrl.source": info["source"]}
    verification = export_onnx(net, args.out, args.height, args.width, args.opset, metadata, verify=not args.no_verify)
    size_mb = Path(args.out).expanduser().stat().st_size / 2**20
    parameters = count_parameters(net) / 1e6
    print(f"exported {info['name']} ({parameters:.1f}M parameters) to {args.out} ({size_mb:.1f} MB, opset {args.opset})")
    print(f"  traced at {args.height}x{args.width}; batch, height and width are dynamic "
          f"(height and width multiples of {net.size_multiple})")
    print(f"  {verification}")
    return 0
