"""Validation during training: the evaluation protocol on the validation set, its sample pictures,
and which score picks ``best.pt`` (``schedule.best_metric``, ``run.select``)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from jdrl.errors import ConfigError
from jdrl.evaluation import protocol
from jdrl.evaluation.protocol import METRIC_COLUMNS
from jdrl.flow import resolve_flow
from jdrl.losses import JDRLLoss
from jdrl.training.config import TrainConfig

SAMPLE_SIDE = 256  # px, longer side of each validation image shown in TensorBoard
# left to right in each row of TensorBoard's "val/samples" (the aligned truth on synthetic data only)
SAMPLE_PANELS = ("input", "output", "GT", "aligned truth", "deformed GT", "calibration mask", "flow output->GT")
LOWER_IS_BETTER = ("mae", "lpips", "flow_error")  # prefixes of the validation columns where less wins


def check_selection(config: TrainConfig, val_set: Dataset | None) -> None:
    """``schedule.best_metric`` names a validation column, and ``run.select=best`` has a validation set."""
    key = config.schedule.best_metric
    if key != "auto" and key not in METRIC_COLUMNS:
        raise ConfigError(f"schedule.best_metric={key!r} is not a validation column; "
                          f"choose auto or one of: {', '.join(METRIC_COLUMNS)}")
    if config.run.select == "best" and val_set is None:
        raise ConfigError("run.select=best needs a validation set (data.val or data.synthetic.val)")


def validation_flow(config: TrainConfig, loss: JDRLLoss, device: torch.device) -> nn.Module:
    """The flow estimator validation measures with: ``run.val_flow``, else the loss's own, else ``loss.flow``'s."""
    flow = loss.flow if config.run.val_flow is None else resolve_flow(config.run.val_flow, None, device)[0]
    return flow if flow is not None else resolve_flow(config.loss.flow, config.loss.flow_weights, device)[0]


def score(config: TrainConfig, val_set: Dataset, net: nn.Module, flow: nn.Module, device: torch.device
          ) -> tuple[dict, torch.Tensor | None]:
    """The protocol's means on (the first ``data.val_limit`` items of) ``val_set`` and the sample grid."""
    if config.data.val_limit:
        val_set = Subset(val_set, range(min(config.data.val_limit, len(val_set))))  # type: ignore[arg-type]
    samples: list[dict[str, torch.Tensor]] = []

    def keep_sample(name: str, panels: dict[str, torch.Tensor]) -> None:
        if len(samples) < config.run.samples:
            samples.append(panels)

    result = protocol.evaluate(val_set, net,  # type: ignore[arg-type]  # items are mappings (PairedImageDataset) flow=flow, device=device, tile=config.run.val_tile,
                      on_image=keep_sample if config.run.samples else None, panel_size=SAMPLE_SIDE,
                      mask_mode=config.loss.mask)
    return result.means, sample_grid(samples)


def best_key(config: TrainConfig, means: dict) -> str | None:
    """The column ``schedule.best_metric`` names (``auto``: the first of the PSNRs this validation measured)."""
    key = config.schedule.best_metric
    if key == "auto":
        return next((k for k in ("psnr_aligned", "psnr_deformed", "psnr") if k in means), None)
    return key


def improves(key: str, value: float, best: float | None) -> bool:
    """Whether ``value`` of column ``key`` beats the best so far (``None``: nothing kept yet)."""
    return best is None or (value < best if key.startswith(LOWER_IS_BETTER) else value > best)


def measured(key: str | None, means: dict) -> float | None:
    """The finite value of ``key`` in ``means``, else ``None``."""
    value = means.get(key) if key else None
    return value if value is not None and math.isfinite(value) else None


def sample_grid(samples: list[dict[str, torch.Tensor]]) -> torch.Tensor | None:
    """One row per validation image: its panels (those of ``SAMPLE_PANELS`` it has) side by side, zero-padded."""
    if not samples:
        return None
    rows = [torch.cat([panels[name] for name in SAMPLE_PANELS if name in panels], dim=-1) for panels in samples]
    height, width = max(r.shape[-2] for r in rows), max(r.shape[-1] for r in rows)
    return torch.stack([nn.functional.pad(r, (0, width - r.shape[-1], 0, height - r.shape[-2])) for r in rows])
