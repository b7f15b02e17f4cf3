"""Full-reference quality metrics of super-resolved panoramas: WS-PSNR, WS-SSIM, PSNR, SSIM.

Definitions follow the field's reference code exactly (``/work/shared/specs/METRICS.md``):

* WS-PSNR (Sun, Lu & Yu 2017, IEEE SPL): ``WMSE = Σ w(j)(x − y)² / Σ w(j)`` over all pixels and RGB channels,
  with ``w(j) = cos((j + 0.5 − H/2)·π/H)`` (:func:`odisr.erp.latitude_weights`);
  ``WS-PSNR = 10·log10(255²/WMSE)``.
* SSIM (Wang et al. 2004, IEEE TIP): 11×11 Gaussian window, σ = 1.5, C1 = (0.01·255)², C2 = (0.03·255)², map in
  "valid" mode (5-pixel border dropped), per channel, averaged over channels (BasicSR ``calculate_ssim``).
* WS-SSIM (OSRT ``odi_metric.py``): that SSIM map weighted by ``w(j)`` computed for the map's own height
  ``H − 10`` (a quirk kept so that numbers compare with the papers).
* PSNR (BasicSR ``calculate_psnr``): plain MSE, ``crop_border`` pixels dropped on every side.

Inputs are two images of the same shape, ``(H, W, 3)`` RGB (or ``(H, W)``), uint8, uint16 (scaled by 255/65535) or
float in ``[0, 255]``. ``y_channel=True`` scores BT.601 luma ``Y = (65.481 R + 128.553 G + 24.966 B)/255 + 16`` in
``[16, 235]`` (BasicSR ``rgb2ycbcr``), computed in float64 without rounding. (BasicSR rounds ``RGB/255`` to float32
first; on the reference panoramas the two differ by at most 1.1e-7 dB.)

Everything is computed from per-row statistics over strips of rows, so memory stays a few float64 strips beyond
the two inputs whatever the image size, and WS-PSNR tiles or images can be pooled exactly (:class:`WeightedSSE`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from odisr.erp import latitude, latitude_weights

__all__ = [
    "WeightedSSE",
    "psnr",
    "ssim",
    "ws_mse",
    "ws_psnr",
    "ws_psnr_bands",
    "ws_sse",
    "ws_ssim",
]

#: BT.601 luma weights of RGB in [0, 255] giving Y in [16, 235] (ITU-R BT.601; BasicSR ``rgb2ycbcr``).
Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
Y_OFFSET = 16.0

_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5
_SSIM_HALO = _SSIM_WINDOW // 2  # rows/columns the valid-mode map loses on each side
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_STRIP_ELEMENTS = 1 << 21  # float64 elements per strip and channel (16 MB): bounds memory, stays cache friendly

RowStat = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------ WS-PSNR family
@dataclass(frozen=True)
class WeightedSSE:
    """The additive parts of WS-PSNR: pool tiles or images by adding, then read :attr:`wmse` / :attr:`ws_psnr`.

    ``sse = Σ w(j)·(x − y)²`` and ``weight = Σ w(j)`` over the same pixels and channels (values on the 255 scale).
    """

    sse: float
    weight: float

    def __add__(self, other: WeightedSSE) -> WeightedSSE:
        return WeightedSSE(self.sse + other.sse, self.weight + other.weight)

    @property
    def wmse(self) -> float:
        """Latitude-weighted mean squared error (255² scale)."""
        return self.sse / self.weight

    @property
    def ws_psnr(self) -> float:
        """WS-PSNR in dB (``inf`` when the images are identical)."""
        return _psnr_db(self.wmse)


def ws_sse(
    img1: np.ndarray, img2: np.ndarray, *, y_channel: bool = False, row0: int = 0, height: int | None = None
) -> WeightedSSE:
    """Latitude-weighted squared error of two images that are rows ``[row0, row0 + h)`` of an ERP panorama.

    Args:
        img1, img2: ``(h, W, 3)`` or ``(h, W)`` images (see module doc for dtypes), e.g. a tile and its reference.
        y_channel: score BT.601 luma instead of RGB.
        row0: absolute row of the images' first row in the full panorama.
        height: rows of the full panorama (default: ``h``, the images are the whole panorama).

    Returns:
        :class:`WeightedSSE`; summing the results of the tiles of a panorama gives that of the whole panorama.

    Raises:
        ValueError: shapes differ, unsupported dtype/shape, or the rows do not fit in ``height``.
    """
    img1, img2 = _check_pair(img1, img2, y_channel)
    h, w = img1.shape[:2]
    weights = latitude_weights(h if height is None else height, row0, row0 + h)
    row_sse = _per_row(img1, img2, partial(_squared_error_rows, y_channel=y_channel))
    return WeightedSSE(float(weights @ row_sse), float(weights.sum()) * w * _n_channels(img1, y_channel))


def ws_mse(img1: np.ndarray, img2: np.ndarray, *, y_channel: bool = False) -> float:
    """WMSE of two whole ERP panoramas (255² scale); see :func:`ws_sse` to pool tiles or images."""
    return ws_sse(img1, img2, y_channel=y_channel).wmse


def ws_psnr(img1: np.ndarray, img2: np.ndarray, *, y_channel: bool = False) -> float:
    """WS-PSNR in dB of two whole ERP panoramas ``(H, W, 3)`` (``inf`` when identical).

    ``10·log10(255² / WMSE)`` with the cos-latitude weights of Sun, Lu & Yu (2017), all channels pooled, no crop
    (OSRT / CAMixerSR / NTIRE 2023 360° SR convention).

    Raises:
        ValueError: shapes differ or are not images; unsupported dtype.
    """
    return ws_sse(img1, img2, y_channel=y_channel).ws_psnr


def ws_psnr_bands(
    img1: np.ndarray, img2: np.ndarray, n_bands: int = 6, *, y_channel: bool = False
) -> np.ndarray:
    """WS-PSNR of latitude bands, from the north pole to the south pole: where on the sphere the error lives.

    The rows are split into ``n_bands`` bands of (nearly) equal latitude extent, symmetric about the equator.

    Returns:
        float64 ``(n_bands, 3)``: ``lat_min_deg, lat_max_deg, ws_psnr_db`` per band (degrees north; dB, ``inf``
        for an error-free band).

    Raises:
        ValueError: as :func:`ws_psnr`, or ``n_bands`` not in ``[1, H]``.
    """
    img1, img2 = _check_pair(img1, img2, y_channel)
    h = img1.shape[0]
    if not 1 <= n_bands <= h:
        raise ValueError(f"n_bands must be between 1 and the image height {h}; got {n_bands}")
    edges = np.round(np.linspace(0, h, n_bands + 1)).astype(int)
    rows = []
    for r0, r1 in zip(edges[:-1], edges[1:]):
        band = ws_sse(img1[r0:r1], img2[r0:r1], y_channel=y_channel, row0=int(r0), height=h)
        top, bottom = np.degrees(latitude(np.array([r0, r1]) - 0.5, h))  # row edges, not centres
        rows.append((bottom, top, band.ws_psnr))
    return np.array(rows, dtype=np.float64)


def psnr(img1: np.ndarray, img2: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB (``inf`` when identical), BasicSR ``calculate_psnr``: ``crop_border`` pixels dropped per side.

    Raises:
        ValueError: shapes differ, unsupported dtype/shape, or the crop leaves nothing.
    """
    img1, img2 = _check_pair(_crop(img1, crop_border), _crop(img2, crop_border), y_channel)
    row_sse = _per_row(img1, img2, partial(_squared_error_rows, y_channel=y_channel))
    return _psnr_db(float(row_sse.sum()) / (img1.shape[0] * img1.shape[1] * _n_channels(img1, y_channel)))


# -------------------------------------------------------------------------------------------------- SSIM family
def ssim(img1: np.ndarray, img2: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM (Wang et al. 2004) as BasicSR ``calculate_ssim``: valid-mode Gaussian map, mean over pixels and channels.

    Returns:
        SSIM in [-1, 1] (1.0 when identical).

    Raises:
        ValueError: shapes differ, unsupported dtype/shape, or fewer than 11×11 pixels after the crop.
    """
    rows = _ssim_rows(_crop(img1, crop_border), _crop(img2, crop_border), y_channel)
    return float(rows.mean())


def ws_ssim(img1: np.ndarray, img2: np.ndarray, *, y_channel: bool = False) -> float:
    """WS-SSIM of two whole ERP panoramas (OSRT ``calculate_ssim_ws``), in [-1, 1] (1.0 when identical).

    The valid-mode SSIM map (``H − 10`` rows) of each channel is weighted by ``latitude_weights(H − 10)`` — the
    reference code's weights for the cropped height, kept for comparability — and the channels are averaged.

    Raises:
        ValueError: shapes differ, unsupported dtype/shape, or smaller than 11×11 pixels.
    """
    rows = _ssim_rows(img1, img2, y_channel)  # (H − 10, C): per-row means of the map
    weights = latitude_weights(rows.shape[0])
    return float(np.mean(weights @ rows / weights.sum()))


def _ssim_rows(img1: np.ndarray, img2: np.ndarray, y_channel: bool) -> np.ndarray:
    img1, img2 = _check_pair(img1, img2, y_channel)
    if min(img1.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {_SSIM_WINDOW}×{_SSIM_WINDOW} pixels; got {img1.shape[:2]}")
    return _per_row(img1, img2, partial(_ssim_map_rows, y_channel=y_channel), halo=2 * _SSIM_HALO)


def _ssim_map_rows(a: np.ndarray, b: np.ndarray, *, y_channel: bool) -> np.ndarray:
    """Per-row means ``(rows − 10, C)`` of the valid-mode SSIM map of two strips of rows."""
    pairs = zip(_planes(a, y_channel), _planes(b, y_channel))
    return np.stack([_ssim_map_rows_2d(p, q) for p, q in pairs], axis=1)


def _ssim_map_rows_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # In-place arithmetic keeps the working set at five strip-sized arrays.
    mu1, mu2 = _gaussian_valid(a), _gaussian_valid(b)
    s11, s22, s12 = _gaussian_valid(a * a), _gaussian_valid(b * b), _gaussian_valid(a * b)
    mu12 = mu1 * mu2
    mu1 *= mu1
    mu2 *= mu2
    s11 -= mu1  # σ1²
    s22 -= mu2  # σ2²
    s12 -= mu12  # σ12
    mu1 += mu2
    mu1 += _C1  # μ1² + μ2² + C1
    s11 += s22
    s11 += _C2  # σ1² + σ2² + C2
    mu12 *= 2
    mu12 += _C1  # 2μ1μ2 + C1
    s12 *= 2
    s12 += _C2  # 2σ12 + C2
    mu12 *= s12
    mu1 *= s11
    mu12 /= mu1
    return mu12.mean(axis=1)


def _gaussian_valid(x: np.ndarray) -> np.ndarray:
    """11×11 Gaussian (σ = 1.5) filtering in float64, keeping only the pixels whose window fits ("valid")."""
    kernel = cv2.getGaussianKernel(_SSIM_WINDOW, _SSIM_SIGMA, cv2.CV_64F).ravel()
    out = cv2.sepFilter2D(x, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out[_SSIM_HALO:-_SSIM_HALO, _SSIM_HALO:-_SSIM_HALO]


# ------------------------------------------------------------------------------------------------------ helpers
def _per_row(img1: np.ndarray, img2: np.ndarray, stat: RowStat, halo: int = 0) -> np.ndarray:
    """Apply ``stat`` to strips of rows and stack its per-row results.

    ``stat(a, b)`` maps strips ``(rows + halo, W[, C])`` of the inputs to per-row values ``(rows, ...)``: a
    valid-mode filter needs ``halo`` extra rows below each strip to produce the strip's rows.
    """
    h, w = img1.shape[:2]
    step = max(1, _STRIP_ELEMENTS // w)
    parts = []
    for r0 in range(0, h - halo, step):
        rows = slice(r0, min(r0 + step, h - halo) + halo)
        parts.append(stat(img1[rows], img2[rows]))
    return np.concatenate(parts)


def _squared_error_rows(a: np.ndarray, b: np.ndarray, *, y_channel: bool) -> np.ndarray:
    """Per-row sums of squared errors ``(rows,)`` of two strips, float64."""
    if a.dtype == b.dtype == np.uint8 and not y_channel:
        # |x − y|² ≤ 65025 fits uint16: exact integer arithmetic, ~6× faster than float64.
        diff = cv2.absdiff(a, b).astype(np.uint16)
        diff *= diff
        return diff.reshape(len(diff), -1).sum(axis=1, dtype=np.uint64).astype(np.float64)
    row_sse = np.zeros(len(a))
    for p, q in zip(_planes(a, y_channel), _planes(b, y_channel)):
        p -= q
        p *= p
        row_sse += p.sum(axis=1)
    return row_sse


def _planes(img: np.ndarray, y_channel: bool) -> list[np.ndarray]:
    """C-contiguous float64 ``(rows, W)`` planes on the 255 scale: each channel, or the BT.601 luma alone."""
    scale = 255.0 / 65535.0 if img.dtype == np.uint16 else 1.0
    channels = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    planes = [np.multiply(c, scale, dtype=np.float64) for c in channels]
    if not y_channel:
        return planes
    luma = planes[0] * Y_WEIGHTS[0]
    for plane, weight in zip(planes[1:], Y_WEIGHTS[1:]):
        plane *= weight
        luma += plane
    luma += Y_OFFSET
    return [luma]


def _check_pair(img1: np.ndarray, img2: np.ndarray, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    img1, img2 = np.asarray(img1), np.asarray(img2)
    if img1.shape != img2.shape:
        raise ValueError(
            f"images differ in shape: img1 {img1.shape} vs img2 {img2.shape}; an SR output must have its "
            f"reference's shape (H, W, C)"
        )
    if img1.size == 0:
        raise ValueError(f"cannot score empty images of shape {img1.shape}")
    if not (img1.ndim == 2 or (img1.ndim == 3 and img1.shape[2] in (1, 3))):
        raise ValueError(f"expected (H, W, 3) RGB or (H, W) images; got shape {img1.shape} (drop alpha first)")
    if y_channel and _n_channels(img1, False) != 3:
        raise ValueError(f"y_channel=True needs RGB (H, W, 3) images; got shape {img1.shape}")
    for img in (img1, img2):
        if img.dtype not in (np.uint8, np.uint16) and not np.issubdtype(img.dtype, np.floating):
            raise ValueError(f"expected uint8, uint16 or float images in [0, 255]; got {img.dtype}")
        if np.issubdtype(img.dtype, np.floating) and img.size and img.max() <= 1.0:
            warnings.warn("float image with values ≤ 1: metrics expect [0, 255]; multiply by 255", stacklevel=3)
    return img1, img2


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    img = np.asarray(img)
    if border < 0 or 2 * border >= min(img.shape[:2]):
        raise ValueError(f"crop_border={border} is invalid for an image of {img.shape[0]}×{img.shape[1]} (H×W)")
    return img[border : img.shape[0] - border, border : img.shape[1] - border] if border else img


def _n_channels(img: np.ndarray, y_channel: bool) -> int:
    return 1 if y_channel or img.ndim == 2 else img.shape[2]


def _psnr_db(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
