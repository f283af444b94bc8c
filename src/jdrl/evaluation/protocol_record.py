"""The evaluation protocol as a value: :class:`Protocol` (``Protocol.paper()``, ``Protocol.jdrl()``), and its rules.

A protocol says how an output is *scored*: which flow estimator deforms the GT (and with which weights),
which warp convention, which border crop, how the images are read (full bit depth or the released 8-bit),
whether LPIPS is measured, and the border left out of the flow-error means. What every protocol shares is
fixed and not a field: the metric columns (``jdrl.evaluation.protocol.METRIC_COLUMNS``), float images in
[0, 1] with the output clamped, border padding in the warp (docs/SPEC.md 2.6). How the output is *computed*
(``tile``, ``overlap``, ``amp``, ``device``) is not part of a protocol either: :func:`~jdrl.evaluation.evaluate`
takes those as its own arguments, as does ``jdrl eval``, and the paper's choice sets none of them.

Also here: the border rules (``resolve_border``, ``crop_released``, ``describe_border``) and the released
8-bit reading (``EightBitReading``), which a protocol names and :mod:`jdrl.evaluation.protocol` applies.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from jdrl.config import Range, ranged
from jdrl.errors import ConfigError
from jdrl.flow import flow_names
from jdrl.nets.record import record_of
from jdrl.vocabulary import BORDER_MODES, PROTOCOLS, WARP_CONVENTIONS

__all__ = ["BORDER_MODES", "EightBitReading", "Protocol", "crop_released", "describe_border", "read_eight_bit",
           "resolve_border"]

#: released crops: (anchor, multiple) - the UNet code crops the top-left corner, MPRNet's the centre
RELEASED_CROPS = {"released-unet": ("top-left", 16), "released-mprnet": ("centre", 8)}
MAX_NAME = 64  # characters of a protocol's name (a label in summaries)
READINGS = {False: "full bit depth", True: "8-bit (as released)"}
FLOW_BORDER = Range(ge=0, le=65_536)  # px per side


# ----------------------------------------------------------------------------- border handling


def _unwrap(net: nn.Module) -> nn.Module:
    """The module inside DataParallel/DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def resolve_border(border: str, net: nn.Module | None) -> str:
    """``border`` with ``"released"`` replaced by the crop rule of ``net``'s released code.

    ``released-unet`` crops the top-left corner to a multiple of 16, ``released-mprnet``
    the centre to a multiple of 8. With no network (the input baseline) name one of them.
    """
    if border not in BORDER_MODES:
        raise ConfigError(f"border must be one of {', '.join(BORDER_MODES)}, not {border!r}")
    if border != "released":
        return border
    if net is not None:
        inner = _unwrap(net)
        found = record_of(inner)
        released = found[1].released if found is not None else None
        if released is not None and released.border is not None:
            return released.border
        raise ConfigError(f"border='released' knows the crops of unet and mprnet, not {type(inner).__name__}; "
                         "name one: released-unet or released-mprnet")
    raise ConfigError("border='released' without a network: name the crop, released-unet or released-mprnet")


def describe_border(border: str) -> str:
    """One line saying what a (resolved) border mode does, for reports."""
    if border == "reflect":
        return "reflect-pad to the network's size multiple, crop the output back (whole image scored)"
    anchor, multiple = RELEASED_CROPS[border]
    return f"released code's crop: {anchor} {'corner ' if anchor == 'top-left' else ''}cropped to a multiple of {multiple}"


def crop_released(image: torch.Tensor, border: str) -> torch.Tensor:
    """Crop ``(..., H, W)`` as the released test code did (``border`` = ``released-unet``/``released-mprnet``).

    ``reflect`` returns the image unchanged (the padding happens in inference).
    """
    if border == "reflect":
        return image
    anchor, multiple = RELEASED_CROPS[border]
    height, width = image.shape[-2:]
    new_h, new_w = height // multiple * multiple, width // multiple * multiple
    if new_h == 0 or new_w == 0:
        raise ConfigError(f"a {width}x{height} image is smaller than the {multiple}-px multiple of {border}")
    top, left = (0, 0) if anchor == "top-left" else ((height - new_h) // 2, (width - new_w) // 2)
    return image[..., top : top + new_h, left : left + new_w]


# ----------------------------------------------------------------------------- 8-bit reading


def read_eight_bit(item: Mapping[str, Any]) -> dict[str, Any]:
    """One dataset item as the released evaluation read it: OpenCV's 8-bit ``imread`` (a 16-bit PNG's top byte).

    ``v8 = floor(v16 / 256)``; 8-bit sources come back unchanged (``floor(v * 257 / 256) = v``).
    """
    item = dict(item)
    for key in ("blur", "sharp", "aligned"):
        if isinstance(item.get(key), torch.Tensor):
            item[key] = torch.floor(torch.round(item[key].double() * 65535) / 256).float() / 255
    return item


class EightBitReading:
    """A dataset whose items are read as the released evaluation read them (:func:`read_eight_bit`)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int) -> dict:
        return read_eight_bit(self.dataset[index])


# ----------------------------------------------------------------------------- the protocol


def _path(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(os.fspath(path))


@dataclass(frozen=True)
class Protocol:
    """How :func:`~jdrl.evaluation.evaluate` scores: one value, checked when it is made.

    Fields (every one validated; a bad value raises one :class:`~jdrl.errors.ConfigError` naming them all):

    - ``name``: the protocol's label in summaries (``"jdrl"``, ``"paper"``, or your own; 1-64 characters).
    - ``flow``: the registry name of the estimator for the deformed GT and the flow errors (``jdrl.flow``).
    - ``flow_weights``: its weight file, for the learned estimators (PWC-Net, SpyNet, RAFT); ``None`` for DIS.
      The paper's PWC-Net file is never downloaded: ``Protocol.paper(flow_weights=PATH)``.
    - ``warp``: the deformed GT's warp, ``"exact"`` or ``"released"`` (the authors' ``flow_resample``).
    - ``border``: ``"reflect"`` (pad to the net's multiple, crop back), ``"released"`` (the released crop of
      the network scored) or one crop by name (``"released-unet"``, ``"released-mprnet"``).
    - ``baseline_border``: the crop ``border="released"`` means when the blurry input is scored alone (no
      network), ``"released-unet"`` or ``"released-mprnet"``; ``None``: none, name one (an error then).
    - ``eight_bit``: read the images as the released evaluation did (8-bit, :func:`read_eight_bit`).
    - ``lpips``: measure LPIPS (AlexNet v0.1) where its weights are available offline; its columns stay
      empty, with the reason recorded, where they are not.
    - ``flow_border``: px per side left out of the flow-error means (0 to 65,536).
    """

    name: str = "jdrl"
    flow: str = "dis"
    flow_weights: str | None = None
    warp: str = "exact"
    border: str = "reflect"
    baseline_border: str | None = None
    eight_bit: bool = False
    lpips: bool = True
    flow_border: int = ranged(0, FLOW_BORDER)

    def __post_init__(self) -> None:
        if isinstance(self.flow_weights, os.PathLike):
            object.__setattr__(self, "flow_weights", os.fspath(self.flow_weights))
        found = self.problems()
        if found:
            raise ConfigError(f"invalid protocol: {'; '.join(found)}")

    # ------------------------------------------------------------- the protocols jdrl knows

    @classmethod
    def jdrl(cls, flow_weights: str | os.PathLike | None = None) -> Protocol:
        """This project's default (``jdrl eval``): DIS flow, exact warp, reflect padding, full bit depth, LPIPS."""
        return cls(flow_weights=_path(flow_weights))

    @classmethod
    def paper(cls, flow_weights: str | os.PathLike | None = None) -> Protocol:
        """The paper's released pipeline (``jdrl eval --protocol paper``): PWC-Net flow (``flow_weights``: the
        file of sniklaus/pytorch-pwc the JDRL release uses), the released warp and crops (the input alone: the
        UNet pipeline's), 8-bit reading, LPIPS; numbers that sit beside the paper's tables."""
        return cls(name="paper", flow="pwcnet", flow_weights=_path(flow_weights),
                   warp="released", border="released", baseline_border="released-unet", eight_bit=True)

    @classmethod
    def named(cls, name: str, flow_weights: str | os.PathLike | None = None) -> Protocol:
        """``Protocol.jdrl()`` or ``Protocol.paper()`` by name (``jdrl eval --protocol NAME``)."""
        if name not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {name!r}")
        return cls.paper(flow_weights) if name == "paper" else cls.jdrl(flow_weights)

    # ------------------------------------------------------------- checks

    def problems(self) -> list[str]:
        """Every invalid field, as ``"field must be ..., not VALUE"`` (empty when the protocol is valid)."""
        found = []
        if not isinstance(self.name, str) or not 0 < len(self.name) <= MAX_NAME or not self.name.isprintable():
            found.append(f"name must be 1-{MAX_NAME} printable characters, not {self.name!r}")
        if not isinstance(self.flow, str):
            found.append(f"flow must be a flow estimator's name, not {self.flow!r}")
        else:

            if self.flow not in flow_names():
                found.append(f"flow must be one of {', '.join(flow_names())}, not {self.flow!r}")
        if self.flow_weights is not None and (not isinstance(self.flow_weights, str) or not self.flow_weights):
            found.append(f"flow_weights must be a file path or None, not {self.flow_weights!r}")
        for field, allowed in (("warp", WARP_CONVENTIONS), ("border", BORDER_MODES),
                               ("baseline_border", (*RELEASED_CROPS, None))):
            value = getattr(self, field)
            if value not in allowed:
                found.append(f"{field} must be one of {', '.join(str(a) for a in allowed)}, not {value!r}")
        for field in ("eight_bit", "lpips"):
            if not isinstance(getattr(self, field), bool):
                found.append(f"{field} must be true or false, not {getattr(self, field)!r}")
        if isinstance(self.flow_border, bool) or not isinstance(self.flow_border, int):
            found.append(f"flow_border must be a whole number of pixels, not {self.flow_border!r}")
        elif FLOW_BORDER.problem(self.flow_border):
            found.append(f"flow_border {FLOW_BORDER.problem(self.flow_border)}, not {self.flow_border!r}")
        return found

    # ------------------------------------------------------------- use

    def replace(self, **changes: Any) -> Protocol:
        """A copy with ``changes`` (checked like a new protocol)."""
        return dataclasses.replace(self, **changes)

    def border_for(self, net: nn.Module | None) -> str:
        """The concrete border mode for scoring ``net`` (``None``: the blurry input alone)."""
        if self.border == "released" and net is None and self.baseline_border is not None:
            return self.baseline_border
        return resolve_border(self.border, net)

    def for_net(self, net: nn.Module | None) -> Protocol:
        """This protocol with its border resolved for ``net``: what scores ``net`` and, cropped alike, its input."""
        return self.replace(border=self.border_for(net), baseline_border=None)

    @property
    def reading(self) -> str:
        """How the images are read, in words (for summaries)."""
        return READINGS[self.eight_bit]

    def read(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        """A dataset item as this protocol reads it."""
        return read_eight_bit(item) if self.eight_bit else item

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain data (for JSON)."""
        return dataclasses.asdict(self)
