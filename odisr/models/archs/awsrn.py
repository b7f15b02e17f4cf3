"""AWSRN: Adaptive Weighted Super-Resolution Network (Wang, Li & Shi, arXiv:1904.02358, 2019).

Re-implemented from the paper and ``specs/BASELINES.md`` §3, key-compatible with the official checkpoints
(ChaofWang/AWSRN ``code/src/model/awsrn.py`` for AWSRN/-M/-S and ``awsrnd.py`` for AWSRN-SD). The official code
is MIT-licensed (EDSR-PyTorch licence text).

Every convolution is weight-normalised (Salimans & Kingma 2016, ``w = g · v / ‖v‖``). The official checkpoints use
the old ``torch.nn.utils.weight_norm`` key names ``weight_g`` (C_out, 1, 1, 1) / ``weight_v`` / ``bias``; here they
are plain parameters with the weight computed in ``forward``, so ``state_dict()`` keys equal the official ones and
official files load with ``strict=True``. The RGB mean is a non-persistent buffer (not in the state dict, as in the
official code, but following the input's device and dtype instead of calling ``.cuda()``).

Variants (official ``demo.sh`` flags; parameter counts equal the paper's):

=========  =============  =======  ===========  ======  ==================================
variant    n_resblocks    n_feats  block_feats  AWRUs   params ×2 / ×3 / ×4
=========  =============  =======  ===========  ======  ==================================
AWSRN-S    1              32       128          4       397,482 / 476,757 / 587,742
AWSRN-SD   1              16       128          8       348,098 / 388,013 / 443,894
AWSRN-M    3              32       128          4       1,063,742 / 1,143,017 / 1,254,002
AWSRN      4              32       128          4       1,396,872 / 1,476,147 / 1,587,132
=========  =============  =======  ===========  ======  ==================================
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from spandrel.util import get_seq_len
from torch import nn

from odisr.models.archs.adapters import DIV2K_RGB_MEAN, RGB255Model
from odisr.models.registry import (
    Architecture,
    ModelSpec,
    StateDict,
    WeightFile,
    register_architecture,
    register_model,
)

PAPER = "Wang, Li & Shi, 'Lightweight Image Super-Resolution with Adaptive Weighted Learning Network', arXiv:1904.02358"

#: (n_resblocks, n_feats, block_feats, n_awru) of each named variant.
VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "S": (1, 32, 128, 4),
    "SD": (1, 16, 128, 8),
    "M": (3, 32, 128, 4),
    "full": (4, 32, 128, 4),
}


class WNConv2d(nn.Module):
    """k×k convolution (stride 1, 'same' zero padding) with weight normalisation: ``w = g · v / ‖v‖₂`` where the
    norm runs over (C_in, k, k) per output channel. Parameters ``weight_v`` (C_out, C_in, k, k),
    ``weight_g`` (C_out, 1, 1, 1) and ``bias`` (C_out,) are named as in ``torch.nn.utils.weight_norm``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size)  # default (Kaiming-uniform) initialisation
        self.padding = kernel_size // 2
        self.bias = nn.Parameter(conv.bias.detach())
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(conv.weight.detach(), dim=(1, 2, 3), keepdim=True))
        self.weight_v = nn.Parameter(conv.weight.detach())

    @property
    def weight(self) -> torch.Tensor:
        """The effective convolution weight g · v / ‖v‖ (C_out, C_in, k, k)."""
        v = self.weight_v
        return v * (self.weight_g / torch.linalg.vector_norm(v, dim=(1, 2, 3), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class Scale(nn.Module):
    """A learned scalar multiplier (the paper's adaptive weight λ), stored as ``scale`` of shape (1,)."""

    def __init__(self, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AWRU(nn.Module):
    """Adaptive weighted residual unit: ``λ_res · conv(ReLU(conv(x))) + λ_x · x`` (n_feats → block_feats → n_feats)."""

    def __init__(self, n_feats: int, block_feats: int) -> None:
        super().__init__()
        self.res_scale = Scale(1.0)
        self.x_scale = Scale(1.0)
        self.body = nn.Sequential(
            WNConv2d(n_feats, block_feats, 3), nn.ReLU(inplace=True), WNConv2d(block_feats, n_feats, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_scale(self.body(x)) + self.x_scale(x)


class LFB(nn.Module):
    """Local fusion block: ``n_awru`` chained AWRUs (``b0``, ``b1``, …), a 3×3 reduction of their concatenated
    outputs back to n_feats, and an adaptive weighted residual ``λ_res · reduction + λ_x · x``."""

    def __init__(self, n_feats: int, block_feats: int, n_awru: int) -> None:
        super().__init__()
        self.n_awru = n_awru
        for i in range(n_awru):
            self.add_module(f"b{i}", AWRU(n_feats, block_feats))
        self.reduction = WNConv2d(n_feats * n_awru, n_feats, 3)
        self.res_scale = Scale(1.0)
        self.x_scale = Scale(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, h = [], x
        for i in range(self.n_awru):
            h = getattr(self, f"b{i}")(h)
            outs.append(h)
        return self.res_scale(self.reduction(torch.cat(outs, dim=1))) + self.x_scale(x)


class AWMS(nn.Module):
    """Adaptive weighted multi-scale reconstruction: 3/5/7/9-kernel convolutions to 3·s² channels, each
    pixel-shuffled and weighted by a learned scale (initialised 0.25), summed."""

    KERNELS = (3, 5, 7, 9)

    def __init__(self, n_feats: int, scale: int, n_colors: int = 3) -> None:
        super().__init__()
        for k in self.KERNELS:  # all convs, then all scales: the official registration (and state-dict) order
            self.add_module(f"tail_k{k}", WNConv2d(n_feats, n_colors * scale * scale, k))
        for k in self.KERNELS:
            self.add_module(f"scale_k{k}", Scale(0.25))
        self.pixelshuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (getattr(self, f"scale_k{k}")(getattr(self, f"tail_k{k}")(x)) for k in self.KERNELS)
        return sum(self.pixelshuffle(b) for b in branches)


class AWSRN(RGB255Model):
    """AWSRN (all variants) as an odisr :class:`~odisr.models.base.SRModel`.

    ``forward(x)``: (B, 3, h, w) RGB in [0, 1] → raw (B, 3, s·h, s·w) in [0, 1] scale (not clamped). Internally the
    official network runs on [0, 255]: ``x ← (x − 255·mean) / 127.5``; ``out = AWMS(body(head(x))) + skip(x)``;
    ``out · 127.5 + 255·mean``. Purely convolutional with a receptive-field radius of 1 + (2·n_awru + 1)·n_resblocks
    + 4 LR pixels (14 for AWSRN-S, 22 for -SD, 32 for -M, 41 for AWSRN): tiles with at least that halo reproduce
    whole-image inference exactly. Any input size ≥ 1×1 works.

    Args:
        scale: upscaling factor s (official checkpoints exist for 2, 3, 4 and, for AWSRN, 8).
        n_resblocks: number of LFBs. n_feats: feature channels. block_feats: AWRU expansion channels.
        n_awru: AWRUs per LFB (4 in ``awsrn.py``; 8 in ``awsrnd.py``, i.e. AWSRN-SD).

    Raises:
        ValueError: for a non-positive size argument.
    """

    architecture = "awsrn"
    window_size = 1
    content_aware = False

    def __init__(
        self, scale: int = 4, n_resblocks: int = 1, n_feats: int = 32, block_feats: int = 128, n_awru: int = 4
    ) -> None:
        super().__init__()
        if min(scale, n_resblocks, n_feats, block_feats, n_awru) < 1:
            raise ValueError(
                f"AWSRN sizes must be positive, got scale={scale}, n_resblocks={n_resblocks}, "
                f"n_feats={n_feats}, block_feats={block_feats}, n_awru={n_awru}"
            )
        self.scale = scale
        self.config = (n_resblocks, n_feats, block_feats, n_awru)
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Sequential(WNConv2d(3, n_feats, 3))
        self.body = nn.Sequential(*(LFB(n_feats, block_feats, n_awru) for _ in range(n_resblocks)))
        self.tail = AWMS(n_feats, scale)
        self.skip = nn.Sequential(WNConv2d(3, 3 * scale * scale, 3), nn.PixelShuffle(scale))

    @property
    def variant(self) -> str:
        """``"S"``, ``"SD"``, ``"M"``, ``"full"`` for the paper's configurations, else ``"custom"``."""
        return next((name for name, cfg in VARIANTS.items() if cfg == self.config), "custom")

    def forward_255(self, x: torch.Tensor) -> torch.Tensor:
        mean = (self.rgb_mean * 255).to(x)
        x = (x - mean) / 127.5
        out = self.tail(self.body(self.head(x))) + self.skip(x)
        return out * 127.5 + mean


def detect_awsrn(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor arguments of an official AWSRN / AWSRN-SD state dict (``awsrn.py``/``awsrnd.py`` layout), or None.

    n_feats from ``head.0.weight_v``, n_resblocks from the number of ``body.{i}.reduction`` convs, block_feats from
    the first AWRU conv, n_awru from the number of ``body.0.b{j}`` units (8 = AWSRN-SD), scale from the skip conv's
    3·s² output channels. The later ``awsrnv2`` layout (``body.{i}.lfl.{j}``) is not recognised.
    """
    required = ("head.0.weight_v", "body.0.b0.body.0.weight_v", "body.0.reduction.weight_v", "skip.0.weight_v")
    if not all(key in state_dict for key in required) or "tail.tail_k3.weight_v" not in state_dict:
        return None
    n_awru = 0
    while f"body.0.b{n_awru}.body.0.weight_v" in state_dict:
        n_awru += 1
    return {
        "scale": math.isqrt(state_dict["skip.0.weight_v"].shape[0] // 3),
        "n_resblocks": get_seq_len(state_dict, "body"),
        "n_feats": state_dict["head.0.weight_v"].shape[0],
        "block_feats": state_dict["body.0.b0.body.0.weight_v"].shape[0],
        "n_awru": n_awru,
    }


def _official_dir(variant: str, scale: int) -> str:
    """Experiment folder name in the official release (``AWSRN_SDx4`` …)."""
    return ("AWSRN" if variant == "full" else f"AWSRN_{variant}") + f"x{scale}"


def _register() -> None:
    register_architecture(Architecture("awsrn", build=AWSRN, detect=detect_awsrn))
    for variant, (n_resblocks, n_feats, block_feats, n_awru) in VARIANTS.items():
        for scale in (2, 3, 4):
            folder = _official_dir(variant, scale)
            name = ("awsrn" if variant == "full" else f"awsrn-{variant.lower()}") + f"-x{scale}"
            weights = WeightFile(
                filename=f"{folder}.pt",
                url=None,
                instructions=(
                    "The official AWSRN weights are only in a Google Drive folder (no direct URL, no hash): "
                    "https://drive.google.com/drive/folders/1R3cqoXU7bstcaNrf76-Tg_AtHPj-JOU2 . Download "
                    f"'{folder}/model/model_latest.pt' from it and rename it to '{folder}.pt'."
                ),
            )
            register_model(
                ModelSpec(
                    name=name,
                    architecture="awsrn",
                    kwargs={"scale": scale, "n_resblocks": n_resblocks, "n_feats": n_feats,
                            "block_feats": block_feats, "n_awru": n_awru},
                    scale=scale,
                    weights=weights,
                    description=f"{folder.replace('_', '-')[:-2]} ×{scale} (DIV2K, bicubic degradation)",
                    paper=PAPER,
                    tags=("baseline", "lightweight", "cnn"),
                )
            )


_register()
