"""The contract every super-resolution network in odisr fulfils.

A model takes LR images as ``(B, 3, h, w)`` float RGB in ``[0, 1]`` and returns the raw (unclamped)
``(B, 3, s·h, s·w)`` SR output. Models that are conditioned on latitude (CAMixerOSR) also accept
``condition=(B, 1, h, w)``, the cos-latitude of each LR pixel's absolute row in the full panorama.
Clamping and rounding happen where an image is made (:mod:`odisr.io`), never inside a model.
"""

from __future__ import annotations

import torch
from torch import nn


class SRModel(nn.Module):
    """Base class of odisr's super-resolution networks.

    Class attributes a subclass sets (and the tiling engine reads):

    ``scale``          integer upscaling factor s.
    ``window_size``    LR alignment (pixels) that tiles must respect so that their windows coincide with the
                       whole-image windows (16 for CAMixer, 8 for SwinIR, 1 for convolutional networks).
    ``content_aware``  True when computation is routed per window (CAMixer's ratio γ).
    ``uses_latitude``  True when ``forward`` takes ``condition=(B, 1, h, w)`` (cos latitude).
    ``architecture``   short architecture name (``"camixersr"``, ``"swinir"``, …).
    """

    scale: int = 1
    window_size: int = 1
    content_aware: bool = False
    uses_latitude: bool = False
    architecture: str = "unknown"

    @property
    def num_params(self) -> int:
        """Number of learnable parameters."""
        return sum(p.numel() for p in self.parameters())

    def flops(self, h: int, w: int) -> int:
        """Floating-point operations (2 per multiply-add) of one forward pass on an ``h × w`` LR input.

        Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on a meta-free dummy input;
        subclasses with data-dependent compute (CAMixer) override this with an analytic count.
        """
        from torch.utils.flop_counter import FlopCounterMode

        p = next(self.parameters(), None)
        x = torch.zeros(1, 3, h, w, device=p.device if p is not None else "cpu")
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self(x)
        return int(counter.get_total_flops())
