"""The store's ``preview``: the SR image box-averaged to at most :data:`PREVIEW_MAX_WIDTH` pixels wide.

Definition (:func:`box_preview`): with ``f = ceil(W / max_width)`` (the smallest integer factor that makes the
preview ≤ ``max_width`` wide), preview pixel ``(r, c)`` is the mean of the ``f × f`` SR pixels
``[r·f, (r+1)·f) × [c·f, (c+1)·f)``, mapped to 8 bits and rounded half up:
``floor(sum · 255 / (maxval · f²) + 0.5)`` with the sum taken exactly (integers); SR rows and columns past
``(H // f)·f`` and ``(W // f)·f`` are left out.

:class:`PreviewAccumulator` computes the same preview from the blocks as they stream out of the engine (any block
shape and alignment, in any order, from several writer threads), so the stored ``sr`` is never read back. Integer
sums are exact in any order, so the two agree bit for bit.
"""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["PREVIEW_MAX_WIDTH", "PreviewAccumulator", "box_preview", "preview_factor"]

PREVIEW_MAX_WIDTH = 1024


def preview_factor(width: int, max_width: int = PREVIEW_MAX_WIDTH) -> int:
    """The box size ``f``: the smallest integer with ``width / f ≤ max_width``."""
    return max(1, math.ceil(width / max_width))


def _to_uint8(sums: np.ndarray, maxval: int, f: int) -> np.ndarray:
    """Box sums (uint64) → 8-bit means, rounded half up."""
    return np.floor(sums * (255.0 / maxval / f**2) + 0.5).astype(np.uint8)


def box_preview(sr: np.ndarray | object, max_width: int = PREVIEW_MAX_WIDTH) -> np.ndarray:
    """The preview of ``sr`` (``(H, W, 3)`` uint8/uint16, a numpy or Zarr array) by the definition above.

    Reads ``sr`` in bands of whole chunk rows (when it has ``chunks``), so memory stays O(band · W).
    Returns ``(H // f, W // f, 3)`` uint8 (at least 1×1).
    """
    height, width = sr.shape[:2]  # type: ignore[attr-defined]
    f = preview_factor(width, max_width)
    out_h, out_w = max(1, height // f), max(1, width // f)
    maxval = np.iinfo(sr.dtype).max  # type: ignore[attr-defined]
    preview = np.empty((out_h, out_w, 3), np.uint8)
    rows = max(1, getattr(sr, "chunks", (height,))[0] // f)  # output rows per band
    for r0 in range(0, out_h, rows):
        r1 = min(out_h, r0 + rows)
        band = sr[r0 * f : r1 * f, : out_w * f]  # type: ignore[index]
        sums = band.reshape(r1 - r0, f, out_w, f, 3).sum(axis=(1, 3), dtype=np.uint64)
        preview[r0:r1] = _to_uint8(sums, maxval, f)
    return preview


class PreviewAccumulator:
    """:func:`box_preview` of an ``(H, W, 3)`` image built block by block: ``add(y0, x0, block)`` for disjoint
    blocks covering the image, then :meth:`result`. Thread-safe (the sums of a block are computed outside the lock;
    only the addition into the shared uint64 accumulator of preview size is locked)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type, max_width: int = PREVIEW_MAX_WIDTH) -> None:
        height, width = shape[:2]
        self.f = preview_factor(width, max_width)
        self.maxval = int(np.iinfo(dtype).max)
        self.sums = np.zeros((max(1, height // self.f), max(1, width // self.f), 3), np.uint64)
        self._lock = threading.Lock()

    def add(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Add the SR pixels of ``block`` ``(h, w, 3)``, whose top-left pixel is ``(y0, x0)`` of the image."""
        f, (out_h, out_w) = self.f, self.sums.shape[:2]
        block = block[: max(0, out_h * f - y0), : max(0, out_w * f - x0)]  # pixels past the last whole box
        if block.size == 0:
            return
        # rows first (f ≤ 65536 rows of ≤ 16-bit values fit uint32), on a contiguous axis: 3-4× faster than uint64
        sums = _box_sums(_box_sums(block, y0, f, 0, np.uint32), x0, f, 1, np.uint64)
        r0, c0 = y0 // f, x0 // f
        with self._lock:
            self.sums[r0 : r0 + sums.shape[0], c0 : c0 + sums.shape[1]] += sums

    def result(self) -> np.ndarray:
        """The ``(H // f, W // f, 3)`` uint8 preview (exact once every block was added)."""
        with self._lock:
            return _to_uint8(self.sums, self.maxval, self.f)


def _box_sums(a: np.ndarray, start: int, f: int, axis: int, dtype: type) -> np.ndarray:
    """Sums of ``a`` along ``axis`` over the boxes ``[k·f, (k+1)·f)`` of absolute coordinates, ``a`` starting at
    absolute ``start``: one entry per box ``a`` touches (partial boxes at either end included)."""
    n = a.shape[axis]
    head = min(n, -start % f)  # elements before the first box boundary
    body = (n - head) // f * f

    def part(lo: int, hi: int) -> np.ndarray:
        return a[(slice(None),) * axis + (slice(lo, hi),)]

    parts = []
    if head:
        parts.append(part(0, head).sum(axis=axis, keepdims=True, dtype=dtype))
    if body:
        whole = part(head, head + body)
        parts.append(whole.reshape(whole.shape[:axis] + (body // f, f) + whole.shape[axis + 1 :]).sum(axis + 1, dtype))
    if head + body < n:
        parts.append(part(head + body, n).sum(axis=axis, keepdims=True, dtype=dtype))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
