"""LR degradations of equirectangular (ERP) panoramas: ERP bicubic and OSRT's fisheye downsampling.

ODISR test sets (ODI-SR, SUN360) make the LR panorama by MATLAB-bicubic downsampling of the ERP image
(:func:`bicubic_erp`). OSRT (Yu et al., "OSRT: Omnidirectional Image Super-Resolution with Distortion-aware
Transformer", CVPR 2023) argues that a camera's resolution is lost on the *fisheye* images it captures, not on
the ERP image they are stored as, and proposes "Fisheye downsampling": ERP → fisheye images → uniform bicubic ↓s →
back to ERP (:func:`fisheye`). Both keep the left/right edges of the ERP image as neighbours.

Sizes not divisible by the scale: the HR image is first cropped to a multiple of ``scale`` at the bottom and right
(:func:`modcrop`, BasicSR's convention), and the SR result must be scored against that cropped HR —
:func:`degrade` returns both. The crop removes at most ``scale − 1`` rows and columns (a fraction of a degree of
the sphere), which the degradations ignore: they treat the cropped image as the full sphere.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from odisr.resize import imresize

__all__ = ["DEGRADATIONS", "bicubic_erp", "degrade", "fisheye", "modcrop"]

#: Width, in LR pixels, of the fisheye canvas beyond the 180° circle. The bicubic kernels of the ↓s resize
#: (±2 LR px) and of the remap back to ERP (±2 LR px) must only touch real sphere content, never the canvas edge.
_FISHEYE_MARGIN_LR = 6


def _check_image(hr: np.ndarray, scale: int) -> None:
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer (2, 3, 4, ...), got {scale!r}")
    if hr.ndim != 3 or hr.shape[2] != 3 or hr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"expected an (H, W, 3) uint8 or uint16 RGB image, got shape {hr.shape} dtype {hr.dtype}; "
            "read images with odisr.io.read_image"
        )
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise ValueError(f"image of size {hr.shape[1]}×{hr.shape[0]} px is smaller than the scale ×{scale}")


def modcrop(hr: np.ndarray, scale: int) -> np.ndarray:
    """Crop ``hr`` (H, W, ...) at the bottom and right to ``(H − H mod s, W − W mod s)`` (a view, no copy).

    Raises:
        ValueError: ``scale`` < 1 or larger than the image.
    """
    if scale < 1 or hr.shape[0] < scale or hr.shape[1] < scale:
        raise ValueError(f"cannot crop an image of shape {hr.shape} to a multiple of scale {scale!r}")
    return hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]


def bicubic_erp(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-bicubic ↓scale of an ERP panorama, circular in longitude.

    ``imresize(hr, 1/scale, 'bicubic')`` (Keys a = −0.5, antialiased) except that the kernel wraps around the
    left/right edges instead of mirroring there (:func:`odisr.resize.imresize` with ``wrap=True``).

    Args:
        hr: (H, W, 3) uint8 or uint16 RGB ERP image; cropped with :func:`modcrop` first.
        scale: integer factor s ≥ 1.

    Returns:
        (H // s, W // s, 3) LR image of the same dtype.

    Raises:
        ValueError: bad shape/dtype or scale.
    """
    _check_image(hr, scale)
    hr = modcrop(hr, scale)
    return imresize(hr, 1.0 / scale, wrap=True)


# --- fisheye geometry -------------------------------------------------------------------------------------------
# World frame: x → (lat 0, lon 0), y → (lat 0, lon +90°), z → north pole. ERP column i has longitude
# (i + 0.5)/W·2π − π and row j latitude π/2 − (j + 0.5)/H·π (longitude grows to the right, latitude upwards).
# A fisheye camera looks along the equator at longitude φ0 with "right" towards φ0 + 90° and "up" to the north
# pole. Equidistant model: a ray at angle α from the optical axis lands at radius r = α / (π/2) · R, R being the
# radius of the 180° circle, at the azimuth ψ of the ray around the axis (image y points down).


def _camera_to_lonlat(alpha: np.ndarray, psi: np.ndarray, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """Ray at angle ``alpha`` from the axis and azimuth ``psi`` (radians) of the camera at ``lon0`` → (lon, lat)."""
    forward, right, up = np.cos(alpha), np.sin(alpha) * np.cos(psi), np.sin(alpha) * np.sin(psi)
    x = forward * np.cos(lon0) - right * np.sin(lon0)
    y = forward * np.sin(lon0) + right * np.cos(lon0)
    return np.arctan2(y, x), np.arcsin(np.clip(up, -1.0, 1.0))


def _lonlat_to_camera(lon: np.ndarray, lat: np.ndarray, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) in radians → (alpha, psi) in the camera at ``lon0`` (inverse of :func:`_camera_to_lonlat`)."""
    forward = np.cos(lat) * np.cos(lon - lon0)
    right = np.cos(lat) * np.sin(lon - lon0)
    return np.arccos(np.clip(forward, -1.0, 1.0)), np.arctan2(np.sin(lat), right)


def _erp_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitude (1, W) and latitude (H, 1) of ERP pixel centres, radians."""
    lon = (np.arange(width) + 0.5) / width * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(height) + 0.5) / height * np.pi
    return lon[None, :], lat[:, None]


def _pad_sphere(erp: np.ndarray, pad: int) -> np.ndarray:
    """Pad an ERP image by ``pad`` px with its true sphere neighbours: circular in longitude; beyond a pole the
    rows continue on the opposite meridian (flipped and rolled by W/2), so interpolation is seamless everywhere."""
    width = erp.shape[1]
    top = np.roll(erp[pad - 1 :: -1], width // 2, axis=1)
    bottom = np.roll(erp[: -pad - 1 : -1], width // 2, axis=1)
    tall = np.concatenate([top, erp, bottom], axis=0)
    return np.concatenate([tall[:, -pad:], tall, tall[:, :pad]], axis=1)


def _remap(image: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bicubic sampling of float32 ``image`` at pixel coordinates (col, row) (OpenCV, Keys a = −0.75)."""
    return cv2.remap(image, col.astype(np.float32), row.astype(np.float32), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REPLICATE)


def _erp_to_fisheye(erp: np.ndarray, diameter: int, margin: int, lon0: float) -> np.ndarray:
    """Render the 180° equidistant fisheye of diameter ``diameter`` px looking at ``lon0`` from float32 ``erp``,
    on a square canvas with ``margin`` extra px per side filled by the same mapping continued past 90°."""
    height, width = erp.shape[:2]
    side = diameter + 2 * margin
    c = (np.arange(side) + 0.5) - side / 2  # pixel-centre offsets from the optical axis
    x, y = c[None, :], c[:, None]
    alpha = np.hypot(x, y) / (diameter / 2) * (np.pi / 2)
    lon, lat = _camera_to_lonlat(alpha, np.arctan2(-y, x), lon0)
    pad = 3  # bicubic taps reach 2 px; one spare
    col = (lon + np.pi) / (2 * np.pi) * width - 0.5 + pad
    row = (np.pi / 2 - lat) / np.pi * height - 0.5 + pad
    return _remap(_pad_sphere(erp, pad), col, row)


def _fisheye_to_erp(fish: np.ndarray, diameter: float, height: int, width: int, lon0: float) -> np.ndarray:
    """Sample the (H, W) ERP image seen by the fisheye ``fish`` (diameter ``diameter`` px, centred on its canvas)."""
    lon, lat = _erp_grid(height, width)
    alpha, psi = _lonlat_to_camera(lon, lat, lon0)
    r = alpha / (np.pi / 2) * (diameter / 2)
    centre = fish.shape[0] / 2 - 0.5
    return _remap(fish, centre + r * np.cos(psi), centre - r * np.sin(psi))


def fisheye(hr: np.ndarray, scale: int) -> np.ndarray:
    """OSRT's "Fisheye downsampling" of an ERP panorama (Yu et al., CVPR 2023).

    Convention (OSRT describes the process, not these details): the sphere is split at longitudes ±90° into a
    front hemisphere (centred on longitude 0, the middle column of the ERP image) and a back one (centred on
    ±180°, the left/right edges). Each is rendered as a 180°-FOV equidistant fisheye image of diameter H (the ERP
    height, so the fisheye centre has the ERP's angular resolution, 180°/H per pixel), downsampled by MATLAB
    bicubic ×1/s (OSRT uses PIL bicubic, also antialiased Keys a = −0.5), and projected back to an (H/s, W/s) ERP
    image, each LR pixel taken from the hemisphere it lies in. Resampling between ERP and fisheye is OpenCV
    bicubic in float32 (no intermediate 8-bit rounding). The fisheye canvas extends 6 LR px beyond the 180° circle
    with the continued equidistant mapping, so that no kernel ever reads a black rim.

    Args:
        hr: (H, W, 3) uint8 or uint16 RGB ERP image (2:1 expected); cropped with :func:`modcrop` first.
        scale: integer factor s ≥ 1.

    Returns:
        (H // s, W // s, 3) LR ERP image of the same dtype (clipped and rounded).

    Raises:
        ValueError: bad shape/dtype or scale.
    """
    _check_image(hr, scale)
    hr = modcrop(hr, scale)
    height, width = hr.shape[:2]
    erp = hr.astype(np.float32)
    lr_h, lr_w = height // scale, width // scale
    lr_diameter = height / scale
    lon, _ = _erp_grid(lr_h, lr_w)
    front = np.broadcast_to(np.abs(lon) <= np.pi / 2, (lr_h, lr_w))[..., None]
    halves = []
    for lon0 in (0.0, np.pi):
        fish = _erp_to_fisheye(erp, height, _FISHEYE_MARGIN_LR * scale, lon0)
        fish_lr = imresize(fish, 1.0 / scale)
        halves.append(_fisheye_to_erp(fish_lr, lr_diameter, lr_h, lr_w, lon0))
    lr = np.where(front, halves[0], halves[1])
    top = np.iinfo(hr.dtype).max
    return np.clip(np.rint(lr), 0, top).astype(hr.dtype)


#: Degradations by the name used in configs and on the command line.
DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"bicubic": bicubic_erp, "fisheye": fisheye}


def degrade(hr: np.ndarray, scale: int, method: str = "bicubic") -> tuple[np.ndarray, np.ndarray]:
    """Make the (HR, LR) evaluation pair of an ERP panorama.

    Args:
        hr: (H, W, 3) uint8 or uint16 RGB ERP image.
        scale: integer factor s ≥ 1.
        method: ``"bicubic"`` (:func:`bicubic_erp`) or ``"fisheye"`` (:func:`fisheye`).

    Returns:
        ``(hr_cropped, lr)``: the HR cropped to a multiple of s (:func:`modcrop`; score SR outputs against it) and
        the (H // s, W // s, 3) LR image, both of ``hr``'s dtype.

    Raises:
        ValueError: unknown ``method``, bad shape/dtype or scale.
    """
    try:
        fn = DEGRADATIONS[method]
    except KeyError:
        raise ValueError(f"unknown degradation {method!r}; choose one of: {', '.join(DEGRADATIONS)}") from None
    return modcrop(hr, scale), fn(hr, scale)
