"""Image file writers with metadata: whole images through Pillow/OpenCV (JPEG, PNG, WebP), and TIFF streamed from
any array-like (a Zarr array) band by band.

Memory (``H × W`` RGB; a band is the store's chunk height rounded up to whole 256-px tiles, e.g. 1024 rows):

* TIFF (:func:`write_tiff`): two bands (the one being cut into tiles, the next being read) — about 100 MB for a
  16384-wide 8-bit panorama. Tiled 256 × 256, deflate (level 4) with the horizontal predictor, BigTIFF when the
  pixels exceed 4 GiB; 8- or 16-bit as stored.
* JPEG, 8-bit PNG: the encoders take a whole Pillow image (4 bytes a pixel), filled band by band from the store and
  encoded straight to the file: ``4·H·W`` bytes + a band (0.54 GB for 16384 × 8192).
* WebP: the same, plus libwebp's own ARGB copy of the picture (another ``4·H·W``).
* 16-bit PNG: OpenCV encodes a whole array in memory: ``6·H·W`` + the encoded file.

16-bit pixels become 8-bit for JPEG and WebP (``round(v / 257)``, band by band); PNG and TIFF keep 16 bits.
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
#: zlib level of TIFF tiles. With the horizontal predictor, level 6 (zlib's default) took 2.6–3.3× as long as 4 for
#: 5–9 % smaller files (a 2048×8192 bicubic ×4 SR crop and a 2048×4096 photo, measured side by side).
TIFF_DEFLATE_LEVEL = 4
_IHDR_END = 33  # PNG signature (8) + the IHDR chunk (4 length + 4 type + 13 data + 4 CRC), always first
_CLASSIC_TIFF_BYTES = 2**32 - 2**26  # beyond this the 32-bit offsets of classic TIFF may overflow: BigTIFF


def write_image(path: Path, image: Any, request: ExportRequest, meta: OutputMetadata) -> None:
    """Write ``image`` (``(H, W, 3)`` uint8/uint16, numpy or a Zarr array) to ``path`` as ``request.format`` with
    ``meta``, atomically. JPEG: ``quality``, 4:4:4 chroma from quality 90 up (4:2:0 below); WebP: ``quality``,
    lossless at 100; PNG: zlib level 6; TIFF: :func:`write_tiff`. See the module doc for the memory each needs."""
    fmt = request.pillow_format
    if fmt == "TIFF":
        write_tiff(path, image, meta)
    elif fmt == "PNG" and np.dtype(image.dtype) == np.uint16:
        _write_png16(path, np.asarray(image[...]), meta)
    else:
        options = pillow_options(meta, fmt) | _format_options(fmt, request.quality)
        with atomic(path) as tmp:
            _pillow_image(image).save(tmp, format=fmt, **options)


def _format_options(fmt: str, quality: int) -> dict[str, Any]:
    if fmt == "JPEG":  # 4:2:0 halves the chroma resolution: at high quality it would cost more than the bytes saved
        return {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    if fmt == "WEBP":  # lossless at 100; libwebp then reads `quality` as effort: 50 is 3× faster for ~1 % more bytes
        return {"lossless": True, "quality": 50} if quality == 100 else {"quality": quality}
    return {"compress_level": 6}


def _pillow_image(image: Any) -> Any:
    """An 8-bit RGB Pillow image filled band by band, so the pixels are never held twice (Pillow keeps 4 bytes a
    pixel; a whole numpy copy beside it would add 3 or 6 more)."""
    from PIL import Image

    height, width = image.shape[:2]
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return Image.fromarray(image)
    out = Image.new("RGB", (width, height))
    band = band_rows(image)
    for r0 in range(0, height, band):
        out.paste(Image.fromarray(to_8bit(np.asarray(image[r0 : r0 + band]))), (0, r0))
    return out


def _write_png16(path: Path, pixels: np.ndarray, meta: OutputMetadata) -> None:
    """16-bit PNG: encoded whole by OpenCV (Pillow writes no 16-bit RGB), metadata chunks inserted after IHDR."""
    from odisr.io import encode_image

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
            compression="zlib", compressionargs={"level": TIFF_DEFLATE_LEVEL}, predictor=True, iccprofile=icc,
            extratags=tags, metadata=None, software=f"odisr {odisr.__version__}", maxworkers=1,
        )  # fmt: skip


def band_rows(image: Any, tile: int = TIFF_TILE) -> int:
    """Rows :func:`write_tiff` reads at once: the array's chunk height (``tile`` for numpy) rounded up to whole
    tiles."""
    return tile * -(-getattr(image, "chunks", (tile,))[0] // tile)


def _tiles(image: Any, tile: int) -> Iterator[np.ndarray]:
    """The ``tile × tile`` blocks of ``image`` in row-major order (edge blocks smaller: tifffile pads them), reading
    one band of :func:`band_rows` at a time. Blocks are copies, so a band is freed as soon as its last block is
    encoded: at most the band being cut and the next one being read are held."""
    height, width = image.shape[:2]
    band = band_rows(image, tile)
    for r0 in range(0, height, band):
        rows = np.asarray(image[r0 : r0 + band])
        for t0 in range(0, rows.shape[0], tile):
            for c0 in range(0, width, tile):
                yield np.ascontiguousarray(rows[t0 : t0 + tile, c0 : c0 + tile])
        del rows


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels unchanged; uint16 to uint8 as ``round(v / 257)`` (65535 → 255), in integers."""
    if pixels.dtype == np.uint8:
        return pixels
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
