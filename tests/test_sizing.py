"""``tile="auto"``: tile and batch from free device memory (given memory figures, no GPU needed), and ``auto`` off CUDA.

Budget: < 10 s (arithmetic; one small bicubic upscale).
"""

from __future__ import annotations

import numpy as np
import pytest

from odisr.inference import AUTO, auto_tiling, upscale
from odisr.inference.sizing import CPU_TILE, HEADROOM, choose_tiling
from odisr.models import load

GIB = 2**30
# CAMixerSR-S ×4, fp32, on an H200: 8.7 GiB peak for a 2048×1024 LR panorama with a 16-px halo (2080×1056 input)
CAMIXER_BYTES_PER_PIXEL = 8.7 * GIB / (2080 * 1056)


def test_an_8k_panorama_runs_whole_on_an_h200():
    assert choose_tiling(139 * GIB, CAMIXER_BYTES_PER_PIXEL, 1024, 2048, window=16, halo=16, max_batch=4) == (None, 1)


def test_the_whole_image_when_it_just_fits_and_tiles_when_it_does_not():
    whole = (1024 + 32) * (2048 + 32) * CAMIXER_BYTES_PER_PIXEL / HEADROOM
    assert choose_tiling(whole * 1.001, CAMIXER_BYTES_PER_PIXEL, 1024, 2048, window=16, halo=16, max_batch=4)[0] is None
    tile, batch = choose_tiling(whole * 0.999, CAMIXER_BYTES_PER_PIXEL, 1024, 2048, window=16, halo=16, max_batch=4)
    assert tile == 1024 and batch == 1  # the largest fitting tile (~1450 px) evened out: 2 × 1024 px, not 1450 + 598


@pytest.mark.parametrize("free_gib", [2, 4, 8, 16, 24, 40])
def test_tiles_fit_the_budget_and_are_window_aligned(free_gib):
    h, w, halo, bpp = 2048, 4096, 16, CAMIXER_BYTES_PER_PIXEL
    tile, batch = choose_tiling(free_gib * GIB, bpp, h, w, window=16, halo=halo, max_batch=8)
    assert tile is not None and tile % 16 == 0 and 1 <= batch <= 8
    assert batch * (tile + 2 * halo) ** 2 * bpp <= HEADROOM * free_gib * GIB  # the batch fits
    n = -(-w // tile)  # tiles along the longer side: the fewest that fit (evened out, so no sliver tile)
    fewer = -(-(-(-w // (n - 1))) // 16) * 16 if n > 1 else None
    assert fewer is None or (fewer + 2 * halo) ** 2 * bpp > HEADROOM * free_gib * GIB
    assert n * tile - w < 16 * n  # each tile is at most one window larger than an even share
    assert batch <= -(-h // tile) * n


def test_evened_out_tiles_share_a_batch_when_they_fit():
    bpp = 1000.0
    free = 2 * (1024 + 32) ** 2 * bpp / HEADROOM * 1.0001  # two 1024-px tiles of the three, or one of ~1450 px
    assert choose_tiling(free, bpp, 1024, 3072, window=16, halo=16, max_batch=4) == (1024, 2)
    assert choose_tiling(free, bpp, 1024, 3072, window=16, halo=16, max_batch=1) == (1024, 1)
    assert choose_tiling(free * 0.99, bpp, 1024, 3072, window=16, halo=16, max_batch=4) == (1024, 1)


def test_no_room_for_one_window_falls_back_to_the_smallest_tile():
    assert choose_tiling(1e6, 1e6, 1024, 2048, window=16, halo=16, max_batch=4) == (16, 1)


def test_bad_figures_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        choose_tiling(0, 100.0, 64, 128, window=16, halo=16, max_batch=4)
    with pytest.raises(ValueError, match="positive"):
        choose_tiling(GIB, 100.0, 64, 128, window=16, halo=16, max_batch=0)


def test_auto_on_the_cpu_is_the_fixed_cpu_tile():
    model = load("bicubic-x4")
    assert auto_tiling(model, 1024, 2048, device="cpu", batch_size=3) == (CPU_TILE, 3)
    lr = np.random.default_rng(0).integers(0, 256, (128, 512, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        upscale(lr, model, tile=AUTO, device="cpu"), upscale(lr, model, tile=CPU_TILE, device="cpu")
    )
