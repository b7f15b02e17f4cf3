"""SAN: Second-order Attention Network (Dai, Cai, Zhang, Xia & Zhang, CVPR 2019).

Written from the paper and the format description in ``specs/BASELINES.md`` §2 (the official code, daitao/SAN,
carries no licence and is not used here). Key-compatible with the official checkpoints ``SAN_BIX{2,3,4}.pt``,
including the parts of the format that the official forward pass never uses.

Data flow (on RGB in [0, 255]; feature maps keep the LR size until the tail)::

    x0 = head(sub_mean(x));  r = non_local(x0)
    f = r;  for each LSRAG:  f = LSRAG(f) + gamma * r       # share-source skip, one scalar gamma for all groups
    y = add_mean(tail(non_local(f) + x0))                   # the same non_local weights, applied a second time

* ``non_local`` (region-level non-local block) splits the map into 4 quadrants at (H//2, W//2) and applies one
  embedded-Gaussian non-local block (Wang et al. 2018) to each: ``z = x + W · softmax(θ(x) φ(x)ᵀ) g(x)`` with
  C/8 inner channels, where ``g`` and ``φ`` are 1×1 convs followed by 2×2 max-pooling (as the official module
  builds them). It is computed with ``scaled_dot_product_attention`` (scale 1), never materialising the
  (N × N/4) attention matrix.
* LSRAG: n_resblocks × (conv–ReLU–conv + identity) → SOCA → 3×3 conv → + group input.
* SOCA (second-order channel attention): covariance of the features (central 1000×1000 crop of larger maps),
  its matrix square root by 5 Newton–Schulz iterations (MPN-COV, Li et al. 2018), the mean over the first
  axis, then 1×1 conv C→C/r, ReLU, 1×1 conv C/r→C, sigmoid, times x.
* Unused but stored (so official files load ``strict=True``): ``conv_last``, ``non_local.soca``, ``RG.{i}.gamma``.
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

PAPER = "Dai et al., 'Second-order Attention Network for Single Image Super-Resolution', CVPR 2019"

#: SOCA computes its statistics on at most this many rows/columns (a central crop), as the official code does.
SOCA_MAX_SIZE = 1000


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """k×k convolution with bias and 'same' zero padding (EDSR-PyTorch ``default_conv``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Channel covariance of a feature map: (B, C, H, W) → (B, C, C), ``(x − μ)(x − μ)ᵀ / M`` with M = H·W.

    Equal to MPN-COV's ``x Î xᵀ`` with the M×M centring matrix ``Î = I/M − 11ᵀ/M²`` but in O(C·M + C²) memory
    instead of O(M²).
    """
    f = x.flatten(2)
    f = f - f.mean(dim=-1, keepdim=True)
    return f @ f.transpose(1, 2) / f.shape[-1]


def sqrtm_newton_schulz(a: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Approximate square root of SPD matrices (B, n, n) by the coupled Newton–Schulz iteration of MPN-COV
    (Li et al., CVPR 2018, iSQRT-COV): pre-normalise by the trace, iterate, post-compensate by √trace.

    With A = a / tr(a): Y₀ = A·½(3I − A), Z₀ = ½(3I − A); Yₖ = Yₖ₋₁·Tₖ, Zₖ = Tₖ·Zₖ₋₁ with Tₖ = ½(3I − Zₖ₋₁Yₖ₋₁)
    for k = 1 … N−2; result ½·Y_{N−2}(3I − Z_{N−2}Y_{N−2})·√tr(a). Deliberately approximate (N = 5 in SAN):
    trained SAN weights expect exactly this, not the eigendecomposition root. Runs in ``a``'s dtype/device.

    Raises:
        ValueError: if ``iterations < 2``.
    """
    if iterations < 2:
        raise ValueError(f"Newton–Schulz needs at least 2 iterations, got {iterations}")
    eye3 = 3.0 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    trace = a.diagonal(dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
    y = a / trace
    z = 0.5 * (eye3 - y)
    y = y @ z
    for _ in range(iterations - 2):
        t = 0.5 * (eye3 - z @ y)
        y, z = y @ t, t @ z
    return 0.5 * (y @ (eye3 - z @ y)) * trace.sqrt()


def central_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` rows/columns of each spatial axis longer than ``size``; (…, H, W) → (…, ≤size, ≤size).

    The official SOCA intends this but mis-indexes when exactly one side equals ``size``; we always crop centrally.
    """
    h, w = x.shape[-2:]
    top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
    return x[..., top : top + min(h, size), left : left + min(w, size)]


class MeanShift(nn.Conv2d):
    """1×1 RGB conv initialised to ``x + sign · 255 · mean`` (DIV2K mean). It is a learnable layer of the official
    model (its ``requires_grad=False`` never took effect), so its weights are loaded from checkpoints."""

    def __init__(self, sign: float) -> None:
        super().__init__(3, 3, 1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * 255.0 * torch.tensor(DIV2K_RGB_MEAN))


class SOCA(nn.Module):
    """Second-order channel attention: ``x · σ(W₂ ReLU(W₁ mean₁(√Σ)))`` with Σ the channel covariance (B, C, C)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        root = sqrtm_newton_schulz(covariance(central_crop(x, SOCA_MAX_SIZE)), iterations=5)
        return x * self.conv_du(root.mean(dim=1)[..., None, None])


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block with 2×2 max-pooled keys/values and no batch norm:
    ``x + W(softmax(θ(x) φ(x)ᵀ) g(x))``. Needs H, W ≥ 2 (max-pooling)."""

    def __init__(self, channels: int, inter_channels: int) -> None:
        super().__init__()
        # registration order = the official state-dict order
        self.g = nn.Sequential(nn.Conv2d(channels, inter_channels, 1), nn.MaxPool2d(2))
        self.W = nn.Conv2d(inter_channels, channels, 1)
        nn.init.zeros_(self.W.weight)  # the block starts as an identity
        nn.init.zeros_(self.W.bias)
        self.theta = nn.Conv2d(channels, inter_channels, 1)
        self.phi = nn.Sequential(nn.Conv2d(channels, inter_channels, 1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape

        def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C', h', w') → (B, 1, h'·w', C')
            # contiguous: with a strided last axis the CPU dispatcher falls back to the O(N·N_k) math kernel
            return t.flatten(2).transpose(1, 2).contiguous().unsqueeze(1)

        y = F.scaled_dot_product_attention(tokens(self.theta(x)), tokens(self.phi(x)), tokens(self.g(x)), scale=1.0)
        return x + self.W(y.squeeze(1).transpose(1, 2).reshape(b, -1, h, w))


class NonLocalCA(nn.Module):
    """Region-level non-local module: one :class:`NonLocalBlock` applied separately to each quadrant (split at
    H//2, W//2). ``soca`` (reduction 8) exists in the official format but is never applied."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.soca = SOCA(channels, reduction=8)
        self.non_local = NonLocalBlock(channels, channels // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h2, w2 = x.shape[-2] // 2, x.shape[-1] // 2
        rows = [x[..., :h2, :], x[..., h2:, :]]
        return torch.cat(
            [torch.cat([self.non_local(r[..., :w2]), self.non_local(r[..., w2:])], dim=-1) for r in rows], dim=-2
        )


class ResBlock(nn.Module):
    """Residual block ``x + conv(ReLU(conv(x)))`` (named ``rcab`` in the official format, without attention)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_first = nn.Sequential(conv(channels, channels, 3), nn.ReLU(inplace=True), conv(channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_first(x)


class LSRAG(nn.Module):
    """Local-source residual attention group: residual blocks → SOCA → 3×3 conv, plus the group input.
    ``gamma`` is stored by the official format but unused."""

    def __init__(self, channels: int, n_resblocks: int, reduction: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.rcab = nn.Sequential(*(ResBlock(channels) for _ in range(n_resblocks)))
        self.soca = SOCA(channels, reduction)
        self.conv_last = conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_last(self.soca(self.rcab(x)))


def upsampler(scale: int, channels: int) -> nn.Sequential:
    """EDSR upsampler: (3×3 conv to 4C, PixelShuffle(2)) × log₂ s, or one (conv to 9C, PixelShuffle(3)) for s = 3.

    Raises:
        ValueError: if ``scale`` is neither 3 nor a power of 2.
    """
    if scale == 3:
        return nn.Sequential(conv(channels, 9 * channels, 3), nn.PixelShuffle(3))
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"SAN supports scale 3 or a power of 2, got {scale}")
    stages = [m for _ in range(int(math.log2(scale))) for m in (conv(channels, 4 * channels, 3), nn.PixelShuffle(2))]
    return nn.Sequential(*stages)


class SAN(RGB255Model):
    """SAN as an odisr :class:`~odisr.models.base.SRModel`.

    ``forward(x)``: (B, 3, h, w) RGB in [0, 1] → raw (B, 3, s·h, s·w) in [0, 1] scale (not clamped); the network
    runs on [0, 255] and in the input's dtype/device. Inputs smaller than 4×4 (the two-level split + max-pooling
    of the non-local block) are replicate-padded at the bottom/right and the output is cropped.

    **Not tile-invariant.** SOCA uses the covariance of the whole feature map (central 1000×1000 crop beyond that)
    and the non-local block attends within each image quadrant, so the output of a tile depends on the tile's
    extent: tiled inference (including the official ``--chop``) differs from whole-image inference everywhere,
    not only near seams. The fixtures of the official model are whole-image outputs.

    Memory: the covariance is computed as (x−μ)(x−μ)ᵀ/M (O(C²) extra) and attention with a fused kernel, so memory
    grows linearly with the image, unlike the official O((HW)²) code.

    Args:
        scale: 2, 3, 4 or 8. n_resgroups: LSRAGs (20). n_resblocks: residual blocks per group (10).
        n_feats: feature channels (64). reduction: SOCA channel reduction in the groups (16).

    Raises:
        ValueError: for an unsupported scale or non-positive sizes.
    """

    architecture = "san"
    window_size = 1
    content_aware = False
    min_input_size = 4

    def __init__(
        self, scale: int = 4, n_resgroups: int = 20, n_resblocks: int = 10, n_feats: int = 64, reduction: int = 16
    ) -> None:
        super().__init__()
        if min(n_resgroups, n_resblocks, reduction) < 1 or n_feats < max(8, reduction):
            raise ValueError(
                f"SAN needs n_resgroups, n_resblocks, reduction ≥ 1 and n_feats ≥ max(8, reduction); got "
                f"n_resgroups={n_resgroups}, n_resblocks={n_resblocks}, n_feats={n_feats}, reduction={reduction}"
            )
        self.scale = scale
        # registration order = the official state-dict order
        self.gamma = nn.Parameter(torch.zeros(1))
        self.sub_mean = MeanShift(-1.0)
        self.RG = nn.ModuleList(LSRAG(n_feats, n_resblocks, reduction) for _ in range(n_resgroups))
        self.conv_last = conv(n_feats, n_feats, 3)  # unused by the official forward, kept for the format
        self.add_mean = MeanShift(1.0)
        self.non_local = NonLocalCA(n_feats)
        self.head = nn.Sequential(conv(3, n_feats, 3))
        self.tail = nn.Sequential(upsampler(scale, n_feats), conv(n_feats, 3, 3))

    def forward_255(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        residual = feats = self.non_local(x)
        for group in self.RG:
            feats = group(feats) + self.gamma * residual
        return self.add_mean(self.tail(self.non_local(feats) + x))

    def flops(self, h: int, w: int) -> int:
        """FLOPs (2 per multiply-add) on an ``h × w`` LR input: the counted convolutions/matmuls plus the two
        non-local attention passes (θφᵀ and its product with g: 4·N·N_k·C' per quadrant), which the fused CPU
        attention kernel hides from :class:`~torch.utils.flop_counter.FlopCounterMode`."""
        h, w = max(h, self.min_input_size), max(w, self.min_input_size)
        inner = self.non_local.non_local.theta.out_channels
        quadrants = [(qh, qw) for qh in (h // 2, h - h // 2) for qw in (w // 2, w - w // 2)]
        attention = sum(4 * qh * qw * (qh // 2) * (qw // 2) * inner for qh, qw in quadrants)
        return super().flops(h, w) + 2 * attention


def detect_san(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor arguments of an official SAN state dict, or None if the keys are not SAN's.

    n_feats from ``head.0.weight``; n_resgroups/n_resblocks by counting ``RG.{i}`` / ``RG.0.rcab.{j}``; reduction
    from ``RG.0.soca.conv_du.0``; scale from the tail: one conv to 9·C (×3) or k convs to 4·C (×2ᵏ).
    """
    required = ("sub_mean.weight", "head.0.weight", "non_local.non_local.theta.weight", "RG.0.soca.conv_du.0.weight")
    if not all(key in state_dict for key in required):
        return None
    n_feats = state_dict["head.0.weight"].shape[0]
    first_up = state_dict["tail.0.0.weight"].shape[0]
    up_convs = sum(1 for key in state_dict if key.startswith("tail.0.") and key.endswith(".weight"))
    return {
        "scale": 3 if first_up == 9 * n_feats else 2**up_convs,
        "n_resgroups": get_seq_len(state_dict, "RG"),
        "n_resblocks": get_seq_len(state_dict, "RG.0.rcab"),
        "n_feats": n_feats,
        "reduction": n_feats // state_dict["RG.0.soca.conv_du.0.weight"].shape[0],
    }


def _register() -> None:
    register_architecture(Architecture("san", build=SAN, detect=detect_san))
    for scale in (2, 3, 4):
        filename = f"SAN_BIX{scale}.pt"
        weights = WeightFile(
            filename=filename,
            url=None,
            instructions=(
                f"The official SAN weights are distributed only through Baidu Pan "
                f"(https://pan.baidu.com/s/1aTYG4Wy72MI-gCRGnJgkvQ , password eq1v); an unofficial Google Drive "
                f"mirror is https://drive.google.com/drive/folders/1VgCDgq3DJIZ2EXaMDfc_IiWlD4ZuNiKs (no hashes). "
                f"Download '{filename}' from either."
            ),
        )
        register_model(
            ModelSpec(
                name=f"san-x{scale}",
                architecture="san",
                kwargs={"scale": scale, "n_resgroups": 20, "n_resblocks": 10, "n_feats": 64, "reduction": 16},
                scale=scale,
                weights=weights,
                description=f"SAN ×{scale} (20 groups × 10 blocks, 64 features; DIV2K, bicubic degradation)",
                paper=PAPER,
                tags=("baseline", "classical", "cnn", "global-statistics"),
            )
        )


_register()
