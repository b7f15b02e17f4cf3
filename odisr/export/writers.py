"""Image file writers with metadata: whole images through Pillow/OpenCV (JPEG, PNG, WebP), and TIFF streamed from
any array-like (a Zarr array) band by band.

Memory (``H × W`` RGB, ``b`` = bytes per sample, 1 or 2):

* TIFF (:func:`write_tiff`): one band of rows (the store's chunk height rounded up to whole 256-px TIFF tiles, e.g.
  1024 rows) plus the tiles being compressed — O(band · W · 3b), about 50 MB for a 16384-wide 8-bit panorama.
  Written tiled (256 × 256), deflate with the horizontal predictor, BigTIFF when the pixels exceed 4 GiB.
* JPEG / WebP / PNG: the encoders take a whole image, so the pixels are read whole: ``H·W·3·b`` for the array plus
  Pillow's copy (4 bytes a pixel for 8-bit RGB) plus the encoded file — about 2.4 × ``H·W·3`` bytes, ~1 GB for
  16384 × 8192 (the ``bench_export`` figures). 16-bit pixels become 8-bit for JPEG and WebP (``round(v / 257)``);
  PNG and TIFF keep 16 bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import odisr
from odisr.export.files import atomic
from odisr.export.metadata import OutputMetadata, pillow_options, png_chunks, tiff_tags
from odisr.export.plan import ExportRequest

TIFF_TILE = 256
_IHDR_END = 33  # PNG signature (8) + the IHDR chunk (4 length + 4 type + 13 data + 4 CRC), always first
_CLASSIC_TIFF_BYTES = 2**32 - 2**26  # beyond this the 32-bit offsets of classic TIFF may overflow: BigTIFF


def write_image(path: Path, pixels: np.ndarray, request: ExportRequest, meta: OutputMetadata) -> None:
    """Write an in-memory ``(H, W, 3)`` uint8/uint16 image to ``path`` as ``request.format`` with ``meta``
    (atomically). JPEG: ``quality``, 4:4:4 chroma from quality 90 up (4:2:0 below); WebP: ``quality``, lossless at
    100."""
    fmt = request.pillow_format
    if fmt == "TIFF":
        write_tiff(path, pixels, meta)
    elif fmt == "PNG":
        _write_png(path, pixels, meta)
    else:
        from PIL import Image

        options = pillow_options(meta, fmt) | _quality_options(fmt, request.quality)
        image = Image.fromarray(to_8bit(pixels))
        with atomic(path) as tmp:
            image.save(tmp, format=fmt, **options)


def _quality_options(fmt: str, quality: int) -> dict[str, Any]:
    if fmt == "JPEG":  # 4:2:0 halves the chroma resolution: at high quality it would cost more than the bytes saved
        return {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    return {"quality": quality, "lossless": quality == 100}


def _write_png(path: Path, pixels: np.ndarray, meta: OutputMetadata) -> None:
    from odisr.io import encode_image  # Pillow for 8-bit, OpenCV for 16-bit pixels

    png = memoryview(encode_image(pixels, ".png"))
    with atomic(path) as tmp, open(tmp, "wb") as f:
        f.write(png[:_IHDR_END])
        f.write(png_chunks(meta))
        f.write(png[_IHDR_END:])


def write_tiff(path: Path, image: Any, meta: OutputMetadata, *, tile: int = TIFF_TILE) -> None:
    """Stream ``image`` (``(H, W, 3)`` uint8/uint16, numpy or anything sliceable with ``shape``, ``dtype`` and
    optionally ``chunks`` such as a Zarr array) into a tiled TIFF at ``path`` (atomically), reading one band of rows
    at a time (see the module doc)."""
    import tifffile

    height, width = image.shape[:2]
    icc, tags = tiff_tags(meta)
    bigtiff = height * width * 3 * np.dtype(image.dtype).itemsize > _CLASSIC_TIFF_BYTES
    with atomic(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tif:
        tif.write(
            _tiles(image, tile), shape=(height, width, 3), dtype=image.dtype, tile=(tile, tile), photometric="rgb",
            compression="zlib", predictor=True, iccprofile=icc, extratags=tags, metadata=None,
            software=f"odisr {odisr.__version__}", maxworkers=1,
        )  # fmt: skip


def _tiles(image: Any, tile: int) -> Iterator[np.ndarray]:
    """The ``tile × tile`` blocks of ``image`` in row-major order (edge blocks smaller: tifffile pads them), reading
    bands of whole chunk rows rounded up to whole tiles."""
    height, width = image.shape[:2]
    chunk_rows = getattr(image, "chunks", (tile,))[0]
    band = tile * -(-chunk_rows // tile)
    for r0 in range(0, height, band):
        rows = np.asarray(image[r0 : r0 + band])
        for t0 in range(0, rows.shape[0], tile):
            for c0 in range(0, width, tile):
                yield rows[t0 : t0 + tile, c0 : c0 + tile]


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels unchanged; uint16 to uint8 as ``round(v / 257)`` (65535 → 255), in integers (no float copy)."""
    if pixels.dtype == np.uint8:
        return pixels
    out = np.empty(pixels.shape, np.uint8)
    for r0 in range(0, len(pixels), 256):  # in bands: a whole uint32 copy of a 16K panorama would be 1.6 GB
        out[r0 : r0 + 256] = (pixels[r0 : r0 + 256].astype(np.uint32) + 128) // 257
    return out
