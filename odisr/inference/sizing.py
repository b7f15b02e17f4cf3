"""``tile="auto"``: tile and batch size of tiled inference chosen from the device's free memory.

On CUDA the whole image runs as one tile when it fits — the fewest halo pixels and the fastest path (CAMixerSR-S
×4 on an H200, 2048×1024 LR: 1.15 s whole vs 1.23–1.55 s in 256-px tiles, ``specs/GPU_MEASUREMENTS.md``).
Otherwise the largest window-aligned square tile that fits, evened out over the image (a 2048-px side that allows
1500-px tiles gets two 1024-px tiles, not 1500 + 548), and as many tiles per batch as fit, up to the batch size
asked for. The memory of a forward pass is measured once per (model, device, amp) as peak allocated bytes per input
pixel on a probe image (:func:`odisr.inference.engine.auto_tiling`); activations of these convolutional and
windowed-attention networks grow linearly with the pixels. The out-of-memory back-off of the engine still applies
when the estimate is wrong.

On the CPU (and MPS), ``auto`` means :data:`CPU_TILE`: there RAM is the limit, not speed, and 256-px tiles keep a
16384×8192 output under 3 GB of RSS (``benchmarks/bench_memory.py``).
"""

from __future__ import annotations

import math

from odisr.inference.tiling import align_up

__all__ = ["AUTO", "CPU_TILE", "HEADROOM", "choose_tiling"]

AUTO = "auto"
CPU_TILE = 256
"""``tile="auto"`` off CUDA (LR pixels): the presets' tile, measured to bound RAM."""
HEADROOM = 0.75
"""Share of the free device memory a forward pass may plan for (allocator fragmentation, the global-context pass,
the converted outputs of the previous batch)."""


def choose_tiling(
    free_bytes: float,
    bytes_per_pixel: float,
    height: int,
    width: int,
    *,
    window: int,
    halo: int,
    max_batch: int,
    headroom: float = HEADROOM,
) -> tuple[int | None, int]:
    """``(tile, batch)`` for an ``height × width`` LR image on a device with ``free_bytes`` free.

    ``bytes_per_pixel``: peak device bytes of one forward pass per network-input pixel (LR). The whole image's input
    is its size rounded up to ``window`` plus ``halo`` on each side; a tile ``t``'s input is ``(t + 2·halo)²``.

    Returns:
        ``(None, 1)`` (whole image) when it fits in ``headroom · free_bytes``; else the largest window multiple
        ``t`` whose single tile fits, evened out over the image's longer side, and the most tiles of that size
        that fit in one batch (1 … ``max_batch``, never more than there are tiles). When not even a one-window
        tile fits, ``(window, 1)``: the engine's out-of-memory back-off has the last word.

    Raises:
        ValueError: non-positive sizes or memory figures.
    """
    if min(height, width, window, max_batch) < 1 or halo < 0 or bytes_per_pixel <= 0 or free_bytes <= 0:
        raise ValueError(
            f"choose_tiling needs positive sizes and memory, got {height}×{width} px, window {window}, halo {halo}, "
            f"batch {max_batch}, {free_bytes} B free, {bytes_per_pixel} B/px"
        )
    budget = headroom * free_bytes / bytes_per_pixel  # input pixels one forward pass may have
    whole = (align_up(height, window) + 2 * halo) * (align_up(width, window) + 2 * halo)
    if whole <= budget:
        return None, 1
    largest = (math.isqrt(int(budget)) - 2 * halo) // window * window
    if largest < window:
        return window, 1
    side = max(height, width)
    tile = min(largest, align_up(math.ceil(side / math.ceil(side / largest)), window))
    tiles = math.ceil(height / tile) * math.ceil(width / tile)
    batch = int(budget // (tile + 2 * halo) ** 2)
    return tile, max(1, min(max_batch, batch, tiles))
