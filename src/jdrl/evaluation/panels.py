"""What an evaluation shows, never what it scores: the labelled pictures of each image and who gets them.

:class:`Display` gathers :func:`~jdrl.evaluation.evaluate`'s display-only arguments (kept thumbnails, a
per-image callback, picture sizes, the calibration-mask rule drawn); the panel pictures are made here
(``input``, ``output``, ``GT``, ``deformed GT``, ``calibration mask``, ``flow output->GT`` and, on synthetic
data, ``aligned truth``). The scores of an evaluation are the same whatever its display.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jdrl.config import PIXELS, ranged
from jdrl.errors import ConfigError
from jdrl.flow.mask import calibration_mask
from jdrl.flow.viz import flow_to_color
from jdrl.vocabulary import MASK_MODES

__all__ = ["PANEL_SIDE", "Display", "PanelCallback", "make_panels", "thumbnail"]

PANEL_SIDE = 384  # px, the longer side of each picture in reports and strips
PanelCallback = Callable[[str, dict[str, torch.Tensor]], None]


def _shrink(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """``(3, H, W)`` downscaled (antialiased) so its longer side is at most ``max_side``; as is for ``None``."""
    height, width = image.shape[-2:]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def thumbnail(image: torch.Tensor, max_side: int = PANEL_SIDE) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1] -> uint8 ``(3, h, w)`` with ``max(h, w) <= max_side`` (antialiased)."""
    return (_shrink(image, max_side).clamp(0, 1) * 255).round().to(torch.uint8)


def make_panels(blur, output, gt, deformed, flow, aligned, max_side: int | None = None,
                mask_mode: str = "reference") -> dict[str, torch.Tensor]:
    """Labelled display images ``(3, H, W)`` float in [0, 1] on the CPU, for reports.

    With ``max_side`` they are downscaled on the compute device first, so a 4K
    image costs a few MB of host memory instead of hundreds.
    """

    mask = calibration_mask(flow, mask_mode)[0].expand(3, -1, -1)
    panels = {
        "input": blur[0],
        "output": output[0],
        "GT": gt[0],
        "deformed GT": deformed[0],
        "calibration mask": mask,
        "flow output->GT": flow_to_color(flow)[0].float() / 255.0,
    }
    if aligned is not None:
        panels["aligned truth"] = aligned[0]
    return {name: _shrink(image.detach().float(), max_side).clamp(0, 1).cpu() for name, image in panels.items()}


@dataclass(frozen=True)
class Display:
    """The display-only arguments of :func:`~jdrl.evaluation.evaluate` (they change no score).

    - ``keep_images``: keep downscaled panels (``thumbnail_size`` px, uint8) per image in ``result.images``,
      for small sets; large sets should stream them through ``on_image`` instead (memory stays bounded).
    - ``on_image``: called as ``on_image(name, panels)`` with CPU panels (``(3, H, W)`` in [0, 1]); full
      size, or downscaled to ``panel_size`` px on the longer side (reports).
    - ``mask_mode``: the calibration-mask rule drawn in the panels (``jdrl.flow.mask``).
    """

    keep_images: bool = False
    thumbnail_size: int = ranged(PANEL_SIDE, PIXELS)
    on_image: PanelCallback | None = None
    panel_size: int | None = ranged(None, PIXELS)
    mask_mode: str = "reference"

    def __post_init__(self) -> None:
        found = []
        if not isinstance(self.keep_images, bool):
            found.append(f"keep_images must be true or false, not {self.keep_images!r}")
        for name in ("thumbnail_size", "panel_size"):
            value = getattr(self, name)
            if value is None and name == "panel_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or PIXELS.problem(value):
                found.append(f"{name} must be a whole number of px, {PIXELS.describe()}, not {value!r}")
        if self.on_image is not None and not callable(self.on_image):
            found.append(f"on_image must be a function (name, panels) or None, not {self.on_image!r}")
        if self.mask_mode not in MASK_MODES:
            found.append(f"mask_mode must be one of {', '.join(MASK_MODES)}, not {self.mask_mode!r}")
        if found:
            raise ConfigError(f"invalid display: {'; '.join(found)}")

    @property
    def wanted(self) -> bool:
        """Whether any panels are made at all."""
        return self.keep_images or self.on_image is not None

    @property
    def max_side(self) -> int | None:
        """The side panels are downscaled to on the device: as early as the consumers allow (the callback may
        want full size)."""
        return self.panel_size if self.on_image is not None else self.thumbnail_size

    def panels(self, blur, output, gt, deformed, flow, aligned) -> dict[str, torch.Tensor] | None:
        """The panels of one image (``None`` when none are wanted)."""
        if not self.wanted:
            return None
        return make_panels(blur, output, gt, deformed, flow, aligned, self.max_side, self.mask_mode)

    def deliver(self, name: str, panels: dict[str, torch.Tensor] | None,
                images: dict[str, dict[str, torch.Tensor]] | None) -> None:
        """Hand one image's panels to ``on_image`` and, with ``keep_images``, keep its thumbnails in ``images``."""
        if panels is None:
            return
        if self.on_image is not None:
            self.on_image(name, panels)
        if images is not None:
            images[name] = {key: thumbnail(value, self.thumbnail_size) for key, value in panels.items()}
