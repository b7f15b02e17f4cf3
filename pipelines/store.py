"""The odisr Zarr store: layout, per-(image, model) groups, region writes, completion markers and resume.

Layout (zarr v3; the contract with ``odisr report``)::

    STORE.zarr/                 attrs {odisr_version, created, runs: [{command, config, started, finished, summary,
                                device, workers, threads, scheduler, dashboard}]}
      images/<key>/             one group per input image (created by the driver, no attrs)
        <model>/                one group per (image, model), written by ONE task only; attrs: status, error,
                                source, source_sha256, model, architecture, weights, weights_sha256, scale, ratio,
                                mode, tile, halo, device, lr_shape, sr_shape, seconds, odisr_version, metrics, bands,
                                sr_checksum (per-chunk digests of sr, see pipelines/checksum.py),
                                routing (content-aware models: per-block score mean/std and kept share)…
          sr         (y, x, band) uint8, chunks (tile·s, tile·s, 3), zstd, written region by region
          preview    (preview_y, preview_x, band) uint8, ≤ 1024 px wide, one chunk
          attention  (window_y, window_x) float32, optional (content-aware models): share of blocks routing the
                     window to attention
          attention_score  (window_y, window_x) float32, optional: the predictor's attention probability of the
                     window, mean over blocks (see odisr.routing)

Rules that make the store safe under concurrency and kills (see specs/ERP_DASK_ZARR.md):

* A group's ``zarr.json`` (its attrs) is one JSON document rewritten whole, so only the task that owns an
  (image, model) group writes it; root attrs are written only by the driver.
* ``status: "complete"`` is written last, after every chunk: a chunk file's presence proves nothing (chunks equal
  to the fill value are never written), the marker does.
* A pair that is not complete is redone from scratch: its group is deleted and recreated (:func:`begin_pair`),
  unless another run completed it since this run planned it (:func:`check_not_done_elsewhere`: two drivers on one
  store).
* Each attempt stamps a fresh ``attempt`` token; a writer whose token is no longer the group's (an orphaned task of
  a killed driver still running on a cluster) stops instead of mixing its chunks into the new attempt
  (:class:`RegionSink`).

The preview and attention arrays have their own dimension names so that ``xarray.open_zarr(STORE, group=
"images/<key>/<model>")`` opens the group as one Dataset (a second, smaller ``y`` would conflict).
"""

from __future__ import annotations

import errno
import math
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

import odisr
from pipelines.checksum import ChunkDigests

SR, PREVIEW, ATTENTION, ATTENTION_SCORE = "sr", "preview", "attention", "attention_score"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
PREVIEW_MAX_WIDTH = 1024
COMPRESSOR = ZstdCodec(level=3)
#: Attrs that define a result: a complete pair whose recorded values differ from the requested ones is redone.
CONFIG_KEYS = ("source", "model", "weights_sha256", "scale", "ratio", "mode", "tile", "halo", "degrade")


class StoreError(ValueError):
    """The path is not an odisr store (or cannot be opened as one)."""


class Superseded(RuntimeError):
    """A newer attempt owns the (image, model) group; this writer must stop without writing."""


def now() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------- root (driver)


def open_store(path: str, *, create: bool = True) -> zarr.Group:
    """Open (or create) an odisr store at ``path`` (a directory or any fsspec URL zarr accepts).

    Raises:
        StoreError: ``path`` holds something else than an odisr store, or does not exist and ``create`` is False.
    """
    try:
        root = zarr.open_group(path, mode="a" if create else "r+")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.ContainsArrayError) as exc:
        raise StoreError(f"{path}: not an odisr store ({exc})") from None
    if "runs" not in root.attrs:
        if any(True for _ in root.members()):
            raise StoreError(f"{path}: a Zarr group that is not an odisr store; choose another --out")
        root.attrs.update({"odisr_version": odisr.__version__, "created": now(), "runs": []})
    root.require_group("images")
    return root


def record_run(
    root: zarr.Group,
    command: str,
    config: Mapping[str, Any],
    *,
    device: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    scheduler: str | None = None,
    dashboard: str | None = None,
) -> int:
    """Append a run record (``finished`` and ``summary`` still None) and return its index.

    ``device``: where inference runs (``cpu``, ``cuda``); ``workers``/``threads``: the Dask worker processes and
    their threads in all when the run started; ``scheduler``: the scheduler's address, ``local`` for a cluster the
    run started itself; ``dashboard``: the Dask dashboard's URL.
    """
    runs = list(root.attrs.get("runs", []))
    cluster = {"device": device, "workers": workers, "threads": threads, "scheduler": scheduler, "dashboard": dashboard}
    runs.append({"command": command, "config": dict(config), "started": now(), "finished": None, "summary": None,
                 **cluster})  # fmt: skip
    root.attrs["runs"] = runs
    return len(runs) - 1


def finish_run(root: zarr.Group, index: int, summary: Mapping[str, Any]) -> None:
    """Fill in ``finished`` and ``summary`` of run ``index``."""
    runs = list(root.attrs["runs"])
    runs[index] = {**runs[index], "finished": now(), "summary": dict(summary)}
    root.attrs["runs"] = runs


def pair_path(key: str, model: str) -> str:
    """Path of the (image, model) group inside the store."""
    return f"images/{key}/{model}"


def pair_attrs(root: zarr.Group, key: str, model: str) -> dict[str, Any] | None:
    """Attrs of the (image, model) group, or None when it does not exist."""
    try:
        return dict(root[pair_path(key, model)].attrs)
    except KeyError:
        return None


def resume_action(recorded: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether an (image, model) pair must be (re)computed, and why (one phrase for the log).

    ``recorded`` is the group's attrs (None when absent); ``wanted`` the attrs this run would record for the
    :data:`CONFIG_KEYS`. Complete with the same config → skip; anything else → run (from scratch).
    """
    if recorded is None:
        return True, "new"
    status = recorded.get("status")
    if status != COMPLETE:
        return True, "failed before, retried" if status == FAILED else "incomplete (interrupted), redone from scratch"
    changed = [k for k in CONFIG_KEYS if recorded.get(k) != wanted.get(k)]
    if changed:
        return True, "config changed: " + ", ".join(f"{k}: {recorded.get(k)!r} → {wanted.get(k)!r}" for k in changed)
    return False, "complete"


# ---------------------------------------------------------------------------------------------------- pair (task)


def check_not_done_elsewhere(
    store: str, key: str, model: str, planned_over: str | None, wanted: Mapping[str, Any]
) -> None:
    """Raise :class:`Superseded` when another run has completed the pair, with the config ``wanted``, since this
    run planned it: redoing it would only destroy a finished result.

    ``planned_over`` is the attempt token of the pair when the driver planned it *if it was complete then* (a
    complete pair redone on purpose: ``--overwrite`` or a changed config), else None.
    """
    try:
        attrs = dict(zarr.open_group(store, path=pair_path(key, model), mode="r").attrs)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return
    if attrs.get("status") == COMPLETE and attrs.get("attempt") != planned_over and not resume_action(attrs, wanted)[0]:
        raise Superseded(f"{pair_path(key, model)}: completed by another run meanwhile; left as it is")


def begin_pair(store: str, key: str, model: str, attrs: Mapping[str, Any]) -> zarr.Group:
    """Delete and recreate the (image, model) group with ``attrs``, ``status: running`` and a new attempt token."""
    return _recreate(store, key, model, {**attrs, "status": RUNNING, "attempt": uuid.uuid4().hex})


_RECREATE_TRIES = 5


def _recreate(store: str, key: str, model: str, attributes: Mapping[str, Any]) -> zarr.Group:
    """Replace the pair's group by an empty one holding ``attributes`` (which carry a new attempt token).

    A writer of the old attempt may still be running (another driver's task, or an orphan of a killed one): the new
    token is first written into the existing group, so that writer stops at its next region (:class:`Superseded`),
    then the group is deleted and created anew. A chunk it was writing meanwhile can refill a folder being deleted
    (``ENOTEMPTY`` on a local store): the deletion is tried again.
    """
    path = pair_path(key, model)
    try:
        zarr.open_group(store, path=path, mode="r+").attrs.put(dict(attributes))
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError, zarr.errors.ContainsArrayError):
        pass  # no group yet
    for _ in range(_RECREATE_TRIES - 1):
        try:
            return zarr.create_group(store, path=path, overwrite=True, attributes=dict(attributes))
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
            time.sleep(0.05)
    return zarr.create_group(store, path=path, overwrite=True, attributes=dict(attributes))  # the last try


def create_sr(group: zarr.Group, shape: tuple[int, int], chunk: int, dtype: Any = np.uint8) -> zarr.Array:
    """The ``sr`` array ``(H, W, 3)``, chunks ``(chunk, chunk, 3)``, zstd-compressed; uint8 (uint16 for 16-bit
    inputs, whose SR keeps 16 bits)."""
    return group.create_array(
        SR,
        shape=(*shape, 3),
        chunks=(min(chunk, shape[0]), min(chunk, shape[1]), 3),
        dtype=dtype,
        fill_value=0,
        compressors=COMPRESSOR,
        dimension_names=["y", "x", "band"],
    )


class RegionSink:
    """``sink[y0:y1, x0:x1, :] = block`` target for the engine: writes into the Zarr array after checking that this
    writer's attempt still owns the group (else :class:`Superseded`), then reports the written pixels.

    ``on_write(pixels)`` is called after each region (e.g. to send progress to the driver). ``digests`` collects
    the chunk digests of every block written (the ``sr_checksum`` recorded by :func:`complete_pair`).
    """

    def __init__(self, group: zarr.Group, array: zarr.Array, on_write: Callable[[int], None] | None = None):
        self.group, self.array, self.on_write = group, array, on_write
        self.attempt = group.attrs["attempt"]
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.digests = ChunkDigests(array.shape, array.chunks, array.dtype)

    def __setitem__(self, region: Any, block: np.ndarray) -> None:
        self.check_owner()
        self.array[region] = block
        self.digests.add(region, block)
        if self.on_write is not None:
            self.on_write(int(np.prod(np.shape(block)[:2])))

    def check_owner(self) -> None:
        """Raise :class:`Superseded` when another attempt has recreated the group since this one began."""
        try:
            current = zarr.open_group(self.group.store, path=self.group.path, mode="r").attrs.get("attempt")
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
            current = None  # being deleted and recreated by a newer attempt
        if current != self.attempt:
            raise Superseded(f"{self.group.path}: taken over by a newer attempt; this writer stops")


def write_preview(group: zarr.Group, sr: zarr.Array, max_width: int = PREVIEW_MAX_WIDTH) -> zarr.Array:
    """``preview``: ``sr`` box-averaged by the smallest integer factor f that makes it ≤ ``max_width`` wide.

    Reads ``sr`` in bands of whole chunk rows, so memory stays O(chunk height · W) whatever the image size.
    Returns the ``(H // f, W // f, 3)`` uint8 array (area average, rounded half up; 16-bit input scaled to 8 bits).
    """
    height, width = sr.shape[:2]
    f = max(1, math.ceil(width / max_width))
    out_h, out_w = max(1, height // f), max(1, width // f)
    to_8bit = 255.0 / np.iinfo(sr.dtype).max / f**2  # box sum → mean → 8 bits
    preview = np.empty((out_h, out_w, 3), np.uint8)
    rows = max(1, sr.chunks[0] // f)  # output rows per band
    for r0 in range(0, out_h, rows):
        r1 = min(out_h, r0 + rows)
        block = sr[r0 * f : r1 * f, : out_w * f].reshape(r1 - r0, f, out_w, f, 3).sum(axis=(1, 3), dtype=np.uint64)
        preview[r0:r1] = np.floor(block * to_8bit + 0.5).astype(np.uint8)
    return _write_whole(group, PREVIEW, preview, ["preview_y", "preview_x", "band"])


def write_attention(group: zarr.Group, attention: np.ndarray) -> zarr.Array:
    """``attention``: per LR window, the fraction of CAMixer blocks that routed it to attention, float32 in [0, 1]."""
    return _write_whole(group, ATTENTION, attention.astype(np.float32), ["window_y", "window_x"])


def write_attention_score(group: zarr.Group, score: np.ndarray) -> zarr.Array:
    """``attention_score``: per LR window, CAMixer's predicted attention probability (mean over blocks), float32
    in [0, 1] (see :mod:`odisr.routing`)."""
    return _write_whole(group, ATTENTION_SCORE, score.astype(np.float32), ["window_y", "window_x"])


def _write_whole(group: zarr.Group, name: str, data: np.ndarray, dims: list[str]) -> zarr.Array:
    """A small array stored as one compressed chunk."""
    array = group.create_array(
        name, shape=data.shape, chunks=data.shape, dtype=data.dtype, compressors=COMPRESSOR, dimension_names=dims
    )
    array[...] = data
    return array


def complete_pair(sink: RegionSink, results: Mapping[str, Any]) -> None:
    """Write the results, the ``sr_checksum`` of the blocks written and ``status: complete`` in one attrs update —
    call it after every array is written.

    Raises:
        Superseded: the group was recreated by a newer attempt meanwhile (nothing is written).
    """
    sink.check_owner()
    sink.group.attrs.update({**results, "sr_checksum": sink.digests.record(), "status": COMPLETE})


def fail_pair(store: str, key: str, model: str, attrs: Mapping[str, Any], error: str) -> None:
    """Record a failed (image, model) pair: a fresh group holding ``attrs``, ``status: failed`` and ``error``."""
    _recreate(store, key, model, {**attrs, "status": FAILED, "error": error, "attempt": uuid.uuid4().hex})
