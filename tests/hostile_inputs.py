"""Hostile inputs for the fuzz campaign (tests/test_fuzz.py), generated into a folder from a fixed seed.

Each :class:`Case` is a file (or a path that is not a regular file) named like an image, and what odisr must do with
it in odi mode: ``"complete"`` (a valid 2:1 image), ``"failed"`` (refused, the reason naming the file), ``"either"``
(damaged data that may or may not still decode: fuzzed bytes), or ``"absent"`` (not an input at all: a directory
named like an image). Kinds: valid images in every supported flavour (8/16-bit, gray, alpha, palette, CMYK, EXIF
rotations, animated GIF/WebP, 2×1), truncated and bit-flipped PNG/JPEG/TIFF/WebP/GIF, zero-byte files, decompression
bombs (headers claiming 100000×50000 pixels), float TIFF with NaN/inf, 1×1, 1×65535 and non-2:1 images, text and
noise named like images, symlink loops, dangling symlinks, a FIFO, directories, and a file without read permission.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SIZE = (64, 32)  # W × H of the valid images: 2:1, small enough for a quick batch
FORMATS = {"png": "PNG", "jpg": "JPEG", "tif": "TIFF", "webp": "WEBP", "gif": "GIF"}


@dataclass(frozen=True)
class Case:
    """One hostile input: its path (under the campaign folder), its kind (a label) and the expected outcome."""

    path: Path
    kind: str
    expect: str  # complete | failed | either | absent
    reason: str = ""  # a phrase the failure reason must contain (when known)


def _save(im: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A smooth random RGB image (W × H = ``size``), so that lossy codecs produce ordinary files."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    phase = rng.uniform(0, 2 * np.pi, 3)
    channels = [127.5 + 120 * np.sin(x / w * 2 * np.pi + p) * np.cos(y / h * np.pi + p) for p in phase]
    return np.stack(channels, axis=2).astype(np.uint8)


def valid_images(rng: np.random.Generator) -> dict[str, bytes]:
    """Valid 2:1 images of every flavour the reader supports, by file name."""
    rgb = _rgb(rng)
    im = Image.fromarray(rgb)
    out = {f"valid_rgb.{ext}": _save(im, fmt) for ext, fmt in FORMATS.items()}
    out["valid_gray.png"] = _save(im.convert("L"), "PNG")
    out["valid_gray_alpha.png"] = _save(im.convert("LA"), "PNG")
    out["valid_rgba.png"] = _save(im.convert("RGBA"), "PNG")
    out["valid_rgba.webp"] = _save(im.convert("RGBA"), "WEBP", lossless=True)
    out["valid_palette.png"] = _save(im.convert("P"), "PNG")
    palette = im.convert("P")
    palette.info["transparency"] = 0
    out["valid_palette_transparent.png"] = _save(palette, "PNG", transparency=0)
    out["valid_cmyk.jpg"] = _save(im.convert("CMYK"), "JPEG")
    out["valid_cmyk.tif"] = _save(im.convert("CMYK"), "TIFF")
    out["valid_bmp.bmp"] = _save(im, "BMP")
    out["valid_16bit.png"] = cv2.imencode(".png", (rgb.astype(np.uint16) * 257)[:, :, ::-1])[1].tobytes()
    out["valid_16bit.tif"] = cv2.imencode(".tif", (rgb.astype(np.uint16) * 257)[:, :, ::-1])[1].tobytes()
    out["valid_16bit_gray.png"] = _save(Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257), "PNG")
    out["valid_tiny_2x1.png"] = _save(Image.fromarray(rgb[:1, :2]), "PNG")
    for orientation in range(1, 9):  # stored so that the upright image is 2:1 (5–8 swap the axes)
        stored = im.transpose(Image.Transpose.ROTATE_90) if orientation >= 5 else im
        exif = Image.Exif()
        exif[0x0112] = orientation
        out[f"valid_exif_orientation_{orientation}.jpg"] = _save(stored, "JPEG", exif=exif.tobytes())
    frames = [Image.fromarray(_rgb(rng)) for _ in range(3)]
    out["valid_animated.gif"] = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out["valid_animated.webp"] = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)
    return out


def bombs() -> dict[str, bytes]:
    """Small files whose headers claim 100000×50000 pixels (JPEG and GIF: their 65535 maximum)."""
    w, h = 100_000, 50_000
    small = Image.new("RGB", (16, 8))
    jpeg = bytearray(_save(small, "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 50_000, 65_535)  # height, width
    gif = bytearray(_save(small, "GIF"))
    gif[6:10] = struct.pack("<HH", 65_535, 65_535)  # logical screen
    descriptor = gif.index(b",")
    gif[descriptor + 5 : descriptor + 9] = struct.pack("<HH", 65_535, 65_535)  # the frame
    return {"bomb.png": _png_claiming(w, h, 8), "bomb_16bit.png": _png_claiming(w, h, 16),
            "bomb.tif": _tiff_claiming(w, h), "bomb.jpg": bytes(jpeg), "bomb.gif": bytes(gif)}  # fmt: skip


def _png_claiming(width: int, height: int, depth: int) -> bytes:
    """An RGB PNG whose IHDR claims ``width × height`` pixels, with 4 KiB of zeros as its compressed data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose tags claim ``width × height`` RGB pixels, with 16 bytes of strip data."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 4, 0), (277, 3, 3),
            (278, 4, height), (279, 4, 16)]  # fmt: skip
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(tags) + 4
    tags[5] = (273, 4, data_offset)
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)  # SHORT or LONG, left-aligned
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\0" + struct.pack("<I", ifd_offset) + ifd + b"\0\0\0\0" + bytes(16)


def unsupported(rng: np.random.Generator) -> dict[str, tuple[bytes, str]]:
    """Readable files that odisr refuses, with a phrase of the reason."""
    nan = np.full((32, 64), np.nan, np.float32)
    inf = rng.uniform(0, 1, (32, 64)).astype(np.float32)
    inf[::3] = np.inf
    rgb = _rgb(rng)
    float_rgb = io.BytesIO()
    import tifffile

    tifffile.imwrite(float_rgb, np.dstack([nan, inf, inf]), photometric="rgb")
    return {
        "float_nan.tif": (_save(Image.fromarray(nan, mode="F"), "TIFF"), "floating-point"),
        "float_inf.tif": (_save(Image.fromarray(inf, mode="F"), "TIFF"), "floating-point"),
        "float_rgb_nan_inf.tif": (float_rgb.getvalue(), "float_rgb_nan_inf.tif"),
        "int32.tif": (_save(Image.fromarray(rgb[:, :, 0].astype(np.int32), mode="I"), "TIFF"), "32-bit integer"),
        "one_pixel.png": (_save(Image.fromarray(rgb[:1, :1]), "PNG"), "not an equirectangular"),
        "one_by_65535.png": (_save(Image.new("RGB", (1, 65535)), "PNG"), "not an equirectangular"),
        "65535_by_1.png": (_save(Image.new("RGB", (65535, 1)), "PNG"), "not an equirectangular"),
        "four_by_three.jpg": (_save(Image.fromarray(_rgb(rng, (64, 48))), "JPEG"), "not an equirectangular"),
        "square.webp": (_save(Image.fromarray(_rgb(rng, (48, 48))), "WEBP"), "not an equirectangular"),
        "zero_bytes.png": (b"", "empty"),
        "zero_bytes.jpg": (b"", "empty"),
        "text.png": (b"this is not an image\n" * 20, "not a PNG"),
        "html.jpg": (b"<!doctype html><title>404</title>", "not a PNG"),
        "noise.tif": (rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "noise.tif"),
        "png_signature_only.png": (b"\x89PNG\r\n\x1a\n", "png_signature_only.png"),
    }


def truncated(rng: np.random.Generator, valid: dict[str, bytes], per_file: int) -> dict[str, bytes]:
    """Each flavour of ``valid`` cut at ``per_file`` random lengths."""
    out = {}
    for name, data in valid.items():
        stem, ext = name.rsplit(".", 1)
        for i, cut in enumerate(sorted(rng.integers(1, len(data), per_file))):
            out[f"truncated_{stem}_{i}.{ext}"] = data[:cut]
    return out


def bit_flipped(rng: np.random.Generator, valid: dict[str, bytes], per_file: int) -> dict[str, bytes]:
    """Each flavour of ``valid`` with 1–32 random bits flipped (headers included)."""
    out = {}
    for name, data in valid.items():
        stem, ext = name.rsplit(".", 1)
        for i in range(per_file):
            damaged = bytearray(data)
            for position in rng.integers(0, len(data) * 8, rng.integers(1, 33)):
                damaged[position // 8] ^= 1 << (position % 8)
            out[f"flipped_{stem}_{i}.{ext}"] = bytes(damaged)
    return out


def generate(dest: Path, seed: int = 13) -> list[Case]:
    """Write the campaign's inputs under ``dest`` (created) and return the cases, in a fixed order."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def put(name: str, data: bytes, kind: str, expect: str, reason: str = "") -> None:
        (dest / name).write_bytes(data)
        cases.append(Case(dest / name, kind, expect, reason))

    valid = valid_images(rng)
    for name, data in valid.items():
        put(name, data, "valid", "complete")
    for name, data in bombs().items():
        put(name, data, "decompression bomb", "failed", "MAX_PIXELS")
    for name, (data, reason) in unsupported(rng).items():
        put(name, data, "unsupported", "failed", reason)
    damaged_sources = {n: d for n, d in valid.items() if n.startswith("valid_rgb.") or n == "valid_16bit.png"}
    for name, data in truncated(rng, damaged_sources, per_file=8).items():
        put(name, data, "truncated", "either")
    for name, data in bit_flipped(rng, damaged_sources, per_file=16).items():
        put(name, data, "bit-flipped", "either")
    cases += _special_files(dest, valid["valid_rgb.png"])
    return cases


def _special_files(dest: Path, png: bytes) -> list[Case]:
    """Paths named like images that are not regular, readable image files."""
    (dest / "loop_a.png").symlink_to("loop_b.png")
    (dest / "loop_b.png").symlink_to("loop_a.png")
    (dest / "self_loop.jpg").symlink_to("self_loop.jpg")
    (dest / "dir_loop.png").symlink_to(".")
    (dest / "dangling.png").symlink_to("does_not_exist.png")
    os.mkfifo(dest / "fifo.png")
    (dest / "empty_folder.png").mkdir()
    (dest / "folder.jpg").mkdir()
    (dest / "folder.jpg" / "inside_a_folder_named_jpg.png").write_bytes(png)
    unreadable = dest / "no_permission.png"
    unreadable.write_bytes(png)
    unreadable.chmod(0)
    root = os.geteuid() == 0  # root reads a mode-000 file like any other: then it is a valid image
    return [
        Case(dest / "loop_a.png", "symlink loop", "failed", "loop_a.png"),
        Case(dest / "loop_b.png", "symlink loop", "failed", "loop_b.png"),
        Case(dest / "self_loop.jpg", "symlink loop", "failed", "self_loop.jpg"),
        Case(dest / "dir_loop.png", "symlink to its own folder", "failed", "dir_loop.png"),
        Case(dest / "dangling.png", "dangling symlink", "failed", "dangling.png"),
        Case(dest / "fifo.png", "FIFO", "failed", "not a regular file"),
        Case(dest / "empty_folder.png", "directory", "absent"),
        Case(dest / "folder.jpg", "directory", "absent"),
        Case(dest / "folder.jpg" / "inside_a_folder_named_jpg.png", "valid, in a folder named like an image",
             "complete"),
        Case(unreadable, "no read permission", "complete" if root else "failed", "" if root else "ermission"),
    ]
