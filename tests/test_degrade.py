"""LR degradations of ERP panoramas (odisr.degrade). Budget: < 10 s (1024×512 panoramas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odisr.degrade import _erp_to_fisheye, bicubic_erp, degrade, fisheye, modcrop
from odisr.resize import imresize


@pytest.fixture(scope="module")
def pano(shared: Path) -> np.ndarray:
    """A real 1024×512 full-sphere panorama (uint8 RGB)."""
    return np.asarray(Image.open(shared / "data" / "erp" / "horizonnet_demo.png").convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64))[mask]
    return float(10 * np.log10(255.0**2 / np.mean(err**2)))


def _lon_lat_deg(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    lon = (np.arange(width) + 0.5) / width * 360 - 180
    lat = 90 - (np.arange(height) + 0.5) / height * 180
    return lon, lat


def test_modcrop_crops_bottom_right() -> None:
    img = np.arange(11 * 10 * 3, dtype=np.uint8).reshape(11, 10, 3)
    out = modcrop(img, 4)
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out, img[:8, :8])
    with pytest.raises(ValueError, match="scale"):
        modcrop(img, 12)


@pytest.mark.parametrize("method", ["bicubic", "fisheye"])
def test_degrade_shapes_and_dtype(method: str) -> None:
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (66, 131, 3), dtype=np.uint8)  # not divisible by 4
    hr_c, lr = degrade(hr, 4, method)
    assert hr_c.shape == (64, 128, 3) and lr.shape == (16, 32, 3)
    assert lr.dtype == np.uint8 and hr_c.dtype == np.uint8
    hr16 = hr.astype(np.uint16) * 257
    assert degrade(hr16, 2, method)[1].dtype == np.uint16


@pytest.mark.parametrize("fn", [bicubic_erp, fisheye])
def test_constant_image_stays_constant(fn) -> None:
    hr = np.empty((64, 128, 3), np.uint8)
    hr[...] = (17, 128, 250)
    lr = fn(hr, 4)
    assert lr.shape == (16, 32, 3)
    assert np.all(lr == np.array([17, 128, 250], np.uint8))


def test_bicubic_erp_is_circular_in_longitude(pano: np.ndarray) -> None:
    # Rolling the HR by 4k columns (k LR columns) must roll the LR exactly: the seam is not an edge.
    pano = pano[::2, ::2]  # still a seamless panorama, 4× cheaper
    k = 37
    lr = bicubic_erp(pano, 4)
    rolled = bicubic_erp(np.roll(pano, 4 * k, axis=1), 4)
    np.testing.assert_array_equal(rolled, np.roll(lr, k, axis=1))
    # Away from the seam it is plain MATLAB imresize; at the seam it differs from MATLAB's mirror padding.
    plain = imresize(pano, 0.25)
    np.testing.assert_array_equal(lr[:, 4:-4], plain[:, 4:-4])
    assert np.any(lr[:, :2] != plain[:, :2])


def test_fisheye_close_to_bicubic_on_real_panorama(pano: np.ndarray) -> None:
    lr_f = fisheye(pano, 4)
    lr_b = bicubic_erp(pano, 4)
    lon, lat = _lon_lat_deg(*lr_f.shape[:2])
    away_from_seams = np.broadcast_to((np.abs(np.abs(lon) - 90) > 5)[None, :], lr_f.shape[:2])
    psnr = _psnr(lr_f, lr_b, away_from_seams)
    assert psnr > 30.0, psnr
    # Not the same degradation: near the poles ERP bicubic keeps the horizontally stretched detail.
    assert psnr < 60.0
    # Seams (±90°) show no discontinuity: the columns right at the seams are as close as the rest.
    at_seams = np.broadcast_to((np.abs(np.abs(lon) - 90) < 2)[None, :], lr_f.shape[:2])
    assert _psnr(lr_f, lr_b, at_seams) > psnr - 3.0


def test_fisheye_half_turn_swaps_hemispheres(pano: np.ndarray) -> None:
    # Rolling the panorama by 180° exchanges the front and back fisheye cameras: same LR, rolled.
    pano = pano[::2, ::2]
    lr = fisheye(pano, 4).astype(np.int16)
    rolled = fisheye(np.roll(pano, pano.shape[1] // 2, axis=1), 4).astype(np.int16)
    assert np.abs(rolled - np.roll(lr, lr.shape[1] // 2, axis=1)).max() <= 1


@pytest.mark.parametrize(
    ("lon", "lat", "lon0", "dx", "dy"),
    [
        (0, 0, 0.0, 0.0, 0.0),  # the front camera looks at longitude 0
        (45, 0, 0.0, 0.5, 0.0),  # equidistant: 45° off-axis → half the 180° radius, to the right
        (0, 45, 0.0, 0.0, -0.5),  # north is up
        (180, 0, np.pi, 0.0, 0.0),  # the back camera looks at ±180°
        (135, 0, np.pi, -0.5, 0.0),  # its right is longitude −90°, so +135° is on its left
    ],
)
def test_fisheye_projection_places_points(lon: float, lat: float, lon0: float, dx: float, dy: float) -> None:
    height, width, diameter = 90, 180, 80
    erp = np.zeros((height, width, 3), np.float32)
    col = int((lon + 180) / 360 * width) % width
    row = int((90 - lat) / 180 * height)
    erp[row - 1 : row + 1, [(col - 1) % width, col]] = 255.0  # a 2×2 spot centred on (lon, lat)
    fish = _erp_to_fisheye(erp, diameter, 0, lon0)[..., 0]
    y, x = np.unravel_index(np.argmax(fish), fish.shape)
    radius = diameter / 2
    assert abs(x + 0.5 - radius * (1 + dx)) <= 1.5 and abs(y + 0.5 - radius * (1 + dy)) <= 1.5


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        bicubic_erp(np.zeros((64, 128), np.uint8), 4)
    with pytest.raises(ValueError, match="positive integer"):
        fisheye(np.zeros((64, 128, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="unknown degradation 'blur'"):
        degrade(np.zeros((64, 128, 3), np.uint8), 4, "blur")
