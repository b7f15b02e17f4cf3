"""Read the metadata of every (image, model) group of an odisr store at once (attrs and array names), and many small
arrays (previews), concurrently.

An archive store holds one group per (image, model) under ``images/<key>/<model>/``. Walking it with zarr's
``Group.members()`` builds a zarr node (and parses the metadata) of every group *and* array, one after the other:
1.3 ms per pair measured on a local 1,000-pair store, 13 s for 10,000. Here the store is listed directory by
directory and only the pairs' own ``zarr.json`` documents are fetched, up to :data:`CONCURRENCY` requests at a time
on zarr's event loop (on object stores the requests overlap their latency): 0.3 ms per pair on the same store.
Chunk files are never listed, so the cost does not grow with the image sizes.

Small arrays are read the same way, a batch at a time (:func:`read_arrays`): one call into zarr's event loop per
batch instead of two per array saves ~3 ms per preview on a loaded machine.

Consolidated metadata would be a single read, but it goes stale while a run writes (and zarr would then serve
the stale copy to the pipeline's own resume checks), so it is not used.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

__all__ = ["CONCURRENCY", "PairNode", "read_arrays", "read_pairs"]

#: Store requests in flight at once.
CONCURRENCY = 64
_META = "zarr.json"


@dataclass(frozen=True)
class PairNode:
    """The metadata of one ``images/<image>/<model>`` group: its attrs and the names of its arrays."""

    attrs: Mapping[str, Any]
    arrays: tuple[str, ...]


def read_pairs(root: zarr.Group) -> tuple[dict[tuple[str, str], PairNode], list[str]]:
    """Every ``images/<image>/<model>`` group of the store ``root`` (zarr v3) and the image keys without any model.

    Returns ``({(image, model): PairNode}, [empty image keys])``. Directories without a ``zarr.json`` (a group
    being created) are skipped, as zarr itself would skip them.
    """
    prefix = f"{root.path}/images/" if root.path else "images/"
    return sync(_read(root.store, prefix))


async def _read(store: Any, prefix: str) -> tuple[dict[tuple[str, str], PairNode], list[str]]:
    limit = asyncio.Semaphore(CONCURRENCY)
    prototype = default_buffer_prototype()

    async def listing(path: str) -> list[str]:
        async with limit:
            return [name async for name in store.list_dir(path)]

    async def document(path: str) -> dict[str, Any] | None:
        async with limit:
            buffer = await store.get(path, prototype)
        return None if buffer is None else json.loads(buffer.to_bytes())

    async def pair(image: str, model: str) -> tuple[tuple[str, str], PairNode | None]:
        path = f"{prefix}{image}/{model}/"
        doc, names = await asyncio.gather(document(path + _META), listing(path))
        if doc is None or doc.get("node_type") != "group":
            return (image, model), None
        return (image, model), PairNode(doc.get("attributes") or {}, tuple(sorted(n for n in names if n != _META)))

    async def image(key: str) -> tuple[str, bool, list[tuple[tuple[str, str], PairNode | None]]]:
        names = await listing(f"{prefix}{key}/")
        if _META not in names:  # not a group (yet)
            return key, False, []
        return key, True, list(await asyncio.gather(*(pair(key, m) for m in names if m != _META)))

    keys = [k for k in await listing(prefix) if k != _META]
    pairs: dict[tuple[str, str], PairNode] = {}
    empty = []
    for key, is_group, found in await asyncio.gather(*(image(k) for k in keys)):
        nodes = {k: node for k, node in found if node is not None}
        pairs.update(nodes)
        if is_group and not nodes:
            empty.append(key)
    return pairs, sorted(empty)


def read_arrays(root: zarr.Group, paths: list[str]) -> list[np.ndarray | Exception]:
    """The whole arrays at ``paths`` (relative to ``root``), read concurrently; an array that cannot be read gives
    its exception in its place (KeyError-like ``FileNotFoundError``/zarr errors, ``OSError``, ``ValueError``)."""
    prefix = f"{root.path}/" if root.path else ""
    return sync(_read_arrays(root.store, [prefix + p for p in paths]))


async def _read_arrays(store: Any, paths: list[str]) -> list[np.ndarray | Exception]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(path: str) -> np.ndarray:
        async with limit:
            array = await zarr_async.open_array(store=store, path=path, mode="r")
            return np.asarray(await array.getitem(...))

    results = await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, Exception):
            raise r  # KeyboardInterrupt, cancellation: not a per-array failure
    return results
