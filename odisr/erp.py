"""Equirectangular (ERP) geometry: latitudes, cos-latitude weights and condition maps, circular padding, checks.

An ERP panorama of height H covers the whole sphere on a ``W × H`` grid with ``W = 2H``. Pixel centres sit at

    longitude φ(i) = (i + 0.5) / W · 2π − π        (columns, west → east, radians in (−π, π))
    latitude  θ(j) = π/2 − (j + 0.5) / H · π       (rows, north → south, radians in (−π/2, π/2))

so the left and right edges are neighbours on the sphere (padding across them must wrap around) and a row's area
on the sphere is proportional to cos θ(j) (Sun, Lu & Yu 2017, WS-PSNR). Everything here takes **absolute** rows of
the full panorama: a tile starting at row ``r0`` of an ``H``-row panorama uses rows ``r0, r0+1, …``, never 0.

Cube-map and perspective previews are thin wrappers around py360convert (HWC numpy only; dtype kept).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch

__all__ = [
    "NotERPError",
    "NotERPWarning",
    "check_erp",
    "condition_map",
    "latitude",
    "latitude_weights",
    "longitude",
    "pad_erp",
    "to_cubemap",
    "to_perspective",
]

PoleMode = Literal["reflect", "replicate", "sphere"]
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


class NotERPError(ValueError):
    """An image that should be an equirectangular panorama is not 2:1 (width = 2 × height)."""


class NotERPWarning(UserWarning):
    """Issued instead of :class:`NotERPError` by ``check_erp(..., strict=False)``."""


# --------------------------------------------------------------------------------------------- angles and weights
def latitude(rows: Any, height: int) -> np.ndarray:
    """Latitude θ (radians, +π/2 = north pole) of ERP rows.

    ``rows`` are absolute row indices of a panorama with ``height`` rows (int or float, any shape; the top edge of
    row ``j`` is ``j − 0.5``). Returns float64 of the same shape: θ = π/2 − (j + 0.5)·π/H.
    """
    _check_positive(height, "height")
    return np.pi / 2 - (np.asarray(rows, dtype=np.float64) + 0.5) * (np.pi / height)


def longitude(cols: Any, width: int) -> np.ndarray:
    """Longitude φ (radians, 0 = image centre, increasing eastwards/rightwards) of ERP columns.

    ``cols`` are column indices (int or float, any shape) of a panorama with ``width`` columns.
    Returns float64 of the same shape: φ = (i + 0.5)·2π/W − π, in (−π, π).
    """
    _check_positive(width, "width")
    return (np.asarray(cols, dtype=np.float64) + 0.5) * (2 * np.pi / width) - np.pi


def latitude_weights(height: int, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """WS-PSNR row weights ``w(j) = cos((j + 0.5 − H/2)·π/H)`` for the absolute rows ``j ∈ [r0, r1)``.

    The cosine of the pixel-centre latitude, i.e. proportional to the row's area on the sphere (Sun, Lu & Yu 2017,
    IEEE SPL, Eq. 3; JVET 360Lib ``TWSPSNRMetricCalc``). Same for every column of a row.

    Args:
        height: H, rows of the **full** panorama.
        r0, r1: the row range (default: all rows); a tile passes its absolute rows.

    Returns:
        float64 array of shape ``(r1 − r0,)``, values in (0, 1].

    Raises:
        ValueError: when ``0 ≤ r0 ≤ r1 ≤ height`` does not hold.
    """
    r0, r1 = _row_range(height, r0, r1)
    return np.cos((np.arange(r0, r1, dtype=np.float64) - height / 2 + 0.5) * (np.pi / height))


def condition_map(
    height: int,
    width: int,
    r0: int = 0,
    r1: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The cos-latitude condition map that CAMixerOSR / OSRT take as ``condition``.

    Row ``j`` holds ``cos((−1 + (2j + 1)/H)·π/2)``, the cosine of the pixel-centre latitude
    (= :func:`latitude_weights`), constant along the width. It is evaluated with that formula in ``dtype``
    (float32 and float64; lower precisions are computed in float32 and cast), so the float32 map is bit-identical
    to the official ``get_condition(h, w, 'cos_latitude')`` of CAMixerSR's ``odisr/data/erp_paired_image_dataset.py``
    and a tile's map is bit-identical to the same rows of the full map.

    Args:
        height: H, rows of the full LR panorama; ``r0, r1`` select absolute rows (a tile's rows).
        width: columns of the map (the tile's width).

    Returns:
        Tensor ``(1, 1, r1 − r0, width)`` on ``device``, values in (0, 1].
    """
    r0, r1 = _row_range(height, r0, r1)
    _check_positive(width, "width")
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    j = torch.arange(r0, r1, device=device, dtype=work)
    rows = torch.cos((-1 + (2 * j + 1) / height) * (math.pi / 2)).to(dtype)
    return rows.view(1, 1, -1, 1).expand(1, 1, r1 - r0, width).contiguous()


# --------------------------------------------------------------------------------------------------- padding
def pad_erp(
    x: ArrayOrTensor, top: int, bottom: int, left: int, right: int, *, pole_mode: PoleMode = "reflect"
) -> ArrayOrTensor:
    """Pad an ERP image: circular in longitude (width), ``pole_mode`` in latitude (height).

    Works on numpy ``(H, W)`` / ``(H, W, C)`` arrays and on torch ``(..., H, W)`` tensors (any dtype/device,
    differentiable). Pads larger than the image never fail: longitude wraps around as often as needed; at the
    poles the rows beyond what ``pole_mode`` can produce repeat the last row it reached.

    Args:
        top, bottom, left, right: pad sizes in pixels (≥ 0).
        pole_mode: ``"reflect"`` mirrors rows without repeating the edge row (``numpy.pad(mode="reflect")``,
            what CAMixerSR's ``check_image_size`` and most SR code do); ``"replicate"`` repeats the edge row;
            ``"sphere"`` continues over the pole as on the sphere: row ``−1 − k`` is row ``k`` rotated by 180° of
            longitude (needs an even width).

    Returns:
        The padded array/tensor, same type, dtype and device: ``(H + top + bottom, W + left + right)``.

    Raises:
        ValueError: negative pads, an unknown ``pole_mode``, an odd width with ``"sphere"``, or an empty image.
    """
    is_torch = isinstance(x, torch.Tensor)
    if not is_torch and x.ndim not in (2, 3):
        raise ValueError(f"pad_erp expects a numpy (H, W) or (H, W, C) array; got shape {x.shape}")
    row_axis, col_axis = (x.ndim - 2, x.ndim - 1) if is_torch else (0, 1)
    h, w = x.shape[row_axis], x.shape[col_axis]
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pad sizes must be ≥ 0; got top={top}, bottom={bottom}, left={left}, right={right}")
    if h == 0 or w == 0:
        raise ValueError(f"cannot pad an empty image of {h}×{w} pixels (H×W)")
    if pole_mode == "sphere" and w % 2:
        raise ValueError(f"pole_mode='sphere' rotates rows by half the width, which needs an even width; got {w}")
    out = _take(x, _row_index(h, top, bottom, pole_mode), row_axis)
    if pole_mode == "sphere":
        _roll_rows(out, 0, top, w // 2, row_axis, col_axis)
        _roll_rows(out, top + h, top + h + bottom, w // 2, row_axis, col_axis)
    return _take(out, np.arange(-left, w + right) % w, col_axis)


def _row_index(h: int, top: int, bottom: int, pole_mode: str) -> np.ndarray:
    """Source row of each padded row; rows a mode cannot reach are clamped (replicate the excess)."""
    j = np.arange(-top, h + bottom)
    if pole_mode == "reflect":
        j = np.where(j < 0, np.minimum(-j, h - 1), j)
        j = np.where(j > h - 1, np.maximum(2 * (h - 1) - j, 0), j)
    elif pole_mode == "sphere":
        j = np.where(j < 0, -1 - j, j)
        j = np.where(j > h - 1, 2 * h - 1 - j, j)
    elif pole_mode != "replicate":
        raise ValueError(f"pole_mode must be 'reflect', 'replicate' or 'sphere'; got {pole_mode!r}")
    return np.clip(j, 0, h - 1)


def _take(x: ArrayOrTensor, index: np.ndarray, axis: int) -> ArrayOrTensor:
    if isinstance(x, torch.Tensor):
        return x.index_select(axis, torch.as_tensor(index, device=x.device))
    return np.take(x, index, axis=axis)


def _roll_rows(x: Any, start: int, stop: int, shift: int, row_axis: int, col_axis: int) -> None:
    """Rotate rows ``[start, stop)`` by ``shift`` columns in place (``x`` is our own gathered copy)."""
    index: list[Any] = [slice(None)] * x.ndim
    index[row_axis] = slice(start, stop)
    roll = torch.roll if isinstance(x, torch.Tensor) else np.roll
    x[tuple(index)] = roll(x[tuple(index)], shift, col_axis)


# ------------------------------------------------------------------------------------------------ validation
def check_erp(shape_or_array: Any, *, name: str | None = None, strict: bool = True) -> tuple[int, int]:
    """Check that an image is an equirectangular panorama (width = 2 × height) and return ``(H, W)``.

    Args:
        shape_or_array: a numpy ``(H, W)`` / ``(H, W, C)`` array, a torch ``(..., H, W)`` tensor, or a shape tuple
            ``(H, W)`` / ``(H, W, C)``.
        name: file name or label used in the message.
        strict: raise :class:`NotERPError` (default) or only warn with :class:`NotERPWarning`.

    Raises:
        NotERPError: the image is not 2:1 (strict mode), or the shape is not an image shape.
    """
    h, w = _image_hw(shape_or_array)
    if w != 2 * h or h == 0:
        label = name or "image"
        message = (
            f"{label}: {w}×{h} pixels (W×H) is not an equirectangular panorama, which must be 2:1 "
            f"(e.g. {2 * max(h, 1)}×{max(h, 1)}). Resample or pad it to 2:1, or treat it as an ordinary "
            f"(non-360°) image."
        )
        if strict:
            raise NotERPError(message)
        warnings.warn(message, NotERPWarning, stacklevel=2)
    return h, w


def _image_hw(obj: Any) -> tuple[int, int]:
    if isinstance(obj, torch.Tensor):
        if obj.ndim < 2:
            raise NotERPError(f"expected a (..., H, W) tensor; got shape {tuple(obj.shape)}")
        return int(obj.shape[-2]), int(obj.shape[-1])
    shape = tuple(obj.shape) if hasattr(obj, "shape") else tuple(obj)
    if len(shape) not in (2, 3):
        raise NotERPError(f"expected an (H, W) or (H, W, C) image or shape; got shape {shape}")
    return int(shape[0]), int(shape[1])


# ------------------------------------------------------------------------------------- previews (py360convert)
def to_cubemap(
    img: np.ndarray,
    face_w: int,
    *,
    cube_format: Literal["dict", "list", "horizon", "dice"] = "dict",
    mode: Literal["nearest", "bilinear", "bicubic"] = "bilinear",
) -> dict[str, np.ndarray] | list[np.ndarray] | np.ndarray:
    """Six cube-map faces of an ERP image (previews), via ``py360convert.e2c``.

    Args:
        img: ERP image, numpy ``(H, W)`` or ``(H, W, C)`` (HWC — not CHW), dtype uint8, uint16, float32 or float64.
        face_w: face edge length in pixels.
        cube_format: ``"dict"`` (keys ``F R B L U D``: front at longitude 0, right = east, back, left, up, down),
            ``"list"`` (same order), ``"horizon"`` (one ``face_w × 6·face_w`` strip) or ``"dice"`` (a 3×4 cross).
        mode: interpolation.

    Returns:
        Faces of shape ``(face_w, face_w[, C])`` with the input dtype (values interpolated, then cast).

    Raises:
        ValueError: wrong layout or dtype; :class:`NotERPError` when the image is not 2:1.
    """
    import py360convert

    _check_positive(face_w, "face_w")
    return py360convert.e2c(_hwc_for_py360(img), face_w=face_w, mode=mode, cube_format=cube_format)


def to_perspective(
    img: np.ndarray,
    fov_deg: float | tuple[float, float],
    yaw_deg: float,
    pitch_deg: float,
    out_hw: Sequence[int],
    *,
    roll_deg: float = 0.0,
    mode: Literal["nearest", "bilinear", "bicubic"] = "bilinear",
) -> np.ndarray:
    """A pinhole-camera view of an ERP image (previews), via ``py360convert.e2p``.

    Args:
        img: ERP image, numpy ``(H, W)`` or ``(H, W, C)``, dtype uint8, uint16, float32 or float64.
        fov_deg: field of view in degrees, one value or ``(horizontal, vertical)``.
        yaw_deg: longitude of the view centre in degrees (0 = image centre, +90 = three quarters across,
            the convention of :func:`longitude`).
        pitch_deg: latitude of the view centre in degrees (+ up / north, the convention of :func:`latitude`).
        out_hw: ``(height, width)`` of the view in pixels.
        roll_deg: in-plane rotation in degrees.

    Returns:
        ``(out_h, out_w[, C])`` array with the input dtype.
    """
    import py360convert

    out_h, out_w = (int(v) for v in out_hw)
    _check_positive(out_h, "out_hw[0]")
    _check_positive(out_w, "out_hw[1]")
    return py360convert.e2p(
        _hwc_for_py360(img), fov_deg, yaw_deg, pitch_deg, (out_h, out_w), in_rot_deg=roll_deg, mode=mode
    )


_PY360_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def _hwc_for_py360(img: Any) -> np.ndarray:
    """Validate an image for py360convert, which silently mistakes CHW for HWC and only remaps some dtypes."""
    if isinstance(img, torch.Tensor):
        raise ValueError("py360convert needs a numpy (H, W, C) image; convert with odisr.io.tensor_to_image(t)")
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image of shape {img.shape} looks channels-first (C, H, W); py360convert needs (H, W, C): "
            f"pass img.transpose(1, 2, 0)"
        )
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image; got shape {img.shape}")
    if img.dtype.type not in _PY360_DTYPES:
        raise ValueError(f"unsupported dtype {img.dtype} for ERP conversion; use uint8, uint16, float32 or float64")
    check_erp(img)
    return img


# ------------------------------------------------------------------------------------------------------ helpers
def _check_positive(value: int, what: str) -> None:
    if not (isinstance(value, (int, np.integer)) and value > 0):
        raise ValueError(f"{what} must be a positive integer; got {value!r}")


def _row_range(height: int, r0: int, r1: int | None) -> tuple[int, int]:
    _check_positive(height, "height")
    r1 = height if r1 is None else r1
    if not 0 <= r0 <= r1 <= height:
        raise ValueError(f"row range [{r0}, {r1}) is not inside a panorama of {height} rows")
    return r0, r1

