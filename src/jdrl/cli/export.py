"""``jdrl export``: a checkpoint's network as an ONNX model (verified with onnxruntime) or a safetensors folder."""

from __future__ import annotations

import argparse

from jdrl.cli.arguments import add_trust_code, int_in, side_in_px
from jdrl.errors import UsageError
from jdrl.files import real_path

HELP = ("export a checkpoint's network to ONNX (dynamic batch/height/width, verified with onnxruntime) or to a "
        "shareable safetensors model folder")
FORMATS = ("onnx", "safetensors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a jdrl checkpoint, a model folder, a .safetensors file, hf:ORG/NAME[@REV] "
                                           "or an authors' released file")
    parser.add_argument("-o", "--out", required=True,
                        help="the .onnx file to write; with --format safetensors the model folder "
                             "(config.json + model.safetensors)")
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx: one .onnx file; safetensors: a folder any --checkpoint / net.init / hf: id "
                             "reads, without pickle (default: %(default)s)")
    parser.add_argument("--net", help="network name, to check the checkpoint or pick one in a released file")
    add_trust_code(parser)
    parser.add_argument("--no-ema", action="store_true",
                        help="export the trained weights, not their moving average (checkpoints of runs with "
                             "run.ema_decay keep both; the average is exported by default)")
    parser.add_argument("--opset", type=int_in(7, 23), default=18,
                        help="ONNX opset (default: %(default)s; the dynamo exporter writes 18 or newer)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="auto (default): torch.onnx's dynamo exporter, the TorchScript one if that fails")
    parser.add_argument("--height", type=side_in_px, default=256, help="example height used for tracing (default: %(default)s)")
    parser.add_argument("--width", type=side_in_px, default=256, help="example width used for tracing (default: %(default)s)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the check (onnxruntime comparison; reading the safetensors folder back)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: refuse)")


def refuse_existing_output(args: argparse.Namespace) -> None:
    """Never write over the checkpoint read, and over an existing model only with ``--overwrite`` (checked first)."""
    from pathlib import Path


    out = Path(args.out).expanduser()
    source = Path(args.checkpoint).expanduser()
    if source.exists() and (real_path(out) == real_path(source) or real_path(source).is_relative_to(real_path(out))):
        raise UsageError(f"-o {args.out} is the checkpoint being exported (or holds it); choose another --out")
    if args.format == "safetensors":
        if out.exists() and not out.is_dir():
            raise UsageError(f"-o {args.out} is a file; --format safetensors writes a folder")
        existing = [out / name for name in ("config.json", "model.safetensors") if (out / name).exists()]
    else:
        if out.is_dir():
            raise UsageError(f"-o {args.out} is a folder; give the .onnx file to write")
        existing = [out] if out.exists() else []
    if existing and not args.overwrite:
        raise UsageError(f"{existing[0]} exists; choose another --out, or pass --overwrite to replace it")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jdrl.export import export_onnx, export_safetensors, load_export_net
    from jdrl.nets import count_parameters, describe

    refuse_existing_output(args)
    net, ema = load_export_net(args.checkpoint, args.net, ema=not args.no_ema, trust_code=args.trust_code)
    info = describe(net).as_dict()
    parameters = count_parameters(net) / 1e6
    weights = "EMA weights, " if ema else ""
    if args.format == "safetensors":
        result = export_safetensors(net, args.out, ema=ema, verify=not args.no_verify)
        size_mb = sum(p.stat().st_size for p in result.folder.iterdir() if p.is_file()) / 2**20
        print(f"exported {info['name']} ({weights}{parameters:.1f}M parameters) to {result.folder}/ "
              f"(config.json + model.safetensors, {size_mb:.1f} MB)")
        print(f"  {result}")
        print(f"  use it with --checkpoint {result.folder}, or upload the folder to the Hub and use hf:ORG/NAME")
        return 0
    metadata = {"jdrl.net": info["name"], "jdrl.options": repr(info["options"]), "jdrl.source": info["source"]}
    verification = export_onnx(net, args.out, args.height, args.width, args.opset, metadata, verify=not args.no_verify,
                               exporter=args.exporter)
    size_mb = Path(args.out).expanduser().stat().st_size / 2**20
    print(f"exported {info['name']} ({weights}{parameters:.1f}M parameters) to {args.out} "
          f"({size_mb:.1f} MB, {verification.exporter or args.exporter} exporter)")
    print(f"  traced at {args.height}x{args.width}; batch, height and width are dynamic "
          f"(height and width multiples of {net.size_multiple})")
    print(f"  {verification}")
    return 0
