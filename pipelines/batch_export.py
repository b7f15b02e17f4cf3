"""The export graph: one task per complete (image, model) pair of a store, on the Dask cluster; the same task after
each pair of an ``odisr run --export-dir``.

``plan_exports`` (driver) lists the complete pairs (``--model``/``--only`` filters), skips those whose output is
already complete (:attr:`odisr.export.Target.complete`) unless overwriting, and names filters that matched nothing.
``export_task`` (worker) opens the store read-only and runs :func:`odisr.export.export_pair`; an export that
cannot be made (an encoder limit, a non-ERP pair for cube maps) comes back as a failed :class:`ExportResult` naming
why, so the other pairs still export. ``run_exports`` submits them (``retries=1``: a dead worker), shows a progress
bar and tallies an :class:`ExportSummary`. The store is never written: exports run alongside a ``run`` writing it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from odisr.export import ExportError, ExportRequest, export_pair, output_name, target
from pipelines import store as st

log = logging.getLogger(__name__)

EXPORTED, FAILED, SKIPPED = "exported", "failed", "skipped"
RETRIES = 1


@dataclass(frozen=True)
class ExportTask:
    """One pair to export: ``store`` path, image ``key``, ``model``, its ``source`` (for messages), where to."""

    store: str
    key: str
    model: str
    source: str
    out_dir: str
    request: ExportRequest

    @property
    def name(self) -> str:
        return output_name(self.key, self.model)


@dataclass(frozen=True)
class ExportResult:
    """What an export task reports: ``status`` exported / failed / skipped, the error, the files written."""

    task: ExportTask
    status: str
    error: str | None = None
    files: int = 0
    seconds: float = 0.0


@dataclass
class ExportSummary:
    """The outcome of an export: counts, wall time and ``failures`` as ``(source, model, error)``."""

    exported: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def line(self) -> str:
        took = f" in {self.seconds:.1f} s" if self.seconds else ""  # exports during a run take the run's time
        return f"{self.exported} exported, {self.failed} failed, {self.skipped} skipped{took}"

    def add(self, result: ExportResult) -> None:
        if result.status == EXPORTED:
            self.exported += 1
        elif result.status == FAILED:
            self.failed += 1
            self.failures.append((result.task.source, result.task.model, result.error or ""))
            log.error("export of %s [%s] failed: %s", result.task.source, result.task.model, result.error)
        else:
            self.skipped += 1


# ---------------------------------------------------------------------------------------------------- driver side


def plan_exports(
    store: str,
    out_dir: str,
    request: ExportRequest,
    *,
    models: Iterable[str] = (),
    only: Iterable[str] = (),
    overwrite: bool = False,
    exclude: Iterable[tuple[str, str]] = (),
) -> tuple[list[ExportTask], int, list[str]]:
    """The pairs of ``store`` to export: complete, of one of ``models`` and image keys ``only`` (empty: all), not
    among the ``(key, model)`` pairs ``exclude``.

    Returns ``(tasks, skipped, unmatched)``: ``skipped`` counts pairs whose output is already complete (never when
    ``overwrite``) or that are not complete in the store (logged); ``unmatched`` lists the ``models`` and ``only``
    values that match no pair of the store.

    Raises:
        pipelines.store.StoreError: ``store`` is not an odisr store.
    """
    root = st.open_store(store, create=False)
    models, only, exclude = set(models), set(only), set(exclude)
    pairs = [(key, model, dict(group.attrs)) for key, image in sorted(root["images"].groups())
             for model, group in sorted(image.groups())]  # fmt: skip
    unmatched = sorted(models - {m for _, m, _ in pairs}) + sorted(only - {k for k, _, _ in pairs})
    tasks, skipped = [], 0
    for key, model, attrs in pairs:
        if (models and model not in models) or (only and key not in only) or (key, model) in exclude:
            continue
        task = ExportTask(store, key, model, str(attrs.get("source", key)), out_dir, request)
        if attrs.get("status") != st.COMPLETE:
            log.warning("%s [%s]: %s in the store, not exported", task.source, model, attrs.get("status"))
            skipped += 1
        elif not overwrite and target(out_dir, key, model, request).complete:
            log.info("%s [%s]: already exported", task.source, model)
            skipped += 1
        else:
            tasks.append(task)
    return tasks, skipped, unmatched


def submit_export(client: Client, task: ExportTask, after: Future | None = None) -> Future:
    """Submit ``task``; with ``after`` (a pair future of ``odisr run``) it runs once that pair is done."""
    return client.submit(export_task, task, after, key=f"export-{task.name}-{uuid.uuid4().hex[:8]}", retries=RETRIES)


def run_exports(client: Client, tasks: list[ExportTask], *, progress: bool = True) -> ExportSummary:
    """Export ``tasks`` on ``client``'s cluster, in parallel over pairs; returns the summary."""
    start = time.perf_counter()
    summary = collect_exports({submit_export(client, t): t for t in tasks}, progress=progress)
    summary.seconds = time.perf_counter() - start
    return summary


def collect_exports(futures: Mapping[Future, ExportTask], *, progress: bool = True) -> ExportSummary:
    """Wait for export futures (progress bar on stderr), tallying results; a task that raised is a failure."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    summary = ExportSummary()
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        exports = bar.add_task("exports", total=len(futures))
        for future in as_completed(list(futures)):
            summary.add(_result_of(future, futures[future]))
            bar.advance(exports)
    return summary


class AfterRun:
    """Export tasks for ``odisr run --export-dir``: one after each pair task of the run (:meth:`after`, called as the
    run submits it; the export starts as soon as that pair is done), and, from the start, one for each pair of the
    run's ``models`` × image ``keys`` already complete in the store but not exported yet (a resumed run).
    ``running``: the ``(key, model)`` pairs the run will compute (not exported from the store now).
    """

    def __init__(
        self,
        client: Client,
        store: str,
        out_dir: str,
        request: ExportRequest,
        *,
        running: Iterable[tuple[str, str]],
        models: Iterable[str],
        keys: Iterable[str],
    ) -> None:
        self.client, self.store, self.out_dir, self.request = client, store, out_dir, request
        earlier, _, _ = plan_exports(store, out_dir, request, models=models, only=keys, exclude=list(running))
        self.exports: dict[Future, tuple[Future | None, ExportTask]] = {
            submit_export(client, task): (None, task) for task in earlier
        }

    def after(self, pair: Future, key: str, model: str, source: str) -> None:
        """Submit the export of pair ``(key, model)`` (from ``source``) to run once the ``pair`` future is done."""
        task = ExportTask(self.store, key, model, source, self.out_dir, self.request)
        self.exports[submit_export(self.client, task, after=pair)] = (pair, task)

    def collect(self, *, progress: bool) -> ExportSummary:
        """Wait for the export tasks. Those after a pair task that raised are left out: the run reports that
        pair's failure, there is nothing to export."""
        live = {future: task for future, (pair, task) in self.exports.items() if pair is None or pair.status != "error"}
        return collect_exports(live, progress=progress)


def _result_of(future: Future, task: ExportTask) -> ExportResult:
    if future.status != "error":
        return future.result()
    exc = future.exception()
    lines = str(exc).strip().splitlines()
    return ExportResult(task, FAILED, f"{type(exc).__name__}: {lines[0] if lines else ''}")


# ---------------------------------------------------------------------------------------------------- worker side


def export_task(task: ExportTask, after: Any = None) -> ExportResult:
    """Export one pair (read-only on the store). ``after``: the result of the ``odisr run`` pair it waited for;
    anything but a complete pair is skipped."""
    if after is not None and getattr(after, "status", st.COMPLETE) != st.COMPLETE:
        return ExportResult(task, SKIPPED, f"pair {getattr(after, 'status', '?')}")
    start = time.perf_counter()
    try:
        import zarr

        group = zarr.open_group(task.store, path=st.pair_path(task.key, task.model), mode="r")
        where = target(task.out_dir, task.key, task.model, task.request)
        files = export_pair(group[st.SR], group.attrs.asdict(), where, task.request, task.name)
    except (ExportError, OSError, KeyError) as exc:  # a limit, a full disk, a pair without pixels…
        return ExportResult(task, FAILED, f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
    log.info("exported %s: %d files", task.name, len(files))
    return ExportResult(task, EXPORTED, files=len(files), seconds=time.perf_counter() - start)


def viewer_for(out_dir: str, request: ExportRequest, js: str | None, css: str | None) -> ExportRequest:
    """``request`` with ``index.html`` loading a local Pannellum (copied into ``out_dir/viewer/``) when ``js`` is
    given; unchanged otherwise (the CDN)."""
    if js is None:
        return request
    from odisr.export.viewer import install_viewer

    return replace(request, viewer=install_viewer(Path(out_dir), Path(js), Path(css) if css else None))
