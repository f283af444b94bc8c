"""The README's promises that can be run: its library example and its command table."""

import re
from pathlib import Path

import torch

from jdrl.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_training_loop_example_runs_and_trains_the_reblur_module_too():
    (example,) = [block for block in _python_blocks() if "JDRLLoss" in block]
    # the same code, made small: a narrow UNet, 16 epochs (15 warm-up + 1 full) of one batch
    example = example.replace('create_net("unet")', 'create_net("unet", width=0.0625)').replace("range(100)", "range(16)")
    generator = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 3, 64, 64, generator=generator)
    blurry = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1)
    namespace = {"loader": [(blurry, sharp.roll(2, dims=-1))]}
    exec(compile(example, str(README), "exec"), namespace)
    parts, reblur = namespace["parts"], namespace["loss_fn"].reblur
    assert torch.isfinite(namespace["loss"]) and "reblur" in " ".join(parts)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in reblur.parameters())


def test_every_command_in_the_table_exists():
    table = README.read_text().split("## Commands", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"^\| `jdrl (\w+)", table, flags=re.M))
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert named and named <= commands, named - commands


def test_the_command_line_answers_help_without_importing_torch():
    import subprocess
    import sys

    code = "import sys; from jdrl.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
