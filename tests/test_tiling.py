"""Tile grid: window alignment, exact coverage, boundary indices per mode, latitude condition of a tile.

Budget: ~2 s (no networks).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from odisr.erp import condition_map, pad_erp
from odisr.inference.tiling import TileGrid, align_up, condition_for, effective_tile, gather, source_indices


def _grid(h: int = 100, w: int = 200, *, tile: int | None = 48, halo: int = 16, mode: str = "odi") -> TileGrid:
    return TileGrid.build(h, w, window=16, mode=mode, tile=tile, halo=halo)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(100, 200), (256, 512), (7, 5), (1, 1), (16, 33)])
@pytest.mark.parametrize("tile", [None, 16, 48, 100])
def test_cores_partition_the_image_and_inputs_are_window_aligned(shape: tuple[int, int], tile: int | None) -> None:
    h, w = shape
    grid = _grid(h, w, tile=tile)
    covered = np.zeros(shape, dtype=np.int32)
    for t in grid:
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        # the input origin (core origin minus halo) sits on the window grid, and so does its size
        assert (t.y0 - t.halo) % 16 == 0 and (t.x0 - t.halo) % 16 == 0
        assert t.input_shape[0] % 16 == 0 and t.input_shape[1] % 16 == 0
        assert t.rows[t.halo] == t.y0 and t.cols[t.halo] == t.x0
        # cores start on the tile grid, so output regions are aligned to tile·scale
        assert t.y0 % grid.tile_h == 0 and t.x0 % grid.tile_w == 0
    assert (covered == 1).all()
    assert len(grid) == len(list(grid))


def test_tile_and_halo_are_rounded_up_to_the_window_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="odisr.inference.tiling"):
        grid = _grid(300, 600, tile=100, halo=5)
    assert (grid.tile_h, grid.tile_w, grid.halo) == (112, 112, 16)
    assert "tile 100 LR px rounded up to 112" in caplog.text and "halo 5 LR px rounded up to 16" in caplog.text
    assert effective_tile(128, 16) == 128 and align_up(1, 16) == 16
    for bad in (0, -16, 2.5, True):
        with pytest.raises(ValueError, match="tile must be an integer"):
            effective_tile(bad, 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown mode"):
        TileGrid.build(8, 8, window=1, mode="sphere", tile=None, halo=0)  # type: ignore[arg-type]


def test_whole_image_is_one_tile_padded_to_the_window() -> None:
    grid = _grid(100, 200, tile=None, halo=16)
    (t,) = list(grid)
    assert (t.y0, t.y1, t.x0, t.x1) == (0, 100, 0, 200)
    assert t.input_shape == (112 + 32, 208 + 32)
    assert grid.processed_pixels() == 144 * 240


@pytest.mark.parametrize("size", [1, 2, 5, 40])
def test_source_indices_match_pad_erp(size: int) -> None:
    """Our index rule equals odisr.erp.pad_erp (circular longitude, reflect/replicate poles), excess pads included."""
    img = np.arange(size * 2 * size).reshape(size, 2 * size)
    for pole in ("reflect", "replicate"):
        pad = 3 * size + 2
        ref = pad_erp(img, pad, pad + 1, pad + 2, pad + 3, pole_mode=pole)
        rows = source_indices(-pad, size + pad + 1, size, pole)  # type: ignore[arg-type]
        cols = source_indices(-pad - 2, 2 * size + pad + 3, 2 * size, "circular")
        np.testing.assert_array_equal(img[np.ix_(rows, cols)], ref)


def test_reflect_and_circular_indices() -> None:
    np.testing.assert_array_equal(source_indices(-3, 8, 5, "reflect"), [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])
    np.testing.assert_array_equal(source_indices(-3, 8, 5, "circular"), [2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(source_indices(-2, 7, 5, "replicate"), [0, 0, 0, 1, 2, 3, 4, 4, 4])
    with pytest.raises(ValueError, match="unknown boundary"):
        source_indices(0, 2, 2, "mirror")  # type: ignore[arg-type]


def test_odi_wraps_longitude_and_large_reflects() -> None:
    img = np.arange(32 * 64).reshape(32, 64)
    odi = _grid(32, 64, tile=32, halo=16, mode="odi")
    large = _grid(32, 64, tile=32, halo=16, mode="large")
    left_odi, left_large = next(iter(odi)), next(iter(large))
    # the halo left of column 0 is the panorama's right edge in odi mode, a mirror image in large mode
    np.testing.assert_array_equal(gather(img, left_odi)[16, :16], img[0, 48:])
    np.testing.assert_array_equal(gather(img, left_large)[16, :16], img[0, 16:0:-1])
    # rows above the north pole are mirrored in both modes
    np.testing.assert_array_equal(gather(img, left_odi)[:16, 16], img[16:0:-1, 0])


def test_split_covers_the_core_with_the_same_halo() -> None:
    grid = _grid(100, 200, tile=96)
    tile = list(grid)[1]
    subs = grid.split(tile, 48)
    assert len(subs) == 4 and all(s.halo == tile.halo for s in subs)
    covered = np.zeros((100, 200), dtype=int)
    for s in subs:
        covered[s.y0 : s.y1, s.x0 : s.x1] += 1
    assert covered[tile.y0 : tile.y1, tile.x0 : tile.x1].min() == 1 and covered.sum() == (tile.y1 - tile.y0) * (
        tile.x1 - tile.x0
    )


def test_condition_is_cut_at_absolute_rows_and_mirrored_at_the_poles() -> None:
    height, width = 64, 128
    grid = _grid(height, width, tile=32, halo=16)
    tiles = list(grid)
    inner = next(t for t in tiles if t.y0 == 32)  # bottom row of tiles: its top halo rows 16..31 are real rows
    cond = condition_for(inner, height)
    h_in, w_in = inner.input_shape
    assert cond.shape == (1, 1, h_in, w_in) and cond.dtype == torch.float32
    np.testing.assert_allclose(cond[0, 0, :48, 0], condition_map(height, 1, 16, 64)[0, 0, :, 0])
    # the south-pole halo mirrors rows 62, 61, …: its condition is theirs (pixels and condition stay together)
    full = condition_map(height, 1)[0, 0, :, 0]
    np.testing.assert_allclose(cond[0, 0, 48:, 0], full[inner.rows[48:]])
    assert torch.equal(cond[0, 0, :, 0], cond[0, 0, :, -1])  # constant along longitude
    # the wrong, tile-relative map treats the tile as a whole panorama: very different near the equator
    rel = condition_for(inner, height, relative=True)
    assert rel.shape == cond.shape and (rel - cond).abs().max() > 0.5
