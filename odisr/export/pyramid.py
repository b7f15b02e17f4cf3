"""Multi-resolution cube-face tile pyramids for browser viewers (Pannellum ``multires``, Marzipano), written level by
level with bounded memory.

Layout (``OUT/<key>__<model>/``)::

    tiles/<level>/<face>/<row>/<col>.<ext>    level 0 … levels, face f r b l u d, row/col from the face's top left
    index.html                                a Pannellum viewer (:mod:`odisr.export.viewer`)
    config.json                               written last: the pyramid, every tile's path, viewer configs

Levels (:func:`odisr.export.plan.pyramid_shape`): level ``L`` (1 … ``levels``) is a face of ``tile · 2^(L−1)`` px
cut into ``2^(L−1) × 2^(L−1)`` tiles of ``tile`` px — level 1 one tile, the top level the full resolution
(``cube_size`` ≈ W/π, :func:`odisr.export.cube.face_size_for`). Level 0 is one tile of ``tile/2`` px per face:
Marzipano's ``fallbackOnly`` level (so Marzipano's ``{z}`` is the folder name) and Pannellum's ``fallbackPath``
(faces for its non-WebGL renderer). Faces follow :mod:`odisr.export.cube`'s conventions, which are the viewers'.

* Pannellum: ``{"type": "multires", "multiRes": {"basePath": "tiles", "path": "/%l/%s/%y/%x", "fallbackPath":
  "/0/%s/0/0", "extension": ext, "tileResolution": tile, "maxLevel": levels, "cubeResolution": cube_size}}``
  (``config.json["pannellum"]``).
* Marzipano: ``Marzipano.ImageUrlSource.fromString("tiles/{z}/{f}/{y}/{x}.<ext>")`` with
  ``new Marzipano.CubeGeometry(config.json["marzipano"]["levels"])`` (level sizes are whole tiles and each a
  multiple of the one below, as its CubeGeometry requires).

Writing, face by face: the top level a row of tiles at a time, sampled from the ERP
(:func:`odisr.export.cube.sample_face`, which reads only the ERP rows and columns the band sees); each band is also
box-averaged 2 × 2 into a half-size face kept in memory, from which every lower level is cut and halved again.
Memory: that half-size face (``(cube/2)² · 3`` samples: 20 MB for the 5216-px faces of an 8-bit 16384 × 8192
panorama) plus one band and its ERP region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odisr.export.cube import FACE_NAMES, FACES, face_size_for, sample_face
from odisr.export.files import write_bytes
from odisr.export.metadata import OutputMetadata
from odisr.export.plan import ExportRequest, Target, pyramid_shape
from odisr.export.viewer import write_index
from odisr.export.writers import write_image

TILES_DIR = "tiles"


@dataclass(frozen=True)
class Pyramid:
    """The shape of a tile pyramid: top face ``cube_size`` px, tiles of ``tile_size`` px, levels 1 … ``levels``
    (plus the fallback level 0), files ending in ``suffix``."""

    cube_size: int
    tile_size: int
    levels: int
    suffix: str

    def face_size(self, level: int) -> int:
        """Face edge (px) at ``level``."""
        return self.tile_size * 2 ** (level - 1) if level else self.tile_size // 2

    def tiles_per_side(self, level: int) -> int:
        return 2 ** (level - 1) if level else 1

    def tile_path(self, level: int, face: str, row: int, col: int) -> str:
        """Path of a tile relative to the pyramid's folder."""
        return f"{TILES_DIR}/{level}/{face}/{row}/{col}{self.suffix}"

    def tile_paths(self) -> list[str]:
        """Every tile of the pyramid, face by face, level by level, row-major."""
        return [
            self.tile_path(level, face, row, col)
            for face in FACES
            for level in range(self.levels + 1)
            for row in range(self.tiles_per_side(level))
            for col in range(self.tiles_per_side(level))
        ]

    def pannellum(self) -> dict[str, Any]:
        """Pannellum's ``multires`` config (tiles relative to the pyramid's folder)."""
        multires = {
            "basePath": TILES_DIR, "path": "/%l/%s/%y/%x", "fallbackPath": "/0/%s/0/0",
            "extension": self.suffix.lstrip("."), "tileResolution": self.tile_size, "maxLevel": self.levels,
            "cubeResolution": self.cube_size,
        }  # fmt: skip
        return {"type": "multires", "multiRes": multires, "autoLoad": True}

    def marzipano(self) -> dict[str, Any]:
        """Marzipano's ``ImageUrlSource`` URL template and ``CubeGeometry`` levels."""
        levels = [{"tileSize": self.face_size(0), "size": self.face_size(0), "fallbackOnly": True}]
        levels += [{"tileSize": self.tile_size, "size": self.face_size(L)} for L in range(1, self.levels + 1)]
        return {"urlTemplate": f"{TILES_DIR}/{{z}}/{{f}}/{{y}}/{{x}}{self.suffix}", "levels": levels,
                "faceSize": self.cube_size}  # fmt: skip


def plan_pyramid(width: int, request: ExportRequest) -> Pyramid:
    """The pyramid of an ERP ``width`` px wide: top faces of ``request.face_size`` (default ≈ W/π) rounded as
    :func:`~odisr.export.plan.pyramid_shape` says, tiles of at most ``request.tile_size``."""
    cube, tile, levels = pyramid_shape(request.face_size or face_size_for(width), request.tile_size)
    return Pyramid(cube, tile, levels, request.suffix)


def write_pyramid(image: Any, target: Target, request: ExportRequest, meta: OutputMetadata, title: str) -> list[Path]:
    """Write the tile pyramid of the ERP ``image`` (``(H, W, 3)`` uint8/uint16, numpy or Zarr) at ``target``:
    tiles (ICC profile only), ``index.html``, then ``config.json``. Returns the files written."""
    pyramid = plan_pyramid(image.shape[1], request)
    folder, meta = target.path, meta.without_exif_xmp()
    for face in FACES:
        _write_face(image, face, pyramid, folder, request, meta)
    index = write_index(folder, title, pyramid.pannellum(), request.viewer)
    tiles = pyramid.tile_paths()
    config = {
        "odisr": {
            "title": title, "erp_size": [int(image.shape[1]), int(image.shape[0])], "cube_size": pyramid.cube_size,
            "tile_size": pyramid.tile_size, "levels": pyramid.levels, "format": request.format,
            "faces": {face: FACE_NAMES[face] for face in FACES},
            "level_sizes": {str(L): pyramid.face_size(L) for L in range(pyramid.levels + 1)}, "tiles": tiles,
        },
        "pannellum": pyramid.pannellum(),
        "marzipano": pyramid.marzipano(),
        "request": request.settings(),
    }  # fmt: skip
    write_bytes(target.marker, json.dumps(config, indent=1).encode())
    return [*(folder / t for t in tiles), index, target.marker]


def _write_face(image: Any, face: str, pyramid: Pyramid, folder: Path, request: ExportRequest,
                meta: OutputMetadata) -> None:  # fmt: skip
    """All levels of one face: the top level band by band from the ERP, the others from a half-size copy."""
    tile, top = pyramid.tile_size, pyramid.levels
    half = np.empty((pyramid.cube_size // 2, pyramid.cube_size // 2, 3), image.dtype)
    for row in range(pyramid.tiles_per_side(top)):
        band = sample_face(image, face, pyramid.cube_size, row * tile, (row + 1) * tile)
        _write_tiles(band, top, face, row, pyramid, folder, request, meta)
        half[row * tile // 2 : (row + 1) * tile // 2] = halve(band)
    for level in range(top - 1, -1, -1):  # ``half`` is this level's face: face_size(level) px
        for row in range(pyramid.tiles_per_side(level)):
            _write_tiles(half[row * tile : (row + 1) * tile], level, face, row, pyramid, folder, request, meta)
        if level:
            half = halve(half)


def _write_tiles(band: np.ndarray, level: int, face: str, row: int, pyramid: Pyramid, folder: Path,
                 request: ExportRequest, meta: OutputMetadata) -> None:  # fmt: skip
    """The tiles of one row of ``level`` (``band``: that row of the face, all columns)."""
    edge = min(pyramid.tile_size, pyramid.face_size(level))
    for col in range(pyramid.tiles_per_side(level)):
        path = folder / pyramid.tile_path(level, face, row, col)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, np.ascontiguousarray(band[:, col * edge : (col + 1) * edge]), request, meta)


def halve(image: np.ndarray) -> np.ndarray:
    """2 × 2 box average of an even-sized ``(h, w, 3)`` image, rounded half up, in its dtype."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    blocks = image.reshape(h, 2, w, 2, 3).sum(axis=(1, 3), dtype=np.uint32)
    return ((blocks + 2) // 4).astype(image.dtype)
