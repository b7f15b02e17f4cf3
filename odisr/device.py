"""Choosing the torch device: one rule shared by model loading and the inference engine."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else Apple MPS, else CPU; any other value is passed to ``torch.device``.

    Raises:
        RuntimeError: ``device`` is not a valid torch device string.
    """
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
