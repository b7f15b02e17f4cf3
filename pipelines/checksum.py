"""Checksums of a pair's ``sr`` array, computed from the blocks as they are written and checked by re-reading.

Each chunk of ``sr`` gets a BLAKE2b-128 digest of its pixels (the chunk's region of the array, C order, in the
array's dtype; an edge chunk covers only the pixels inside the array). The writer feeds every block it writes to
:meth:`ChunkDigests.add` — no re-read of the array — and :meth:`ChunkDigests.record` combines the chunk digests
into the ``sr_checksum`` attribute written with ``status: complete``::

    sr_checksum = {"algorithm": "blake2b-128", "digest": "<hex>",        # over shape, dtype and every chunk
                   "chunks": {"0.0.0": "<hex>", "0.1.0": "<hex>", ...}}  # chunk grid index → digest

:func:`check` re-reads each chunk and names those whose pixels (or whose stored bytes) no longer match. Digests
are of decoded pixels, not of compressed bytes, so a codec change or a re-compression keeps them valid.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

ALGORITHM = "blake2b-128"
_DIGEST_SIZE = 16


def chunk_digest(pixels: np.ndarray) -> str:
    """BLAKE2b-128 hex digest of one chunk's pixels (any shape and dtype; hashed in C order)."""
    return hashlib.blake2b(np.ascontiguousarray(pixels).data, digest_size=_DIGEST_SIZE).hexdigest()


def chunk_key(index: tuple[int, ...]) -> str:
    """``"i.j.k"``: the chunk's position in the chunk grid (its file is ``sr/c/i/j/k`` in the store)."""
    return ".".join(map(str, index))


def combined_digest(shape: tuple[int, ...], dtype: Any, chunks: Mapping[str, str]) -> str:
    """One digest over the array's shape, dtype and every chunk digest (in chunk-grid order)."""
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    h.update(f"{tuple(shape)} {np.dtype(dtype).str}\n".encode())
    for key in sorted(chunks, key=lambda k: tuple(map(int, k.split(".")))):
        h.update(f"{key} {chunks[key]}\n".encode())
    return h.hexdigest()


class ChunkDigests:
    """Digests of an array's chunks, fed with the regions written into it.

    Every region must cover whole chunks: start on the chunk grid and end on it or at the array's edge (the
    engine's tiles are chunk-aligned by construction: chunk = tile × scale). Thread-safe, so a pool of writers can
    share one instance.

    Args:
        shape, chunks, dtype: the array's shape, chunk shape and dtype.
    """

    def __init__(self, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any):
        self.shape, self.chunks, self.dtype = tuple(shape), tuple(chunks), np.dtype(dtype)
        self.grid = tuple(-(-n // c) for n, c in zip(self.shape, self.chunks, strict=True))
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        """Digest the chunks of ``block``, the pixels written at ``region`` (slices; missing trailing axes = all).

        Raises:
            ValueError: the region does not cover whole chunks, or the block's shape is not the region's.
        """
        starts, stops = self._bounds(region)
        block = np.asarray(block, dtype=self.dtype)
        if block.shape != tuple(b - a for a, b in zip(starts, stops, strict=True)):
            raise ValueError(f"block of shape {block.shape} written to region {starts}…{stops}")
        digests = {}
        for index in itertools.product(*(range(a // c, -(-b // c)) for a, b, c in zip(starts, stops, self.chunks))):
            local = tuple(
                slice(i * c - a, min((i + 1) * c, n) - a)
                for i, c, a, n in zip(index, self.chunks, starts, self.shape, strict=True)
            )
            digests[chunk_key(index)] = chunk_digest(block[local])
        with self._lock:
            self._digests.update(digests)

    def _bounds(self, region: tuple[slice, ...] | slice) -> tuple[tuple[int, ...], tuple[int, ...]]:
        region = region if isinstance(region, tuple) else (region,)
        region = region + (slice(None),) * (len(self.shape) - len(region))
        starts, stops = [], []
        for s, n, c in zip(region, self.shape, self.chunks, strict=True):
            a, b, step = s.indices(n)
            if step != 1 or a % c or (b % c and b != n):
                raise ValueError(
                    f"region {region} of an array {self.shape} chunked {self.chunks} does not cover whole chunks"
                )
            starts.append(a)
            stops.append(b)
        return tuple(starts), tuple(stops)

    def record(self) -> dict[str, Any]:
        """The ``sr_checksum`` attribute (see the module doc).

        Raises:
            ValueError: some chunk was never written (a writer bug: the record would not describe the array).
        """
        with self._lock:
            digests = dict(self._digests)
        missing = [chunk_key(i) for i in itertools.product(*map(range, self.grid)) if chunk_key(i) not in digests]
        if missing:
            raise ValueError(f"{len(missing)} chunk(s) never written, e.g. {missing[:3]}; no checksum recorded")
        return {
            "algorithm": ALGORITHM,
            "digest": combined_digest(self.shape, self.dtype, digests),
            "chunks": dict(sorted(digests.items(), key=lambda kv: tuple(map(int, kv[0].split("."))))),
        }


def check(array: Any, recorded: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Re-read every chunk of ``array`` (a Zarr array) and yield ``(chunk key, problem)`` for each that does not
    match ``recorded`` (an ``sr_checksum`` attribute): changed pixels, or stored bytes that no longer decode.

    Chunks are read one at a time (memory: one chunk). Raises ValueError for an unknown algorithm.
    """
    if recorded.get("algorithm") != ALGORITHM:
        raise ValueError(f"unknown checksum algorithm {recorded.get('algorithm')!r} (this odisr knows {ALGORITHM})")
    chunks = recorded.get("chunks", {})
    shape, dtype, size = tuple(array.shape), array.dtype, tuple(array.chunks)
    if combined_digest(shape, dtype, chunks) != recorded.get("digest"):
        yield "*", "the recorded chunk digests do not match the recorded checksum (attrs edited or truncated)"
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(shape, size, strict=True))):
        key = chunk_key(index)
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, size, shape, strict=True))
        try:
            digest = chunk_digest(array[region])
        except Exception as exc:  # noqa: BLE001  (a corrupt chunk fails in the codec with any exception type)
            yield key, f"cannot be decoded ({type(exc).__name__}: {exc})"
            continue
        if key not in chunks:
            yield key, "no recorded digest"
        elif digest != chunks[key]:
            yield key, "pixels differ from those written"
