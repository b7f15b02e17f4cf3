"""Building blocks shared by CAMixerSR and CAMixerOSR (Wang et al., "CAMixerSR: Only Details Need More Attention",
CVPR 2024, arXiv 2402.19289).

The content-aware mixer (CAMixer) splits a feature map into 16×16 windows. A small predictor scores every window;
the windows that "need more attention" go through window self-attention with deformable keys, the others keep a
cheap spatially re-weighted value ``v·sa``; a depth-wise convolution branch then runs over the whole map.

Module attribute names reproduce the official checkpoint keys exactly (``conv_sptial`` is the official spelling).
What differs between the two networks (predictor normalisation, LeakyReLU slope, kernels, shifted windows, how the
deformable key is formed) is captured by a :class:`MixerStyle`, so both networks share one implementation.

Routing at inference (odisr's deterministic, batch-independent rule, documented in ``specs/CAMIXERSR.md`` §decision 2):
per image, ``r`` = fraction of windows whose attention probability ``pred_score[..., 0]`` exceeds 0.5;
``keep = N`` if ``γ == 1`` else ``min(int(N·r·2γ), N)``; the ``keep`` highest-scoring windows take attention.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odisr.models.base import SRModel
from odisr.models.execution import execution_policy, splits_batch
from odisr.models.fused import Post, conv2d_then, linear
from odisr.models.global_stats import GlobalAvgPool2d
from odisr.models.registry import StateDict

WINDOW = 16  # CAMixer's window size; hard-coded in the official networks


class TrainOutput(NamedTuple):
    """What a CAMixer network returns in training mode (unpacks like the official ``(out, loss_ratio)``)."""

    output: Tensor
    """SR output ``(B, 3, s·h, s·w)``, unclamped."""
    ratio_loss: Tensor
    """Scalar predictor loss driving the mean attention fraction towards 0.5 (spec §4); add it to the L1 loss."""


class MixerParts(NamedTuple):
    """What :meth:`CAMixer.front` computes before the routing decision (all ``(B, ·, H, W)`` maps but ``probs``)."""

    shifted: Tensor  # the input on the block's (possibly shifted) window grid
    v: Tensor  # value projection
    features: Tensor  # the predictor's hidden map (pooled into the channel attention)
    offsets: Tensor  # (B, 2, H, W) deformable offsets in pixels
    sa: Tensor  # (B, 1, H, W) spatial attention
    probs: Tensor  # (B, N, 2) per-window probabilities: attention, convolution


class WindowRouting(NamedTuple):
    """Which windows of one block took attention in the last forward pass.

    Window ``(i, j)`` covers LR rows ``i·window_size + shift …`` and columns ``j·window_size + shift …`` (cyclically)
    of the input padded at the bottom/right to a multiple of ``window_size``.
    """

    selected: Tensor
    """``(B, nH, nW)`` bool, True where the window went through self-attention."""
    shift: int
    """Cyclic shift of the window grid in LR pixels (0, or 8 for CAMixerOSR's odd blocks)."""
    window_size: int


@dataclass(frozen=True)
class MixerStyle:
    """The architectural details that differ between CAMixerSR and CAMixerOSR (spec §3.2, §3.3, §3.5)."""

    condition_channels: int  # channels of the global condition: 2 (SR global predictor) or 1 (OSR cos-latitude)
    predictor_norm: bool  # LayerNorm inside the predictor's in_conv
    slope: float  # LeakyReLU negative slope of the predictor
    max_offset: float | None  # offsets = tanh(·)·max_offset (pixels), or unbounded
    residual_key: bool  # k = x + warp(x) with q = x (SR), or q = k = warp(x) (OSR)
    spatial_pointwise: bool  # conv branch starts with a 1×1 convolution (OSR)
    spatial_kernel: int  # depth-wise kernel size of the conv branch
    spatial_dilation: int  # dilation of the second depth-wise convolution
    ffn_kernel: int  # depth-wise kernel of the gated FFN
    ffn_bias: bool


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of a ``(B, C, H, W)`` map (ConvNeXt "channels_first" form, eps 1e-6).

    Parameters ``weight``/``bias`` ``(C,)``; output has the input's shape, dtype and memory format.
    A channels-last map is normalised by one ``F.layer_norm`` over its ``(B, H, W, C)`` view (contiguous rows of C
    values: one pass instead of the nine element-wise ops of the formula); an NCHW map by mean and variance over
    the channel dimension. Both are the official formula ``w·(x − mean)/√(var + eps) + b`` up to float rounding.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.is_contiguous(memory_format=torch.channels_last):
            rows = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
            return rows.permute(0, 3, 1, 2)
        var, mean = torch.var_mean(x, 1, correction=0, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None])


def flow_warp(x: Tensor, flow: Tensor) -> Tensor:
    """Warp ``x`` ``(B, C, H, W)`` by a per-pixel ``flow`` ``(B, H, W, 2)`` given in pixels (``[..., 0]`` along W).

    BasicSR's ``flow_warp`` semantics: bilinear sampling at ``pixel + flow``, normalised with ``align_corners=True``
    (``2·(pixel + flow)/(size − 1) − 1``, the same float operations in the same order), border padding. Sampling
    runs in float32 (grid_sample under autocast) and returns ``x``'s dtype.
    """
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float32)
    xs = torch.arange(w, device=x.device, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pixels = torch.stack((gx, gy), dim=2)  # (H, W, 2), x first like the flow
    extent = torch.tensor([max(w - 1, 1), max(h - 1, 1)], device=x.device, dtype=torch.float32)
    grid = (flow.float() + pixels).mul_(2.0).div_(extent).sub_(1.0)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def roll2d(x: Tensor, shift: int) -> Tensor:
    """Cyclic shift of the last two dims by ``shift`` pixels (no copy when ``shift == 0``)."""
    return torch.roll(x, shifts=(shift, shift), dims=(-2, -1)) if shift else x


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad ``(..., H, W)`` at the bottom/right up to multiples of ``multiple``.

    Reflect padding, as the official networks use, as far as the size allows (reflect needs pad < size); the rest
    is replicated, so any size from 1×1 works. Sizes the official code accepts are padded exactly as it does.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    rh, rw = min(ph, h - 1), min(pw, w - 1)
    if rh or rw:
        x = F.pad(x, (0, rw, 0, rh), mode="reflect")
    if ph > rh or pw > rw:
        x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
    return x


def to_windows(x: Tensor, ws: int) -> Tensor:
    """``(B, C, H, W)`` → contiguous ``(B·N, ws², C)`` tokens, windows row-major over the grid, tokens inside.

    Contiguous even for a single window (where the reshape alone would be a strided view), so that the attention
    kernel sees the same layout whatever the batch and grid.
    """
    b, c, h, w = x.shape
    tokens = x.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c)
    return tokens.contiguous()


def from_windows(
    tokens: Tensor, b: int, h: int, w: int, memory_format: torch.memory_format = torch.contiguous_format
) -> Tensor:
    """Inverse of :func:`to_windows`: ``(B·N, ws², C)`` → ``(B, C, H, W)``, contiguous in ``memory_format``.

    Always a fresh tensor in the requested layout, even for a single window (where the reshape alone would be a
    view in the other layout and make the convolutions pick another algorithm, and rounding, than for the same
    image in a batch). Channels-last is written in runs of ``ws·C`` values, NCHW in runs of ``ws``.
    """
    ws, c = math.isqrt(tokens.shape[1]), tokens.shape[2]
    grid = tokens.reshape(b, h // ws, w // ws, ws, ws, c)
    if memory_format == torch.channels_last:
        return grid.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return grid.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w).contiguous()


def window_view(x: Tensor, ws: int) -> Tensor:
    """``(B, C, H, W)`` → a ``(B, nH, nW, ws, ws, C)`` view of the same memory (any layout; no copy)."""
    return x.unflatten(2, (-1, ws)).unflatten(4, (-1, ws)).permute(0, 2, 4, 3, 5, 1)


class WindowSet(NamedTuple):
    """Some ``ws × ws`` windows of a batch: index tensors ``(M,)`` int64 of image, window row and window column."""

    image: Tensor
    row: Tensor
    col: Tensor
    ws: int

    @classmethod
    def of(cls, flat: Tensor, grid: tuple[int, int], ws: int) -> WindowSet:
        """From flat indices ``b·N + i·nW + j`` into a ``grid = (nH, nW)`` of windows (``N = nH·nW``)."""
        n_rows, n_cols = grid
        image, rest = flat.div(n_rows * n_cols, rounding_mode="floor"), flat.remainder(n_rows * n_cols)
        return cls(image, rest.div(n_cols, rounding_mode="floor"), rest.remainder(n_cols), ws)

    def gather(self, x: Tensor) -> Tensor:
        """The windows' tokens of a ``(B, C, H, W)`` map as ``(M, ws², C)`` (contiguous, :func:`to_windows` order).

        Reads only the selected windows, straight from ``x`` in its own layout.
        """
        return window_view(x, self.ws)[self.image, self.row, self.col].flatten(1, 2)

    def scatter_(self, x: Tensor, tokens: Tensor) -> Tensor:
        """Write ``tokens`` ``(M, ws², C)`` into the windows of ``x`` ``(B, C, H, W)`` in place; returns ``x``."""
        values = tokens.unflatten(1, (self.ws, self.ws)).to(x.dtype)
        window_view(x, self.ws).index_put_((self.image, self.row, self.col), values)
        return x


def window_coordinates(h: int, w: int, ws: int, like: Tensor) -> Tensor:
    """``(1, 2, h, w)`` in-window coordinates in [-1, 1]: channel 0 varies along H, channel 1 along W.

    Laid out in the execution policy's memory format for ``like``'s device, with ``like``'s dtype.
    """
    lin = torch.linspace(-1, 1, ws, device=like.device).to(like.dtype)
    window = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), dim=2)  # (ws, ws, 2)
    rows = window.repeat(h // ws, w // ws, 1).unsqueeze(0).permute(0, 3, 1, 2)  # channels-last (1, 2, h, w)
    return rows.contiguous(memory_format=_layout(like))


def window_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q·kᵀ)·v`` per window for ``(M, L, C)`` tokens — one head, no 1/√d scaling (CAMixer, spec §3.2.7)."""
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)


def keep_counts(p_attn: Tensor, ratio: float) -> Tensor:
    """Per-image number of attention windows ``(B,)`` int64 from the attention probabilities ``(B, N)``.

    ``r`` = fraction of windows with probability > 0.5 (the noise-free hard decision);
    ``keep = N`` if ``ratio == 1`` else ``min(int(N·r·2·ratio), N)`` (official rule without Gumbel noise).
    """
    b, n = p_attn.shape
    if ratio == 1:
        return torch.full((b,), n, dtype=torch.long, device=p_attn.device)
    r = (p_attn > 0.5).float().mean(1)
    return (n * r * 2 * ratio).long().clamp(max=n)


def top_windows(score: Tensor, keep: Tensor) -> Tensor:
    """``(B, N)`` bool: True for the ``keep[b]`` highest-scoring windows of each image ``b``.

    Ties (saturated probabilities of exactly 1.0 are common) are broken as the official code's non-stable
    ``argsort`` breaks them, which depends only on the row's values, not on the rest of the batch.
    """
    order = torch.argsort(score, dim=1, descending=True)
    ranks = torch.arange(score.shape[1], device=score.device)
    return torch.zeros_like(score, dtype=torch.bool).scatter_(1, order, ranks < keep[:, None])


def per_image(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` evaluated one image at a time where the execution policy asks for it (always on the CPU), so
    that its rounding cannot depend on the rest of the batch.

    Used for small tensors such as ``(B, C, 1, 1)`` or ``(B, N, 2)``, where an image's values sit at different
    offsets from the SIMD lanes in a batch than alone, and vector and scalar code round differently.
    """
    if not splits_batch(x):
        return module(x)
    return torch.cat([module(xi) for xi in x.split(1)])


class PerImageConv2d(nn.Conv2d):
    """``nn.Conv2d`` evaluated one image at a time where the execution policy asks for it (same parameters and
    state-dict keys; :mod:`odisr.models.execution`).

    oneDNN chooses its convolution algorithm from the whole input shape, batch size included, and the algorithms
    round differently: measured here, almost every convolution of these networks on 16×16 maps, and the small ones
    (3 input or ≤ 8 output channels) at any size, give an image a different result alone than inside a batch.
    Per-image calls make every output independent of its batch at no cost on CPU, where oneDNN parallelises within
    an image anyway.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"PerImageConv2d supports zero padding only, got padding_mode={self.padding_mode!r}")

    def forward(
        self, x: Tensor, post: Post = "none", other: Tensor | None = None, channels: slice | None = None
    ) -> Tensor:
        """``post(conv(x))`` — ``"none"``, ``"gelu"``, ``"add"``/``"mul"`` with ``other`` (:func:`conv2d_then`).

        ``channels`` computes only those output channels (for a depth-wise convolution ``x`` then holds the
        matching input channels): the values of ``self(x)[:, channels]`` without computing the other channels.
        """
        weight, bias, groups = self.weight, self.bias, self.groups
        if channels is not None:
            weight, bias = weight[channels], None if bias is None else bias[channels]
            groups = weight.shape[0] if groups == self.out_channels else groups

        def conv(xi: Tensor, oi: Tensor | None) -> Tensor:
            return conv2d_then(xi, weight, bias, self.stride, self.padding, self.dilation, groups, post, oi)

        if not splits_batch(x):
            return conv(x, other)
        others = [None] * x.shape[0] if other is None else other.split(1)
        return torch.cat([conv(xi, oi) for xi, oi in zip(x.split(1), others, strict=True)])


def conv_flops(pixels: int, *modules: nn.Module) -> int:
    """FLOPs (2 per multiply-add, biases not counted) of every ``Conv2d`` in ``modules`` on ``pixels`` outputs."""
    total = 0
    for module in modules:
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                kh, kw = conv.kernel_size
                total += 2 * pixels * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    return total


class GatedFeedForward(nn.Module):
    """Gated FFN: ``project_out(gelu(a) · b)`` with ``(a, b) = dwconv(project_in(x))`` split along channels.

    ``(B, C, H, W) → (B, C, H, W)``; hidden width 2C; depth-wise kernel 3 (SR, no bias) or 5 (OSR, bias).
    The halves ``a`` and ``b`` are computed as two C-channel maps rather than one 2C map cut in two: each half is
    then contiguous, so GELU runs vectorised whatever the batch (a strided half takes GELU's scalar erf path,
    whose rounding differs) without a copy, and no 2C-wide map is ever allocated.
    """

    def __init__(self, dim: int, kernel: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.project_in = PerImageConv2d(dim, 2 * dim, 1, bias=bias)
        self.dwconv = PerImageConv2d(2 * dim, 2 * dim, kernel, padding=kernel // 2, groups=2 * dim, bias=bias)
        self.project_out = PerImageConv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor, residual: bool = False) -> Tensor:
        """``ffn(x)``, or ``x + ffn(x)`` with ``residual`` (the sum fused into the last convolution on the CPU)."""
        dim = self.project_out.in_channels
        a, b = slice(0, dim), slice(dim, None)
        gate = self.dwconv(self.project_in(x, channels=a), "gelu", channels=a)
        gated = self.dwconv(self.project_in(x, channels=b), "mul", gate, channels=b)  # gelu(a)·b
        del gate  # (freed before the projection allocates: see Block.forward)
        return self.project_out(gated, "add", x) if residual else self.project_out(gated)


class Predictor(nn.Module):
    """CAMixer's predictor ("PredictorLG", spec §3.3): offsets, window scores, channel and spatial attention.

    Input ``(B, C + k, H, W)`` (value features, global condition, in-window coordinates), H and W multiples of the
    window. Returns ``offsets (B, 2, H, W)`` in pixels, ``ca (B, C, 1, 1)`` and ``sa (B, 1, H, W)`` in (0, 1), and
    ``probs (B, N, 2)`` — per window (row-major over the window grid) the softmax probability of attention
    (``[..., 0]``) and of the convolution path (``[..., 1]``).
    """

    def __init__(self, dim: int, window_size: int, style: MixerStyle) -> None:
        super().__init__()
        cdim = dim + style.condition_channels + 2
        hidden = cdim // 4
        act = nn.LeakyReLU(style.slope, inplace=True)
        norm = [LayerNorm2d(hidden)] if style.predictor_norm else []
        self.window_size = window_size
        self.max_offset = style.max_offset
        self.in_conv = nn.Sequential(PerImageConv2d(cdim, hidden, 1), *norm, act)
        self.out_offsets = nn.Sequential(PerImageConv2d(hidden, cdim // 8, 1), act, PerImageConv2d(cdim // 8, 2, 1))
        self.out_mask = nn.Sequential(
            nn.Linear(window_size**2, window_size), act, nn.Linear(window_size, 2), nn.Softmax(dim=-1)
        )
        self.out_CA = nn.Sequential(GlobalAvgPool2d(), PerImageConv2d(hidden, dim, 1), nn.Sigmoid())
        self.out_SA = nn.Sequential(PerImageConv2d(hidden, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        features, offsets, sa, probs = self.spatial(x)
        return offsets, self.channel_attention(features), sa, probs

    def spatial(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Everything but the channel attention: ``(features, offsets, sa, probs)``, ``features`` ``(B, C/4, H, W)``
        being the hidden map that :meth:`channel_attention` pools (part of a compiled region, see
        :meth:`CAMixerNet.compile_regions`)."""
        x = self.in_conv(x)
        offsets = self.out_offsets(x)
        if self.max_offset is not None:
            offsets = offsets.tanh() * self.max_offset
        energy = to_windows(x.mean(1, keepdim=True), self.window_size).view(x.shape[0], -1, self.window_size**2)
        return x, offsets, self.out_SA(x), per_image(self.out_mask, energy)

    def channel_attention(self, features: Tensor) -> Tensor:
        """``ca`` ``(B, C, 1, 1)`` from the hidden ``features``: global average pooling (which a tiled run replays
        from the whole image, :mod:`odisr.models.global_stats`, so it runs eagerly), 1×1 convolution, sigmoid."""
        return per_image(self.out_CA, features)

    def flops(self, pixels: int, windows: int) -> int:
        """FLOPs on ``pixels`` LR pixels split into ``windows`` windows (channel attention runs on 1 pooled pixel)."""
        lin1, lin2 = self.out_mask[0], self.out_mask[2]
        scorer = 2 * windows * (lin1.in_features * lin1.out_features + lin2.in_features * lin2.out_features)
        return conv_flops(pixels, self.in_conv, self.out_offsets, self.out_SA) + conv_flops(1, self.out_CA) + scorer


class CAMixer(nn.Module):
    """Content-aware mixer (spec §3.2; OSR variant §3.5). ``(B, C, H, W) → (B, C, H, W)``, H, W multiples of 16.

    ``condition`` is the global condition ``(B or 1, k, H, W)`` (k = ``style.condition_channels``).
    Eval mode routes each image's windows deterministically (module docstring) unless ``forced_keep`` fixes the
    count; training mode draws a hard Gumbel-softmax mask with straight-through gradients. The routing of the last
    call is kept in ``selection`` (``(B, nH, nW)``: bool in eval, the straight-through float mask in training), the
    predictor's attention probability of each window in ``scores`` (``(B, nH, nW)`` float in [0, 1], detached).
    """

    def __init__(self, dim: int, style: MixerStyle, window_size: int = WINDOW, shift: int = 0, ratio: float = 0.5):
        super().__init__()
        self.dim, self.window_size, self.shift, self.ratio = dim, window_size, shift, ratio
        self.residual_key = style.residual_key
        self.forced_keep: int | None = None
        self.selection: Tensor | None = None
        self.scores: Tensor | None = None
        k, d = style.spatial_kernel, style.spatial_dilation
        pointwise = [PerImageConv2d(dim, dim, 1)] if style.spatial_pointwise else []
        self.project_v = PerImageConv2d(dim, dim, 1)
        self.project_q = nn.Linear(dim, dim)
        self.project_k = nn.Linear(dim, dim)
        self.conv_sptial = nn.Sequential(
            *pointwise,
            PerImageConv2d(dim, dim, k, padding=k // 2, groups=dim),
            PerImageConv2d(dim, dim, k, padding=(k // 2) * d, groups=dim, dilation=d),
        )
        self.project_out = PerImageConv2d(dim, dim, 1)
        self.route = Predictor(dim, window_size, style)

    def forward(self, x: Tensor, condition: Tensor, residual: bool = False) -> Tensor:
        """``mixer(x)``, or ``x + mixer(x)`` with ``residual`` (fused into the last convolution on the CPU)."""
        mixed, ca = self.mix(x, self.front(x, condition))
        return self.back(mixed, ca, x, residual)

    def front(self, x: Tensor, condition: Tensor) -> MixerParts:
        """The part before the routing decision: value projection and the predictor's spatial outputs."""
        b, _, h, w = x.shape
        ws, shift = self.window_size, self.shift
        shifted = roll2d(x, -shift)
        v = self.project_v(shifted)
        coords = roll2d(window_coordinates(h, w, ws, v), -shift)
        # every part materialised in the activation layout, so that the concatenation (and the predictor's
        # convolutions, whose algorithm follows the layout) is laid out alike for one image and for a batch
        extra = [t.expand(b, -1, -1, -1).contiguous(memory_format=_layout(v)) for t in (condition, coords)]
        features, offsets, sa, probs = self.route.spatial(torch.cat([v, *extra], dim=1))
        return MixerParts(shifted, v, features, offsets, sa, probs)

    def mix(self, x: Tensor, parts: MixerParts) -> tuple[Tensor, Tensor]:
        """Channel attention, routing and window attention (eager: data-dependent); returns ``(mixed, ca)``, the
        mixed map back on the unshifted grid. Records ``selection`` and ``scores``."""
        shifted, v, features, offsets, sa, probs = parts
        del parts  # (here and below: maps are released as soon as they are used, see Block.forward)
        b, _, h, w = x.shape
        ws = self.window_size
        ca = self.route.channel_attention(features)
        del features
        if self.training:
            mask = F.gumbel_softmax(probs, hard=True, dim=-1)[..., 0]  # probabilities used as logits (official)
            mixed = self._attend_masked(*self._query_key(x, shifted, offsets), v, v * sa, mask)
        else:
            mask = self._select(probs[..., 0])
            mixed = self._attend_selected(x, shifted, offsets, v, sa, mask)
        self.selection = mask.view(b, h // ws, w // ws)
        self.scores = probs[..., 0].detach().view(b, h // ws, w // ws)
        return roll2d(mixed, self.shift), ca

    def back(self, mixed: Tensor, ca: Tensor, x: Tensor, residual: bool = False) -> Tensor:
        """The convolution branch and the output projection (``+ x`` with ``residual``)."""
        out = self._conv_branch(mixed, ca)
        return self.project_out(out, "add", x) if residual else self.project_out(out)

    def _conv_branch(self, mixed: Tensor, ca: Tensor) -> Tensor:
        """``gelu(conv_sptial(mixed))·ca + mixed`` (the GELU fused into the last depth-wise convolution on the CPU)."""
        y = mixed
        for conv in self.conv_sptial[:-1]:
            y = conv(y)
        y = self.conv_sptial[-1](y, "gelu")
        # in place unless autograd keeps y, or under compilation (TorchInductor reuses buffers itself; torch 2.11's
        # Dynamo breaks the graph at an `out=` tensor in channels-last)
        autograd = torch.is_grad_enabled() and (y.requires_grad or ca.requires_grad)
        in_place = not (autograd or torch.compiler.is_compiling())
        return torch.addcmul(mixed, y, ca, out=y if in_place else None)  # no new map (see Block.forward)

    @torch.compiler.disable  # eager: γ is a Python float, and a compiled rule would recompile for every γ
    def _select(self, p_attn: Tensor) -> Tensor:
        """``(B, N)`` bool routing of the windows (deterministic rule, or the forced count)."""
        b, n = p_attn.shape
        if self.forced_keep is None:
            keep = keep_counts(p_attn, self.ratio)
        else:
            keep = torch.full((b,), min(self.forced_keep, n), dtype=torch.long, device=p_attn.device)
        return top_windows(p_attn, keep)

    def _query_key(self, x: Tensor, shifted: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """Queries and deformable keys ``(B, C, H, W)`` in the window frame.

        The offsets are predicted in the (possibly shifted) window frame but warp the unshifted map (official).
        """
        warped = roll2d(flow_warp(x, offsets.permute(0, 2, 3, 1)), -self.shift)
        return (shifted, shifted + warped) if self.residual_key else (warped, warped)

    @torch.compiler.disable  # data-dependent window count: eager, so that a compiled model never recompiles for it
    def _attend_selected(
        self, x: Tensor, shifted: Tensor, offsets: Tensor, v: Tensor, sa: Tensor, sel: Tensor
    ) -> Tensor:
        """Attention on the selected windows only; every other window keeps ``v·sa``.

        The selected (image, window) pairs of the whole batch are gathered into one attention call, so each image
        keeps its own count and the result does not depend on the rest of the batch. Only the selected windows are
        read and written (straight from and into the feature maps); nothing of the attention branch (not even the
        deformable warp) runs when no window is selected, and ``v·sa`` is not formed when every window is.
        """
        ws = self.window_size
        b, _, h, w = v.shape
        flat = sel.flatten().nonzero().squeeze(1)
        if flat.numel() == 0:
            return v * sa
        q, k = self._query_key(x, shifted, offsets)
        if flat.numel() == sel.numel():
            def gather(t: Tensor) -> Tensor:
                return to_windows(t, ws)
        else:
            windows = WindowSet.of(flat, (h // ws, w // ws), ws)
            gather = windows.gather
        qw = gather(q)
        kw = qw if k is q else gather(k)
        del q, k  # (see Block.forward)
        q_proj, k_proj = self.project_q, self.project_k
        qw, kw = linear(qw, q_proj.weight, q_proj.bias), linear(kw, k_proj.weight, k_proj.bias)
        attended = window_attention(qw, kw, gather(v))
        del qw, kw
        if flat.numel() == sel.numel():
            return from_windows(attended.to(v.dtype), b, h, w, _layout(v))
        return windows.scatter_(v * sa, attended)

    def _attend_masked(self, q: Tensor, k: Tensor, v: Tensor, vs: Tensor, mask: Tensor) -> Tensor:
        """Training path: every window is processed and the hard mask ``(B, N)`` blends attention and ``v·sa``."""
        ws = self.window_size
        b, _, h, w = v.shape
        m = mask.reshape(-1, 1, 1)
        qw = to_windows(q, ws) * m
        kw = qw if k is q else to_windows(k, ws) * m
        attended = window_attention(self.project_q(qw), self.project_k(kw), to_windows(v, ws) * m)
        return from_windows(attended + to_windows(vs, ws) * (1 - m), b, h, w, _layout(v))

    def flops(self, pixels: int, windows: int, kept: int) -> int:
        """FLOPs with ``kept`` of ``windows`` windows through attention (q/k projections + two token matmuls)."""
        tokens = kept * self.window_size**2
        attention = 2 * tokens * 2 * self.dim * self.dim + 2 * 2 * tokens * self.window_size**2 * self.dim
        convs = conv_flops(pixels, self.project_v, self.conv_sptial, self.project_out)
        return convs + self.route.flops(pixels, windows) + attention


class Block(nn.Module):
    """Post-norm CAMixer block: ``x = norm1(x + mixer(x)); x = norm2(x + ffn(x))`` on ``(B, C, H, W)``."""

    def __init__(self, dim: int, style: MixerStyle, shift: int = 0, ratio: float = 0.5) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.mixer = CAMixer(dim, style, shift=shift, ratio=ratio)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedFeedForward(dim, style.ffn_kernel, style.ffn_bias)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        # No name holds a feature map longer than it is needed (the mixer's parts are a temporary, `del` drops
        # the rest): a map freed before the next one is allocated lends it its memory, which the allocator hands
        # out again; a new map is paged in and zeroed by the kernel first. Measured (CAMixerSR-S ×4, 512×256 LR,
        # 2 threads, glibc's default malloc settings): page faults per forward pass 0.82 M → 0.13–0.18 M, time
        # 4.3 s → 3.1–3.4 s (README "Performance").
        mixed, ca = self.mixer.mix(x, self.mixer.front(x, condition))
        return self.finish(x, mixed, ca)

    def finish(self, x: Tensor, mixed: Tensor, ca: Tensor) -> Tensor:
        """Everything after the mixer's attention: its convolution branch and projection, both norms, the FFN."""
        y = self.mixer.back(mixed, ca, x, residual=True)
        del mixed, x  # (see forward; the caller still holds the block's input)
        y = self.norm1(y)
        return self.norm2(self.ffn(y, residual=True))

    def flops(self, pixels: int, windows: int, kept: int) -> int:
        return self.mixer.flops(pixels, windows, kept) + conv_flops(pixels, self.ffn)


class BlockGroup(nn.Module):
    """A stack of ``n_block`` blocks (``body``); with ``shifted``, odd blocks shift their windows by half a window.

    Subclasses add the group's ``body_tail`` and the residual connection.
    """

    def __init__(self, dim: int, n_block: int, style: MixerStyle, ratio: float, shifted: bool = False) -> None:
        super().__init__()
        shifts = [WINDOW // 2 if shifted and i % 2 else 0 for i in range(n_block)]
        self.body = nn.ModuleList(Block(dim, style, shift=s, ratio=ratio) for s in shifts)

    def run_blocks(self, x: Tensor, condition: Tensor) -> Tensor:
        for block in self.body:
            x = block(x, condition)
        return x

    def blocks_flops(self, pixels: int, windows: int, kept: Iterator[int]) -> int:
        return sum(block.flops(pixels, windows, next(kept)) for block in self.body)


class CAMixerNet(SRModel, metaclass=abc.ABCMeta):
    """Behaviour common to CAMixerSR and CAMixerOSR: ratio γ, routing read-out, forced keep counts, FLOPs, padding.

    Subclasses build ``head``, ``body`` (a ModuleList of :class:`BlockGroup`) and ``tail``, implement
    ``_full_res_convs`` and ``_ratio_loss``, and may override ``_extra_flops``.
    """

    window_size = WINDOW
    content_aware = True

    def __init__(self, scale: int, ratio: float, n_block: Sequence[int], n_group: int) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if len(n_block) < n_group:
            raise ValueError(f"n_block needs a block count for each of the {n_group} groups, got {list(n_block)}")
        self.scale = int(scale)
        self._ratio = _check_ratio(ratio)

    def _match_layout(self) -> None:
        """Lay 4-D weights out in the execution policy's memory format for their device.

        Subclasses call this at the end of ``__init__``; :meth:`_apply` calls it after every ``.to()``/``.cuda()``,
        so weights are channels-last on the CPU and NCHW on CUDA (:mod:`odisr.models.execution`). ``load_state_dict``
        copies into the existing tensors, so checkpoints keep the layout. Parameters keep their identity (only
        ``.data`` is replaced), so optimisers built before a move stay valid.
        """
        for param in self.parameters():
            if param.ndim == 4:
                fmt = execution_policy(param.device).memory_format
                if not param.is_contiguous(memory_format=fmt):
                    param.data = param.data.contiguous(memory_format=fmt)

    def _apply(self, fn: Any, recurse: bool = True) -> CAMixerNet:
        super()._apply(fn, recurse)
        self._match_layout()
        return self

    @staticmethod
    def _prepare(x: Tensor) -> Tensor:
        """The input padded to the window multiple, in the execution policy's memory format (like the weights)."""
        return pad_to_multiple(x, WINDOW).contiguous(memory_format=_layout(x))

    # --- ratio γ --------------------------------------------------------------------------------------------
    @property
    def ratio(self) -> float:
        """Attention ratio γ in [0, 1] (1 = every window takes attention)."""
        return self._ratio

    def set_ratio(self, ratio: float) -> None:
        """Set γ for the following forward passes; raises ``ValueError`` outside [0, 1]."""
        self._ratio = _check_ratio(ratio)
        for mixer in self.mixers():
            mixer.ratio = self._ratio

    def compile_regions(self) -> list[tuple[nn.Module, str]]:
        """``(module, method name)`` pairs that :func:`odisr.models.compiled.compile_model` compiles: per block the
        mixer's :meth:`CAMixer.front` and the block's :meth:`Block.finish` — every tensor operation of a block but
        its channel attention, routing and window attention, which are data-dependent and stay eager. Neither
        region has a graph break, so the blocks of one shape share two compiled graphs."""
        blocks = [m for m in self.modules() if isinstance(m, Block)]
        return [(b.mixer, "front") for b in blocks] + [(b, "finish") for b in blocks]

    def mixers(self) -> list[CAMixer]:
        """The CAMixer of every block, in forward order."""
        return [m for m in self.modules() if isinstance(m, CAMixer)]

    # --- routing read-out -----------------------------------------------------------------------------------
    def routing(self) -> list[WindowRouting]:
        """Per block, which windows took attention in the last forward pass; raises ``RuntimeError`` before any."""
        out = []
        for mixer in self.mixers():
            if mixer.selection is None:
                raise RuntimeError("no routing recorded yet: run a forward pass first")
            out.append(WindowRouting(mixer.selection.detach() > 0.5, mixer.shift, mixer.window_size))
        return out

    def window_scores(self) -> list[tuple[Tensor, int]]:
        """Per block, ``(scores, shift)``: the predictor's attention probability ``(B, nH, nW)`` in [0, 1] of each
        window in the last forward pass (on that block's window grid, shifted by ``shift`` LR pixels like
        :meth:`routing`); raises ``RuntimeError`` before any."""
        if any(mixer.scores is None for mixer in self.mixers()):
            raise RuntimeError("no window scores recorded yet: run a forward pass first")
        return [(mixer.scores, mixer.shift) for mixer in self.mixers()]

    def kept_windows(self) -> Tensor:
        """``(n_blocks, B)`` int64: windows that took attention per block and image in the last forward pass."""
        return torch.stack([r.selected.flatten(1).sum(1) for r in self.routing()])

    @contextmanager
    def force_keep(self, counts: Sequence[int]) -> Iterator[CAMixerNet]:
        """Test hook: within the context every image keeps exactly ``counts[i]`` windows in block ``i`` (eval).

        Reproduces the official stochastic runs from their recorded keep counts; raises ``ValueError`` when the
        number of counts differs from the number of blocks.
        """
        mixers = self.mixers()
        if len(counts) != len(mixers):
            raise ValueError(f"force_keep needs one count per block ({len(mixers)}), got {len(counts)}")
        for mixer, count in zip(mixers, counts):
            mixer.forced_keep = int(count)
        try:
            yield self
        finally:
            for mixer in mixers:
                mixer.forced_keep = None

    # --- cost -------------------------------------------------------------------------------------------------
    def expected_kept(self, windows: int) -> int:
        """Attention windows per block expected at γ: all at γ = 1, else ``int(N·γ)`` (trained mean r = 0.5)."""
        return windows if self._ratio == 1 else int(windows * self._ratio)

    def flops(self, h: int, w: int, kept: Sequence[int] | None = None) -> int:
        """FLOPs (2 per multiply-add; convolutions, linear layers and attention matmuls) for one ``h × w`` LR image.

        ``kept`` gives the attention windows of each block (e.g. ``kept_windows()[:, 0]`` after a forward pass);
        by default :meth:`expected_kept` at the current γ. Computed on the input padded to multiples of 16.
        """
        hp, wp = h + (-h % WINDOW), w + (-w % WINDOW)
        pixels, windows = hp * wp, hp * wp // WINDOW**2
        n_blocks = len(self.mixers())
        counts = iter([self.expected_kept(windows)] * n_blocks if kept is None else [int(k) for k in kept])
        body = sum(group.blocks_flops(pixels, windows, counts) for group in self.body)
        convs = conv_flops(pixels, self.head, *self._full_res_convs())
        tail = conv_flops(pixels, self.tail)
        return body + convs + tail + self._extra_flops(pixels)

    @abc.abstractmethod
    def _full_res_convs(self) -> list[nn.Module]:
        """Modules outside the blocks and the tail whose convolutions all run at LR resolution."""

    def _extra_flops(self, pixels: int) -> int:
        return 0

    # --- forward helpers ----------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.head.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects LR images of shape (B, {self.head.in_channels}, h, w), "
                f"got {tuple(x.shape)}"
            )

    def _finish(self, sr: Tensor, h: int, w: int) -> Tensor | TrainOutput:
        sr = sr[..., : h * self.scale, : w * self.scale]
        if not self.training:
            return sr
        decisions = torch.stack([m.selection.flatten(1).mean(1) for m in self.mixers()])  # (n_blocks, B)
        return TrainOutput(sr, self._ratio_loss(decisions.mean()))

    @abc.abstractmethod
    def _ratio_loss(self, mean_decision: Tensor) -> Tensor:
        """Scalar predictor loss from the mean attention decision over blocks and images (training only)."""


def _layout(x: Tensor) -> torch.memory_format:
    """Memory format of activations on ``x``'s device (:func:`odisr.models.execution.execution_policy`)."""
    return execution_policy(x.device).memory_format


def _check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:  # also rejects NaN
        raise ValueError(f"ratio γ must be in [0, 1] (fraction of windows taking attention), got {ratio}")
    return ratio


def detect_groups(sd: StateDict, required: Sequence[str]) -> dict[str, Any] | None:
    """Constructor kwargs ``n_feats, n_colors, scale, n_block, n_group`` from a CAMixer state dict.

    Returns None unless every key in ``required`` is present (so other architectures are not mistaken for this one).
    """
    if not all(key in sd for key in ("head.weight", "tail.0.weight", *required)):
        return None
    blocks: dict[int, set[int]] = {}
    for key in sd:
        parts = key.split(".")
        if len(parts) > 4 and parts[0] == "body" and parts[2] == "body":
            blocks.setdefault(int(parts[1]), set()).add(int(parts[3]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        return None
    n_feats, n_colors = sd["head.weight"].shape[:2]
    scale = math.isqrt(sd["tail.0.weight"].shape[0] // n_colors)
    return {
        "n_block": tuple(len(blocks[g]) for g in range(len(blocks))),
        "n_group": len(blocks),
        "n_colors": int(n_colors),
        "n_feats": int(n_feats),
        "scale": scale,
    }
