"""CAMixer's routing read-out (odisr.routing): per-window scores and decisions, per-block statistics, the verdict.

Unit tests on known arrays, then two real networks on a real panorama (hohonet, LR 256×128): the untrained
random-init CAMixerSR-light ×4 and the official CAMixerSR-S ×4 weights. Budget: < 20 s (two whole-image forward
passes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from odisr.degrade import bicubic_erp
from odisr.inference import upscale
from odisr.io import read_image
from odisr.models import load
from odisr.routing import SPREAD_THRESHOLD, BlockStats, RoutingMaps, granularity

RANDOM_INIT = "weights/random_init/RANDOMINIT_CAMixerSR_light_x4_seed104.pth"


# --- maps and statistics ---------------------------------------------------------------------------------------


def test_maps_are_filled_tile_by_tile_and_summarised() -> None:
    maps = RoutingMaps((2, 4))
    decisions = np.array([[[1, 0], [1, 1]], [[0, 0], [0, 1]], [[1, 1], [1, 1]]], np.float32)  # 3 blocks
    scores = np.linspace(0.1, 0.9, 12, dtype=np.float32).reshape(3, 2, 2)
    assert not maps.filled
    maps.put(0, 0, np.stack((decisions, scores)))
    assert not maps.filled  # half the windows missing
    maps.put(0, 2, np.stack((decisions, scores)))
    assert maps.filled and maps.decisions.shape == (3, 2, 4)
    np.testing.assert_allclose(maps.fraction()[:, :2], decisions.mean(0))
    np.testing.assert_allclose(maps.score()[:, 2:], scores.mean(0))
    stats = maps.stats()
    full = np.concatenate((scores, scores), axis=2).reshape(3, -1)
    np.testing.assert_allclose(stats.score_mean, full.mean(1), rtol=1e-6)
    np.testing.assert_allclose(stats.score_std, full.std(1), rtol=1e-5)  # population σ over the image's windows
    assert stats.kept == (0.75, 0.25, 1.0)
    assert BlockStats.from_attrs(stats.to_attrs()).kept == stats.kept


def test_verdict_uses_the_median_spread_of_each_block() -> None:
    flat = BlockStats((0.0, 0.5, 1.0), (0.0, 0.01, 0.0), (0.0, 1.0, 1.0))
    assert not granularity([flat, flat]).per_window
    assert "Routes per block" in granularity([flat]).sentence()
    # block 2 spreads its windows' scores (σ 0.2) in two of three images: per window
    spread = BlockStats((0.0, 0.5, 1.0), (0.0, 0.2, 0.0), (0.0, 0.5, 1.0))
    verdict = granularity([spread, spread, flat])
    assert verdict.per_window and verdict.discriminating == [1] and verdict.spread[1] == 0.2
    assert verdict.kept[1] == pytest.approx(2 / 3) and "1 of 3 blocks" in verdict.sentence()
    # in one image only: the median says per block
    assert not granularity([spread, flat, flat]).per_window
    assert granularity([]) is None
    assert granularity([flat, BlockStats((0.5,), (0.3,), (1.0,))]) is None  # different architectures


def test_malformed_statistics_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        BlockStats.from_attrs({"score_mean": [0.1], "score_std": [0.0, 0.1], "kept": [1.0]})
    with pytest.raises(KeyError):
        BlockStats.from_attrs({"score_mean": [0.1]})


# --- real networks on a real panorama --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lr(shared: Path) -> np.ndarray:
    return bicubic_erp(read_image(shared / "data" / "erp" / "hohonet_pano.png"), 4)  # 256×128


def _last_pass(model: object) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the decisions and scores the model itself kept from its last forward pass (image 0)."""
    decisions = torch.stack([r.selected[0].float() for r in model.routing()]).numpy()
    scores = torch.stack([s[0] for s, _ in model.window_scores()]).numpy()
    return decisions, scores


def _detail(lr: np.ndarray, window: int = 16) -> np.ndarray:
    """Mean absolute horizontal gradient of each LR window (a measure of its texture)."""
    grad = np.abs(np.diff(lr.astype(np.float32).mean(2), axis=1, append=lr[:, :1].mean(2)))
    h, w = grad.shape
    return grad.reshape(h // window, window, w // window, window).mean((1, 3))


def test_random_init_scores_vary_with_the_panorama_but_routing_is_per_block(shared: Path, lr: np.ndarray) -> None:
    model = load(str(shared / RANDOM_INIT), device="cpu")
    maps = RoutingMaps((8, 16))
    upscale(lr, model, mode="lightweight", routing=maps)  # one forward pass of the image itself (no halo, no tiles)
    decisions, scores = _last_pass(model)
    np.testing.assert_array_equal(maps.decisions, decisions)
    np.testing.assert_allclose(maps.scores, scores, atol=1e-6)
    score = maps.score()
    # the score map varies across the panorama, following its content...
    assert len(np.unique(score)) > 100 and np.ptp(score) > 2e-4  # measured: 126 of 128 windows distinct, 7.8e-4
    assert abs(np.corrcoef(score.ravel(), _detail(lr).ravel())[0, 1]) > 0.2  # measured 0.34
    # ...but only by thousandths: every block gives all windows practically the same probability
    stats = maps.stats()
    assert max(stats.score_std) < 0.01 < max(stats.score_mean) - min(stats.score_mean)  # measured σ ≤ 0.0014
    assert set(stats.kept) <= {0.0, 1.0} or max(min(k, 1 - k) for k in stats.kept) < 0.05
    assert not granularity([stats]).per_window


def test_official_s_routes_per_block(official_s_weights: Path, lr: np.ndarray) -> None:
    model = load("camixersr-s-x4", weights=official_s_weights, device="cpu")
    maps = RoutingMaps((8, 16))
    upscale(lr, model, mode="odi", routing=maps)
    stats = maps.stats()
    assert len(stats.score_std) == 20 and max(stats.score_std) < SPREAD_THRESHOLD
    assert min(stats.score_mean) < 0.05 and max(stats.score_mean) > 0.95  # whole blocks off, whole blocks on
    np.testing.assert_allclose(maps.fraction(), maps.decisions.mean(0))
    verdict = granularity([stats])
    assert not verdict.per_window and "Routes per block" in verdict.sentence()
