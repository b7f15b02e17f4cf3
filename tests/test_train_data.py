"""Training data: ERP patches (erp | sphere sampling), ERP-valid augmentations, sharding, and the pixel losses.

Budget: ~3 s (synthetic panoramas; one real panorama shrunk to 128×64).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from odisr.degrade import bicubic_erp, degrade, fisheye
from odisr.erp import latitude, latitude_weights
from odisr.io import write_image
from odisr.train.data import DataError, PanoramaPair, PatchSampler, PatchSpec, cut, load_pairs, make_batch
from odisr.train.losses import l1, ws_l1
from train_support import make_panoramas

CPU = torch.device("cpu")


def _pair(h: int = 32, scale: int = 2, seed: int = 0) -> PanoramaPair:
    hr = np.random.default_rng(seed).integers(0, 256, (h * scale, 2 * h * scale, 3), dtype=np.uint8)
    return PanoramaPair(f"synthetic{seed}", *degrade(hr, scale))


def _sampler(shapes: list[tuple[int, int]], sampling: str, seed: int = 0, **kw: bool) -> PatchSampler:
    return PatchSampler(shapes, 8, sampling=sampling, flip=kw.get("flip", True), roll=kw.get("roll", True), seed=seed)


def test_sphere_sampling_draws_rows_by_their_area_on_the_sphere() -> None:
    h = 64
    rows = {m: np.array([s.y0 for s in _sampler([(h, 2 * h)], m).draw(10000)]) for m in ("erp", "sphere")}
    centre_lat = {m: np.abs(np.degrees(latitude(r + 3.5, h))) for m, r in rows.items()}  # patch centre latitude
    polar = {m: float(np.mean(lat > 60)) for m, lat in centre_lat.items()}
    # erp: uniform over the 57 start rows; sphere: each start row weighted by its patch's Σ cos θ
    starts = np.arange(h - 8 + 1)
    area = np.array([latitude_weights(h, y, y + 8).sum() for y in starts])
    expected_sphere = area[np.abs(np.degrees(latitude(starts + 3.5, h))) > 60].sum() / area.sum()
    expected_erp = np.mean(np.abs(np.degrees(latitude(starts + 3.5, h))) > 60)
    assert polar["sphere"] == pytest.approx(expected_sphere, abs=0.01)
    assert polar["erp"] == pytest.approx(expected_erp, abs=0.01)
    assert polar["sphere"] < 0.6 * polar["erp"]  # the projection over-represents the poles; sphere sampling does not


def test_images_are_drawn_by_size_and_columns_wrap() -> None:
    specs = _sampler([(16, 32), (32, 64)], "erp").draw(4000)
    share_big = np.mean([s.image == 1 for s in specs])
    assert share_big == pytest.approx((25 * 64) / (9 * 32 + 25 * 64), abs=0.02)  # positions: (h − 7)·w each
    assert max(s.x0 for s in specs if s.image == 1) > 64 - 8  # patches cross the 180° meridian
    no_roll = _sampler([(16, 32)], "erp", roll=False, flip=False).draw(500)
    assert max(s.x0 for s in no_roll) <= 32 - 8 and not any(s.flip for s in no_roll)


def test_sampler_state_round_trip_replays_the_draws() -> None:
    a = _sampler([(32, 64), (16, 32)], "sphere", seed=3)
    a.draw(5)
    state = a.state_dict()
    b = _sampler([(32, 64), (16, 32)], "sphere", seed=99)
    b.load_state_dict(state)
    assert a.draw(7) == b.draw(7)
    with pytest.raises(DataError, match="smaller than the 8 px patch"):
        _sampler([(4, 8)], "erp")


@pytest.mark.parametrize("method", [bicubic_erp, fisheye])
def test_flip_and_longitude_roll_commute_with_the_degradation(method) -> None:
    """The augmented pair is still an (HR, degrade(HR)) pair: mirroring or rolling the panorama by whole LR pixels
    before degrading gives the mirrored / rolled LR, so augmentations never teach a wrong mapping."""
    hr = _pair(h=32).hr
    lr = method(hr, 2)
    if method is bicubic_erp:
        np.testing.assert_array_equal(method(np.ascontiguousarray(hr[:, ::-1]), 2), lr[:, ::-1])
        np.testing.assert_array_equal(method(np.roll(hr, 2 * 5, axis=1), 2), np.roll(lr, 5, axis=1))
    else:  # fisheye renders two fixed hemispheres: mirror-symmetric; a roll by a quarter turn only approximately
        flipped = method(np.ascontiguousarray(hr[:, ::-1]), 2).astype(int)
        assert np.abs(flipped - lr[:, ::-1]).max() <= 1


def test_cut_takes_aligned_patches_with_wrap_and_flip() -> None:
    pair = _pair(h=32, scale=2)
    lr, hr = cut(pair, PatchSpec(0, y0=10, x0=60, flip=False), 8, 2)  # columns 60..67 of 64: wraps
    np.testing.assert_array_equal(lr, np.roll(pair.lr, -60, axis=1)[10:18, :8])
    np.testing.assert_array_equal(hr, np.roll(pair.hr, -120, axis=1)[20:36, :16])
    lr_f, hr_f = cut(pair, PatchSpec(0, y0=10, x0=60, flip=True), 8, 2)
    np.testing.assert_array_equal(lr_f, lr[:, ::-1])
    np.testing.assert_array_equal(hr_f, hr[:, ::-1])


def test_shards_of_two_ranks_make_the_single_process_batch() -> None:
    pairs = [_pair(h=32, seed=0), _pair(h=24, seed=1)]
    specs = _sampler([p.lr.shape[:2] for p in pairs], "sphere").draw(4)
    whole = make_batch(pairs, specs, slice(0, 4), 8, 2, CPU)
    halves = [make_batch(pairs, specs, slice(i, i + 2), 8, 2, CPU) for i in (0, 2)]
    for field in ("lr", "hr", "condition", "row_weights"):
        joined = torch.cat([getattr(h, field) for h in halves])
        torch.testing.assert_close(joined, getattr(whole, field), rtol=0, atol=0)
    assert halves[0].weight_mean == halves[1].weight_mean == whole.weight_mean
    assert whole.lr.shape == (4, 3, 8, 8) and whole.hr.shape == (4, 3, 16, 16)
    assert 0.0 <= float(whole.lr.min()) and float(whole.hr.max()) <= 1.0
    # the rows' weights and the condition are those of the patch's absolute rows in its panorama
    s = specs[0]
    h_hr, h_lr = pairs[s.image].hr.shape[0], pairs[s.image].lr.shape[0]
    np.testing.assert_allclose(whole.row_weights[0, 0, :, 0].numpy(), latitude_weights(h_hr, 2 * s.y0, 2 * s.y0 + 16),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(whole.condition[0, 0, :, 0].numpy(), latitude_weights(h_lr, s.y0, s.y0 + 8), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_batch_pixels_are_the_patches_over_maxval_in_planar_layout(dtype) -> None:
    """Every image of a batch is its cut patch (wrapped across the meridian, mirrored or not) divided by the
    panorama's maximum value, channels first — the definition, whatever the batch assembly does to be fast."""
    rng = np.random.default_rng(7)
    hr = rng.integers(0, np.iinfo(dtype).max, (48, 96, 3), dtype=np.uint64).astype(dtype)
    pairs = [PanoramaPair("p", hr, hr[::3, ::3].copy())]
    specs = [PatchSpec(0, y0=2, x0=x0, flip=flip) for x0 in (0, 13, 30) for flip in (False, True)]  # 30: wraps
    batch = make_batch(pairs, specs, slice(1, 6), 8, 3, CPU)
    for i, spec in enumerate(specs[1:6]):
        lr, hr_patch = cut(pairs[0], spec, 8, 3)
        maxval = float(np.iinfo(dtype).max)
        for got, patch in ((batch.lr[i], lr), (batch.hr[i], hr_patch)):
            expected = torch.from_numpy(np.ascontiguousarray(patch).astype(np.float32) / np.float32(maxval))
            assert torch.equal(got, expected.permute(2, 0, 1))
    assert batch.lr.is_contiguous() and batch.hr.is_contiguous() and batch.hr.shape == (5, 3, 24, 24)


def test_ws_l1_is_the_latitude_weighted_mean_and_splits_over_ranks() -> None:
    pairs = [_pair(h=32, seed=0)]
    specs = _sampler([(32, 64)], "erp", seed=5).draw(4)
    batch = make_batch(pairs, specs, slice(0, 4), 8, 2, CPU)
    sr = batch.hr + torch.randn_like(batch.hr) * 0.1
    err = (sr - batch.hr).abs().double().numpy()
    weights = np.stack([latitude_weights(64, 2 * s.y0, 2 * s.y0 + 16) for s in specs])[:, None, :, None]
    reference = (weights * err).sum() / (weights.sum() * 3 * 16)  # Σ w|e| / Σ w over every pixel and channel
    assert float(ws_l1(sr, batch)) == pytest.approx(reference, rel=1e-5)
    assert float(l1(sr, batch)) == pytest.approx(err.mean(), rel=1e-5)
    halves = [make_batch(pairs, specs, slice(i, i + 2), 8, 2, CPU) for i in (0, 2)]
    mean_of_ranks = (ws_l1(sr[:2], halves[0]) + ws_l1(sr[2:], halves[1])) / 2  # what DDP's gradient averaging sees
    assert float(mean_of_ranks) == pytest.approx(reference, rel=1e-5)


def test_load_pairs_skips_bad_files_and_fails_without_any(shared: Path, tmp_path: Path, caplog) -> None:
    good = make_panoramas(shared, tmp_path / "ok", ("hohonet_pano.png",), 64)[0]
    write_image(tmp_path / "square.png", np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    pairs = load_pairs([str(good), str(tmp_path / "square.png"), str(tmp_path / "broken.png")], 2, "bicubic",
                       what="train", progress=False)  # fmt: skip
    assert "square.png: 32×32 pixels (W×H) is not an equirectangular panorama" in caplog.text
    assert [p.hr.shape for p in pairs] == [(64, 128, 3)] and pairs[0].lr.shape == (32, 64, 3)
    with pytest.raises(DataError, match=r"no usable val panorama(.|\n)*square.png(.|\n)*broken.png"):
        load_pairs([str(tmp_path / "square.png"), str(tmp_path / "broken.png")], 2, "bicubic", what="val",
                   progress=False)  # fmt: skip

