"""Image IO: the real panoramas, 8/16-bit formats, alpha, grayscale, EXIF orientation, broken files, conversions.

Budget: < 5 s (the eight shared panoramas are decoded once each; every other image is tiny).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import odisr.io as oio
from odisr.erp import check_erp
from odisr.io import ImageReadError, read_image, to_float, to_uint8, write_image

RNG = np.random.default_rng(1234)
RGB8 = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (6, 10, 3), dtype=np.uint16)


def _png_bytes(arr: np.ndarray, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG", **save)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- real panoramas
ERP_FILES = [
    "aframe_lake.jpg", "hohonet_pano.png", "horizonnet_demo.png", "layoutnet_testpano.png",
    "pannellum_examplepano.jpg", "psv_sphere_small.jpg", "vrview_machu_picchu.jpg", "vrview_petra.jpg",
]


@pytest.mark.parametrize("name", ERP_FILES)
def test_reads_the_shared_panoramas(shared: Path, name: str) -> None:
    img = read_image(shared / "data" / "erp" / name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.flags.c_contiguous and img.flags.writeable
    h, w = check_erp(img, name=name)
    assert h in (512, 1000, 1024, 2048) and w == 2 * h
    assert 20 < img.mean() < 235 and img.std() > 10  # a real photograph, not a blank decode


# ----------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_lossless_8bit_round_trip(tmp_path: Path, suffix: str) -> None:
    path = write_image(tmp_path / f"x{suffix}", RGB8)
    np.testing.assert_array_equal(read_image(path), RGB8)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{suffix}"]  # no temporary file left behind


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_8bit_round_trip(tmp_path: Path, suffix: str) -> None:
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 32, axis=0).repeat(3, axis=2)
    back = read_image(write_image(tmp_path / f"x{suffix}", smooth))
    assert back.shape == smooth.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - smooth).mean() < 2.0


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_files_made_by_opencv_read_exactly(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    assert cv2.imwrite(str(path), RGB16[:, :, ::-1])  # OpenCV stores BGR
    img = read_image(path)
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, RGB16)  # Pillow 13 alone would give 8-bit values here


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_write_keeps_rgb_order_and_precision(tmp_path: Path, suffix: str) -> None:
    path = write_image(tmp_path / f"deep{suffix}", RGB16)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, ::-1], RGB16)
    np.testing.assert_array_equal(read_image(path), RGB16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_grayscale_8_and_16_bit_become_rgb(tmp_path: Path, suffix: str) -> None:
    for gray in (RGB8[..., 0], RGB16[..., 0]):
        img = read_image(write_image(tmp_path / f"g{suffix}", gray))
        assert img.shape == (*gray.shape, 3) and img.dtype == gray.dtype
        np.testing.assert_array_equal(img, np.repeat(gray[..., None], 3, axis=2))


def test_alpha_is_dropped_with_a_warning() -> None:
    rgba = RNG.integers(0, 256, (6, 10, 4), dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"rgba\.png: alpha channel dropped"):
        img = read_image(_png_bytes(rgba), name="rgba.png")
    np.testing.assert_array_equal(img, rgba[..., :3])  # colours kept as stored, not composited
    deep = RNG.integers(0, 65536, (6, 10, 4), dtype=np.uint16)
    ok, data = cv2.imencode(".png", deep)
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        np.testing.assert_array_equal(read_image(data.tobytes()), deep[..., 2::-1])


def test_palette_with_transparency_warns_and_gives_rgb() -> None:
    pal = Image.fromarray(RGB8).quantize(8)
    buffer = io.BytesIO()
    pal.save(buffer, format="PNG", transparency=0)
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        img = read_image(buffer.getvalue())
    np.testing.assert_array_equal(img, np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    photo = Image.fromarray(RNG.integers(0, 256, (8, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    photo.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    img = read_image(path)
    assert img.shape == ((16, 8, 3) if orientation >= 5 else (8, 16, 3)) and img.flags.writeable
    np.testing.assert_array_equal(img, expected)


def test_bytes_file_objects_and_zip_members(tmp_path: Path) -> None:
    data = _png_bytes(RGB8)
    np.testing.assert_array_equal(read_image(data), RGB8)
    np.testing.assert_array_equal(read_image(io.BytesIO(data)), RGB8)
    archive = tmp_path / "pano.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inner/pano.png", data)
        zf.writestr("inner/broken.png", data[:40])
    with zipfile.ZipFile(archive) as zf:
        with zf.open("inner/pano.png") as member:
            np.testing.assert_array_equal(read_image(member), RGB8)
        with zf.open("inner/broken.png") as member, pytest.raises(ImageReadError, match="pano.zip:broken.png"):
            read_image(member, name="pano.zip:broken.png")


# ------------------------------------------------------------------------------------------------ broken files
def _broken_files() -> dict[str, bytes]:
    png = _png_bytes(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    ok, deep = cv2.imencode(".png", RGB16)
    return {
        "truncated.png": png[: len(png) // 2],
        "truncated16.png": deep.tobytes()[:-30],
        "random.jpg": RNG.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "empty.png": b"",
        "text.webp": b"RIFF\x00\x00\x00\x00WEBPnot really",
    }


@pytest.mark.parametrize("name", ["truncated.png", "truncated16.png", "random.jpg", "empty.png", "text.webp"])
def test_broken_files_raise_one_readable_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_broken_files()[name])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(str(path) + ":") and "\n" not in message
    assert "<_io.BytesIO" not in message
    assert isinstance(info.value, ValueError)


def test_missing_file_and_text_stream() -> None:
    with pytest.raises(ImageReadError, match=r"nowhere\.png: cannot read the file \(No such file"):
        read_image("nowhere.png")
    with pytest.raises(ImageReadError, match="binary file object"):
        read_image(io.StringIO("abc"), name="notes.txt")  # type: ignore[arg-type]


def test_unsupported_sample_format() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 8), np.float32)).save(buffer, format="TIFF")
    with pytest.raises(ImageReadError, match="float.tif: floating-point samples are not supported"):
        read_image(buffer.getvalue(), name="float.tif")


def test_a_known_signature_with_an_unreadable_body_says_which_format() -> None:
    tiff = io.BytesIO()
    import tifffile

    tifffile.imwrite(tiff, np.full((4, 8, 3), np.nan, np.float32), photometric="rgb")  # float RGB: Pillow cannot
    with pytest.raises(ImageReadError, match=r"f\.tif: a TIFF file whose header is corrupt or whose sample format"):
        read_image(tiff.getvalue(), name="f.tif")
    with pytest.raises(ImageReadError, match=r"t\.png: not a PNG, JPEG, TIFF or WebP image"):
        read_image(b"plain text", name="t.png")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` RGB pixels (no pixel data): Pillow opens it lazily."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_decompression_bomb_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    assert oio.MAX_PIXELS >= 16384 * 8192 and Image.MAX_IMAGE_PIXELS >= oio.MAX_PIXELS
    for width, height in [(24000, 12000), (60000, 30000)]:  # above MAX_PIXELS, and above Pillow's hard limit
        with pytest.raises(ImageReadError, match=r"huge\.png: .*exceeds odisr\.io\.MAX_PIXELS"):
            read_image(_png_header(width, height), name="huge.png")
    with pytest.raises(ImageReadError, match=r"huge\.png: its header claims more pixels \(Image size \(5000000000"):
        read_image(_png_header(100_000, 50_000), name="huge.png")  # refused from the header: 15 GB never allocated
    monkeypatch.setattr(oio, "MAX_PIXELS", 59)
    with pytest.raises(ImageReadError, match="6×10 pixels|10×6 pixels"):
        read_image(_png_bytes(RGB8))


# ---------------------------------------------------------------------------------------------- writing errors
def test_write_rejects_what_the_format_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JPEG stores 8 bits"):
        write_image(tmp_path / "x.jpg", RGB16)
    with pytest.raises(ValueError, match="cannot write '.bmp'"):
        write_image(tmp_path / "x.bmp", RGB8)
    with pytest.raises(ValueError, match="to_uint8"):
        write_image(tmp_path / "x.png", RGB8.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------- conversions
def test_to_float_and_back_is_exact_for_every_8bit_value() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    f = to_float(levels)
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_array_equal(to_uint8(f), levels)
    deep = to_float(np.array([0, 257, 65535], np.uint16))
    np.testing.assert_allclose(deep, [0.0, 1 / 255, 1.0], rtol=1e-7)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        to_float(np.zeros(3, np.int32))


def test_to_uint8_clamps_and_rounds_half_to_even() -> None:
    x = np.array([-0.5, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.999, 1.7, np.nan], np.float64)
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 2, 2, 255, 255, 0])
    with pytest.raises(ValueError, match="float"):
        to_uint8(RGB8)


def test_tensor_round_trip() -> None:
    t = oio.image_to_tensor(RGB8)
    assert t.shape == (1, 3, 6, 10) and t.dtype == torch.float32 and t.is_contiguous()
    np.testing.assert_array_equal(oio.tensor_to_image(t), RGB8)
    np.testing.assert_array_equal(oio.tensor_to_image(t[0].half()), RGB8)  # half precision still rounds right
    np.testing.assert_array_equal(oio.tensor_to_image((t * 1.5 - 0.25).clamp(-1, 2)),
                                  to_uint8((to_float(RGB8) * 1.5 - 0.25)))
    deep = oio.image_to_tensor(RGB16)
    torch.testing.assert_close(deep[0].permute(1, 2, 0), torch.from_numpy(RGB16 / 65535.0).float())
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        oio.tensor_to_image(t.expand(2, 3, 6, 10))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        oio.image_to_tensor(RGB8[..., 0])
