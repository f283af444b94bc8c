"""OpenCV DIS optical flow (Kroeger et al. 2016): classical, no weights, the offline default."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from jdrl.flow.base import FLOWS, FlowEstimator

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _grey_u8(image: torch.Tensor) -> np.ndarray:
    rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class DISFlow(FlowEstimator):
    """Dense Inverse Search on grey 8-bit images, one pair at a time on the CPU."""

    min_side = 16  # OpenCV's DIS needs a side of 12 px: tiny images are edge-padded, the flow cropped back
    resize_mode = "pad"

    def __init__(self, preset: str = "medium", finest_scale: int | None = None):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"DIS preset must be one of {', '.join(PRESETS)}, not {preset!r}")
        self.preset = preset
        self.finest_scale = finest_scale

    def _solver(self):
        solver = cv2.DISOpticalFlow_create(PRESETS[self.preset])
        if self.finest_scale is not None:
            solver.setFinestScale(self.finest_scale)
        return solver

    def estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        solver = self._solver()
        flows = [solver.calc(_grey_u8(x), _grey_u8(y), None) for x, y in zip(a, b)]
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
        return flow.to(device=a.device, dtype=a.dtype)


@FLOWS.register("dis")
def build_dis(weights=None, preset: str = "medium", finest_scale: int | None = None) -> DISFlow:
    if weights is not None:
        raise ValueError("the dis flow estimator takes no weights")
    return DISFlow(preset, finest_scale)
