"""WS-PSNR, WS-SSIM, PSNR, SSIM: the reference values of the field's code, and the metrics' defining properties.

Budget: < 25 s on a quiet 2-core machine (four 2048×1024 and one 1024×512 reference pair, six metrics each;
everything else uses images of at most 64×128 pixels).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

import odisr.metrics as M
from odisr.erp import latitude_weights
from odisr.io import read_image

TOL = 1e-6  # METRICS.md: every reference value to 1e-6 (dB for the PSNR family)


# ------------------------------------------------------------------------------------------- reference values
def _reference_cases(shared: Path) -> list[tuple[str, Path, Path, dict]]:
    cases = []
    for folder, sr_key in [("metrics", "distorted"), ("official_erp", "sr")]:
        root = shared / "fixtures" / folder
        for name, ref in json.loads((root / "reference_values.json").read_text()).items():
            if sr_key in ref:
                cases.append((f"{folder}/{name}", root / ref["hr"], root / ref[sr_key], ref))
    return cases


CASES = ["metrics/horizonnet", "metrics/layoutnet", "metrics/petra", "official_erp/layoutnet_r1.0",
         "official_erp/layoutnet_r0.5"]


@pytest.mark.parametrize("case", CASES)
def test_reference_values(shared: Path, case: str) -> None:
    _, hr_path, sr_path, ref = next(c for c in _reference_cases(shared) if c[0] == case)
    hr, sr = read_image(hr_path), read_image(sr_path)
    scale = 4
    got = {
        "ws_psnr_rgb": M.ws_psnr(hr, sr),
        "ws_psnr_y": M.ws_psnr(hr, sr, y_channel=True),
        "ws_ssim_rgb": M.ws_ssim(hr, sr),
        "psnr_rgb": M.psnr(hr, sr),
        "psnr_y_crop": M.psnr(hr, sr, crop_border=scale, y_channel=True),
        "ssim_y_crop": M.ssim(hr, sr, crop_border=scale, y_channel=True),
    }
    for key, value in got.items():
        assert value == pytest.approx(ref[key], abs=TOL), key


def test_official_bicubic_is_the_metrics_fixtures_layoutnet_pair(shared: Path) -> None:
    official = json.loads((shared / "fixtures" / "official_erp" / "reference_values.json").read_text())
    metrics = json.loads((shared / "fixtures" / "metrics" / "reference_values.json").read_text())
    bicubic = official["layoutnet_bicubic"]
    assert bicubic == {k: v for k, v in metrics["layoutnet"].items() if k in bicubic}
    same_hr = [shared / "fixtures" / d / "layoutnet_hr.png" for d in ("metrics", "official_erp")]
    assert same_hr[0].read_bytes() == same_hr[1].read_bytes()


# ------------------------------------------------------------------------------------------------- properties
def _pano(h: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(10, 200, (h, 2 * h, 3), dtype=np.uint8)


def test_identical_images_give_inf_and_one() -> None:
    img = _pano()
    assert M.ws_psnr(img, img) == math.inf and M.psnr(img, img) == math.inf
    assert M.ws_psnr(img, img, y_channel=True) == math.inf
    assert M.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert M.ws_ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert M.ws_psnr_bands(img, img, 4)[:, 2].tolist() == [math.inf] * 4


@pytest.mark.parametrize("e", [1, 5, 40])
def test_uniform_error_gives_20_log10_255_over_e(e: int) -> None:
    img = _pano()
    other = img + np.uint8(e)
    expected = 20 * math.log10(255 / e)
    for value in (M.ws_psnr(img, other), M.psnr(img, other), M.psnr(img, other, crop_border=3),
                  M.ws_sse(img, other).ws_psnr, *M.ws_psnr_bands(img, other, 5)[:, 2]):
        assert value == pytest.approx(expected, abs=1e-10)
    assert M.ws_mse(img, other) == pytest.approx(e * e, rel=1e-12)
    # Adding e to R, G and B adds e·(65.481 + 128.553 + 24.966)/255 = e·219/255 to the BT.601 luma.
    y_expected = 20 * math.log10(255 / (e * 219 / 255))
    assert M.ws_psnr(img, other, y_channel=True) == pytest.approx(y_expected, abs=1e-9)
    assert M.psnr(img, other, y_channel=True) == pytest.approx(y_expected, abs=1e-9)


def test_ws_psnr_weights_rows_by_cos_latitude() -> None:
    img = _pano(16)
    polar, equatorial = img.copy(), img.copy()
    polar[0] += 10  # a row next to the north pole: tiny area on the sphere
    equatorial[8] += 10
    assert M.psnr(img, polar) == pytest.approx(M.psnr(img, equatorial), abs=1e-12)
    w = latitude_weights(16)
    assert M.ws_mse(img, polar) == pytest.approx(100 * w[0] / w.sum(), rel=1e-12)  # one row of 16 in error
    assert M.ws_psnr(img, polar) - M.ws_psnr(img, equatorial) == pytest.approx(10 * math.log10(w[8] / w[0]))


def test_tiles_pool_exactly_to_the_whole_panorama() -> None:
    hr, sr = _pano(48, 1), _pano(48, 2)
    total = M.WeightedSSE(0.0, 0.0)
    for r0, r1 in [(0, 7), (7, 30), (30, 48)]:
        for c0, c1 in [(0, 50), (50, 96)]:
            total += M.ws_sse(hr[r0:r1, c0:c1], sr[r0:r1, c0:c1], row0=r0, height=48)
    whole = M.ws_sse(hr, sr)
    assert total.sse == pytest.approx(whole.sse, rel=1e-12)
    assert total.weight == pytest.approx(whole.weight, rel=1e-12)
    assert total.ws_psnr == pytest.approx(M.ws_psnr(hr, sr), abs=1e-10)
    with pytest.raises(ValueError, match="not inside a panorama"):
        M.ws_sse(hr[:10], sr[:10], row0=40, height=48)


def test_latitude_bands_run_pole_to_pole_and_locate_the_error() -> None:
    hr = _pano(60)
    sr = hr.copy()
    sr[50:] += 3  # error only in the southern polar cap
    bands = M.ws_psnr_bands(hr, sr, 6)
    assert bands.shape == (6, 3)
    np.testing.assert_allclose(bands[:, 1], [90, 60, 30, 0, -30, -60], atol=1e-12)  # lat_max
    np.testing.assert_allclose(bands[:, 0], [60, 30, 0, -30, -60, -90], atol=1e-12)  # lat_min
    assert bands[:5, 2].tolist() == [math.inf] * 5
    assert bands[5, 2] == pytest.approx(20 * math.log10(255 / 3))
    assert M.ws_psnr_bands(hr, sr, 1)[0, 2] == pytest.approx(M.ws_psnr(hr, sr), abs=1e-12)
    symmetric = np.random.default_rng(3).integers(0, 9, (32, 64, 3), dtype=np.uint8)
    symmetric = symmetric | symmetric[::-1]  # error pattern mirrored about the equator
    db = M.ws_psnr_bands(np.zeros_like(symmetric), symmetric, 4)[:, 2]
    np.testing.assert_allclose(db, db[::-1], rtol=1e-12)
    with pytest.raises(ValueError, match="n_bands"):
        M.ws_psnr_bands(hr, sr, 0)


def test_crop_border_ignores_the_border() -> None:
    hr = _pano(32)
    sr = hr.copy()
    sr[:4] += 50
    sr[:, -4:] += 50
    assert M.psnr(hr, sr, crop_border=4) == math.inf
    assert M.ssim(hr, sr, crop_border=4) == pytest.approx(1.0, abs=1e-12)
    assert M.psnr(hr, sr, crop_border=3) < 40
    with pytest.raises(ValueError, match="crop_border=16"):
        M.psnr(hr, sr, crop_border=16)


def _skimage_ssim_rows(hr: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """Independent SSIM map (scikit-image, as METRICS.md prescribes), valid part, row means per channel."""
    maps = []
    for c in range(3):
        _, full = structural_similarity(hr[..., c].astype(np.float64), sr[..., c].astype(np.float64),
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255, full=True)
        maps.append(full[5:-5, 5:-5].mean(axis=1))
    return np.stack(maps, axis=1)


def test_ssim_and_ws_ssim_match_scikit_image() -> None:
    hr = _pano(40, 4)
    sr = np.clip(hr.astype(int) + np.random.default_rng(5).integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    rows = _skimage_ssim_rows(hr, sr)
    assert M.ssim(hr, sr) == pytest.approx(rows.mean(), abs=1e-10)
    w = latitude_weights(40 - 10)  # the reference code's weights for the cropped height
    assert M.ws_ssim(hr, sr) == pytest.approx(np.mean(w @ rows / w.sum()), abs=1e-10)


def test_strips_give_the_same_numbers_as_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    hr, sr = _pano(40, 6), _pano(40, 7)
    fns = [M.ws_psnr, M.ws_ssim, M.psnr, M.ssim, lambda a, b: M.ws_psnr(a, b, y_channel=True)]
    whole = [f(hr, sr) for f in fns]
    monkeypatch.setattr(M, "_STRIP_ELEMENTS", 80 * 3)  # strips of 3 rows: the SSIM halo crosses every strip
    assert [f(hr, sr) for f in fns] == pytest.approx(whole, abs=1e-12)


def test_dtypes_give_the_same_numbers() -> None:
    hr, sr = _pano(24, 8), _pano(24, 9)
    fns = [M.ws_psnr, M.ws_ssim, M.psnr, M.ssim]
    expected = [f(hr, sr) for f in fns]
    as_float = [f(hr.astype(np.float32), sr.astype(np.float64)) for f in fns]
    as_uint16 = [f(hr.astype(np.uint16) * 257, sr.astype(np.uint16) * 257) for f in fns]  # 65535 = 255·257
    assert as_float == pytest.approx(expected, abs=1e-9)
    assert as_uint16 == pytest.approx(expected, abs=1e-9)
    assert M.psnr(hr[..., 0], sr[..., 0]) == pytest.approx(M.psnr(hr[..., :1], sr[..., :1]), abs=1e-12)


def test_bad_inputs_raise_readable_errors() -> None:
    hr = _pano(16)
    with pytest.raises(ValueError, match=r"img1 \(16, 32, 3\) vs img2 \(8, 16, 3\)"):
        M.ws_psnr(hr, hr[:8, :16])
    with pytest.raises(ValueError, match="drop alpha"):
        M.psnr(np.zeros((8, 8, 4)), np.zeros((8, 8, 4)))
    with pytest.raises(ValueError, match="y_channel=True needs RGB"):
        M.psnr(hr[..., 0], hr[..., 0], y_channel=True)
    with pytest.raises(ValueError, match="int64"):
        M.psnr(hr.astype(np.int64), hr.astype(np.int64))
    with pytest.raises(ValueError, match="at least 11×11"):
        M.ssim(hr[:10], hr[:10])
    with pytest.warns(UserWarning, match=r"\[0, 255\]"):
        M.psnr(hr / 255.0, hr / 255.0)
