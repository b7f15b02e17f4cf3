"""Cube faces sampled from an equirectangular panorama a band of rows at a time, and the cube-map layouts.

Conventions — py360convert's faces and Pannellum's cube (its ``cubeMap`` order and its multires faces; checked
against both in the tests):

* Faces ``f r b l u d``: front (longitude 0, the ERP's centre column), right (+90°: east, right of centre in the
  ERP), back (±180°, the ERP's left/right edge), left (−90°), up (north pole), down (south pole).
* Side faces are upright and seen from inside the sphere (columns go east). The up face is what one sees looking up
  from the front (its bottom edge meets the front face's top edge, its top edge the back face's); the down face,
  looking down from the front (its top edge meets the front face's bottom edge).
* Pixel ``(i, j)`` of an ``n``-px face is the ray through its centre: ``a = (j + 0.5)/n − 0.5`` across,
  ``b = 0.5 − (i + 0.5)/n`` up, on the face of the cube ``[−½, ½]³`` (``f``: ``(a, b, ½)``; x east, y up, z front)
  — the texture convention of WebGL viewers. py360convert's ``e2c`` puts its samples on ``linspace(−½, ½, n)``
  instead (outer pixel centres on the cube's edges): the same faces scaled by ``(n − 1)/n``, ≤ ½ px apart at the
  edges.
* ERP position of a ray: longitude ``φ = atan2(x, z)``, latitude ``θ = atan2(y, hypot(x, z))``, column
  ``(φ/2π + ½)·W − ½``, row ``(½ − θ/π)·H − ½`` (the pixel-centre convention of :mod:`odisr.erp`).
* Sampling is bicubic (OpenCV), wrapping around in longitude and clamped at the poles.

Face size: :func:`face_size_for` ``= round(W / π)``, where a face's centre pixel spans the same angle as an ERP
pixel at the equator (2/n rad = 2π/W), so no detail is lost anywhere on the face (a W/4 face would undersample its
centre by 4/π ≈ 1.27); it is also what Pannellum's ``generate.py`` uses.

Memory: a band of face rows needs the ERP rows it sees — for the side faces a quarter of the width, for the middle
band of the up/down faces all columns of the polar quarter of the rows (100 MB for an 8-bit 16384 × 8192 ERP) — plus
float32 coordinate maps of the band. The whole ERP is never read at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from odisr.export.files import write_bytes
from odisr.export.metadata import OutputMetadata
from odisr.export.plan import ExportRequest, Target, check_size
from odisr.export.writers import write_image

FACES = ("f", "r", "b", "l", "u", "d")
FACE_NAMES = {"f": "front", "r": "right", "b": "back", "l": "left", "u": "up", "d": "down"}
BAND = 256  # face rows sampled at once for the cube-map layouts
_MARGIN = 2  # bicubic interpolation reads 2 pixels beyond the sample on each side
_CV2_MAX = 32767  # OpenCV's remap takes images below 32767 px a side
Vec = tuple[np.ndarray, np.ndarray, np.ndarray]
# (a across, b up, h = ½) → the ray (x east, y up, z front) of each face
_FACE_RAYS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], Vec]] = {
    "f": lambda a, b, h: (a, b, h),
    "r": lambda a, b, h: (h, b, -a),
    "b": lambda a, b, h: (-a, b, -h),
    "l": lambda a, b, h: (-h, b, a),
    "u": lambda a, b, h: (a, h, -b),
    "d": lambda a, b, h: (a, -h, b),
}


def face_size_for(width: int) -> int:
    """Cube face edge (px) that keeps the detail of an ERP ``width`` px wide: ``round(width / π)`` (module doc)."""
    return max(1, round(width / math.pi))


def face_rays(face: str, n: int, r0: int, r1: int) -> Vec:
    """Unnormalised ray directions ``(x, y, z)`` of rows ``[r0, r1)`` of an ``n``-px ``face``, float64
    ``(r1 − r0, n)`` each."""
    a = (np.arange(n) + 0.5) / n - 0.5
    b = 0.5 - (np.arange(r0, r1) + 0.5) / n
    a, b = np.meshgrid(a, b)
    return _FACE_RAYS[face](a, b, np.full_like(a, 0.5))


def erp_position(rays: Vec, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """ERP ``(column, row)`` (float64, pixel-centre convention) of each ray; columns in ``[−½, W − ½]``."""
    x, y, z = rays
    lon, lat = np.arctan2(x, z), np.arctan2(y, np.hypot(x, z))
    return (lon / (2 * np.pi) + 0.5) * width - 0.5, (0.5 - lat / np.pi) * height - 0.5


def sample_face(image: Any, face: str, n: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``[r0, r1)`` of the ``n``-px cube ``face`` of the ERP ``image``, ``(r1 − r0, n, 3)`` in its dtype.

    ``image``: ``(H, W, 3)`` uint8/uint16, numpy or any sliceable array (a Zarr array): only the rows and columns
    the band sees are read.
    """
    height, width = image.shape[:2]
    col, row = erp_position(face_rays(face, n, r0, r1), height, width)
    top, bottom = max(0, math.floor(row.min()) - _MARGIN), min(height, math.floor(row.max()) + _MARGIN + 1)
    # A band's longitudes may cross the 180° meridian: take each column's representative nearest the first one's,
    # so the band reads one contiguous (wrapped) range of columns; a band around a pole needs them all.
    ref = col.flat[0]
    near = ref + (col - ref + width / 2) % width - width / 2
    left, right = math.floor(near.min()) - _MARGIN, math.floor(near.max()) + _MARGIN + 1
    if right - left < width:
        col = near
    else:
        left, right = -_MARGIN, width + _MARGIN
    region = _read_wrapped(image, top, bottom, left, right)
    return _remap(region, (col - left).astype(np.float32), (row - top).astype(np.float32))


def _read_wrapped(image: Any, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``image[top:bottom, left:right]`` with columns taken modulo the width (``left`` may be negative)."""
    width = image.shape[1]
    pieces, c = [], left
    while c < right:
        start = c % width
        stop = min(width, start + right - c)
        pieces.append(np.asarray(image[top:bottom, start:stop]))
        c += stop - start
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)


def _remap(region: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bicubic samples of ``region`` at ``(map_x, map_y)``, clamped to its border, in its dtype."""
    if max(region.shape[:2]) < _CV2_MAX:
        import cv2

        return cv2.remap(region, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    from scipy.ndimage import map_coordinates  # wider than OpenCV allows (a 32K+ panorama)

    limit = np.iinfo(region.dtype).max
    channels = [map_coordinates(region[..., k], (map_y, map_x), order=3, mode="nearest") for k in range(3)]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, limit).astype(region.dtype)


def render_face(image: Any, face: str, n: int, band: int = BAND) -> np.ndarray:
    """The whole ``n × n`` ``face`` (sampled :data:`BAND` rows at a time), ``(n, n, 3)`` in the image's dtype."""
    out = np.empty((n, n, 3), image.dtype)
    for r0 in range(0, n, band):
        out[r0 : r0 + band] = sample_face(image, face, n, r0, min(n, r0 + band))
    return out


def write_cubemap(image: Any, target: Target, request: ExportRequest, meta: OutputMetadata) -> list[Path]:
    """The cube map of ``image`` at ``target`` (see :mod:`odisr.export.plan`): six face files and ``cubemap.json``
    (a Pannellum ``cubemap`` config, written last), or one dice (3 × 4) or horizon (6 × 1) image laid out as
    py360convert's ``cube_h2dice``/``cube_list2h``. Faces carry the ICC profile only. Returns the files written.

    Raises:
        ExportError: a face or the layout is larger than the format allows.
    """
    n = request.face_size or face_size_for(image.shape[1])
    meta = meta.without_exif_xmp()
    if request.cube_format != "faces":
        import py360convert

        size = {"dice": (4 * n, 3 * n), "horizon": (6 * n, n)}[request.cube_format]
        check_size(*size, request, f"the {request.cube_format} layout ({n}-px faces)")
        horizon = py360convert.cube_list2h([render_face(image, face, n) for face in FACES])
        write_image(target.path, horizon if request.cube_format == "horizon" else py360convert.cube_h2dice(horizon),
                    request, meta)  # fmt: skip
        return [target.path]
    check_size(n, n, request, f"a {n}-px cube face")
    target.path.mkdir(parents=True, exist_ok=True)
    files = [target.path / f"{face}{request.suffix}" for face in FACES]
    for face, path in zip(FACES, files, strict=True):
        write_image(path, render_face(image, face, n), request, meta)
    config = {"type": "cubemap", "cubeMap": [p.name for p in files], "faceSize": n,
              "faces": [FACE_NAMES[f] for f in FACES], "request": request.settings()}  # fmt: skip
    write_bytes(target.marker, json.dumps(config, indent=1).encode())
    return [*files, target.marker]
