"""The tile grid of chunked (tiled) inference: window-aligned tiles, halos, boundary padding per mode.

An LR image of ``H × W`` pixels is cut into *core* tiles of ``tile × tile`` LR pixels starting at multiples of
``tile`` (the last row/column may be smaller). Each tile's network input is its core grown by ``halo`` pixels on
every side and its core rounded up to the model's window, so the input origin ``(y0 − halo, x0 − halo)`` is a
multiple of the window whenever ``tile`` and ``halo`` are: a tile's windows coincide with the whole image's
windows, which keeps window attention (CAMixer, SwinIR) identical to whole-image inference up to the halo's
receptive-field cut. Outputs are blended by **cropping the halo**: the core's SR pixels
``[s·y0, s·y1) × [s·x0, s·x1)`` come from one tile only, so each output region (aligned to ``s·tile``) is written
exactly once and no seam can come from averaging two different estimates.

Pixels outside the image are never stored padded: every input row and column is an *absolute source index*
resolved per mode (:func:`source_indices`):

* ``odi``: longitude (width) is **circular** — the halo left of column 0 is the panorama's right edge, as on the
  sphere; latitude (height) is mirrored at the poles (``reflect``: row −1 ← row 1), falling back to replicate when
  the halo exceeds the image.
* ``large`` / ``lightweight``: reflect in both directions (replicate beyond), like the official CAMixerSR padding.

The same row indices cut the latitude condition of CAMixerOSR (:func:`condition_for`), so a mirrored pixel row
carries the cos-latitude of the row it was mirrored from: the condition always describes the pixels it comes with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = [
    "DEFAULT_HALO",
    "MODES",
    "Boundary",
    "Mode",
    "Tile",
    "TileGrid",
    "align_up",
    "condition_for",
    "effective_tile",
    "gather",
    "source_indices",
]

log = logging.getLogger(__name__)

Mode = Literal["odi", "large", "lightweight"]
Boundary = Literal["circular", "reflect", "replicate"]
MODES: tuple[str, ...] = ("odi", "large", "lightweight")

#: Default halo in LR pixels (one CAMixer window), chosen by measurement (benchmarks/bench_tiling.py, CAMixerSR-S ×4,
#: γ = 1, layoutnet 512×256 LR, tile 128): tiled vs whole-image PSNR 54.4 / 58.7 / 59.6 dB and WS-PSNR change
#: −0.051 / −0.024 / −0.018 dB for halos 0 / 16 / 32, at 0.84× / 1.31× / 1.88× the LR pixels of whole-image
#: inference. 16 is the largest window-aligned halo within 1.6× the compute; what remains is mostly not the halo
#: but CAMixer's channel attention, which pools over the whole input (a tile sees only its own mean).
DEFAULT_HALO = 16


def align_up(n: int, window: int) -> int:
    """Smallest multiple of ``window`` that is ≥ ``n`` (pixels)."""
    return -(-n // window) * window


def effective_tile(tile: int, window: int) -> int:
    """``tile`` (LR pixels) rounded up to the model's window, with a log line when it changes.

    The pipeline uses this to chunk its Zarr arrays by ``effective_tile(tile, window) · scale`` output pixels.
    Raises ``ValueError`` when ``tile`` is not a positive integer.
    """
    return _aligned(tile, window, "tile", minimum=1)


def _aligned(value: int, window: int, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum} (LR pixels), got {value!r}")
    aligned = align_up(int(value), window)
    if aligned != value:
        log.info("%s %d LR px rounded up to %d, a multiple of the model's %d px window", name, value, aligned, window)
    return aligned


def source_indices(start: int, stop: int, size: int, boundary: Boundary) -> np.ndarray:
    """Source index in ``[0, size)`` of every absolute position ``start … stop − 1`` (int64, length stop − start).

    ``circular`` wraps modulo ``size`` (ERP longitude); ``reflect`` mirrors about the edge pixel (−1 → 1,
    ``size`` → ``size − 2``) and, beyond one reflection, repeats the farthest row it reached (the same rule as
    :func:`odisr.erp.pad_erp`); ``replicate`` repeats the edge pixel.
    """
    pos = np.arange(start, stop, dtype=np.int64)
    if boundary == "circular":
        return np.mod(pos, size)
    if boundary == "reflect":
        pos = np.where(pos < 0, np.minimum(-pos, size - 1), pos)
        pos = np.where(pos > size - 1, np.maximum(2 * (size - 1) - pos, 0), pos)
    elif boundary != "replicate":
        raise ValueError(f"unknown boundary {boundary!r}; use 'circular', 'reflect' or 'replicate'")
    return np.clip(pos, 0, size - 1)


@dataclass(frozen=True, eq=False)
class Tile:
    """One tile: its core ``[y0, y1) × [x0, x1)`` (LR pixels, absolute) and the source ``rows``/``cols`` of its
    network input (int64 arrays; the core starts at input offset ``halo``)."""

    y0: int
    y1: int
    x0: int
    x1: int
    halo: int
    rows: np.ndarray
    cols: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the network input in LR pixels."""
        return len(self.rows), len(self.cols)

    def output_slices(self, scale: int) -> tuple[slice, slice]:
        """Slices of the core in the tile's ×``scale`` output (the halo cropped)."""
        top = self.halo * scale
        return slice(top, top + (self.y1 - self.y0) * scale), slice(top, top + (self.x1 - self.x0) * scale)

    def region(self, scale: int) -> tuple[slice, slice]:
        """Slices of the core in the full ×``scale`` output image."""
        return slice(self.y0 * scale, self.y1 * scale), slice(self.x0 * scale, self.x1 * scale)


@dataclass(frozen=True)
class TileGrid:
    """Window-aligned tiling of an ``height × width`` LR image (all sizes in LR pixels).

    ``tile`` and ``halo`` must already be multiples of ``window`` (see :meth:`build`). Iterating yields the tiles
    row-major. With ``uniform``, every tile's input has the shape of a full tile (``tile_h + 2·halo`` ×
    ``tile_w + 2·halo``): a smaller last row/column of cores reads further beyond its core at the bottom/right
    (more context, resolved like any halo), so a compiled network (static shapes) sees one shape for the whole
    image. The cores, and so the output regions, are the same as without.
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    halo: int
    window: int
    row_boundary: Boundary
    col_boundary: Boundary
    uniform: bool = False

    @classmethod
    def build(
        cls,
        height: int,
        width: int,
        *,
        window: int,
        mode: Mode,
        tile: int | None,
        halo: int,
        pole_mode: Boundary = "reflect",
        uniform: bool = False,
    ) -> TileGrid:
        """Grid for ``mode``; ``tile=None`` gives one tile covering the whole image. Tile and halo are rounded up
        to the window (logged); ``uniform`` gives every tile input one shape (class docstring). Raises
        ``ValueError`` for an unknown mode or a non-positive tile/size."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if height < 1 or width < 1:
            raise ValueError(f"image must be at least 1×1 pixels, got {height}×{width}")
        halo = _aligned(halo, window, "halo", minimum=0)
        whole_h, whole_w = align_up(height, window), align_up(width, window)
        if tile is None:
            th, tw = whole_h, whole_w
        else:
            t = effective_tile(tile, window)
            th, tw = min(t, whole_h), min(t, whole_w)
        rows, cols = (pole_mode, "circular") if mode == "odi" else ("reflect", "reflect")
        return cls(height, width, th, tw, halo, window, rows, cols, uniform)  # type: ignore[arg-type]

    def tile(self, y0: int, y1: int, x0: int, x1: int, extent: tuple[int, int] | None = None) -> Tile:
        """The tile with core ``[y0, y1) × [x0, x1)``; its input is window-aligned and grown by the halo.

        ``extent`` ``(h, w)``: read that many rows/columns from the core's origin instead (≥ the aligned core),
        i.e. a larger input with extra context at the bottom/right.
        """
        h, ws = self.halo, self.window
        eh, ew = extent or (align_up(y1 - y0, ws), align_up(x1 - x0, ws))
        rows = source_indices(y0 - h, y0 + max(eh, align_up(y1 - y0, ws)) + h, self.height, self.row_boundary)
        cols = source_indices(x0 - h, x0 + max(ew, align_up(x1 - x0, ws)) + h, self.width, self.col_boundary)
        return Tile(y0, y1, x0, x1, h, rows, cols)

    def __iter__(self) -> Iterator[Tile]:
        extent = (self.tile_h, self.tile_w) if self.uniform else None
        for y0 in range(0, self.height, self.tile_h):
            for x0 in range(0, self.width, self.tile_w):
                yield self.tile(y0, min(y0 + self.tile_h, self.height), x0, min(x0 + self.tile_w, self.width), extent)

    def __len__(self) -> int:
        return math.ceil(self.height / self.tile_h) * math.ceil(self.width / self.tile_w)

    def split(self, tile: Tile, size: int) -> list[Tile]:
        """Sub-tiles of ``tile``'s core with cores of at most ``size`` px (a window multiple) and the same halo
        (with ``uniform``, all of one input shape)."""
        extent = (min(size, self.tile_h), min(size, self.tile_w)) if self.uniform else None
        return [
            self.tile(y0, min(y0 + size, tile.y1), x0, min(x0 + size, tile.x1), extent)
            for y0 in range(tile.y0, tile.y1, size)
            for x0 in range(tile.x0, tile.x1, size)
        ]

    def processed_pixels(self) -> int:
        """LR pixels fed to the network over all tiles (compute cost, halos and window padding included)."""
        return sum(t.input_shape[0] * t.input_shape[1] for t in self)


def gather(image: np.ndarray, tile: Tile) -> np.ndarray:
    """The tile's network input cut from ``image`` ``(H, W, …)``: ``(h_in, w_in, …)``, same dtype, boundaries
    resolved (a copy; the image itself is never padded)."""
    return image[np.ix_(tile.rows, tile.cols)]


def condition_for(
    tile: Tile,
    height: int,
    *,
    relative: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """CAMixerOSR's latitude condition for ``tile``: ``(1, 1, h_in, w_in)``, cos-latitude in [0, 1].

    Rows are the tile's ABSOLUTE source rows in the ``height``-row panorama (``odisr.erp.condition_map``), so halo
    rows mirrored at a pole carry the latitude of the row they copy. ``relative=True`` gives the wrong, tile-local
    map (the tile treated as a whole panorama, as the official tile path would); it exists only for tests.
    """
    from odisr.erp import condition_map

    h_in, w_in = tile.input_shape
    if relative:
        return condition_map(h_in, w_in, device=device, dtype=dtype)
    column = condition_map(height, 1, device=device, dtype=dtype)  # (1, 1, height, 1): constant along longitude
    rows = torch.from_numpy(tile.rows).to(column.device)
    return column.index_select(2, rows).expand(1, 1, h_in, w_in)
