"""The store's preview: its definition (an exact box average, ≤ 1024 px wide) and the accumulator that builds it from
the blocks as they stream out of the engine, for any block alignment, order and dtype.

Budget: < 5 s (numpy only).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipelines.preview import PREVIEW_MAX_WIDTH, PreviewAccumulator, box_preview, preview_factor


def _image(shape: tuple[int, int], dtype: type, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (*shape, 3), dtype=dtype)


@pytest.mark.parametrize(("shape", "dtype"), [((500, 2600), np.uint8), ((130, 260), np.uint16)])
def test_preview_is_an_exact_box_average_at_most_1024_wide(shape, dtype):
    image = _image(shape, dtype)
    preview = box_preview(image)
    f = -(-shape[1] // PREVIEW_MAX_WIDTH)
    h, w = shape[0] // f, shape[1] // f
    assert preview_factor(shape[1]) == f
    assert preview.shape == (h, w, 3) and preview.dtype == np.uint8 and w <= PREVIEW_MAX_WIDTH
    ref = image[: h * f, : w * f].astype(np.float64).reshape(h, f, w, f, 3).mean(axis=(1, 3))
    ref = np.floor(ref * 255.0 / np.iinfo(dtype).max + 0.5)
    assert np.abs(preview.astype(np.int32) - ref).max() <= 1  # float64 rounding of the mean vs exact integer sums


@pytest.mark.parametrize(
    ("shape", "dtype", "block"),
    [
        ((500, 2600), np.uint8, (96, 96)),  # f = 3: blocks straddle boxes; rows and columns left over at the ends
        ((512, 4100), np.uint8, (100, 333)),  # f = 5, ragged edge blocks
        ((130, 260), np.uint16, (7, 13)),  # 16-bit, f = 1, tiny blocks
        ((1024, 4096), np.uint16, (1024, 4096)),  # one block: whole-image inference
        ((256, 8192), np.uint8, (256, 256)),  # f = 8 divides the blocks: the aligned case
    ],
)
def test_streamed_preview_equals_the_definition_for_any_alignment(shape, dtype, block):
    image = _image(shape, dtype, seed=sum(shape))
    corners = [(y, x) for y in range(0, shape[0], block[0]) for x in range(0, shape[1], block[1])]
    np.random.default_rng(0).shuffle(corners)  # writer threads finish in any order
    acc = PreviewAccumulator(image.shape, dtype)
    for y, x in corners:
        acc.add(y, x, image[y : y + block[0], x : x + block[1]])
    np.testing.assert_array_equal(acc.result(), box_preview(image))


def test_streamed_preview_from_concurrent_writers_is_exact():
    """Blocks added from several threads at once, with boxes shared between blocks (f = 3, 64-px blocks)."""
    image = _image((384, 3072), np.uint8, seed=7)
    acc = PreviewAccumulator(image.shape, np.uint8)
    corners = [(y, x) for y in range(0, 384, 64) for x in range(0, 3072, 64)]

    def add(part: list[tuple[int, int]]) -> None:
        for y, x in part:
            acc.add(y, x, image[y : y + 64, x : x + 64])

    threads = [threading.Thread(target=add, args=(corners[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(acc.result(), box_preview(image))
