"""MATLAB-compatible imresize: exactness against the field's LR images, wrap mode, layouts and dtypes.

Budget: ~5 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from odisr.resize import cubic, imresize, output_size


def _read(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_matlab_lr_bicubic_of_set5(shared: Path, scale: int) -> None:
    """LR_bicubic/X{s} were made by MATLAB imresize(modcrop(HR), 1/s, 'bicubic') on uint8: reproduce them exactly."""
    root = shared / "data" / "sr" / "Set5"
    total = identical = 0
    worst = 0
    for hr_path in sorted((root / "HR").glob("*.png")):
        hr = _read(hr_path)
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        lr = _read(root / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png")
        out = imresize(hr, 1 / scale)
        assert out.dtype == np.uint8 and out.shape == lr.shape
        diff = np.abs(out.astype(np.int16) - lr)
        worst = max(worst, int(diff.max()))
        identical += int((diff == 0).sum())
        total += diff.size
    assert worst == 0, f"max |Δ| {worst}, {100 * identical / total:.3f}% identical"


def test_float_pipeline_is_close_to_matlab(shared: Path) -> None:
    """Float tensors (no intermediate rounding) stay within 2 grey levels of MATLAB's uint8 output."""
    hr = _read(shared / "data" / "sr" / "Set5" / "HR" / "butterfly.png")
    lr = _read(shared / "data" / "sr" / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png")
    t = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255
    out = (imresize(t, 0.25).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()
    diff = np.abs(out - lr)
    assert diff.max() <= 2 and (diff == 0).mean() > 0.85


def test_kernel_is_keys_cubic() -> None:
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0])
    # partition of unity: the taps of any fractional position sum to one
    frac = np.linspace(0, 1, 11)
    taps = cubic(frac[:, None] + np.array([-2, -1, 0, 1])[None, :])
    np.testing.assert_allclose(taps.sum(1), 1.0, atol=1e-12)


def test_output_size_is_robust_to_float_error() -> None:
    assert output_size(510, 1 / 3) == 170
    assert output_size(57, 4) == 228
    assert output_size(7, 0.25) == 2  # ceil(1.75)


def test_constant_image_is_preserved_and_dtypes_follow_input() -> None:
    for dtype, value in [(np.uint8, 200), (np.uint16, 51000), (np.float32, 0.3)]:
        img = np.full((20, 30, 3), value, dtype=dtype)
        for s in (0.25, 0.5, 3):
            out = imresize(img, s)
            assert out.dtype == dtype
            np.testing.assert_allclose(out.astype(np.float64), value, rtol=1e-6)


def test_layouts_agree() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((24, 40, 3))
    hwc = imresize(img, 0.5)
    bchw = imresize(torch.from_numpy(img).permute(2, 0, 1)[None], 0.5)
    chw = imresize(torch.from_numpy(img).permute(2, 0, 1), 0.5)
    gray = imresize(img[..., 1], 0.5)
    np.testing.assert_allclose(bchw[0].permute(1, 2, 0).numpy(), hwc, atol=1e-12)
    np.testing.assert_allclose(chw.permute(1, 2, 0).numpy(), hwc, atol=1e-12)
    np.testing.assert_allclose(gray, hwc[..., 1], atol=1e-12)
    assert imresize(img, size=(5, 7)).shape == (5, 7, 3)


def test_upscale_of_downscale_roughly_recovers_smooth_content() -> None:
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    img = np.sin(2 * np.pi * xx) * np.cos(2 * np.pi * yy)
    back = imresize(imresize(img, 0.5), 2)
    assert np.abs(back - img)[4:-4, 4:-4].max() < 0.02


def test_wrap_is_equivariant_to_horizontal_roll() -> None:
    """ERP: with wrap=True, resizing commutes with a roll by a multiple of the scale; without it the seam differs."""
    rng = np.random.default_rng(1)
    img = rng.random((16, 64))
    shift = 32
    rolled_first = imresize(np.roll(img, shift, axis=1), 0.25, wrap=True)
    rolled_after = np.roll(imresize(img, 0.25, wrap=True), shift // 4, axis=1)
    np.testing.assert_allclose(rolled_first, rolled_after, atol=1e-12)
    mirrored = np.roll(imresize(img, 0.25), shift // 4, axis=1)
    assert np.abs(imresize(np.roll(img, shift, axis=1), 0.25) - mirrored).max() > 1e-3
    # rows are never wrapped: the pole boundary stays symmetric
    np.testing.assert_allclose(imresize(img, 0.25, wrap=True)[:, 4:-4], imresize(img, 0.25)[:, 4:-4], atol=1e-12)


def test_tiny_inputs_and_bad_arguments() -> None:
    assert imresize(np.zeros((1, 1, 3), np.uint8), 4).shape == (4, 4, 3)
    assert imresize(np.ones((7, 5)), 0.25).shape == (2, 2)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)), 0.5, size=(2, 2))
    with pytest.raises(ValueError, match="positive"):
        imresize(np.zeros((4, 4)), -1)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((2, 4, 4, 3)), 0.5)
