"""The odisr Zarr store: layout, per-(image, model) groups, region writes, completion markers and resume.

Layout (zarr v3; the contract with ``odisr report``)::

    STORE.zarr/                 attrs {odisr_version, created, runs: [{id, command, config, started, finished, summary,
                                device, workers, threads, scheduler, dashboard}]}
      images/<key>/             one group per input image (created by the driver, no attrs)
        <model>/                one group per (image, model), written by ONE task only; attrs: status, error,
                                source, source_sha256, model, architecture, weights, weights_sha256, scale, ratio,
                                mode, tile, halo, device, lr_shape, sr_shape, tile_used, batch_size_used (the engine's,
                                "tile: auto" resolved), seconds, odisr_version, metrics, bands,
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
  (image, model) group writes it; root attrs are written only by drivers, which read their change back and redo
  it when another driver's document replaced it (:func:`record_run`).
* ``status: "complete"`` is written last, after every chunk: a chunk file's presence proves nothing (an
  interrupted attempt leaves some), the marker does.
* A pair that is not complete is redone from scratch: its group is deleted and recreated (:func:`begin_pair`),
  unless another run completed it since this run planned it (:func:`check_not_done_elsewhere`: two drivers on one
  store).
* Each attempt stamps a fresh ``attempt`` token; a writer whose token is no longer the group's (an orphaned task of
  a killed driver still running on a cluster) stops instead of mixing its chunks into the new attempt
  (:class:`RegionSink`). Each chunk is checked right before it is stored, so a superseded writer can only store
  the chunks whose check passed before the newer attempt began — at most one per writer thread, each within a
  chunk write (milliseconds) of its check; every chunk queued behind them is checked afterwards and dropped. Such
  a late chunk lands either before :func:`begin_pair` deletes the group (and goes with it) or in the new group,
  where the newer attempt, which writes every chunk itself (``write_empty_chunks``), overwrites it when it writes
  that chunk — after its decode and its first batch of inference, far beyond one chunk write. (Without an atomic
  compare-and-swap in the store, a writer frozen between its check and its write for that long, e.g. a stopped
  process, is the one case no check can exclude.)
* The ``sr`` array carries its attempt's token too, and :func:`complete_pair` reads it back after writing the
  marker: a newer attempt that recreated the group between the marker's ownership check and its write (whose
  document the marker then replaced) makes it take the marker back, so the pair is redone by the next run instead
  of being left "complete" over the newer attempt's arrays.

The preview and attention arrays have their own dimension names so that ``xarray.open_zarr(STORE, group=
"images/<key>/<model>")`` opens the group as one Dataset (a second, smaller ``y`` would conflict).
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

import odisr
from pipelines.checksum import ChunkDigests
from pipelines.preview import PreviewAccumulator

log = logging.getLogger(__name__)

SR, PREVIEW, ATTENTION, ATTENTION_SCORE = "sr", "preview", "attention", "attention_score"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
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

    Safe when several drivers open the same new store at once: the root group is created with its attrs in one
    document, and a creation that loses the race opens the winner's group.

    Raises:
        StoreError: ``path`` holds something else than an odisr store, or does not exist and ``create`` is False.
    """
    try:
        root = _open_root(path, create)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.ContainsArrayError) as exc:
        raise StoreError(f"{path}: not an odisr store ({exc})") from None
    if "runs" not in root.attrs:
        if any(True for _ in root.members()):
            raise StoreError(f"{path}: a Zarr group that is not an odisr store; choose another --out")
        root.attrs.update(_fresh_root_attrs())  # an empty group made by hand: adopt it
    require_group(root, "images")
    return root


def _fresh_root_attrs() -> dict[str, Any]:
    return {"odisr_version": odisr.__version__, "created": now(), "runs": []}


def _open_root(path: str, create: bool) -> zarr.Group:
    try:
        return zarr.open_group(path, mode="a" if create else "r+", attributes=_fresh_root_attrs())
    except zarr.errors.ContainsGroupError:  # another driver created it between our look and our create
        return zarr.open_group(path, mode="r+")


def require_group(parent: zarr.Group, name: str) -> zarr.Group:
    """``parent[name]``, created when missing; safe when another process creates it at the same time."""
    try:
        return parent.require_group(name)
    except zarr.errors.ContainsGroupError:
        return parent[name]


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
) -> str:
    """Append a run record (``finished`` and ``summary`` still None) and return its ``id`` (for :func:`finish_run`).

    ``device``: where inference runs (``cpu``, ``cuda``); ``workers``/``threads``: the Dask worker processes and
    their threads in all when the run started; ``scheduler``: the scheduler's address, ``local`` for a cluster the
    run started itself; ``dashboard``: the Dask dashboard's URL.
    """
    run_id = uuid.uuid4().hex
    cluster = {"device": device, "workers": workers, "threads": threads, "scheduler": scheduler, "dashboard": dashboard}
    record = {"id": run_id, "command": command, "config": dict(config), "started": now(), "finished": None,
              "summary": None, **cluster}  # fmt: skip
    _update_runs(root, lambda runs: [*runs, record], lambda runs: record in runs)
    return run_id


def finish_run(root: zarr.Group, run_id: str, summary: Mapping[str, Any]) -> None:
    """Fill in ``finished`` and ``summary`` of the run :func:`record_run` returned ``run_id`` for."""
    finished = {"finished": now(), "summary": dict(summary)}

    def change(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [run | finished if run.get("id") == run_id else run for run in runs]

    _update_runs(root, change, lambda runs: any(run.get("id") == run_id and run["finished"] for run in runs))


def _update_runs(
    root: zarr.Group,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    landed: Callable[[list[dict[str, Any]]], bool],
    attempts: int = 8,
) -> None:
    """Read-modify-write of the root's ``runs`` with a read-back: two drivers on one store may write the root's
    ``zarr.json`` at the same moment, and the later document drops the other's change. Without a compare-and-swap
    in the store, each writer waits a random moment, reads again, and redoes its change when it was lost. After
    ``attempts`` lost writes it gives up with a warning: the run record is bookkeeping (``odisr report``'s run
    table), never a reason to stop a run whose results are stored."""
    rng = np.random.default_rng()
    for _ in range(attempts):
        root.attrs["runs"] = change(_stored_runs(root))
        time.sleep(rng.uniform(0.02, 0.1))
        if landed(_stored_runs(root)):
            return
    log.warning("%s: the run record could not be written (%d writes lost to other drivers writing the store's "
                "root at the same moment); the results are not affected", root.store, attempts)  # fmt: skip


def _stored_runs(root: zarr.Group) -> list[dict[str, Any]]:
    """The ``runs`` as stored now (a group object caches its attrs from when it was opened)."""
    return list(zarr.open_group(root.store, path=root.path, mode="r").attrs.get("runs", []))


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
    inputs, whose SR keeps 16 bits).

    Every chunk is written, also one equal to the fill value (zarr's ``write_empty_chunks``): SR chunks are dense,
    so zarr's per-chunk scan for "all equal to the fill value" only cost time (0.62 s of an 8K panorama's 1.55 s
    of writes, measured on the GPU machine), and a chunk of a complete pair is then always this attempt's own.
    """
    return group.create_array(
        SR,
        shape=(*shape, 3),
        chunks=(min(chunk, shape[0]), min(chunk, shape[1]), 3),
        dtype=dtype,
        fill_value=0,
        compressors=COMPRESSOR,
        dimension_names=["y", "x", "band"],
        attributes={"attempt": group.attrs["attempt"]},  # whose array this is (complete_pair checks it)
        config={"write_empty_chunks": True},
    )


class RegionSink:
    """``sink[y0:y1, x0:x1, :] = block`` target for the engine that overlaps writing with inference.

    ``__setitem__`` only copies the block into one of ``max_pending`` chunk-sized buffers and queues it: a pool of
    ``writers`` threads writes it (:meth:`write`: ownership check, zstd encoding, store, preview sums, progress),
    while the caller computes the next tiles. When every buffer is queued the caller waits, so memory stays bounded
    whatever the image size. Blocks larger than a chunk (whole-image inference) are cut into chunk-sized pieces
    written in parallel. The buffers are allocated once: the engine's blocks are freed right after the copy, in the
    order they were made, as in the engine's own numpy path. (Measured: handing the blocks themselves to the
    writers, freed later by other threads, fragmented glibc's heap by 0.45 GB of RSS on a 16384×8192 output.)

    Regions must be chunk-aligned (each chunk written by one piece only: two threads must never share a chunk);
    the engine's are, as the chunk is its ``tile · scale``. ``on_write(pixels)`` is called after each piece (from a
    writer thread). :meth:`close` (or leaving the ``with`` block) waits for every write and raises the first error
    of a writer, e.g. :class:`Superseded`; the next ``__setitem__`` raises it too, which stops the engine early.

    Ownership: every piece is checked against the group's attempt token right before it is stored (in the writer
    thread, so the check costs the engine nothing); once one check fails, no further piece of this sink is written.
    """

    def __init__(
        self,
        group: zarr.Group,
        array: zarr.Array,
        on_write: Callable[[int], None] | None = None,
        *,
        writers: int = 2,
        max_pending: int | None = None,
    ) -> None:
        self.group, self.array, self.on_write = group, array, on_write
        self.attempt = group.attrs["attempt"]
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.digests = ChunkDigests(array.shape, array.chunks, array.dtype)
        self.preview = PreviewAccumulator(array.shape, array.dtype)
        self._attrs_key = f"{group.path}/zarr.json" if group.path else "zarr.json"
        self._pool = ThreadPoolExecutor(max(1, writers), thread_name_prefix="odisr-writer")
        chunk = tuple(min(c, n) for c, n in zip(array.chunks, array.shape, strict=True))
        self._buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        for _ in range(max_pending or 2 * max(1, writers)):
            self._buffers.put(np.empty(chunk, array.dtype))
        self._queued: set[Future] = set()
        self._error: BaseException | None = None
        self._closed = False

    def __setitem__(self, region: Any, block: np.ndarray) -> None:
        self._raise_error()
        ys, xs = region[:2]
        for y0, x0, piece in self._pieces(ys, xs, block):
            buffer = self._buffers.get()  # back-pressure: the engine waits while every buffer is queued
            if self._error is not None:
                self._buffers.put(buffer)
                self._raise_error()
            copy = buffer[: piece.shape[0], : piece.shape[1]]
            copy[...] = piece
            future = self._pool.submit(self._guarded_write, y0, x0, copy, buffer)
            self._queued.add(future)
            future.add_done_callback(self._queued.discard)

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Store one chunk-aligned ``block`` ``(h, w, 3)`` at ``(y0, x0)`` — the single place where SR pixels reach
        the store: check ownership, write the chunk, add it to the preview, report the pixels. Runs in a writer
        thread. Raises :class:`Superseded` when a newer attempt owns the group (nothing written)."""
        h, w = block.shape[:2]
        self.check_owner()
        self.array[y0 : y0 + h, x0 : x0 + w] = block
        self.digests.add((slice(y0, y0 + h), slice(x0, x0 + w)), block)
        self.preview.add(y0, x0, block)
        if self.on_write is not None:
            self.on_write(h * w)

    def check_owner(self) -> None:
        """Raise :class:`Superseded` when another attempt has recreated (or deleted) the group since this one began.

        Reads the group's ``zarr.json`` (the Zarr v3 group document, ``attributes`` inside) straight from the store:
        one small read, without building a Group object.
        """
        if _stored_attempt(self.group.store, self._attrs_key) != self.attempt:
            raise Superseded(f"{self.group.path}: taken over by a newer attempt; this writer stops")

    def owns_array(self) -> bool:
        """Whether the stored array is still the one this attempt created (its ``attempt`` stamp, :func:`create_sr`)."""
        return _stored_attempt(self.array.store, f"{self.array.path}/zarr.json") == self.attempt

    def flush(self) -> None:
        """Wait for the blocks queued so far to be written; raise the first writer error."""
        wait(list(self._queued))
        self._raise_error()

    def close(self) -> None:
        """Wait for every queued write and stop the writer threads; raise the first writer error. Idempotent."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)
        self._raise_error()

    def __enter__(self) -> RegionSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # the engine failed: drop what is still queued, wait for the writes in progress (no writer thread may
        # outlive the task: a retry in this process would race with it), and let the engine's error propagate
        self._error = self._error or exc
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _guarded_write(self, y0: int, x0: int, block: np.ndarray, buffer: np.ndarray) -> None:
        try:
            if self._error is None:  # after a failure (e.g. superseded) nothing more is written
                self.write(y0, x0, block)
        except BaseException as exc:  # noqa: BLE001  (handed to the engine's thread by _raise_error)
            self._error = self._error or exc
        finally:
            self._buffers.put(buffer)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _pieces(self, ys: slice, xs: slice, block: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """``block`` (written at ``[ys, xs]``) cut at chunk boundaries; ValueError for a region that is not
        chunk-aligned (a chunk shared by two blocks could be written by two threads at once)."""
        (height, width), (ch, cw) = self.shape[:2], self.array.chunks[:2]
        y0, y1, _ = ys.indices(height)
        x0, x1, _ = xs.indices(width)
        if y0 % ch or x0 % cw or (y1 % ch and y1 != height) or (x1 % cw and x1 != width):
            raise ValueError(
                f"region [{y0}:{y1}, {x0}:{x1}] is not aligned to the {ch}×{cw} chunks of {self.group.path}/{SR}"
            )
        for y in range(y0, y1, ch):
            for x in range(x0, x1, cw):
                yield y, x, block[y - y0 : y - y0 + ch, x - x0 : x - x0 + cw]


def write_preview(group: zarr.Group, preview: np.ndarray) -> zarr.Array:
    """``preview``: the ``(h, w, 3)`` uint8 preview of ``sr`` (:mod:`pipelines.preview`; a sink's streamed
    ``sink.preview.result()``, equal to ``box_preview(sr)``)."""
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
    """Wait for the sink's writes, then write the results, the ``sr_checksum`` of the blocks written and
    ``status: complete`` in one attrs update — call it after every other array is written.

    Raises:
        Superseded: the group was recreated by a newer attempt meanwhile: nothing is written, or, when the newer
            attempt began between the ownership check and the marker, the marker is taken back (``running``).
    """
    sink.close()
    sink.check_owner()
    sink.group.attrs.update({**results, "sr_checksum": sink.digests.record(), "status": COMPLETE})
    if not sink.owns_array():
        # a newer attempt recreated the group between the check and the marker, which then replaced its document:
        # take the marker back (the newer attempt's writer stops at the foreign token), so that the pair is redone
        # by the next run rather than left "complete" over another attempt's arrays
        sink.group.attrs["status"] = RUNNING
        raise Superseded(f"{sink.group.path}: taken over by a newer attempt while completing; left to be redone")


def _stored_attempt(store: Any, key: str) -> str | None:
    """The ``attempt`` attribute of the Zarr v3 document at ``key``, read straight from the store (one small read,
    no Group or Array object, whose attrs would be cached); None when the document is gone."""
    raw = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if raw is None else json.loads(raw.to_bytes()).get("attributes", {}).get("attempt")


def fail_pair(store: str, key: str, model: str, attrs: Mapping[str, Any], error: str) -> None:
    """Record a failed (image, model) pair: a fresh group holding ``attrs``, ``status: failed`` and ``error``."""
    _recreate(store, key, model, {**attrs, "status": FAILED, "error": error, "attempt": uuid.uuid4().hex})
