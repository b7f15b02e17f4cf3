"""MATLAB-compatible bicubic resizing (``imresize(A, scale, 'bicubic')``) on torch tensors and numpy images.

The field's LR images (Set5/Set14/DIV2K ``LR_bicubic``, ODI-SR/SUN360 ERP bicubic) are made with MATLAB's
``imresize``; reproducing it exactly matters because a model is only as good as the degradation it was trained on.
MATLAB's algorithm (``imresize.m``, "contributions"):

* cubic convolution kernel with a = −0.5 (Keys, 1981), support 4 pixels;
* when downscaling (scale < 1) with antialiasing, the kernel is stretched by 1/scale (``h(x) = s·k(s·x)``), so
  every output pixel averages over 4/scale input pixels;
* output pixel x (1-based) samples input coordinate ``u = x/s + 0.5·(1 − 1/s)``; the taps' weights are normalised
  to sum to 1; taps outside the image are mirrored (symmetric padding, edge pixel repeated);
* the two dimensions are resized one after the other, the one with the smaller scale first (rows first on ties);
* integer images are rounded and saturated after each pass (the MEX keeps the input class), floats are not clamped.

``wrap=True`` treats the horizontal direction as circular (taps beyond the right edge come from the left edge),
which is the right boundary for equirectangular (ERP) panoramas whose left and right edges meet on the sphere.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["cubic", "imresize", "output_size"]

_KERNEL_WIDTH = 4.0  # support of the bicubic kernel, in input pixels


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB's ``cubic``), a = −0.5; zero outside |x| ≤ 2. float64 in/out."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    near = ((a + 2) * ax3 - (a + 3) * ax2 + 1) * (ax <= 1)
    far = (a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a) * ((ax > 1) & (ax <= 2))
    return near + far


def output_size(in_size: int, scale: float) -> int:
    """MATLAB's output length ``ceil(scale · in_size)``, robust to float error (1/3 · 510 → 170, not 171)."""
    return max(1, math.ceil(in_size * scale - 1e-9))


@lru_cache(maxsize=64)
def _contributions(
    in_len: int, out_len: int, scale: float, antialias: bool, wrap: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a 1-D resize: ``indices`` int64 (out_len, P) into [0, in_len) and float64 ``weights`` (out_len, P)
    summing to 1 per row. Boundary: symmetric mirror (MATLAB), or circular when ``wrap``."""
    shrink = antialias and scale < 1
    width = _KERNEL_WIDTH / scale if shrink else _KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based tap positions
    dist = u[:, None] - idx
    weights = scale * cubic(scale * dist) if shrink else cubic(dist)
    weights /= weights.sum(axis=1, keepdims=True)
    idx0 = idx.astype(np.int64) - 1
    if wrap:
        idx0 = np.mod(idx0, in_len)
    else:  # symmetric: 0..n-1, n-1..0, repeated
        period = np.mod(idx0, 2 * in_len)
        idx0 = np.where(period < in_len, period, 2 * in_len - 1 - period)
    keep = np.any(weights != 0, axis=0)  # drop all-zero tap columns, as MATLAB does
    return idx0[:, keep], weights[:, keep]


def _resize_dim(x: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool, wrap: bool) -> torch.Tensor:
    """Resize float tensor ``x`` along ``dim`` (−1 or −2); memory O(output), one pass per kernel tap."""
    idx_np, w_np = _contributions(x.shape[dim], out_len, scale, antialias, wrap)
    idx = torch.from_numpy(idx_np).to(x.device)
    w = torch.from_numpy(w_np).to(device=x.device, dtype=x.dtype)
    shape = (-1, 1) if dim == -2 else (-1,)
    out = x.index_select(dim, idx[:, 0]) * w[:, 0].view(shape)
    for p in range(1, idx.shape[1]):
        out += x.index_select(dim, idx[:, p]) * w[:, p].view(shape)
    return out


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``round`` (half away from zero); torch's ``round`` is half-to-even."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _resize_tensor(
    x: torch.Tensor,
    scales: tuple[float, float],
    size: tuple[int, int],
    antialias: bool,
    wrap: bool,
    integer_range: tuple[int, int] | None,
) -> torch.Tensor:
    """Two separable passes in MATLAB's order; rounds/saturates between passes for integer images."""
    order = sorted((0, 1), key=lambda d: scales[d])  # smaller scale first, rows first on ties (stable sort)
    for d in order:
        dim = d - 2
        if x.shape[dim] == size[d] and scales[d] == 1:
            continue
        x = _resize_dim(x, dim, size[d], scales[d], antialias, wrap and dim == -1)
        if integer_range is not None:
            x = _round_half_away(x).clamp_(*integer_range)
    return x


def _parse_size(
    hw: tuple[int, int], scale: float | tuple[float, float] | None, size: tuple[int, int] | None
) -> tuple[tuple[float, float], tuple[int, int]]:
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale= (e.g. 0.25) or size=(height, width)")
    if size is not None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"imresize: size must be (height, width) ≥ 1, got {size!r}")
        out = (int(size[0]), int(size[1]))
        return (out[0] / hw[0], out[1] / hw[1]), out
    pair = (scale, scale) if np.isscalar(scale) else scale
    sc = (float(pair[0]), float(pair[1]))  # type: ignore[index]
    if min(sc) <= 0 or not all(math.isfinite(s) for s in sc):
        raise ValueError(f"imresize: scale must be a positive finite number, got {scale!r}")
    return sc, (output_size(hw[0], sc[0]), output_size(hw[1], sc[1]))


def imresize(
    image: np.ndarray | torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    wrap: bool = False,
) -> np.ndarray | torch.Tensor:
    """Resize like MATLAB ``imresize(image, scale, 'bicubic')`` (antialiased when shrinking).

    Args:
        image: a torch tensor ``(B, C, H, W)`` or ``(C, H, W)`` (float: computed in its dtype, fp16/bf16 in
            float32; uint8: rounded like MATLAB), or a numpy image ``(H, W, C)`` or ``(H, W)`` of dtype uint8,
            uint16 (computed in float64, rounded and saturated after each pass, like MATLAB) or float (float64
            compute, result in the input float dtype, not clamped).
        scale: factor, e.g. ``0.25`` for ×4 downscaling or ``4`` for upscaling; a pair gives (rows, columns).
            Output size is ``ceil(scale · input size)`` as in MATLAB.
        size: output ``(height, width)`` in pixels instead of ``scale`` (scale is then out/in per dimension).
        antialias: stretch the kernel when shrinking (MATLAB default True).
        wrap: treat the width as circular (ERP longitude) instead of mirroring at the left/right edges.

    Returns:
        The resized image, same type, layout and dtype as ``image``.

    Raises:
        ValueError: bad ``scale``/``size`` or an unsupported shape/dtype.
    """
    if isinstance(image, torch.Tensor):
        return _imresize_torch(image, scale, size, antialias, wrap)
    return _imresize_numpy(np.asarray(image), scale, size, antialias, wrap)


def _imresize_torch(x, scale, size, antialias, wrap) -> torch.Tensor:
    if x.ndim not in (3, 4):
        raise ValueError(f"imresize: torch input must be (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    scales, out = _parse_size(tuple(x.shape[-2:]), scale, size)
    integer = not (x.is_floating_point() or x.is_complex())
    work = x.float() if integer or x.dtype in (torch.float16, torch.bfloat16) else x
    rng = (int(torch.iinfo(x.dtype).min), int(torch.iinfo(x.dtype).max)) if integer else None
    y = _resize_tensor(work, scales, out, antialias, wrap, rng)
    return y.to(x.dtype)


def _imresize_numpy(a: np.ndarray, scale, size, antialias, wrap) -> np.ndarray:
    if a.ndim not in (2, 3):
        raise ValueError(f"imresize: numpy input must be (H, W) or (H, W, C), got shape {a.shape}")
    if a.dtype.kind not in "uif":
        raise ValueError(f"imresize: unsupported dtype {a.dtype}; use uint8, uint16 or float")
    integer = a.dtype.kind in "ui"
    rng = (int(np.iinfo(a.dtype).min), int(np.iinfo(a.dtype).max)) if integer else None
    chw = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
    t = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float64))[None]
    scales, out = _parse_size(a.shape[:2], scale, size)
    y = _resize_tensor(t, scales, out, antialias, wrap, rng)[0].numpy()
    y = y[0] if a.ndim == 2 else np.moveaxis(y, 0, -1)
    return np.ascontiguousarray(y).astype(a.dtype)
