"""What an export writes and where: the request (format, quality, layout), output names, completion markers and the
encoders' size limits.

Names (``OUT`` = the export folder, ``<key>`` the store's image key, ``<model>`` the model name)::

    --layout erp                            OUT/<key>__<model>.<ext>
    --layout cubemap                        OUT/<key>__<model>.cubemap/{f,r,b,l,u,d}.<ext> + cubemap.json
    --layout cubemap --cube-format dice     OUT/<key>__<model>.dice.<ext>     (3 × 4 faces, py360convert's cross)
    --layout cubemap --cube-format horizon  OUT/<key>__<model>.horizon.<ext>  (6 faces in a row: F R B L U D)
    --layout tiles                          OUT/<key>__<model>.tiles/tiles/<level>/<face>/<row>/<col>.<ext>
                                            + index.html + config.json

Every output has one *marker* file written last (the image itself, ``cubemap.json`` or ``config.json``), each file
through a temporary name and a rename, so a killed export never leaves a file that looks complete: an output
counts as done when its marker exists (a folder's marker must also record the same settings: format, quality, tile
and face size), and anything else found for it is removed and redone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

#: ``--format`` → (Pillow format name, file suffix).
FORMATS = {"jpg": ("JPEG", ".jpg"), "png": ("PNG", ".png"), "webp": ("WEBP", ".webp"), "tiff": ("TIFF", ".tif")}
_NAMES = {"jpg": "JPEG", "png": "PNG", "webp": "WebP", "tiff": "TIFF"}
LAYOUTS = ("erp", "cubemap", "tiles")
CUBE_FORMATS = ("faces", "dice", "horizon")
#: Largest width or height each encoder can hold: libwebp's 14-bit size fields (16383), the 16-bit sizes of JPEG's
#: SOF marker (65535), PNG's 31-bit IHDR fields. TIFF (BigTIFF when over 4 GB) has no practical limit.
MAX_SIDE = {"JPEG": 65535, "WEBP": 16383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1}
#: Formats a browser viewer can load (pyramid tiles).
TILE_FORMATS = ("jpg", "png", "webp")
#: Pannellum from the jsDelivr CDN (the npm package's build) for ``index.html`` when no local copy is given.
PANNELLUM_CDN = "https://cdn.jsdelivr.net/npm/pannellum@2.5.7/build/"


class ExportError(ValueError):
    """An output that cannot be made as asked (an encoder's size limit, a bad option, a pair that is not ERP)."""


@dataclass(frozen=True)
class ExportRequest:
    """How to export: ``format`` (jpg, png, webp, tiff), ``quality`` (JPEG/WebP, 1–100; WebP at 100 is lossless),
    ``layout`` (erp, cubemap, tiles), ``cube_format`` (faces, dice, horizon), ``tile_size`` (largest pyramid tile
    edge, px, even, ≥ 16), ``face_size`` (cube face edge, px; None: from the ERP width, see
    :func:`odisr.export.cube.face_size_for`) and ``viewer`` (URLs of ``pannellum.js`` and ``pannellum.css`` that
    ``index.html`` loads, relative to it or absolute).

    Raises:
        ExportError: an unknown or out-of-range value (naming the option).
    """

    format: str = "jpg"
    quality: int = 95
    layout: str = "erp"
    cube_format: str = "faces"
    tile_size: int = 512
    face_size: int | None = None
    viewer: tuple[str, str] = (PANNELLUM_CDN + "pannellum.js", PANNELLUM_CDN + "pannellum.css")

    def __post_init__(self) -> None:
        _choice("--format", self.format, FORMATS)
        _choice("--layout", self.layout, LAYOUTS)
        _choice("--cube-format", self.cube_format, CUBE_FORMATS)
        if not 1 <= self.quality <= 100:
            raise ExportError(f"--quality {self.quality}: give 1–100")
        if self.tile_size < 16 or self.tile_size % 2:
            raise ExportError(f"--tile-size {self.tile_size}: give an even number ≥ 16 (512 is usual)")
        if self.face_size is not None and self.face_size < 1:
            raise ExportError(f"--face-size {self.face_size}: give a positive number of pixels")
        if self.layout == "tiles" and self.format not in TILE_FORMATS:
            raise ExportError(f"--format {self.format}: browsers cannot show it; pyramid tiles are jpg, png or webp")

    def settings(self) -> dict[str, object]:
        """What defines the files of a cube-map or pyramid folder (recorded in its marker)."""
        return {"format": self.format, "quality": self.quality, "layout": self.layout,
                "cube_format": self.cube_format, "tile_size": self.tile_size, "face_size": self.face_size}  # fmt: skip

    @property
    def pillow_format(self) -> str:
        return FORMATS[self.format][0]

    @property
    def suffix(self) -> str:
        return FORMATS[self.format][1]


def _choice(option: str, value: str, allowed: object) -> None:
    if value not in allowed:  # type: ignore[operator]
        raise ExportError(f"{option} {value!r}: use one of {', '.join(allowed)}")  # type: ignore[call-overload]


@dataclass(frozen=True)
class Target:
    """Where one (image, model) pair is exported: ``path`` (the file or the folder) and ``marker`` (written last).
    A folder's marker is a JSON file that records the request's ``settings`` (:meth:`ExportRequest.settings`)."""

    path: Path
    marker: Path
    settings: dict[str, object] | None = None

    @property
    def complete(self) -> bool:
        """The marker exists (and, for a folder, was written for the same settings: a pyramid of another tile size
        or format is redone)."""
        if not self.marker.is_file():
            return False
        if self.settings is None:
            return True
        try:
            return json.loads(self.marker.read_text()).get("request") == self.settings
        except (ValueError, OSError):
            return False


def output_name(key: str, model: str) -> str:
    """``<key>__<model>``: the store's image key (a slug, see :func:`odisr.sources.slugify`) and the model name."""
    return f"{key}__{model}"


def target(out_dir: str | Path, key: str, model: str, request: ExportRequest) -> Target:
    """Where the pair ``(key, model)`` goes in ``out_dir`` for ``request`` (see the module doc)."""
    name = output_name(key, model)
    one_file = request.layout == "erp" or (request.layout == "cubemap" and request.cube_format != "faces")
    if one_file:
        infix = "" if request.layout == "erp" else f".{request.cube_format}"
        path = Path(out_dir) / f"{name}{infix}{request.suffix}"
        return Target(path, path)
    folder = Path(out_dir) / f"{name}.{request.layout}"
    marker = folder / ("cubemap.json" if request.layout == "cubemap" else "config.json")
    return Target(folder, marker, request.settings())


def check_size(width: int, height: int, request: ExportRequest, what: str) -> None:
    """Refuse, before any pixel is read, an image the encoder of ``request.format`` cannot hold.

    Raises:
        ExportError: naming the limit, the size and what to do instead.
    """
    limit = MAX_SIDE[request.pillow_format]
    if max(width, height) > limit:
        raise ExportError(
            f"{what} is {width}×{height} px but {_NAMES[request.format]} holds at most {limit:,} px a side; "
            f"export it as {_alternatives(request.format, max(width, height))}"
        )


def _alternatives(current: str, side: int) -> str:
    fits = [f"--format {f}" for f, (fmt, _) in FORMATS.items() if f != current and MAX_SIDE[fmt] >= side]
    return " or ".join([*fits, "--layout tiles"])


def pyramid_shape(cube_target: int, max_tile: int) -> tuple[int, int, int]:
    """``(cube_size, tile_size, levels)`` of a tile pyramid whose top faces are about ``cube_target`` px.

    Every level is whole tiles of one size (what Marzipano requires and Pannellum renders without partial tiles):
    level ``L`` (1 … ``levels``) is a ``tile · 2^(L−1)`` px face cut into ``2^(L−1) × 2^(L−1)`` tiles, so level 1 is
    one tile and ``cube_size = tile · 2^(levels−1)``. ``levels`` is the fewest for which ``tile ≤ max_tile``;
    ``cube_size`` is ``cube_target`` rounded up to a multiple of ``2^levels`` (so the fallback level 0, half of level
    1, is whole pixels too) — at most ``2^levels − 1`` px more, never less detail.
    """
    levels = 1 + max(0, math.ceil(math.log2(cube_target / max_tile)))
    step = 2**levels
    cube = step * math.ceil(cube_target / step)
    return cube, cube // 2 ** (levels - 1), levels
