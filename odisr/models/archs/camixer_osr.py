"""CAMixerOSR: the omnidirectional (ERP) CAMixerSR of the paper's ODI-SR experiments (Wang et al., CVPR 2024, §4.4).

Differences from CAMixerSR (spec ``CAMIXERSR.md`` §3.5): mean-shifted input, a ``norm`` after the head, no global
predictor — the global condition is an external 1-channel map, the cos-latitude of each pixel's row in the full
panorama (:func:`odisr.erp.condition_map`); shifted windows in odd blocks (cyclic, no attention mask); q = k = the
warped features; DCNv2 group tails whose offsets are predicted from the condition; wider conv branch and FFN.

Routing: the official inference keeps ``int(N·r)`` windows and ignores the constructor's ratio. That equals the
shared rule ``min(int(N·r·2γ), N)`` at γ = 0.5 exactly (×2 and ×0.5 are exact in floating point), so γ = 0.5 — the
default — reproduces the official behaviour, and :meth:`CAMixerOSR.set_ratio` means the same as for CAMixerSR
(γ = 1: every window takes attention; smaller γ: proportionally fewer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from odisr.models.archs.camixer_common import (
    WINDOW,
    BlockGroup,
    CAMixerNet,
    LayerNorm2d,
    MixerStyle,
    PerImageConv2d,
    TrainOutput,
    detect_groups,
    pad_to_multiple,
)
from odisr.models.archs.camixersr import PAPER, official_weights
from odisr.models.registry import Architecture, ModelSpec, StateDict, register_architecture, register_model

OSR_STYLE = MixerStyle(
    condition_channels=1,
    predictor_norm=False,
    slope=0.2,
    max_offset=None,
    residual_key=False,
    spatial_pointwise=True,
    spatial_kernel=5,
    spatial_dilation=3,
    ffn_kernel=5,
    ffn_bias=True,
)
RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean subtracted from the input and added back to the output


class DCNv2Pack(nn.Module):
    """Modulated deformable convolution (DCNv2, Zhu et al., CVPR 2019) with offsets predicted from a guide map.

    BasicSR's ``DCNv2Pack`` semantics: ``conv_offset(feat)`` gives ``3·k²`` channels split into ``o1, o2, m``;
    offsets = ``cat(o1, o2)``, mask = ``sigmoid(m)``; then ``torchvision.ops.deform_conv2d``. ``x`` ``(B, C_in, H, W)``
    and ``feat`` ``(B, C_in, H, W)`` give ``(B, C_out, H, W)``. Computed in float32 (deform_conv2d has no
    reduced-precision CPU kernel) and returned in ``x``'s dtype.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset = PerImageConv2d(in_channels, 3 * kernel_size**2, kernel_size, padding=padding)
        bound = 1 / math.sqrt(in_channels * kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.conv_offset.weight)  # start as a plain convolution (BasicSR's initialisation)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor, feat: Tensor) -> Tensor:
        o1, o2, mask = self.conv_offset(feat).float().chunk(3, dim=1)
        out = deform_conv2d(
            x.float(), torch.cat((o1, o2), dim=1), self.weight.float(), self.bias.float(),
            padding=self.padding, mask=torch.sigmoid(mask),
        )
        return out.to(x.dtype)


def condition_encoder(n_feats: int) -> nn.Sequential:
    """``offset_conv``: the 1-channel condition → ``n_feats`` guide features for a DCNv2Pack."""
    return nn.Sequential(
        PerImageConv2d(1, n_feats, 1), nn.LeakyReLU(0.2, inplace=True),
        PerImageConv2d(n_feats, n_feats, 1), nn.LeakyReLU(0.2, inplace=True),
    )


class OSRGroup(BlockGroup):
    """Blocks (odd ones with shifted windows) followed by a condition-guided DCNv2 ``body_tail`` and a residual."""

    def __init__(self, n_feats: int, n_block: int, ratio: float) -> None:
        super().__init__(n_feats, n_block, OSR_STYLE, ratio, shifted=True)
        self.offset_conv = condition_encoder(n_feats)
        self.body_tail = DCNv2Pack(n_feats, n_feats)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.body_tail(self.run_blocks(x, condition), self.offset_conv(condition)) + x


class CAMixerOSR(CAMixerNet):
    """CAMixerOSR network for ERP panoramas.

    Args:
        n_block: blocks per group (official ``[6, 6, 6, 6]``).
        n_group: number of groups.
        n_colors: image channels (3, RGB; the DIV2K mean is subtracted only for 3 channels).
        n_feats: feature width C (60).
        scale: upscaling factor s (2 or 4).
        ratio: attention ratio γ in [0, 1]; 0.5 reproduces the official ``int(N·r)`` rule (module docstring).

    ``forward(x, condition=None)``: ``x`` ``(B, 3, h, w)`` float RGB in [0, 1] (any h, w ≥ 1); ``condition``
    ``(B or 1, 1, h, w)`` the cos-latitude of each LR pixel's absolute row in the full panorama
    (:func:`odisr.erp.condition_map`) or None for zeros (the official default). Returns the raw
    ``(B, 3, s·h, s·w)`` output, not clamped; in training ``TrainOutput(output, ratio_loss)`` with the official
    ``(mean decision − 0.5)²``. Raises ``ValueError`` for wrongly shaped inputs or γ outside [0, 1].
    """

    architecture = "camixer_osr"
    uses_latitude = True

    def __init__(
        self,
        n_block: Sequence[int] = (6, 6, 6, 6),
        n_group: int = 4,
        n_colors: int = 3,
        n_feats: int = 60,
        scale: int = 4,
        ratio: float = 0.5,
    ) -> None:
        super().__init__(scale, ratio, n_block, n_group)
        mean = RGB_MEAN if n_colors == 3 else (0.0,) * n_colors
        self.register_buffer("rgb_mean", torch.tensor(mean).view(1, n_colors, 1, 1), persistent=False)
        self.head = PerImageConv2d(n_colors, n_feats, 3, padding=1)
        self.norm = LayerNorm2d(n_feats)
        self.body = nn.ModuleList(OSRGroup(n_feats, n_block[i], self.ratio) for i in range(n_group))
        self.offset_conv = condition_encoder(n_feats)
        self.body_tail = PerImageConv2d(n_feats, n_feats, 3, padding=1)
        self.dcn = DCNv2Pack(n_feats, n_feats)
        self.tail = nn.Sequential(PerImageConv2d(n_feats, n_colors * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        self._match_layout()

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor | TrainOutput:
        self._check_input(x)
        h, w = x.shape[-2:]
        condition = pad_to_multiple(self._condition(condition, x), WINDOW)
        mean = self.rgb_mean.to(x.dtype)
        feats = self.head(self._prepare(x) - mean)
        body = self.norm(feats)
        for group in self.body:
            body = group(body, condition)
        body = self.dcn(self.body_tail(body), self.offset_conv(condition)) + feats
        return self._finish(self.tail(body) + mean, h, w)

    @staticmethod
    def _condition(condition: Tensor | None, x: Tensor) -> Tensor:
        """The condition as ``(B, 1, h, w)`` in ``x``'s dtype/device (zeros when None)."""
        b, _, h, w = x.shape
        if condition is None:
            return x.new_zeros(b, 1, h, w)
        if condition.ndim != 4 or condition.shape[1] != 1 or condition.shape[0] not in (1, b) \
                or tuple(condition.shape[-2:]) != (h, w):
            raise ValueError(
                f"condition must have shape ({b} or 1, 1, {h}, {w}) to match the LR input {tuple(x.shape)}, got "
                f"{tuple(condition.shape)}; build it with odisr.erp.condition_map(height, width, r0, r1)"
            )
        return condition.to(device=x.device, dtype=x.dtype).expand(b, 1, h, w)

    def _full_res_convs(self) -> list[nn.Module]:
        groups = [m for group in self.body for m in (group.offset_conv, group.body_tail)]
        return [self.offset_conv, self.body_tail, self.dcn, *groups]

    def _extra_flops(self, pixels: int) -> int:
        return sum(2 * pixels * m.weight.numel() for m in self.modules() if isinstance(m, DCNv2Pack))

    def _ratio_loss(self, mean_decision: Tensor) -> Tensor:
        return (mean_decision - 0.5) ** 2


def detect(state_dict: StateDict) -> dict[str, Any] | None:
    """CAMixerOSR constructor kwargs inferred from an (unwrapped) state dict, or None if it is not a CAMixerOSR."""
    return detect_groups(state_dict, ("dcn.weight", "norm.weight", "body.0.body.0.mixer.route.out_mask.0.weight"))


register_architecture(Architecture("camixer_osr", build=CAMixerOSR, detect=detect))

for _scale, _sha1, _params in (
    (2, "b88949a0cb694b6534d051497a33f22c92244a3f", "1.31M"),
    (4, "26f0cca359323b523d4b37ed5f86dd072bdcf844", "1.32M"),
):
    register_model(
        ModelSpec(
            f"camixersr-odi-x{_scale}", "camixer_osr", {"n_feats": 60, "scale": _scale, "ratio": 0.5}, scale=_scale,
            # Renamed locally: the official ODISR file name collides with the lightweight one.
            weights=official_weights(f"ODISR/CAMixerSRx{_scale}.pth", _sha1, filename=f"CAMixerOSRx{_scale}.pth"),
            description=f"CAMixerOSR ×{_scale} for ERP panoramas (cos-latitude condition), {_params} parameters",
            paper=PAPER, tags=("odi",),
        )
    )
