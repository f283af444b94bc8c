"""Every name-to-implementation choice is a registry: each lists its names, an unknown name is one line naming
the choices, a registered name is a valid config value by itself; the Charbonnier function and module agree."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from jdrl.cli import COMMANDS
from jdrl.config import from_dict
from jdrl.errors import ConfigError, UnknownNameError
from jdrl.flow.mask import MASKS, calibration_mask
from jdrl.losses import OBJECTIVES, CharbonnierLoss, JDRLConfig, JDRLLoss, Objective, charbonnier, charbonnier_loss
from jdrl.reblur import REBLUR_IMPLEMENTATIONS, REBLUR_KERNELS, ReblurModule
from jdrl.registry import Registry
from jdrl.training.config import TrainConfig
from jdrl.training.runlog import LOGGERS, check_loggers
from jdrl.vocabulary import MASK_MODES

REGISTRIES = {
    "objective": (OBJECTIVES, ["jdrl", "pixel", "cobi"]),
    "calibration mask": (MASKS, ["reference", "paper", "parametric", "none"]),
    "reblur kernel": (REBLUR_KERNELS, ["isotropic", "free", "single", "single_free"]),
    "reblur implementation": (REBLUR_IMPLEMENTATIONS, ["ring", "direct", "compiled"]),
    "logger": (LOGGERS, ["tensorboard", "wandb", "mlflow"]),
    "command": (COMMANDS, ["demo", "synth", "prepare", "data", "train", "eval", "deblur", "plot", "export", "nets",
                           "flows", "presets"]),
}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_each_registry_lists_its_names_in_their_order(kind):
    registry, names = REGISTRIES[kind]
    assert registry.kind == kind
    assert registry.names() == names and list(registry) == names and len(registry) == len(names)
    assert all(name in registry for name in names) and "nope" not in registry


@pytest.mark.parametrize("kind", REGISTRIES)
def test_an_unknown_name_is_one_line_naming_the_choices(kind):
    registry, names = REGISTRIES[kind]
    with pytest.raises(UnknownNameError) as error:
        registry.get("nope")
    assert str(error.value) == f"unknown {kind} 'nope'; choose one of: {', '.join(names)}"
    assert isinstance(error.value, ValueError) and isinstance(error.value, KeyError)  # a bad value, a missing key


def test_the_torch_free_mask_names_of_the_cli_are_the_registry_s():
    assert tuple(MASKS) == MASK_MODES


def test_listing_the_commands_imports_none_of_them_nor_torch():
    code = ("import sys; from jdrl.cli import COMMANDS; print(COMMANDS.names()[0], "
            "any(m.startswith('jdrl.cli.') for m in sys.modules), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["demo", "False", "False"]
    assert COMMANDS.get("nets").__name__ == "jdrl.cli.nets"  # an entry is the command's module


def test_lazy_entries_are_imported_on_lookup_and_can_name_an_attribute():
    registry: Registry = Registry("thing", lazy={"dumps": "json:dumps", "module": "json"}, sort=False)
    assert registry.names() == ["dumps", "module"]
    import json

    assert registry.get("dumps") is json.dumps and registry.get("module") is json


@pytest.mark.parametrize(("key", "value", "names"), [
    ("objective", "nope", "'jdrl', 'pixel', 'cobi'"),
    ("mask", "magic", "'reference', 'paper', 'parametric', 'none'"),
    ("reblur", "blurry", "'isotropic', 'free', 'single', 'single_free', 'none'"),
    ("reblur_impl", "fast", "'ring', 'direct', 'compiled'"),
])
def test_a_config_names_its_registry_s_choices(key, value, names):
    with pytest.raises(ConfigError) as error:
        from_dict(TrainConfig, {"loss": {key: value}})
    assert str(error.value) == f"loss.{key}: {value!r} is not one of {names}"
    with pytest.raises(ConfigError, match=f"{key}: {value!r} is not one of {names}"):  # built in Python
        JDRLLoss(JDRLConfig(**{key: value}))


def test_an_unknown_logger_lists_the_registry_s_names():
    with pytest.raises(ConfigError, match="^run.loggers: unknown logger 'comet'; choose from: tensorboard, wandb, mlflow"):
        check_loggers(["comet"])


def _register(monkeypatch, registry: Registry, name: str, entry, **info) -> None:
    """``registry.register(name)(entry)`` for one test only."""
    registry.names()  # loaded first, so the entry stays after the test's end is undone
    monkeypatch.setitem(registry._entries, name, entry)
    monkeypatch.setitem(registry._info, name, info)


def test_a_registered_mask_is_a_valid_loss_mask_and_is_used(monkeypatch):
    def keep_left(flow, lam=0.35):
        mask = torch.zeros_like(flow[:, :1])
        mask[..., : flow.shape[-1] // 2] = 1.0
        return mask

    _register(monkeypatch, MASKS, "left_test", keep_left)
    config = from_dict(JDRLConfig, {"mask": "left_test"})
    assert calibration_mask(torch.zeros(1, 2, 4, 4), config.mask).mean().item() == 0.5
    with pytest.raises(ConfigError, match="'left_test': got an unexpected keyword argument 'model'"):
        calibration_mask(torch.zeros(1, 2, 4, 4), "left_test", model="affine")


def test_a_registered_mask_with_options_takes_loss_mask_options(monkeypatch):
    def keep_side(flow, lam=0.35, side="left"):
        mask = torch.zeros_like(flow[:, :1])
        half = flow.shape[-1] // 2
        (mask[..., :half] if side == "left" else mask[..., half:]).fill_(1.0)
        return mask

    _register(monkeypatch, MASKS, "side_test", keep_side)
    config = from_dict(JDRLConfig, {"mask": "side_test", "mask_options": {"side": "right"}})
    assert config.conflicts() == []
    loss = JDRLLoss(config, flow=lambda a, b: torch.zeros_like(a[:, :2]))
    assert loss._mask(torch.zeros(1, 2, 4, 4))[..., 2:].all()
    with pytest.raises(ConfigError, match="loss.mask=side_test takes side, not top"):
        JDRLLoss(JDRLConfig(mask="side_test", mask_options={"top": 1}))
    with pytest.raises(ConfigError, match=r"mask_options are for a mask with options \(parametric, side_test\)"):
        JDRLLoss(JDRLConfig(mask="paper", mask_options={"side": "right"}))


def test_a_registered_objective_is_a_valid_loss_objective(monkeypatch):
    class L1(Objective):
        def deblur_loss(self, loss, output, blurry, sharp, stage):
            return (output - sharp).abs().mean()

    _register(monkeypatch, OBJECTIVES, "l1_test", L1)
    loss = JDRLLoss(from_dict(JDRLConfig, {"objective": "l1_test"}))
    assert loss.flow is None and loss.reblur is None and loss.cobi is None  # it uses neither flow nor R
    x, y = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.25)
    total, parts = loss(x, x, y)
    assert total.item() == pytest.approx(0.25) and set(parts) == {"total", "deblur"}


def test_the_built_in_objectives_use_the_parts_they_did():
    assert OBJECTIVES.get("jdrl").deforms and OBJECTIVES.get("jdrl").reblurs
    for name in ("pixel", "cobi"):
        assert not OBJECTIVES.get(name).deforms and not OBJECTIVES.get(name).reblurs
    assert JDRLLoss(JDRLConfig(objective="pixel")).cobi is None
    assert JDRLLoss(JDRLConfig(objective="cobi")).cobi is not None


def test_reblur_kernels_declare_their_branches():
    for name in REBLUR_KERNELS:
        module = ReblurModule(name, features=4)
        assert module.kpn.out.out_channels == REBLUR_KERNELS.info(name)["channels"]
        assert hasattr(module, "kernel_map_gene") == REBLUR_KERNELS.info(name)["blend"]
    with pytest.raises(ValueError, match="unknown reblur implementation 'fast'"):
        ReblurModule(impl="fast")


def test_charbonnier_function_and_module_agree():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=generator, requires_grad=True)
    y = torch.rand(2, 3, 16, 16, generator=generator)
    for eps in (1e-3, 0.1):
        by_function = charbonnier_loss(x, y, eps)
        (grad_function,) = torch.autograd.grad(by_function, x)
        by_module = CharbonnierLoss(eps)(x, y)
        (grad_module,) = torch.autograd.grad(by_module, x)
        assert torch.equal(by_function, by_module) and torch.equal(grad_function, grad_module)
        assert by_function.item() == pytest.approx(torch.sqrt((x - y) ** 2 + eps**2).mean().item())
    assert charbonnier is charbonnier_loss and charbonnier_loss(x, y).item() == CharbonnierLoss()(x, y).item()
    assert list(CharbonnierLoss().parameters()) == [] and "eps=0.001" in repr(CharbonnierLoss())
