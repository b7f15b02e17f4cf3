"""Exponential moving average of the weights (BasicSR ``model_ema``): the weights that are validated and saved as
``params_ema``, which is what odisr and the official test scripts load."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen eval-mode copy of ``net`` whose parameters follow ``ema ← decay·ema + (1 − decay)·net``.

    ``decay = 0`` makes it a plain copy of the latest weights. Buffers are copied as they are.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """One EMA step towards ``net``'s current weights (same architecture as the copy)."""
        for ema, param in zip(self.module.parameters(), net.parameters(), strict=True):
            ema.lerp_(param.detach(), 1.0 - self.decay)
        for ema, buf in zip(self.module.buffers(), net.buffers(), strict=True):
            ema.copy_(buf)
