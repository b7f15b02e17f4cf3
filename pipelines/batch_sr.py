"""The batch graph: enumerate → decode → (degrade) → tiled inference → region writes into the store → metrics.

One Dask graph per run, two tasks per image:

``decode-<key>``          reads the source's bytes on a worker, decodes them (:func:`odisr.io.read_image`), checks the
                          2:1 ERP shape in odi mode and, when evaluating, makes the LR (:func:`odisr.degrade.degrade`
                          or the file matched in ``--lr-dir``). Bad input becomes a :class:`Decoded` carrying the
                          error, not an exception, so it is recorded rather than retried.
``sr-<key>-<model>``      one per (image, model): owns the group ``images/<key>/<model>``; recreates it
                          (``status: running``), streams the engine's tiles into its ``sr`` array
                          (:func:`odisr.inference.upscale` with ``sink=``: writer threads compress and store tile k
                          while the network computes tile k + 1, :class:`pipelines.store.RegionSink`), writes the
                          preview summed from those tiles (and the attention map), scores against the HR when
                          evaluating, and writes ``status: complete`` last. It asks for ``resources={"GPU": 1}`` on
                          CUDA and gets ``retries=2`` (a dead worker or a crash is retried from scratch). The model
                          comes from the per-process cache (:func:`pipelines.cluster.get_model`), loaded and warmed
                          when the worker joined (:func:`warm_up`).

One task per (image, model) is the unit of parallelism: on the test panoramas, 4 images on 2 single-threaded
workers keep both busy (see ``benchmarks/bench_pipeline.py``); splitting an image into row bands was not needed.

The driver (:func:`run_job`) decides what to skip (:func:`pipelines.store.resume_action`), has every worker warm its
models, submits a few images per inference slot at a time (so decoding runs ahead of inference on the workers' other
threads, but memory stays bounded on any archive size), shows a progress bar (pairs, and output megapixels reported by
the workers as tiles land), records failures that escaped the tasks, and appends the run record with its summary to
the store's root attrs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, as_completed, get_worker

import odisr
from odisr.sources import Source, dataset_name, find_sources, slugify
from pipelines import store as st
from pipelines.cluster import (
    ClusterError, ModelRef, WarmUp, describe, device_lock, get_model, in_flight, inference_resources,
)  # fmt: skip

log = logging.getLogger(__name__)

RETRIES = 2
PROGRESS_TOPIC = "odisr-progress"
WHOLE_IMAGE_CHUNK = 512  # sr chunk edge (output pixels) when the engine runs whole-image (tile None)


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Settings:
    """How every pair of a run is computed (the resolved config).

    ``tile``/``halo`` in LR pixels (None: whole image / the engine's default halo; ``tile="auto"``: chosen per image
    from the worker's free device memory, :func:`odisr.inference.auto_tiling`); ``degrade`` is None for
    ``odisr run`` and ``"bicubic"``, ``"fisheye"`` or ``"lr-dir"`` for ``odisr evaluate``. ``dataset`` names the
    benchmark every image of the run belongs to (a report column); None: each image's own folder
    (:func:`odisr.sources.dataset_name`).
    """

    scale: int
    mode: str = "odi"
    tile: int | str | None = 64
    halo: int | None = None
    ratio: float | None = None
    device: str = "cpu"
    batch_size: int = 4
    amp: bool | str = False
    degrade: str | None = None
    dataset: str | None = None
    compile: bool = False


@dataclass(frozen=True)
class ModelChoice:
    """A model as resolved by the driver: its store name, what workers load (``load_name``: a registry name or a
    checkpoint path; ``weights``: the weight file used, None for weight-free models), and the facts recorded per
    pair. ``ratio`` is None for models that are not content-aware (the ratio does not apply to them).
    ``madds_720p``: multiply-adds of one forward pass at the lightweight-SR tables' size (see :func:`madds_720p`),
    None when not counted."""

    name: str
    load_name: str
    weights: str | None
    ratio: float | None
    architecture: str
    scale: int
    window_size: int
    content_aware: bool
    weights_sha256: str | None
    params: int
    flops_per_lr_pixel: float | None
    madds_720p: float | None = None

    def ref(self, device: str, compile: bool = False) -> ModelRef:
        """The per-process model cache key on ``device`` (``compile``: a TorchInductor-compiled model)."""
        weights = None if self.load_name == self.weights else self.weights  # a checkpoint path loads by itself
        return ModelRef(self.load_name, weights, device, self.ratio, compile)


@dataclass(frozen=True)
class Pair:
    """One (image, model) unit of work. ``planned_over``: the attempt token of the pair when the driver planned it,
    if it was complete then (None otherwise), so that the task leaves alone a pair another run completed since."""

    key: str
    source: str
    model: ModelChoice
    settings: Settings
    store: str
    planned_over: str | None = None

    @property
    def attrs(self) -> dict[str, Any]:
        """The attrs known before the pair runs (includes every :data:`pipelines.store.CONFIG_KEYS`)."""
        m, s = self.model, self.settings
        return {
            "source": self.source,
            "model": m.name,
            "architecture": m.architecture,
            "weights": m.weights,
            "weights_sha256": m.weights_sha256,
            "scale": m.scale,
            "ratio": m.ratio,
            "mode": s.mode,
            "tile": s.tile,
            "halo": s.halo,
            "device": s.device,
            "degrade": s.degrade,
            "dataset": s.dataset or dataset_name(self.source),
            "params": m.params,
            "flops_per_lr_pixel": m.flops_per_lr_pixel,
            "madds_720p": m.madds_720p,
            "odisr_version": odisr.__version__,
        }

    def chunk(self, tile: int | None) -> int:
        """Edge of the ``sr`` chunks for the engine's ``tile`` (resolved, LR px): the window-aligned tile times the
        scale, so that each tile's output is exactly one chunk (:data:`WHOLE_IMAGE_CHUNK` for the whole image)."""
        if tile is None:
            return WHOLE_IMAGE_CHUNK
        from odisr.inference.tiling import effective_tile

        return effective_tile(tile, self.model.window_size) * self.model.scale


@dataclass(frozen=True)
class Decoded:
    """A decoded input: the LR to super-resolve, the HR reference (evaluate) or the reason it is unusable, and what
    the source file carried besides pixels (:func:`odisr.io.read_metadata`; the pair attr ``source_metadata``)."""

    lr: np.ndarray | None
    hr: np.ndarray | None = None
    sha256: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class PairResult:
    """What a pair task reports to the driver (``status``: complete, failed or superseded)."""

    key: str
    model: str
    status: str
    error: str | None = None
    megapixels: float = 0.0


@dataclass
class Summary:
    """The outcome of a run. ``seconds``: wall time of the whole run, of which ``warmup_seconds`` went to loading
    and warming the models in the workers before the first image (:func:`warm_workers`); ``output_megapixels``:
    SR output pixels of the completed pairs; ``megapixels_per_s``: those over the time after the warm-up
    (``seconds − warmup_seconds``), the rate at which a warm cluster works through the images."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    megapixels_per_s: float = 0.0
    warmup_seconds: float = 0.0
    output_megapixels: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (source, model, error)
    exports: Any = None  # pipelines.batch_export.ExportSummary of `run --export-dir` (not in the run record)

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        return (
            f"{self.done} done, {self.failed} failed, {self.skipped} skipped (image × model) in {self.seconds:.1f} s "
            f"({self.megapixels_per_s:.2f} output Mpx/s after {self.warmup_seconds:.1f} s of model warm-up)"
        )

    def record(self) -> dict[str, Any]:
        """The ``summary`` stored in the run record."""
        return {k: v for k, v in asdict(self).items() if k not in ("failures", "exports")}


@dataclass(frozen=True)
class Job:
    """Everything one run needs. ``lr_sources`` maps image keys to their LR files (``evaluate --lr-dir``);
    ``export``: ``(folder, odisr.export.ExportRequest)`` to export each pair as it completes (``run --export-dir``)."""

    sources: list[Source]
    store: str
    models: list[ModelChoice]
    settings: Settings
    command: str = ""
    overwrite: bool = False
    lr_sources: Mapping[str, Source] | None = None
    export: tuple[str, Any] | None = None


# ---------------------------------------------------------------------------------------------------- driver side


def canonical_model_name(name: str, scale: int | None) -> str:
    """``name``, or ``name-x<scale>`` when only that is registered (``bicubic`` → ``bicubic-x4``)."""
    from odisr.models import available

    return f"{name}-x{scale}" if name not in available() and f"{name}-x{scale}" in available() else name


def resolve_model(
    name: str, *, weights: str | Path | None, scale: int | None, ratio: float | None, madds: bool = False
) -> ModelChoice:
    """Load ``name`` once in the driver (on CPU) to validate it and record its facts, before any work starts.

    ``name`` is a registered model, a registered family without its ``-x<scale>`` suffix (``bicubic`` →
    ``bicubic-x4``), or a checkpoint path (its architecture detected; stored under the file's slugged stem).
    ``scale`` (None: any) must match the model's. ``madds``: also count :func:`madds_720p` (a forward pass at
    1280×720 output for models without an analytic count, so only lightweight evaluations ask for it).

    Raises:
        FileNotFoundError, KeyError, odisr.models.weights.WeightsError: from :func:`odisr.models.load`.
        ValueError: the model's scale is not ``scale``.
    """
    from odisr.models import available, get_spec, load
    from odisr.models.weights import ensure_weights

    name = canonical_model_name(name, scale)
    with warnings.catch_warnings():  # a ratio is meaningless for non-content-aware models: recorded as None
        warnings.filterwarnings("ignore", message=r"ratio=.* ignored", category=UserWarning)
        model = load(name, weights=weights, device="cpu", ratio=ratio)
    if scale is not None and model.scale != scale:
        raise ValueError(f"model {name} is ×{model.scale} but the run asks for ×{scale}; fix --scale or --model")
    registered = name in available()
    path = weights if weights is not None else (ensure_weights(get_spec(name)) if registered else name)
    weights_str = str(Path(path).resolve()) if path is not None else None
    return ModelChoice(
        name=name if registered else slugify(Path(name).name),
        load_name=name if registered else weights_str,
        weights=weights_str,
        ratio=ratio if model.content_aware else None,
        architecture=model.architecture,
        scale=model.scale,
        window_size=model.window_size,
        content_aware=model.content_aware,
        weights_sha256=_file_sha256(path) if path is not None else None,
        params=model.num_params,
        flops_per_lr_pixel=_flops_per_pixel(model),
        madds_720p=madds_720p(model) if madds else None,
    )


def _file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _flops(model: Any, h: int, w: int) -> int | None:
    """FLOPs (2 per multiply-add) of one forward pass on an ``h × w`` LR input; None (logged) when not countable."""
    try:
        return model.flops(h, w)
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        log.info("no FLOP count for %s: %s", model.architecture, exc)
        return None


def _flops_per_pixel(model: Any, size: int = 64) -> float | None:
    """FLOPs per LR pixel on a ``size``² input; None when the model cannot count them."""
    flops = _flops(model, size, size)
    return None if flops is None else flops / size**2


def madds_720p(model: Any) -> float | None:
    """#MAdds as the lightweight-SR tables count them: ``model.flops(720 // s, 1280 // s) / 2``, the multiply-adds
    of one forward pass producing a 1280×720 HR output at scale s (LR 320×180 at ×4). None when not countable."""
    flops = _flops(model, 720 // model.scale, 1280 // model.scale)
    return None if flops is None else flops / 2


def plan(job: Job, root: Any) -> tuple[list[tuple[Source, list[Pair]]], int]:
    """The pairs to compute, grouped by source, and the number skipped as already complete."""
    todo, skipped = [], 0
    for source in job.sources:
        pairs = []
        for model in job.models:
            recorded = st.pair_attrs(root, source.key, model.name)
            attempt = recorded.get("attempt") if recorded and recorded.get("status") == st.COMPLETE else None
            pair = Pair(source.key, source.name, model, job.settings, job.store, attempt)
            run, why = (True, "--overwrite") if job.overwrite else st.resume_action(recorded, pair.attrs)
            quiet = why in ("new", "complete", "--overwrite")  # the others are redone unexpectedly: say so
            (log.info if quiet else log.warning)("%s [%s]: %s", source.name, model.name, why)
            if run:
                pairs.append(pair)
            else:
                skipped += 1
        if pairs:
            todo.append((source, pairs))
    return todo, skipped


def run_job(job: Job, client: Client, *, progress: bool = True) -> Summary:
    """Run ``job`` on ``client``'s cluster, recording everything in ``job.store``; returns the summary.

    Raises:
        pipelines.cluster.ClusterError: the scheduler was lost (or cancelled the work) mid-run; what completed is
            in the store and the run record stays unfinished, so re-running the same command resumes.
    """
    start = time.perf_counter()
    root = st.open_store(job.store)
    config = asdict(job.settings) | {"models": [m.name for m in job.models]}
    run_id = st.record_run(root, job.command, config, device=job.settings.device, **describe(client))
    todo, skipped = plan(job, root)
    for source, _ in todo:
        st.require_group(root, f"images/{source.key}")
    summary = Summary(skipped=skipped)
    if todo:
        summary.warmup_seconds = warm_workers(client, job)
    topic = f"{PROGRESS_TOPIC}-{uuid.uuid4().hex[:8]}"
    exports = _exports_after_run(client, job, todo)
    feeder = _Feeder(client, job, todo, topic, after=None if exports is None else exports.after)
    summary.output_megapixels = _collect(client, feeder, summary, topic, progress=progress)
    if exports is not None:
        summary.exports = exports.collect(progress=progress)
    summary.seconds = time.perf_counter() - start
    working = summary.seconds - summary.warmup_seconds
    summary.megapixels_per_s = summary.output_megapixels / working if working > 0 else 0.0
    st.finish_run(root, run_id, summary.record())
    return summary


def warm_workers(client: Client, job: Job) -> float:
    """Load and warm the job's models in every worker — now, and in any worker that joins later (a restarted one)
    — before the first image (:class:`pipelines.cluster.WarmUp` running :func:`warm_up`); returns the seconds the
    driver waited for the workers present now."""
    start = time.perf_counter()
    client.register_plugin(WarmUp(warm_up, job.settings, tuple(job.models)))
    return time.perf_counter() - start


class _Feeder:
    """Submits the graph source by source, keeping at most :func:`pipelines.cluster.in_flight` sources (a decode
    task and its pair tasks each) on the cluster, so decoding runs a few images ahead of inference (beside it, on
    the workers' other threads) but never the whole archive ahead (decoded images wait in worker memory).
    ``after(future, key, model, source)`` is called for each pair task submitted (``run --export-dir``)."""

    def __init__(
        self,
        client: Client,
        job: Job,
        todo: list[tuple[Source, list[Pair]]],
        topic: str,
        after: Callable[[Any, str, str, str], None] | None = None,
    ) -> None:
        self.client, self.job, self.topic, self.after = client, job, topic, after
        self.total = sum(len(pairs) for _, pairs in todo)
        self.pairs: dict[Any, Pair] = {}  # pair future → pair, until collected
        self._todo = iter(todo)
        self._left: dict[str, int] = {}  # source key on the cluster → its pairs not yet finished
        self._resources = inference_resources(job.settings.device)
        self._token = uuid.uuid4().hex[:8]

    def refill(self) -> list[Any]:
        """Submit sources until :func:`in_flight` are on the cluster; returns the new pair futures."""
        new: list[Any] = []
        limit = in_flight(self.client, self.job.settings.device)  # asked each time: the cluster may have grown
        while len(self._left) < limit and (item := next(self._todo, None)) is not None:
            new += self._submit(*item)
        return new

    def finished(self, future: Any) -> list[Any]:
        """Forget a collected pair future; returns the futures submitted in its place (when its source is done)."""
        key = self.pairs.pop(future).key
        self._left[key] -= 1
        if self._left[key]:
            return []
        del self._left[key]
        return self.refill()

    def _submit(self, source: Source, pairs: list[Pair]) -> list[Any]:
        lr_source = (self.job.lr_sources or {}).get(source.key)
        decoded = self.client.submit(
            decode, source, self.job.settings, lr_source, key=f"decode-{source.key}-{self._token}", retries=RETRIES
        )
        self._left[source.key] = len(pairs)
        futures = []
        for pair in pairs:
            futures.append(self.client.submit(
                super_resolve, pair, decoded, self.topic,
                key=f"sr-{source.key}-{pair.model.name}-{self._token}", resources=self._resources, retries=RETRIES,
            ))  # fmt: skip
            self.pairs[futures[-1]] = pair
            if self.after is not None:
                self.after(futures[-1], pair.key, pair.model.name, pair.source)
        return futures


def _exports_after_run(client: Client, job: Job, todo: list[tuple[Source, list[Pair]]]) -> Any:
    """``run --export-dir``: a :class:`pipelines.batch_export.AfterRun` (None without ``--export-dir``)."""
    if job.export is None:
        return None
    from pipelines.batch_export import AfterRun

    running = [(source.key, pair.model.name) for source, pairs in todo for pair in pairs]
    models, keys = [m.name for m in job.models], [s.key for s in job.sources]
    return AfterRun(client, job.store, *job.export, running=running, models=models, keys=keys)


def _collect(client: Client, feeder: _Feeder, summary: Summary, topic: str, *, progress: bool) -> float:
    """Submit through ``feeder`` and wait for the pair futures, filling ``summary``; returns the output megapixels
    of completed pairs."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    count = TextColumn("{task.completed:,.0f}/{task.total:,.0f}")
    columns = (TextColumn("{task.description:>10}"), BarColumn(), count, TimeRemainingColumn())
    megapixels = 0.0
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        pairs_task = bar.add_task("pairs", total=feeder.total)
        pixels_task = bar.add_task("output px", total=0)

        def on_event(event: tuple[float, dict[str, int]]) -> None:  # runs in the client's event-loop thread
            msg = event[1]
            if "total" in msg:
                bar.update(pixels_task, total=bar.tasks[pixels_task].total + msg["total"])
            else:
                bar.advance(pixels_task, msg["done"])

        client.subscribe_topic(topic, on_event)
        try:
            running = as_completed(feeder.refill())
            for future in running:
                if future.cancelled():
                    raise ClusterError(_cancelled(client, future))
                pair = feeder.pairs[future]
                megapixels += _tally(summary, _result_of(future, pair), pair)
                bar.advance(pairs_task)
                running.update(feeder.finished(future))
        finally:
            if client.status == "running":  # else unsubscribing would wait for the lost scheduler
                client.unsubscribe_topic(topic)
    return megapixels


def _cancelled(client: Client, future: Any) -> str:
    """Why a pair's future was cancelled (by Dask: the client lost its scheduler, or the scheduler dropped it)."""
    try:
        future.result()
        reason = "cancelled"
    except CancelledError as exc:
        reason = _one_line(exc)
    address = getattr(client.scheduler, "address", "?")
    return (
        f"the Dask scheduler {address} stopped the run ({reason}); the pairs completed so far are in the store: "
        f"start the scheduler again and re-run the same command to resume"
    )


def _result_of(future: Any, pair: Pair) -> PairResult:
    """The task's result, or a failure recorded by the driver when the task raised (after its retries)."""
    if future.status != "error":
        return future.result()
    exc = future.exception()
    error = f"{type(exc).__name__}: {_one_line(exc)}"
    st.fail_pair(pair.store, pair.key, pair.model.name, pair.attrs, error)
    return PairResult(pair.key, pair.model.name, st.FAILED, error)


def _tally(summary: Summary, result: PairResult, pair: Pair) -> float:
    if result.status == st.COMPLETE:
        summary.done += 1
        return result.megapixels
    if result.status == st.FAILED:
        summary.failed += 1
        summary.failures.append((pair.source, pair.model.name, result.error or ""))
        log.error("%s [%s] failed: %s", pair.source, pair.model.name, result.error)
    else:
        summary.skipped += 1
        log.warning("%s [%s]: taken over by another run; left to it (%s)", pair.source, pair.model.name, result.error)
    return 0.0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------- worker side


def decode(source: Source, settings: Settings, lr_source: Source | None) -> Decoded:
    """Read and decode ``source`` (and make its LR when evaluating); input problems become ``Decoded.error``.

    Run: ``lr`` is the image itself. Evaluate: ``hr`` is the image cropped to a multiple of the scale and ``lr``
    its degradation, or the file ``lr_source`` (``--lr-dir``) with the HR cropped to ``scale ×`` its size.
    """
    from odisr.erp import check_erp
    from odisr.io import read_image, read_metadata

    sha256 = None
    try:
        data = source.open()
        sha256 = hashlib.sha256(data).hexdigest()
        image = read_image(data, name=source.name)
        metadata = read_metadata(data, name=source.name)
        if settings.mode == "odi":
            check_erp(image, name=source.name)
        if settings.degrade is None:
            return Decoded(image, None, sha256, metadata=metadata)
        hr, lr = _make_pair(image, settings, lr_source, source.name)
        return Decoded(lr, hr, sha256, metadata=metadata)
    except (ValueError, OSError) as exc:  # bad input (ImageReadError, NotERPError, SourceError, missing file…)
        return Decoded(None, None, sha256, f"{type(exc).__name__}: {_one_line(exc)}")


def _make_pair(image: np.ndarray, settings: Settings, lr_source: Source | None, name: str) -> tuple[Any, Any]:
    s = settings.scale
    if settings.degrade != "lr-dir":
        from odisr.degrade import degrade

        return degrade(image, s, settings.degrade)
    from odisr.io import read_image

    if lr_source is None:
        raise FileNotFoundError(f"no LR image for {name} in --lr-dir")
    lr = read_image(lr_source.open(), name=lr_source.name)
    h, w = lr.shape[0] * s, lr.shape[1] * s
    if image.shape[0] < h or image.shape[1] < w:
        hr_size = f"{image.shape[1]}×{image.shape[0]}"
        raise ValueError(f"{lr_source.name} ×{s} is {w}×{h}, larger than its HR {name} ({hr_size})")
    return image[:h, :w], lr


def super_resolve(pair: Pair, decoded: Decoded, topic: str | None = None) -> PairResult:
    """The (image, model) task: the only writer of ``images/<key>/<model>`` (see module doc)."""
    name = pair.model.name
    if decoded.error is not None:
        st.fail_pair(pair.store, pair.key, name, {**pair.attrs, "source_sha256": decoded.sha256}, decoded.error)
        return PairResult(pair.key, name, st.FAILED, decoded.error)
    try:
        st.check_not_done_elsewhere(pair.store, pair.key, name, pair.planned_over, pair.attrs)
        model = get_model(pair.model.ref(pair.settings.device, pair.settings.compile))
        tile, batch = _tiling(pair, model, decoded.lr.shape[:2])
        sink = _open_sink(pair, decoded, tile, _reporter(topic))
        results = _infer(pair, model, decoded.lr, sink, tile, batch)
        if decoded.hr is not None:
            results.update(score(decoded.hr, sink.array[...], pair.model.scale))
        st.complete_pair(sink, results)
    except st.Superseded as exc:
        return PairResult(pair.key, name, "superseded", str(exc))
    return PairResult(pair.key, name, st.COMPLETE, megapixels=sink.shape[0] * sink.shape[1] / 1e6)


def _tiling(pair: Pair, model: Any, shape: tuple[int, int]) -> tuple[int | None, int]:
    """The engine's ``(tile, batch_size)`` for this image: the settings', or chosen from the free device memory
    when the tile is ``"auto"`` (:func:`odisr.inference.auto_tiling`)."""
    from odisr.inference import AUTO, auto_tiling

    s = pair.settings
    if s.tile != AUTO:
        return s.tile, s.batch_size  # type: ignore[return-value]
    with device_lock(s.device):  # it measures the free memory: not while the other task's pass holds some
        return auto_tiling(model, *shape, device=s.device, amp=s.amp, halo=s.halo, batch_size=s.batch_size)


def _open_sink(
    pair: Pair, decoded: Decoded, tile: int | None, report: Callable[[dict[str, int]], None]
) -> st.RegionSink:
    """(Re)create the pair's group and its ``sr`` array (chunked by ``tile`` · scale); the sink writes with
    :func:`writer_threads` threads and reports written pixels through ``report``."""
    (h, w), s = decoded.lr.shape[:2], pair.model.scale
    attrs = {**pair.attrs, "source_sha256": decoded.sha256, "source_metadata": decoded.metadata,
             "lr_shape": [h, w], "sr_shape": [h * s, w * s]}  # fmt: skip
    group = st.begin_pair(pair.store, pair.key, pair.model.name, attrs)
    report({"total": h * s * w * s})
    sr = st.create_sr(group, (h * s, w * s), pair.chunk(tile), decoded.lr.dtype)
    return st.RegionSink(group, sr, lambda pixels: report({"done": pixels}), writers=writer_threads())


def _infer(pair: Pair, model: Any, lr: np.ndarray, sink: st.RegionSink, tile: int | None, batch: int) -> dict:
    """Stream the SR of ``lr`` into ``sink`` (writes overlap inference), then write the preview summed from the
    streamed blocks (and, for content-aware models, the attention maps); returns ``{"seconds", "tile_used",
    "batch_size_used"}`` (and ``routing``: per-block statistics, see :mod:`odisr.routing`)."""
    from odisr.inference import upscale
    from odisr.routing import RoutingMaps

    settings, window = pair.settings, pair.model.window_size
    windows = (-(-lr.shape[0] // window), -(-lr.shape[1] // window))
    routing = RoutingMaps(windows) if pair.model.content_aware else None
    with sink:  # leaving it waits for the writer threads (or drops their queue when the engine failed)
        with device_lock(settings.device):  # the other pair task of this GPU stores its result meanwhile
            start = time.perf_counter()
            # tiles stream into the sink as they come; a whole image is handed over after the lock (the sink's
            # bounded buffers would otherwise keep the lock until all but the last few chunks were stored)
            sr = upscale(
                lr, model, mode=settings.mode, tile=tile, halo=settings.halo, device=settings.device,
                batch_size=batch, amp=settings.amp, sink=None if tile is None else sink, routing=routing,
            )  # fmt: skip
        if sr is not None:
            sink[0 : sr.shape[0], 0 : sr.shape[1]] = sr
            del sr
    seconds = time.perf_counter() - start
    st.write_preview(sink.group, sink.preview.result())
    results = {"seconds": seconds, "tile_used": tile, "batch_size_used": batch}
    if routing is None or not routing.filled:
        return results
    st.write_attention(sink.group, routing.fraction())
    st.write_attention_score(sink.group, routing.score())
    return {**results, "routing": routing.stats().to_attrs()}


def writer_threads() -> int:
    """Writer threads of a pair's sink: one per Dask thread of this worker, 2 … 8 (a CPU worker's single thread
    still overlaps encoding with inference; a GPU worker's many threads encode a whole-image result quickly)."""
    try:
        nthreads = get_worker().state.nthreads
    except ValueError:  # not in a worker
        nthreads = os.cpu_count() or 1
    return min(8, max(2, nthreads))


_WARMED: set[tuple[Any, ...]] = set()  # (model ref, shape settings) warmed in this process


def warm_up(settings: Settings, models: tuple[ModelChoice, ...]) -> None:
    """(In a worker, once when it joins) load each model and run the forward passes its images will run, so that
    no image pays the first call's costs: the CUDA context, cuDNN and kernel loading, compilation (3.66 s against
    1.2 s for the first 8K panorama on an H200, ``specs/GPU_MEASUREMENTS.md``).

    On CUDA: one batch of the tile shape (``settings.batch_size`` tiles of ``tile + 2·halo``), or for ``tile: auto``
    the memory probe of :func:`odisr.inference.auto_tiling`; for whole-image inference, whose shape is the image's,
    one small forward. On the CPU, where a first call costs little more than the next, one window-sized forward.
    A model already warmed for these settings in this process (an earlier run on the same cluster) is skipped.
    """
    for choice in models:
        s = settings
        key = (choice.ref(s.device), s.mode, s.tile, s.halo, s.batch_size, s.amp)
        if key not in _WARMED:
            model = get_model(key[0])
            with device_lock(s.device):  # a worker joining mid-run may already have tasks
                _warm_forward(model, choice.window_size, settings)
            _WARMED.add(key)


def _warm_forward(model: Any, window: int, settings: Settings) -> None:
    """The forward pass(es) of :func:`warm_up` for one model, on zero images."""
    from odisr.inference import AUTO, auto_tiling, upscale
    from odisr.inference.tiling import effective_tile

    cuda, tile = settings.device.startswith("cuda"), settings.tile
    if cuda and tile == AUTO:
        auto_tiling(model, 8 * window, 16 * window, device=settings.device, amp=settings.amp, halo=settings.halo)
        return
    t = effective_tile(tile, window) if cuda and isinstance(tile, int) else 4 * window
    batch = settings.batch_size if cuda and isinstance(tile, int) else 1
    upscale(
        np.zeros((t, t * batch, 3), np.uint8), model, mode=settings.mode, tile=t if batch > 1 else None,
        halo=settings.halo, device=settings.device, batch_size=batch, amp=settings.amp,
    )  # fmt: skip


def _reporter(topic: str | None) -> Callable[[dict[str, int]], None]:
    """Sends progress messages (``{"total": pixels}`` / ``{"done": pixels}``) to the driver; no-op outside a worker."""
    try:
        worker = get_worker()
    except ValueError:
        worker = None
    if topic is None or worker is None:
        return lambda msg: None
    return lambda msg: worker.log_event(topic, msg)


def score(hr: np.ndarray, sr: np.ndarray, scale: int) -> dict[str, Any]:
    """Quality of ``sr`` against ``hr`` (both ``(H, W, 3)`` RGB): the ``metrics`` and ``bands`` attrs.

    WS-PSNR / WS-SSIM (Sun et al. 2017; Zhou et al. 2018) and PSNR / SSIM on RGB over the whole image (the ODISR
    convention), plus WS-PSNR, PSNR and SSIM on the BT.601 Y channel with ``crop_border = scale`` (the lightweight
    SR tables' convention); ``bands``: WS-PSNR (dB) in 8 latitude bands from the north pole down.
    """
    from odisr import metrics as m

    values = {
        "ws_psnr": m.ws_psnr(hr, sr),
        "ws_ssim": m.ws_ssim(hr, sr),
        "psnr": m.psnr(hr, sr),
        "ssim": m.ssim(hr, sr),
        "ws_psnr_y": m.ws_psnr(hr, sr, y_channel=True),
        "psnr_y": m.psnr(hr, sr, crop_border=scale, y_channel=True),
        "ssim_y": m.ssim(hr, sr, crop_border=scale, y_channel=True),
    }
    bands = [[float(v) for v in band] for band in m.ws_psnr_bands(hr, sr, n_bands=8)]
    return {"metrics": {k: float(v) for k, v in values.items()}, "bands": bands}


def match_lr_dir(sources: Iterable[Source], lr_dir: str, scale: int) -> dict[str, Source]:
    """LR images for HR ``sources`` found in ``lr_dir`` by file stem: ``<stem>x<scale>.*`` (Set5's
    ``LR_bicubic/X4/babyx4.png``) first, else ``<stem>.*``. Returns ``{HR key: LR source}``; unmatched keys are absent.
    """
    found = {_stem(s.name): s for s in find_sources([lr_dir])}
    matches = {}
    for source in sources:
        stem = _stem(source.name)
        lr = found.get(f"{stem}x{scale}") or found.get(stem)
        if lr is not None:
            matches[source.key] = lr
    return matches


def _stem(name: str) -> str:
    return posixpath.splitext(posixpath.basename(name.split("!")[-1]))[0]
