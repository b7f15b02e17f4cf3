"""Pixel losses of a training step: L1 and latitude-weighted L1 (WS-L1).

``l1``: the mean absolute error over every element (BasicSR ``L1Loss``, the CAMixerSR configs).

``ws_l1``: OSRT's ``WSL1Loss`` (Yu et al., CVPR 2023; also in CAMixerSR's ``odisr/losses/odi_loss.py``):
``Σ w(j)·|SR − HR| / Σ w(j)`` with ``w(j) = cos((j + 0.5 − H/2)·π/H)`` of each pixel's **absolute** row ``j``
in its full HR panorama of height ``H`` — the WS-PSNR weight, so that the loss counts each pixel by its area on the
sphere, as the metric does. Computed as ``mean(w·|SR − HR|) / w̄`` with ``w̄`` the mean weight over the global
batch (:attr:`odisr.train.data.Batch.weight_mean`): on one process this is exactly the formula above, and under
DDP the average of the ranks' losses is still the loss of the whole global batch (each rank alone would otherwise
normalise by its own weights).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from odisr.train.data import Batch

__all__ = ["PIXEL_LOSSES", "l1", "ws_l1"]


def l1(sr: Tensor, batch: Batch) -> Tensor:
    """Mean absolute error of ``sr`` against ``batch.hr`` (both ``(b, 3, H, W)`` in [0, 1]); scalar."""
    return (sr - batch.hr).abs().mean()


def ws_l1(sr: Tensor, batch: Batch) -> Tensor:
    """Latitude-weighted L1 of ``sr`` against ``batch.hr`` (module docstring); scalar."""
    return ((sr - batch.hr).abs() * batch.row_weights).mean() / batch.weight_mean


#: The pixel losses by the name used in configurations (``loss.pixel``).
PIXEL_LOSSES: dict[str, Callable[[Tensor, Batch], Tensor]] = {"l1": l1, "ws_l1": ws_l1}
