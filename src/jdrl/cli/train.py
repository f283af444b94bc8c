"""``jdrl train``: train a deblurring network with JDRL (or a pixel loss, or any ablation)."""

from __future__ import annotations

import argparse

from jdrl.errors import UsageError

HELP = "train a network (CONFIG is a preset name or a YAML file; see jdrl presets)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="preset name (jdrl presets) or YAML path")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. -o optim.lr=1e-4 -o data.train.root=DPDD (repeatable)")
    parser.add_argument("--run-dir", help="output folder (default: runs/CONFIG-TIMESTAMP)")
    parser.add_argument("--resume", metavar="auto|PATH", help="continue from the newest checkpoint of --run-dir, or PATH")
    parser.add_argument("--init", metavar="CKPT", help="start from a checkpoint: ours or the authors' (sets net.init)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in a --run-dir that holds one, replacing its checkpoints and logs")
    parser.add_argument("--trust-code", action="store_true",
                        help="let CONFIG or the --init file name a network as code (package.module:Class) to import; "
                             "without it only a name typed with -o net.name=... is imported")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from jdrl.checkpoint import selected_checkpoint
    from jdrl.config import dump_yaml, refuse_repeated_overrides
    from jdrl.training import default_run_dir, load_train_config, train

    overrides = list(args.override) + ([f"net.init={args.init}"] if args.init else [])
    refuse_repeated_overrides(overrides)
    config = load_train_config(args.config, overrides, args.trust_code)
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    if args.resume and not args.run_dir and args.resume == "auto":
        raise UsageError("--resume auto needs --run-dir (the folder of the run to continue)")
    if args.resume and args.overwrite:
        raise UsageError("--overwrite starts a run afresh; it does not go with --resume")
    run_dir = args.run_dir or default_run_dir(args.config)
    folder = train(config, run_dir=run_dir, resume=args.resume, quiet=args.quiet, overwrite=args.overwrite,
                   trust_code=args.trust_code)
    checkpoints = [name for name in ("last.pt", "best.pt") if (folder / name).is_file()]
    logs = [name for name in ("log.csv", "val.csv", "tensorboard") if (folder / name).exists()]
    print(f"done: {folder} (checkpoints: {', '.join(checkpoints) or 'none'}; logs: {', '.join(logs) or 'none'})")
    print(f"result (run.select={config.run.select}): {selected_checkpoint(folder, config.run.select)}")
    return 0
