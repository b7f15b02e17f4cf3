"""Bicubic interpolation as an :class:`~odisr.models.base.SRModel` (no weights).

The reference row of every SR table ("Bicubic") and the cheap model for pipeline tests: MATLAB's
``imresize(lr, s, 'bicubic')`` (Keys kernel, a = −0.5) applied to ``[0, 1]`` RGB, see :mod:`odisr.resize`.
"""

from __future__ import annotations

from typing import Any

import torch

from odisr.models.base import SRModel
from odisr.models.registry import Architecture, ModelSpec, StateDict, register_architecture, register_model
from odisr.resize import imresize

SCALES = (2, 3, 4)


class Bicubic(SRModel):
    """Bicubic ×s upsampling: ``(B, 3, h, w)`` float in [0, 1] → raw ``(B, 3, s·h, s·w)`` (not clamped; the
    cubic kernel overshoots slightly at edges). Mirrors at the image border like MATLAB; the tiling engine
    supplies circular context for ERP panoramas."""

    window_size = 1
    architecture = "bicubic"

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"Bicubic: scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, float(self.scale))  # type: ignore[return-value]

    def flops(self, h: int, w: int) -> int:
        """Multiply-adds ×2 of the two separable 4-tap passes (rows, then columns), per output pixel and channel."""
        s = self.scale
        return 2 * 4 * 3 * (s * h * w + s * h * s * w)


def _detect(state_dict: StateDict) -> dict[str, Any] | None:
    return None  # no weights: a bicubic model is never recognised from a state dict


register_architecture(Architecture("bicubic", build=Bicubic, detect=_detect))
for _s in SCALES:
    register_model(
        ModelSpec(
            f"bicubic-x{_s}",
            "bicubic",
            {"scale": _s},
            scale=_s,
            weights=None,
            description=f"MATLAB-compatible bicubic interpolation ×{_s} (reference row, no weights)",
            tags=("baseline", "reference"),
        )
    )
