"""Validation during training: the EMA network on the val panoramas through :func:`odisr.upscale`, scored with
WS-PSNR and WS-SSIM exactly as ``odisr evaluate`` scores them (ERP mode: circular in longitude, latitude condition
from absolute rows; whole image or tiled with ``data.val_tile``).

The forward passes run under :func:`torch.random.fork_rng`, so validating never moves the training RNG streams:
a run validated every 100 iterations trains exactly like one validated every 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from odisr.inference import upscale
from odisr.metrics import ws_psnr, ws_ssim
from odisr.models import SRModel
from odisr.train.data import PanoramaPair

__all__ = ["Scores", "Validator"]


@dataclass(frozen=True)
class Scores:
    """Mean WS-PSNR (dB) and WS-SSIM over the val panoramas, and ``per_image`` ``{name: (WS-PSNR, WS-SSIM)}``."""

    ws_psnr: float
    ws_ssim: float
    per_image: dict[str, tuple[float, float]]

    def as_dict(self) -> dict[str, object]:
        return {"ws_psnr": self.ws_psnr, "ws_ssim": self.ws_ssim, "per_image": self.per_image}


class Validator:
    """Scores networks on ``pairs`` (HR/LR val panoramas) on ``device``, whole-image or in ``tile``-pixel tiles."""

    def __init__(self, pairs: Sequence[PanoramaPair], *, device: torch.device, tile: int | None = None) -> None:
        self.pairs, self.device, self.tile = list(pairs), device, tile

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def score(self, net: SRModel) -> Scores:
        """Mean and per-image scores of ``net`` (put in eval mode by :func:`odisr.upscale`)."""
        per_image = {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for pair in self.pairs:
                sr = upscale(pair.lr, net, mode="odi", tile=self.tile, device=self.device)
                per_image[pair.name] = (ws_psnr(pair.hr, sr), ws_ssim(pair.hr, sr))
        values = np.array(list(per_image.values()))
        return Scores(float(values[:, 0].mean()), float(values[:, 1].mean()), per_image)
