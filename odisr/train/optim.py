"""Optimiser and learning-rate schedule of a run (``optim:`` section of the configuration).

Adam or AdamW (``torch.optim``) over every trainable parameter; the learning rate at iteration ``i`` (0-based step
index) is ``lr · warm(i) · decay(i)`` with

* ``warm(i) = min(1, (i + 1) / warmup)`` (linear warm-up; 1 without warm-up),
* cosine: ``decay(i) = m + (1 − m)·(1 + cos(π·i / iterations)) / 2`` with ``m = min_lr / lr``
  (BasicSR ``CosineAnnealingRestartLR`` with one period),
* multistep: ``decay(i) = gamma^(number of milestones ≤ i)`` (BasicSR ``MultiStepRestartLR``, PyTorch
  ``MultiStepLR``; the CAMixerSR config halves at 250k, 400k, 450k, 475k of 500k).

It runs as a :class:`torch.optim.lr_scheduler.LambdaLR`, whose state (the step count) is saved for resuming.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch
from torch import nn

from odisr.train.config import OptimConfig

__all__ = ["LrFactor", "make_optimizer", "make_scheduler"]


@dataclass
class LrFactor:
    """The multiplier of the base learning rate at a 0-based step index (module docstring)."""

    schedule: str
    iterations: int
    warmup: int
    milestones: list[int]
    gamma: float
    floor: float  # min_lr / lr

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.schedule == "cosine":
            decay = self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * step / self.iterations))
        else:
            decay = self.gamma ** bisect.bisect_right(self.milestones, step)
        return warm * decay


def make_optimizer(net: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam / AdamW with the configured learning rate, betas and weight decay."""
    params = [p for p in net.parameters() if p.requires_grad]
    kind = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of the module docstring; call ``step()`` once after each optimiser step."""
    factor = LrFactor(cfg.schedule, cfg.iterations, cfg.warmup, list(cfg.milestones), cfg.gamma, cfg.min_lr / cfg.lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
