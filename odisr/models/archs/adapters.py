"""Adapting networks from other code bases to the :class:`~odisr.models.base.SRModel` contract.

The contract is RGB in ``[0, 1]`` of any size ``h × w ≥ 1``. The baselines differ from it in two ways:

* SAN and AWSRN come from the EDSR-PyTorch code base (``rgb_range=255``): their layers expect RGB in
  ``[0, 255]`` and the DIV2K mean on that scale. :class:`RGB255Model` scales on the way in and out.
* Some layers need a minimum spatial size (SAN's max-pooled non-local block, SwinIR's reflect padding to its
  window). :func:`run_with_min_size` replicate-pads tiny inputs at the bottom/right and crops the output back,
  so that every size works (the official code raises an indexing/padding error instead).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
import torch.nn.functional as F

from odisr.models.base import SRModel

#: Mean RGB of the DIV2K training set on the [0, 1] scale, used by EDSR-PyTorch, SAN, AWSRN and SwinIR.
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


def run_with_min_size(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, min_size: int, scale: int
) -> torch.Tensor:
    """Run ``forward`` on ``x`` (…, h, w) after replicate-padding each side shorter than ``min_size`` pixels
    (at the bottom/right), then crop the output to (…, scale·h, scale·w). Inputs already large enough are
    passed through unchanged, so results on them are exactly the network's own."""
    h, w = x.shape[-2:]
    pad_h, pad_w = max(min_size - h, 0), max(min_size - w, 0)
    if not (pad_h or pad_w):
        return forward(x)
    y = forward(F.pad(x, (0, pad_w, 0, pad_h), mode="replicate"))
    return y[..., : scale * h, : scale * w]


class RGB255Model(SRModel, metaclass=abc.ABCMeta):
    """An :class:`SRModel` whose layers work on RGB in ``[0, 255]`` (EDSR-PyTorch convention).

    Subclasses implement :meth:`forward_255`; :meth:`forward` multiplies the ``[0, 1]`` input by 255 and divides
    the raw output by 255, so outputs keep the ``[0, 1]`` scale of the contract (unclamped). ``min_input_size``
    is the smallest side (LR pixels) the layers accept; smaller inputs go through :func:`run_with_min_size`.
    """

    min_input_size: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float RGB in [0, 1] → raw (B, 3, s·h, s·w) in [0, 1] scale, not clamped."""
        return run_with_min_size(lambda t: self.forward_255(t * 255.0) / 255.0, x, self.min_input_size, self.scale)

    @abc.abstractmethod
    def forward_255(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) RGB in [0, 255] → raw (B, 3, s·h, s·w) on the [0, 255] scale."""
