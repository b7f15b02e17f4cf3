"""`odisr export` and `odisr run --export-dir` end to end: a real LocalCluster (2 single-threaded workers), a real
store made by `odisr run --model bicubic-x2` of three real panoramas made small (LR 256×128), the files read back
with Pillow and tifffile, cube maps and tile pyramids resampled back with py360convert, and the pyramid rendered
by Pannellum (installed from the npm registry into a temporary folder) in headless Chromium.

Sources: an 8-bit PNG; a JPEG carrying an ICC profile, EXIF (orientation 6: pixels stored rotated) and Photo
Sphere XMP; a 16-bit PNG. Budget: < 1 min on 2 cores (most of it the cluster's start and the browser).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import tracemalloc
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import py360convert
import pytest
import tifffile
import zarr
from PIL import Image, ImageCms

from cli_support import odisr_cli
from browser_support import WEBGL_FLAGS, blank_fraction, chromium, screenshot, serve  # noqa: F401  (fixture)
from odisr.degrade import bicubic_erp
from odisr.erp import latitude, latitude_weights, longitude
from odisr.export.cube import FACES
from odisr.export.metadata import GPANO_NS, OutputMetadata
from odisr.export.writers import band_rows, write_tiff
from odisr.io import read_image, write_image
from pipelines import store as st

MODEL = "bicubic-x2"
SR_SHAPE = (256, 512)  # LR 128×256 ×2
HEADING = "123.4"


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def icc() -> bytes:
    """A real ICC profile (LittleCMS's sRGB)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def sources(shared, icc, tmp_path_factory) -> Path:
    """Three LR panoramas (256×128) from the shared real ones, in three kinds of file."""
    folder = tmp_path_factory.mktemp("in")
    erp = shared / "data" / "erp"
    write_image(folder / "hoho.png", bicubic_erp(read_image(erp / "hohonet_pano.png"), 4))
    exif = Image.Exif()
    exif.update({0x010F: "OdisrCam", 0x0112: 6})  # Make; orientation 6: rotate the stored pixels 90° clockwise
    xmp = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           f'<rdf:Description xmlns:GPano="{GPANO_NS}" GPano:ProjectionType="equirectangular">'
           f"<GPano:PoseHeadingDegrees>{HEADING}</GPano:PoseHeadingDegrees></rdf:Description></rdf:RDF></x:xmpmeta>")
    petra = bicubic_erp(read_image(erp / "vrview_petra.jpg"), 8)
    Image.fromarray(np.rot90(petra)).save(folder / "petra.jpg", quality=95, icc_profile=icc, exif=exif,
                                          xmp=xmp.encode())  # fmt: skip
    noise = np.random.default_rng(0).integers(0, 257, (128, 256, 3), dtype=np.uint16)
    deep = bicubic_erp(read_image(erp / "layoutnet_testpano.png"), 8).astype(np.uint16) * 256 + noise
    write_image(folder / "deep.png", deep)
    return folder


@pytest.fixture(scope="module")
def store(sources, scheduler, tmp_path_factory) -> tuple[Path, Path]:
    """The store of `odisr run --model bicubic-x2 --export-dir D --format jpg` and D."""
    out = tmp_path_factory.mktemp("run")
    code, output = odisr_cli("run", sources, "--out", out / "s.zarr", "--model", MODEL, "--tile", 64,
                       "--scheduler", scheduler, "--export-dir", out / "jpg", "--format", "jpg")  # fmt: skip
    assert code == 0, output
    assert "3 done, 0 failed" in output and "3 exported, 0 failed" in output
    return out / "s.zarr", out / "jpg"


def export(store: Path, out: Path, scheduler: str, *args: object) -> tuple[int, str]:
    return odisr_cli("export", store, out, "--scheduler", scheduler, *args)


def stored(store: Path, key: str) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")[f"images/{key}/{MODEL}/sr"][...]


def gpano(xmp: bytes | str) -> dict[str, str]:
    """GPano attributes of an XMP packet, parsed here independently of odisr's reader."""
    root = ElementTree.fromstring(xmp.encode() if isinstance(xmp, str) else xmp)
    return {k.split("}")[1]: v for e in root.iter() for k, v in e.attrib.items() if k.startswith("{" + GPANO_NS)}


def ws_psnr_where(ref: np.ndarray, test: np.ndarray, keep: np.ndarray) -> float:
    """WS-PSNR (dB) over the pixels where ``keep`` is True (cos-latitude weights, RGB pooled)."""
    weights = latitude_weights(ref.shape[0])[:, None] * keep
    error = ((ref.astype(np.float64) - test) ** 2).mean(axis=2)
    peak = np.iinfo(ref.dtype).max
    return float(10 * np.log10(peak**2 * weights.sum() / (weights * error).sum()))


def away_from_seams(height: int, width: int, face: int) -> np.ndarray:
    """ERP pixels whose ray meets its cube face more than one face pixel from the face's edge."""
    ordered = np.sort(np.abs(np.stack(rays(height, width))), axis=0)
    return ordered[1] / ordered[2] * 0.5 < 0.5 - 1.0 / face  # |face coordinate| of the second-largest axis


def rays(height: int, width: int) -> list[np.ndarray]:
    """Unit rays (x east, y up, z front) through the ERP pixel centres, each ``(height, width)``."""
    lat, lon = latitude(np.arange(height), height)[:, None], longitude(np.arange(width), width)[None, :]
    return np.broadcast_arrays(np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon))


def cube_to_erp(faces: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Reference inverse with pixel-centre face coordinates (the WebGL viewers' convention; py360convert's ``c2e``
    samples its faces and ERP grid half a pixel differently): each ERP pixel's dominant axis picks the face."""
    import cv2

    x, y, z = rays(height, width)
    n, dominant = faces[0].shape[0], np.max(np.abs(np.stack([x, y, z])), axis=0)
    frames = {"f": (z, x, y), "r": (x, -z, y), "b": (-z, -x, y), "l": (-x, z, y), "u": (y, x, -z), "d": (-y, x, z)}
    out = np.zeros((height, width, 3), faces[0].dtype)
    for face, pixels in zip(FACES, faces, strict=True):
        depth, across, up = frames[face]
        with np.errstate(divide="ignore", invalid="ignore"):
            cols = ((across / (2 * depth) + 0.5) * n - 0.5).astype(np.float32)
            rows = ((0.5 - up / (2 * depth)) * n - 0.5).astype(np.float32)
        on = np.isclose(depth, dominant)
        out[on] = cv2.remap(pixels, cols, rows, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)[on]
    return out


# ---------------------------------------------------------------------------------------------------- ERP images


def test_run_export_dir_and_the_recorded_source_metadata(store, icc):
    path, jpg = store
    attrs = st.pair_attrs(zarr.open_group(str(path), mode="r"), "petra", MODEL)
    meta = attrs["source_metadata"]
    assert meta["format"] == "JPEG" and meta["orientation"] == 6 and meta["dropped"] == {}
    assert base64.b64decode(meta["icc_profile"]) == icc and meta["gpano"]["PoseHeadingDegrees"] == HEADING
    assert st.pair_attrs(zarr.open_group(str(path), mode="r"), "hoho", MODEL)["source_metadata"]["icc_profile"] is None
    assert sorted(p.name for p in jpg.iterdir()) == [f"{k}__{MODEL}.jpg" for k in ("deep", "hoho", "petra")]


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tiff"])
def test_erp_exports_open_with_the_stored_pixels_and_metadata(store, scheduler, tmp_path, icc, fmt):
    path, jpg = store
    out = jpg if fmt == "jpg" else tmp_path  # the JPEGs are those `run --export-dir` wrote
    if fmt != "jpg":
        code, output = export(path, out, scheduler, "--format", fmt, "--quality", 100)
        assert code == 0 and "3 exported, 0 failed" in output, output
    suffix = {"jpg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif"}[fmt]
    for key in ("hoho", "petra", "deep"):
        pixels, info, xmp = _read(out / f"{key}__{MODEL}{suffix}")
        expected = stored(path, key)
        assert pixels.shape == (*SR_SHAPE, 3)
        if fmt in ("png", "tiff"):  # lossless and 16-bit as stored
            assert pixels.dtype == expected.dtype
            np.testing.assert_array_equal(pixels, expected)
        else:  # 8-bit; WebP at quality 100 is lossless
            eight = ((expected.astype(np.uint32) + 128) // 257).astype(np.uint8) if key == "deep" else expected
            if fmt == "webp":
                np.testing.assert_array_equal(pixels, eight)
            else:
                mse = np.mean((pixels.astype(np.float64) - eight) ** 2)
                assert 10 * np.log10(255**2 / mse) >= 40.0  # quality 95
        panorama = gpano(xmp)
        assert panorama["ProjectionType"] == "equirectangular" and panorama["UsePanoramaViewer"] == "True"
        assert (int(panorama["FullPanoWidthPixels"]), int(panorama["FullPanoHeightPixels"])) == SR_SHAPE[::-1]
        assert int(panorama["CroppedAreaImageWidthPixels"]) == SR_SHAPE[1] and panorama["CroppedAreaTopPixels"] == "0"
        if key == "petra":
            assert info["icc_profile"] == icc and panorama["PoseHeadingDegrees"] == HEADING
            assert info["orientation"] == 1 and info["make"] == "OdisrCam"
        else:
            assert info["icc_profile"] is None and "PoseHeadingDegrees" not in panorama


def _read(path: Path) -> tuple[np.ndarray, dict, bytes]:
    """Pixels, {icc_profile, orientation, make} and the XMP packet of an exported file."""
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tags = {t.code: t.value for t in page.tags}
            assert page.is_tiled
            info = {"icc_profile": tags.get(34675), "orientation": tags.get(274, 1), "make": tags.get(271)}
            return page.asarray(), info, bytes(tags[700])
    with Image.open(path) as im:
        pixels = read_image(path)  # 16-bit PNGs through OpenCV
        exif = im.getexif()
        info = {"icc_profile": im.info.get("icc_profile"), "orientation": exif.get(0x0112), "make": exif.get(0x010F)}
        return pixels, info, im.info.get("xmp") or im.info["XML:com.adobe.xmp"]


def test_tiff_export_streams_the_store_band_by_band(tmp_path):
    """A 2048×1024 TIFF from a store array with 128-px chunks, in 128-px TIFF tiles: Python's allocations peak at a
    few bands of 128 rows (the one being cut and the next being read), far below the image."""
    group = st.begin_pair(str(tmp_path / "s.zarr"), "big", "m", {"source": "big"})
    array = st.create_sr(group, (1024, 2048), 128)
    rows, cols = np.mgrid[0:1024, 0:2048]
    image = np.stack([(rows * 7 + cols) % 251, (cols * 3) % 256, (rows ^ cols) % 256], axis=-1).astype(np.uint8)
    array[...] = image
    band = band_rows(array, 128) * 2048 * 3
    tracemalloc.start()
    write_tiff(tmp_path / "big.tif", array, OutputMetadata(), tile=128)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert band_rows(array, 128) == 128 and peak < 3 * band < 0.4 * image.nbytes, f"peak {peak / 2**20:.1f} MiB"
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.pages[0].tilewidth == 128 and not tif.is_bigtiff
        np.testing.assert_array_equal(tif.asarray(), image)


def test_over_the_webp_limit_fails_naming_it_and_the_others_export(scheduler, tmp_path):
    path = str(tmp_path / "s.zarr")
    st.open_store(path)
    for key, shape in (("wide", (8192, 16384)), ("small", (64, 128))):
        group = st.begin_pair(path, key, MODEL, {"source": f"/data/{key}.png"})
        array = st.create_sr(group, shape, 1024)
        if key == "wide":  # metadata only, no chunks: the limit is checked before any pixel is read
            group.attrs["status"] = st.COMPLETE
            continue
        sink = st.RegionSink(group, array)
        sink[0:64, 0:128] = np.full((64, 128, 3), 200, np.uint8)
        st.complete_pair(sink, {})
    code, output = export(Path(path), tmp_path / "out", scheduler, "--format", "webp")
    assert code == 1, output
    assert "1 exported, 1 failed" in output and "/data/wide.png" in output and "16,383" in output
    assert (tmp_path / "out" / f"small__{MODEL}.webp").is_file()
    assert not list((tmp_path / "out").glob("wide*")) and not list((tmp_path / "out").glob(".*"))


def test_complete_outputs_are_skipped_interrupted_ones_redone(store, scheduler, tmp_path):
    path, _ = store
    args = ("--only", "hoho,petra", "--format", "png")
    assert export(path, tmp_path, scheduler, *args)[0] == 0
    done = tmp_path / f"hoho__{MODEL}.png"
    stamp = done.stat().st_mtime_ns
    (tmp_path / f"petra__{MODEL}.png").unlink()
    (tmp_path / f".petra__{MODEL}.png.1234.tmp").write_bytes(b"half a file")  # what a kill leaves
    code, output = export(path, tmp_path, scheduler, *args)
    assert code == 0 and "1 exported, 0 failed, 1 skipped" in output, output
    assert done.stat().st_mtime_ns == stamp and not list(tmp_path.glob(".*.tmp"))
    code, output = export(path, tmp_path, scheduler, *args, "--overwrite")
    assert "2 exported" in output and done.stat().st_mtime_ns != stamp
    assert export(path, tmp_path, scheduler, "--only", "nope")[0] == 2


# ---------------------------------------------------------------------------------------------------- cube maps


def test_cube_faces_resample_back_to_the_stored_panorama(store, scheduler, tmp_path):
    path, _ = store
    code, output = export(path, tmp_path, scheduler, "--layout", "cubemap", "--format", "png", "--only", "hoho")
    assert code == 0, output
    folder = tmp_path / f"hoho__{MODEL}.cubemap"
    config = json.loads((folder / "cubemap.json").read_text())
    faces = [read_image(folder / name) for name in config["cubeMap"]]
    n = config["faceSize"]
    assert config["cubeMap"] == [f"{f}.png" for f in FACES] and {f.shape for f in faces} == {(n, n, 3)}
    assert n == round(SR_SHAPE[1] / np.pi)
    expected, keep = stored(path, "hoho"), away_from_seams(*SR_SHAPE, n)
    assert ws_psnr_where(expected, cube_to_erp(faces, *SR_SHAPE), keep) >= 45.0
    # py360convert's c2e samples half a pixel off the faces' pixel centres: at twice the face size that costs
    # < 35 dB no more (at W/π it is ≈ 33 dB on these 512-px panoramas, as for py360convert's own e2c → c2e)
    code, output = export(path, tmp_path, scheduler, "--layout", "cubemap", "--format", "png", "--only", "hoho",
                          "--cube-format", "dice", "--face-size", 2 * n)  # fmt: skip
    assert code == 0, output
    dice = read_image(tmp_path / f"hoho__{MODEL}.dice.png")
    assert dice.shape == (3 * 2 * n, 4 * 2 * n, 3)
    back = py360convert.c2e(dice, *SR_SHAPE, mode="bicubic", cube_format="dice")
    assert ws_psnr_where(expected, back, away_from_seams(*SR_SHAPE, 2 * n)) >= 35.0


# ---------------------------------------------------------------------------------------------------- tile pyramids


def test_pyramid_tiles_are_listed_and_resample_back_to_the_store(store, scheduler, tmp_path):
    path, _ = store
    code, output = export(path, tmp_path, scheduler, "--layout", "tiles", "--format", "png", "--tile-size", 64,
                          "--only", "petra")  # fmt: skip
    assert code == 0, output
    folder = tmp_path / f"petra__{MODEL}.tiles"
    args = ("--layout", "tiles", "--format", "png", "--only", "petra")
    again = export(path, tmp_path, scheduler, *args, "--tile-size", 64)
    assert again[0] == 0 and "nothing to export (1 skipped" in again[1], again[1]  # complete, same settings
    config = json.loads((folder / "config.json").read_text())
    meta, multires = config["odisr"], config["pannellum"]["multiRes"]
    on_disk = {p.relative_to(folder).as_posix() for p in (folder / "tiles").rglob("*") if p.is_file()}
    assert set(meta["tiles"]) == on_disk and len(meta["tiles"]) == len(on_disk)
    levels, tile, cube = multires["maxLevel"], multires["tileResolution"], multires["cubeResolution"]
    assert levels == meta["levels"] == 3 and tile <= 64 and cube == tile * 2 ** (levels - 1)
    assert len(on_disk) == 6 * (1 + 1 + 4 + 16)
    def level_face(face: str, level: int) -> np.ndarray:
        side = 2 ** (level - 1) if level else 1
        return np.concatenate([np.concatenate([read_image(folder / f"tiles/{level}/{face}/{r}/{c}.png")
                                               for c in range(side)], 1) for r in range(side)], 0)  # fmt: skip

    tops = [level_face(face, levels) for face in FACES]
    assert {top.shape for top in tops} == {(cube, cube, 3)}
    for face, above in zip(FACES, tops, strict=True):  # each lower level: the 2×2 box average of the one above
        for level in range(levels - 1, -1, -1):
            n = meta["level_sizes"][str(level)]
            image = level_face(face, level)
            box = above.reshape(n, 2, n, 2, 3).astype(np.uint32).sum(axis=(1, 3))
            np.testing.assert_array_equal(image, ((box + 2) // 4).astype(np.uint8))
            above = image
    assert multires["fallbackPath"] == "/0/%s/0/0" and meta["level_sizes"]["0"] == tile // 2
    marzipano = config["marzipano"]["levels"]
    assert marzipano[0]["fallbackOnly"] and all(L["size"] % L["tileSize"] == 0 for L in marzipano)
    assert all(b["size"] % a["size"] == 0 for a, b in zip(marzipano, marzipano[1:], strict=False))
    assert ws_psnr_where(stored(path, "petra"), cube_to_erp(tops, *SR_SHAPE), away_from_seams(*SR_SHAPE, cube)) >= 45
    code, output = export(path, tmp_path, scheduler, *args, "--tile-size", 32)
    assert "1 exported" in output  # other settings: redone from scratch
    config = json.loads((folder / "config.json").read_text())["odisr"]
    assert config["tile_size"] <= 32 and len(list((folder / "tiles").rglob("*.png"))) == len(config["tiles"])


@pytest.mark.slow
def test_a_browser_renders_the_pyramid_with_pannellum_from_npm(store, scheduler, tmp_path, chromium):  # noqa: F811
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed (apt-get install npm)")
    viewer = tmp_path / "npm"
    install = subprocess.run([npm, "install", "--prefix", viewer, "pannellum", "--prefer-offline", "--no-audit",
                              "--no-fund"], capture_output=True, text=True, timeout=180)  # fmt: skip
    if install.returncode:
        pytest.skip(f"npm could not install pannellum (offline?): {install.stderr.strip()[-300:]}")
    js = viewer / "node_modules" / "pannellum" / "build" / "pannellum.js"
    path, _ = store
    out = tmp_path / "out"
    code, output = export(path, out, scheduler, "--layout", "tiles", "--tile-size", 64, "--only", "hoho",
                          "--viewer-js", js)  # fmt: skip
    assert code == 0, output
    page = out / f"hoho__{MODEL}.tiles" / "index.html"
    assert "../viewer/pannellum.js" in page.read_text() and (out / "viewer" / "pannellum.css").is_file()
    yaw, pitch, hfov, size = 135, 35, 100, (640, 400)  # sees the up face, two side faces and their seams
    with serve(out) as url:
        shot = screenshot(chromium, f"{url}hoho__{MODEL}.tiles/index.html?yaw={yaw}&pitch={pitch}&hfov={hfov}",
                          tmp_path / "shot.png", size=size, flags=WEBGL_FLAGS, wait_ms=6000)  # fmt: skip
    assert blank_fraction(shot) < 0.2
    vfov = np.degrees(2 * np.arctan(np.tan(np.radians(hfov / 2)) * size[1] / size[0]))
    expected = py360convert.e2p(stored(path, "hoho"), (hfov, vfov), yaw, pitch, size[::-1], mode="bilinear")
    view = (slice(0, None), slice(60, None))  # Pannellum's zoom and full-screen buttons sit at the top left
    correlation = np.corrcoef(shot[view].ravel().astype(float), expected[view].ravel().astype(float))[0, 1]
    assert correlation > 0.9, f"the rendered view does not match the panorama (correlation {correlation:.3f})"


# ---------------------------------------------------------------------------------------------------- units


def test_request_and_size_errors_name_the_option_and_the_limit():
    from odisr.export import ExportError, ExportRequest
    from odisr.export.plan import check_size, pyramid_shape

    with pytest.raises(ExportError, match="--format 'gif'"):
        ExportRequest(format="gif")
    with pytest.raises(ExportError, match="pyramid tiles are jpg, png or webp"):
        ExportRequest(format="tiff", layout="tiles")
    with pytest.raises(ExportError, match="65,535 px a side; export it as --format png or --format tiff"):
        check_size(70000, 35000, ExportRequest(format="jpg"), "x")
    assert pyramid_shape(5215, 512) == (5216, 326, 5)  # a 16384-wide ERP: faces W/π
    assert pyramid_shape(4096, 512) == (4096, 512, 4) and pyramid_shape(300, 512) == (300, 300, 1)


def test_read_metadata_keeps_tiff_exif_and_drops_oversized_profiles(tmp_path):
    from odisr.io import MAX_ICC_BYTES, read_metadata

    exif = Image.Exif()
    exif.update({0x010F: "Cam", 0x0112: 3, 0x8769: {0x9003: "2026:11:29 12:00:00"}})
    pixels = np.zeros((8, 16, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF", exif=exif.tobytes())
    meta = read_metadata(buffer.getvalue())
    kept = Image.Exif()
    kept.load(base64.b64decode(meta["exif"]))
    assert meta["format"] == "TIFF" and meta["orientation"] == 3 and kept[0x010F] == "Cam"
    assert kept.get_ifd(0x8769)[0x9003] == "2026:11:29 12:00:00" and 0x0111 not in kept  # no StripOffsets
    huge = b"\0" * (MAX_ICC_BYTES + 1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", icc_profile=huge)
    meta = read_metadata(buffer.getvalue(), name="huge.png")
    assert meta["icc_profile"] is None and "262,145 bytes" in meta["dropped"]["icc_profile"]
