"""Image reading and writing, and the conversions between images and model tensors.

Images in odisr are numpy ``(H, W, 3)`` RGB arrays of dtype uint8 or uint16 (what :func:`read_image` returns);
models see ``(B, 3, H, W)`` float32 tensors in ``[0, 1]``. Going back to an image clamps to ``[0, 1]``, multiplies
by 255 and rounds half to even (numpy/torch ``round``), the convention of BasicSR's ``tensor2img`` under which the
field's PSNR numbers are computed.

Reading is Pillow for PNG/JPEG/TIFF/WebP with the EXIF orientation applied, except 16-bit colour PNG/TIFF, which
Pillow 13 silently reduces to 8 bits: those are decoded by OpenCV (``IMREAD_UNCHANGED``, BGR → RGB).
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

import numpy as np
from PIL import ExifTags, Image

if TYPE_CHECKING:
    import torch  # imported where used: reading and writing images must not load torch (export workers, driver)

__all__ = [
    "MAX_PIXELS",
    "SUFFIXES",
    "ImageReadError",
    "encode_image",
    "image_to_tensor",
    "read_image",
    "read_metadata",
    "tensor_to_image",
    "to_float",
    "to_uint8",
    "write_image",
]

#: Largest image (width × height) :func:`read_image` decodes: twice a 16384 × 8192 (16K) panorama, so 16K ERP
#: images open with headroom. That is 805 MB as uint8 RGB and 1.6 GB as uint16; larger files are refused with
#: :class:`ImageReadError` before decoding (a decompression-bomb guard).
MAX_PIXELS = 2 * 16384 * 8192

# Pillow's own guard warns above MAX_IMAGE_PIXELS and refuses above twice that; it must not stop a 16K panorama,
# so it is raised (never lowered) to ours, and our explicit check in ``_decode`` refuses anything above MAX_PIXELS.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)

#: File suffixes odisr reads and writes, with their Pillow format names.
SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]

# EXIF orientation → the numpy operations that display the stored pixels upright (EXIF 2.3, tag 0x0112).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


class ImageReadError(ValueError):
    """An image file cannot be read (missing, empty, corrupt, truncated, unsupported or too large)."""


# ------------------------------------------------------------------------------------------------------- reading
def read_image(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or WebP image as RGB.

    Grayscale is repeated to three channels; an alpha channel is **dropped** (the colour values are kept as stored,
    not composited on a background) with a ``UserWarning``; the EXIF orientation is applied; multi-frame files give
    their first frame.

    Args:
        source: a path, the encoded bytes, or a binary file object (e.g. a zip/tar member, read to its end).
        name: label for messages (defaults to the path or the file object's ``name``).

    Returns:
        ``(H, W, 3)`` C-contiguous, writable array: uint8 for 8-bit files, uint16 for 16-bit PNG/TIFF.

    Raises:
        ImageReadError: the file is missing, empty, not an image, corrupt or truncated, of an unsupported
            sample format (e.g. float TIFF), or larger than :data:`MAX_PIXELS`. The message names the file.
    """
    label = name or _label(source)
    data = _read_bytes(source, label)
    if not data:
        raise ImageReadError(f"{label}: the file is empty (0 bytes)")
    try:
        return _decode(data, label)
    except ImageReadError:
        raise
    except Exception as err:  # decoders raise many types (OSError, SyntaxError, struct.error, …) on corrupt data
        raise ImageReadError(f"{label}: cannot decode the image ({type(err).__name__}: {err})") from err


def _label(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<bytes>"))


def _read_bytes(source: ImageSource, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            return Path(source).read_bytes()
        data = source.read()
    except (OSError, ValueError) as err:  # ValueError: a closed file object
        raise ImageReadError(f"{label}: cannot read the file ({getattr(err, 'strerror', None) or err})") from err
    if not isinstance(data, bytes):
        raise ImageReadError(f"{label}: expected a binary file object (opened with 'rb'), got text")
    return data


def _decode(data: bytes, label: str) -> np.ndarray:
    with _open_checked(data, label) as im:
        deep = _is_deep_color(im)  # before getexif(), which may load the pixels and drop ``im.tile``
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        arr = _decode_opencv(data, label) if deep else _pixels_pillow(im, label)
    arr = _ORIENT.get(orientation, lambda a: a)(arr)
    return np.require(arr, requirements=("C", "W"))  # Pillow's arrays are read-only views of its bytes


def _open_checked(data: bytes, label: str) -> Image.Image:
    """Open (header only) and refuse images above MAX_PIXELS with our message rather than Pillow's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            claim = f"{im.size[0]}×{im.size[1]} pixels"
        except Image.DecompressionBombError as err:  # Pillow's own guard, at twice its limit: its message has the size
            im, claim = None, f"its header claims more pixels ({err})"
        except Image.UnidentifiedImageError as err:
            raise ImageReadError(f"{label}: {_unidentified(data)}") from err
    if im is None or im.size[0] * im.size[1] > MAX_PIXELS:  # checked on the header: no pixel is allocated
        raise ImageReadError(
            f"{label}: {claim} exceeds odisr.io.MAX_PIXELS = {MAX_PIXELS:,} (twice a 16384×8192 panorama); "
            f"split or downscale it first"
        )
    return im


#: Leading bytes of the formats odisr reads, to say what an undecodable file claims to be.
_SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"II*\0": "TIFF", b"MM\0*": "TIFF", b"GIF8": "GIF",
               b"BM": "BMP"}  # fmt: skip


def _unidentified(data: bytes) -> str:
    """Why Pillow could not identify ``data``: a known format's signature with a bad header, or no image at all."""
    fmt = next((f for magic, f in _SIGNATURES.items() if data.startswith(magic)), None)
    if fmt is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt = "WebP"
    if fmt is None:
        return "not a PNG, JPEG, TIFF or WebP image, or its header is corrupt"
    return (
        f"a {fmt} file whose header is corrupt or whose sample format is not supported (e.g. floating-point "
        f"colour); save it as 8- or 16-bit PNG/TIFF"
    )


def _is_deep_color(im: Image.Image) -> bool:
    """True for 16-bit colour PNG/TIFF, which Pillow would decode to 8 bits (its raw mode is e.g. ``RGB;16B``)."""
    if not im.tile or im.mode.startswith("I"):
        return False
    args = im.tile[0].args
    rawmode = args if isinstance(args, str) else (args[0] if args else "")
    return ";16" in str(rawmode)


def _pixels_pillow(im: Image.Image, label: str) -> np.ndarray:
    if im.mode.startswith("I;16"):
        gray = np.asarray(im).astype(np.uint16)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("I", "F"):
        raise ImageReadError(
            f"{label}: {'32-bit integer' if im.mode == 'I' else 'floating-point'} samples are not supported; "
            f"save the image as 8- or 16-bit PNG/TIFF"
        )
    if "A" in im.getbands() or "transparency" in im.info:
        _warn_alpha(label)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _decode_opencv(data: bytes, label: str) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{label}: OpenCV cannot decode this 16-bit image (corrupt or truncated)")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] in (2, 4):
        _warn_alpha(label)
    if arr.shape[2] == 2:  # gray + alpha
        return np.repeat(arr[:, :, :1], 3, axis=2)
    return arr[:, :, 2::-1]  # BGR(A) → RGB


def _warn_alpha(label: str) -> None:
    warnings.warn(
        f"{label}: alpha channel dropped (RGB kept as stored, not composited)", UserWarning, stacklevel=5
    )


# ------------------------------------------------------------------------------------------------------- metadata
#: Largest ICC profile :func:`read_metadata` keeps (bytes). Working-space and camera profiles are 0.5–60 KB; only
#: LUT-based printer profiles exceed this. A larger one is dropped (recorded under ``dropped``), so the exports of
#: that image carry no profile and viewers assume sRGB.
MAX_ICC_BYTES = 256 * 1024
#: Largest EXIF block kept (bytes): what a JPEG APP1 segment can hold (65,533 bytes less the ``Exif\0\0`` header).
MAX_EXIF_BYTES = 65527
_TIFF_EXIF_TAGS = (0x010E, 0x010F, 0x0110, 0x0112, 0x0131, 0x0132, 0x013B, 0x8298)  # descriptive IFD0 tags


def read_metadata(source: ImageSource, *, name: str | None = None) -> dict[str, Any]:
    """What an image file says beyond its pixels, JSON-safe: kept by ``odisr run`` as the pair attr
    ``source_metadata`` so that ``odisr export`` can copy it without the source (:mod:`odisr.export.metadata`).

    Returns:
        ``{"format": Pillow format name, "orientation": the EXIF orientation (1–8) that :func:`read_image` applied,
        "icc_profile": base64 of the ICC profile or None, "exif": base64 of the TIFF-structured EXIF block as found
        (orientation not reset) or None, "gpano": {GPano property: value} from the XMP packet,
        "dropped": {block: why}}``. ICC profiles over :data:`MAX_ICC_BYTES`, EXIF over :data:`MAX_EXIF_BYTES` and
        unreadable XMP are dropped and named in ``dropped``. TIFF sources keep their descriptive IFD0 tags and
        their EXIF and GPS sub-IFDs.

    Raises:
        ImageReadError: the file cannot be read or is not an image (as :func:`read_image`).
    """
    from odisr.export.metadata import parse_gpano

    label = name or _label(source)
    dropped: dict[str, str] = {}
    with _open_checked(_read_bytes(source, label), label) as im:
        exif = im.getexif()
        try:
            raw_exif = _exif_block(im, exif)
        except Exception as err:  # a corrupt EXIF sub-IFD (bad offsets) raises many types; the pixels are fine
            raw_exif, dropped["exif"] = None, f"unreadable ({type(err).__name__}: {err})"
        icc, xmp = im.info.get("icc_profile"), _xmp_packet(im)
        meta: dict[str, Any] = {"format": im.format, "orientation": int(exif.get(ExifTags.Base.Orientation, 1))}
    meta["icc_profile"] = _kept(icc, MAX_ICC_BYTES, "icc_profile", dropped)
    meta["exif"] = _kept(raw_exif, MAX_EXIF_BYTES, "exif", dropped)
    try:
        meta["gpano"] = parse_gpano(xmp) if xmp else {}
    except ValueError as err:
        meta["gpano"], dropped["xmp"] = {}, str(err)
    meta["dropped"] = dropped
    return meta


def _exif_block(im: Image.Image, exif: Image.Exif) -> bytes | None:
    """The EXIF block without its ``Exif\\0\\0`` header: as stored (JPEG, PNG, WebP), or rebuilt from a TIFF's
    descriptive IFD0 tags and EXIF/GPS sub-IFDs (a TIFF's IFD0 also holds its image structure, not copied)."""
    raw = im.info.get("exif")
    if raw:
        return bytes(raw).removeprefix(b"Exif\x00\x00")
    if im.format != "TIFF":
        return None
    kept = Image.Exif()
    for tag in _TIFF_EXIF_TAGS:
        if tag in exif:
            kept[tag] = exif[tag]
    for ifd in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
        if sub := exif.get_ifd(ifd):
            kept[ifd] = dict(sub)
    return kept.tobytes().removeprefix(b"Exif\x00\x00") if len(kept) else None


def _xmp_packet(im: Image.Image) -> bytes | str | None:
    """The XMP packet: JPEG/WebP/TIFF ``info["xmp"]``, PNG ``iTXt XML:com.adobe.xmp``."""
    return im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or None


def _kept(block: bytes | None, limit: int, what: str, dropped: dict[str, str]) -> str | None:
    if not block:
        return None
    if len(block) > limit:
        dropped[what] = f"{len(block):,} bytes > the {limit:,}-byte limit of odisr.io.read_metadata"
        return None
    return base64.b64encode(block).decode("ascii")


# ------------------------------------------------------------------------------------------------------- writing
def write_image(path: str | os.PathLike, img: np.ndarray, *, quality: int = 95) -> Path:
    """Write an image, its format chosen by the suffix (``.png .jpg .jpeg .tif .tiff .webp``).

    The file is written to a temporary name in the same folder and renamed, so readers never see half a file.

    Args:
        path: destination; the folder must exist.
        img: ``(H, W, 3)`` RGB or ``(H, W)`` grayscale, uint8 (all formats) or uint16 (PNG and TIFF only).
        quality: JPEG / WebP quality, 1–100.

    Returns:
        The path written.

    Raises:
        ValueError: unknown suffix, wrong shape or dtype, or uint16 to JPEG/WebP.
    """
    path = Path(path)
    data = encode_image(img, path.suffix, quality=quality)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def encode_image(img: np.ndarray, suffix: str, *, quality: int = 95) -> bytes:
    """Encode an image to the bytes of a ``suffix`` file (``".png"``, ``".jpg"``, …); see :func:`write_image`."""
    fmt = SUFFIXES.get(suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {suffix!r} files; use one of {', '.join(SUFFIXES)}")
    img = np.asarray(img)
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grayscale image; got shape {img.shape}")
    if img.dtype == np.uint16:
        return _encode_uint16(img, suffix.lower(), fmt)
    if img.dtype != np.uint8:
        raise ValueError(f"expected uint8 or uint16 pixels; got {img.dtype} (convert floats in [0, 1] with to_uint8)")
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(img).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_uint16(img: np.ndarray, suffix: str, fmt: str) -> bytes:
    import cv2

    if fmt not in ("PNG", "TIFF"):
        raise ValueError(f"{fmt} stores 8 bits per channel; write uint16 images as PNG or TIFF, or convert with "
                         f"to_uint8(to_float(img))")
    ok, encoded = cv2.imencode(suffix, img if img.ndim == 2 else np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:  # pragma: no cover - OpenCV reports no reason
        raise ValueError(f"OpenCV could not encode a {img.shape} uint16 image as {fmt}")
    return encoded.tobytes()


# --------------------------------------------------------------------------------------------------- conversions
def to_float(img: np.ndarray) -> np.ndarray:
    """Pixels to float32 in ``[0, 1]``: uint8 / 255, uint16 / 65535. Shape kept (``(H, W, 3)`` or any).

    Raises:
        ValueError: any other dtype.
    """
    img = np.asarray(img)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(img.dtype)
    if scale is None:
        raise ValueError(f"to_float expects uint8 or uint16 pixels; got {img.dtype}")
    return img.astype(np.float32) / np.float32(scale)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float pixels in ``[0, 1]`` to uint8: clamp to ``[0, 1]``, × 255, round half to even (NaN → 0).

    Computed in the input's float precision (float32 stays float32, as BasicSR's ``tensor2img``).

    Raises:
        ValueError: non-float input.
    """
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"to_uint8 expects float pixels in [0, 1]; got {img.dtype}")
    out = np.clip(img, 0.0, 1.0) * img.dtype.type(255.0)
    np.round(out, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(np.uint8)


def image_to_tensor(img: np.ndarray, *, device: torch.device | str | None = None) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8/uint16 RGB image to a ``(1, 3, H, W)`` float32 tensor in ``[0, 1]`` on ``device``."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image; got shape {img.shape}")
    import torch

    return torch.from_numpy(to_float(img)).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """A ``(1, 3, H, W)`` or ``(3, H, W)`` tensor in ``[0, 1]`` (any float dtype/device) to ``(H, W, 3)`` uint8.

    Clamps to ``[0, 1]``, × 255 and rounds half to even, in float32.

    Raises:
        ValueError: another shape (a batch of more than one image included).
    """
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (1, 3, H, W) or (3, H, W) tensor; got shape {tuple(t.shape)}")
    import torch

    out = t.detach().to(torch.float32).clamp(0.0, 1.0).mul(255.0).round().nan_to_num(0.0)
    return out.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
