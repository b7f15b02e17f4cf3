"""ERP geometry: latitudes, weights, condition maps, circular padding, ERP checks, py360convert previews.

Budget: < 3 s (tiny arrays only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odisr import erp


# ------------------------------------------------------------------------------------------- angles and weights
def test_latitude_and_longitude_of_pixel_centres() -> None:
    h, w = 8, 16
    lat = erp.latitude(np.arange(h), h)
    lon = erp.longitude(np.arange(w), w)
    assert lat[0] == pytest.approx(math.pi / 2 - math.pi / 16)
    assert lat[-1] == pytest.approx(-(math.pi / 2 - math.pi / 16))
    assert lon[0] == pytest.approx(-math.pi + math.pi / 16)
    assert lon[w // 2] == pytest.approx(math.pi / 16)
    np.testing.assert_allclose(np.diff(lat), -math.pi / h)
    np.testing.assert_allclose(np.diff(lon), 2 * math.pi / w)
    assert np.degrees(erp.latitude(-0.5, h)) == pytest.approx(90.0)  # top edge of row 0 is the north pole


@pytest.mark.parametrize("h", [1, 7, 512, 1024])
def test_latitude_weights_cover_the_sphere(h: int) -> None:
    w = erp.latitude_weights(h)
    assert w.dtype == np.float64 and w.shape == (h,)
    # Pixel area on the unit sphere ≈ w(j)·(π/H)·(2π/W); the W columns of all rows sum to 4π (midpoint rule).
    area = w.sum() * (math.pi / h) * 2 * math.pi
    assert area == pytest.approx(4 * math.pi, rel=1.0 / h**2)
    # The midpoint sum has a closed form: Σ_j cos((j + ½ − H/2)·π/H) = 1 / sin(π/(2H)).
    assert w.sum() == pytest.approx(1.0 / math.sin(math.pi / (2 * h)), rel=1e-12)


def test_latitude_weights_formula_symmetry_and_tiles() -> None:
    h = 100
    w = erp.latitude_weights(h)
    expected = [math.cos((j + 0.5 - h / 2) * math.pi / h) for j in range(h)]
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(w, w[::-1], rtol=0, atol=1e-15)  # symmetric about the equator
    np.testing.assert_allclose(w, np.cos(erp.latitude(np.arange(h), h)), rtol=0, atol=1e-15)  # = cos(latitude)
    for r0, r1 in [(0, 10), (37, 64), (90, 100), (50, 50)]:
        np.testing.assert_array_equal(erp.latitude_weights(h, r0, r1), w[r0:r1])  # absolute rows


@pytest.mark.parametrize("r0, r1", [(-1, 4), (3, 2), (0, 101)])
def test_latitude_weights_reject_rows_outside_the_panorama(r0: int, r1: int) -> None:
    with pytest.raises(ValueError, match="not inside a panorama of 100 rows"):
        erp.latitude_weights(100, r0, r1)


@pytest.mark.parametrize("n", [64, 128])
def test_condition_map_equals_the_official_fixture(shared: Path, n: int) -> None:
    official = np.load(shared / "fixtures" / "camixersr" / f"condition_cos_latitude_{n}x{n}.npy")
    ours = erp.condition_map(n, n)
    assert ours.shape == official.shape == (1, 1, n, n) and ours.dtype == torch.float32
    assert np.abs(ours.numpy() - official).max() <= 1e-7


def test_condition_map_of_a_tile_is_the_full_maps_rows() -> None:
    full = erp.condition_map(48, 96)
    tile = erp.condition_map(48, 20, 16, 40)
    assert tile.shape == (1, 1, 24, 20) and tile.is_contiguous()
    torch.testing.assert_close(tile, full[:, :, 16:40, :20], rtol=0, atol=0)
    f64 = erp.condition_map(48, 3, dtype=torch.float64)
    np.testing.assert_allclose(f64[0, 0, :, 1].numpy(), erp.latitude_weights(48), rtol=0, atol=1e-15)
    assert erp.condition_map(8, 4, dtype=torch.bfloat16).dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------------ padding
PADS = [(0, 0, 0, 0), (1, 2, 3, 4), (3, 0, 7, 0), (0, 4, 0, 9)]


@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("pole_mode, np_mode", [("reflect", "reflect"), ("replicate", "edge")])
def test_pad_erp_numpy_matches_numpy_pad(pads: tuple[int, int, int, int], pole_mode: str, np_mode: str) -> None:
    top, bottom, left, right = pads
    x = np.random.default_rng(0).integers(0, 255, (5, 10, 3), dtype=np.uint8)
    expected = np.pad(x, ((0, 0), (left, right), (0, 0)), mode="wrap")
    expected = np.pad(expected, ((top, bottom), (0, 0), (0, 0)), mode=np_mode)
    out = erp.pad_erp(x, top, bottom, left, right, pole_mode=pole_mode)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(erp.pad_erp(x[..., 0], *pads, pole_mode=pole_mode), expected[..., 0])


@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("pole_mode", ["reflect", "replicate"])
def test_pad_erp_torch_matches_torch_pad(pads: tuple[int, int, int, int], pole_mode: str) -> None:
    top, bottom, left, right = pads
    x = torch.rand(2, 3, 6, 12, dtype=torch.float64)
    expected = F.pad(F.pad(x, (left, right, 0, 0), mode="circular"), (0, 0, top, bottom), mode=pole_mode)
    out = erp.pad_erp(x, top, bottom, left, right, pole_mode=pole_mode)
    assert out.dtype == x.dtype and out.device == x.device
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_pad_erp_wraps_longitude_beyond_the_width_and_replicates_excess_rows() -> None:
    x = np.arange(2 * 4).reshape(2, 4)
    out = erp.pad_erp(x, 5, 5, 9, 10, pole_mode="reflect")
    assert out.shape == (12, 23)
    np.testing.assert_array_equal(out[5:7], np.pad(x, ((0, 0), (9, 10)), mode="wrap"))
    # Reflection can reach only one row beyond a 2-row image; the rest repeats it.
    np.testing.assert_array_equal(out[:5, 9:13], np.repeat(x[1:2], 5, axis=0))
    np.testing.assert_array_equal(out[7:, 9:13], np.repeat(x[0:1], 5, axis=0))
    one = torch.arange(3.0).view(1, 1, 1, 3)
    assert erp.pad_erp(one, 4, 4, 7, 7).shape == (1, 1, 9, 17)  # 1×3 image: F.pad would fail here


def test_pad_erp_sphere_mode_continues_over_the_poles() -> None:
    x = np.arange(4 * 8).reshape(4, 8)
    out = erp.pad_erp(x, 2, 1, 0, 0, pole_mode="sphere")
    np.testing.assert_array_equal(out[1], np.roll(x[0], 4))  # across the north pole: same row, +180°
    np.testing.assert_array_equal(out[0], np.roll(x[1], 4))
    np.testing.assert_array_equal(out[-1], np.roll(x[-1], 4))
    t = torch.tensor(x, dtype=torch.float32).expand(2, 4, 8)
    np.testing.assert_array_equal(erp.pad_erp(t, 2, 1, 3, 3, pole_mode="sphere")[1].numpy(),
                                  erp.pad_erp(x, 2, 1, 3, 3, pole_mode="sphere"))
    with pytest.raises(ValueError, match="even width"):
        erp.pad_erp(np.zeros((4, 7)), 1, 1, 0, 0, pole_mode="sphere")


@pytest.mark.parametrize("pole_mode", ["reflect", "replicate", "sphere"])
def test_pad_erp_is_differentiable(pole_mode: str) -> None:
    x = torch.rand(1, 3, 4, 8, requires_grad=True)
    y = erp.pad_erp(x, 2, 2, 3, 3, pole_mode=pole_mode)
    y.sum().backward()
    assert x.grad is not None and x.grad.sum().item() == pytest.approx(y.numel())


def test_pad_erp_rejects_bad_arguments() -> None:
    x = np.zeros((4, 8, 3))
    with pytest.raises(ValueError, match="≥ 0"):
        erp.pad_erp(x, -1, 0, 0, 0)
    with pytest.raises(ValueError, match="pole_mode"):
        erp.pad_erp(x, 1, 1, 1, 1, pole_mode="zeros")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        erp.pad_erp(np.zeros((0, 8)), 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        erp.pad_erp(np.zeros((1, 3, 4, 8)), 1, 1, 1, 1)


# ---------------------------------------------------------------------------------------------------- checks
def test_check_erp_accepts_two_to_one_images() -> None:
    assert erp.check_erp((512, 1024, 3)) == (512, 1024)
    assert erp.check_erp(np.zeros((4, 8))) == (4, 8)
    assert erp.check_erp(torch.zeros(2, 3, 16, 32)) == (16, 32)


def test_check_erp_names_the_file_and_the_fix() -> None:
    with pytest.raises(erp.NotERPError, match=r"room\.png: 640×480 .* must be 2:1 \(e\.g\. 960×480\)") as info:
        erp.check_erp(np.zeros((480, 640, 3)), name="room.png")
    assert isinstance(info.value, ValueError)
    with pytest.warns(erp.NotERPWarning, match="not an equirectangular"):
        assert erp.check_erp((100, 100), strict=False) == (100, 100)
    with pytest.raises(erp.NotERPError, match="shape"):
        erp.check_erp((1, 3, 64, 128))


# ------------------------------------------------------------------------------------------------- previews
def _lon_lat_image(h: int = 64) -> np.ndarray:
    """float64 ERP image whose channels are the longitude and latitude of each pixel, in degrees."""
    lon = np.degrees(erp.longitude(np.arange(2 * h), 2 * h))
    lat = np.degrees(erp.latitude(np.arange(h), h))
    return np.stack(np.broadcast_arrays(lon[None, :], lat[:, None]), axis=-1).copy()


@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (90.0, 0.0), (-120.0, 0.0), (30.0, 45.0), (0.0, -60.0)])
def test_perspective_view_centre_follows_yaw_and_pitch(yaw: float, pitch: float) -> None:
    view = erp.to_perspective(_lon_lat_image(), 30.0, yaw, pitch, (9, 9))
    assert view.shape == (9, 9, 2) and view.dtype == np.float64
    lon, lat = view[4, 4]
    assert lon == pytest.approx(yaw, abs=3.0)  # within ~1 ERP pixel (2.8°) of the requested view
    assert lat == pytest.approx(pitch, abs=3.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_cubemap_keeps_dtype_and_values(dtype: type) -> None:
    img = np.full((32, 64, 3), 100, dtype=dtype)
    faces = erp.to_cubemap(img, 8)
    assert isinstance(faces, dict) and sorted(faces) == sorted("FRBLUD")
    for face in faces.values():
        assert face.shape == (8, 8, 3) and face.dtype == dtype
        np.testing.assert_array_equal(face, 100)
    centres = {k: face[4, 4] for k, face in erp.to_cubemap(_lon_lat_image(), 9).items()}
    assert centres["F"] == pytest.approx([0.0, 0.0], abs=3.0)  # front: longitude 0, latitude 0
    assert centres["R"] == pytest.approx([90.0, 0.0], abs=3.0)  # right: east
    assert centres["L"] == pytest.approx([-90.0, 0.0], abs=3.0)
    assert centres["U"][1] > 85 and centres["D"][1] < -85


def test_previews_reject_chw_non_erp_and_bad_dtypes() -> None:
    with pytest.raises(ValueError, match=r"channels-first .* img\.transpose\(1, 2, 0\)"):
        erp.to_cubemap(np.zeros((3, 32, 64), np.uint8), 8)
    with pytest.raises(erp.NotERPError):
        erp.to_perspective(np.zeros((32, 32, 3), np.uint8), 60, 0, 0, (8, 8))
    with pytest.raises(ValueError, match="dtype int64"):
        erp.to_cubemap(np.zeros((32, 64, 3), np.int64), 8)
    with pytest.raises(ValueError, match="tensor_to_image"):
        erp.to_cubemap(torch.zeros(32, 64, 3), 8)  # type: ignore[arg-type]
