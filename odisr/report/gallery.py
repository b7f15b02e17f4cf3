"""The preview files of an HTML report: for every complete (image, model) result, its stored ``preview`` as a JPEG
and a small thumbnail, written next to the HTML in ``<report>_files/`` (``report.html`` → ``report_files/``).

* ``previews/<image>--<model>--<attempt>.jpg``: the store's preview (≤ 1024 px wide), JPEG quality 90;
* ``thumbs/<same name>``: :data:`THUMB_WIDTH` px wide, JPEG quality 80 (previews that are no wider than a thumbnail
  serve as their own thumbnail).

File names carry the token of the attempt that wrote the result, so a file is made once and reused by every later
report until the result is recomputed (then the stale file is deleted): after ``odisr run --report`` on a growing
archive only the new results are read. Reading a preview costs ~1.5 ms of zarr overhead plus decoding and encoding;
from :data:`PARALLEL_FROM` missing files on, worker processes share the work (one per core, at most
:data:`MAX_WORKERS`). Files are written under a temporary name and renamed, so an interrupted report never leaves a
truncated image that a later one would reuse.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from odisr.report.reading import read_arrays
from odisr.report.tables import ImageRow, StoreReport

__all__ = ["THUMB_WIDTH", "Gallery", "PreviewFiles", "files_dir", "write_gallery"]

log = logging.getLogger(__name__)

THUMB_WIDTH = 320  # px
PREVIEW_QUALITY, THUMB_QUALITY = 90, 80
PARALLEL_FROM = 2000
MAX_WORKERS = 8
_PREVIEWS, _THUMBS = "previews", "thumbs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PreviewFiles:
    """The files of one result, as paths relative to the HTML's folder (``/``-separated)."""

    thumb: str
    full: str


@dataclass(frozen=True)
class Gallery:
    """The preview files of a report: ``files`` per (image, model); ``errors`` the results whose preview could not
    be read (with the reason); ``written``/``reused``/``removed``: files made now, kept from an earlier report,
    deleted as stale; ``thumb_bytes``/``full_bytes``: total size of the thumbnails and of the full previews."""

    directory: Path
    files: Mapping[tuple[str, str], PreviewFiles]
    errors: Mapping[tuple[str, str], str]
    written: int
    reused: int
    removed: int
    thumb_bytes: int
    full_bytes: int


def files_dir(html: str | Path) -> Path:
    """The folder next to ``html`` that holds its files: ``out/report.html`` → ``out/report_files``."""
    html = Path(html)
    return html.with_name(f"{html.stem}_files")


def _token(row: ImageRow) -> str:
    """What identifies the stored result: its attempt token, else a digest of its recorded facts."""
    if row.attempt:
        return _UNSAFE.sub("_", row.attempt)[:12]
    return hashlib.sha1(repr((row.source, row.seconds, row.sr_width, row.sr_height)).encode()).hexdigest()[:12]


def _file_name(row: ImageRow) -> str:
    image, model = (_UNSAFE.sub("_", t).strip("._")[:80] or "_" for t in (row.image, row.model))
    return f"{image}--{model}--{_token(row)}.jpg"


def _thumb_size(width: int, height: int) -> tuple[int, int]:
    return THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width))


def _save(image: Image.Image, path: Path, quality: int) -> int:
    """Write ``image`` as JPEG to ``path`` atomically (temporary name, then rename); returns the file size."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, "JPEG", quality=quality)
    os.replace(tmp, path)
    return path.stat().st_size


def _make(preview: np.ndarray, full: Path, thumb: Path) -> None:
    """The JPEG of ``preview`` ((h, w, 3) uint8) and, when it is wider than a thumbnail, its thumbnail."""
    if preview.ndim != 3 or preview.shape[2] != 3 or preview.dtype != np.uint8:
        raise ValueError(f"preview is {preview.shape} {preview.dtype}, expected (h, w, 3) uint8")
    image = Image.fromarray(preview)
    _save(image, full, PREVIEW_QUALITY)
    if thumb != full:
        small = image if image.width <= THUMB_WIDTH else image.resize(_thumb_size(*image.size), Image.Resampling.BOX)
        _save(small, thumb, THUMB_QUALITY)


@lru_cache(maxsize=4)
def _open(store: str) -> zarr.Group:
    return zarr.open_group(store, mode="r")


Job = tuple[str, str, str, str]  # image, model, full path, thumb path
BATCH = 64  # previews read at once (≤ 64 × 1.5 MB in memory)


def _make_all(root: zarr.Group, jobs: Sequence[Job]) -> list[str | None]:
    """Make the files of ``jobs``; per job None, or the reason its preview could not be read or written."""
    out: list[str | None] = []
    for start in range(0, len(jobs), BATCH):
        batch = jobs[start : start + BATCH]
        previews = read_arrays(root, [f"images/{image}/{model}/preview" for image, model, _, _ in batch])
        for (image, model, full, thumb), preview in zip(batch, previews):
            try:
                if isinstance(preview, Exception):
                    raise preview
                _make(preview, Path(full), Path(thumb))
                out.append(None)
            except Exception as exc:  # noqa: BLE001  one unreadable preview must not sink the report
                log.warning("preview of %s/%s not written: %s", image, model, exc)
                out.append(f"{type(exc).__name__}: {exc}")
    return out


def _make_in_worker(store: str, jobs: Sequence[Job]) -> list[str | None]:
    return _make_all(_open(store), jobs)


def _run(report: StoreReport, jobs: list[Job], workers: int | None) -> list[str | None]:
    n = min(MAX_WORKERS, os.cpu_count() or 1) if workers is None else max(1, workers)
    if report.group is None:
        raise ValueError(f"{report.path}: store not open")
    if len(jobs) < PARALLEL_FROM or n == 1:
        return _make_all(report.group, jobs)
    chunks = [jobs[i :: n * 4] for i in range(n * 4)]  # interleaved: equal work per chunk
    # spawn, not fork: this process runs zarr's event-loop thread, which a forked child would inherit broken
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_make_in_worker, [report.path] * len(chunks), chunks))
    by_job = {job: r for chunk, rs in zip(chunks, results) for job, r in zip(chunk, rs)}
    return [by_job[job] for job in jobs]


def _remove_stale(directory: Path, keep: set[Path]) -> int:
    removed = 0
    for sub in (_PREVIEWS, _THUMBS):
        for path in (directory / sub).glob("*.jpg"):
            if path not in keep:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def write_gallery(report: StoreReport, directory: str | Path, *, workers: int | None = None) -> Gallery:
    """Write (or reuse) the preview files of every complete result of ``report`` that has a ``preview`` into
    ``directory`` (created), delete stale ones, and return where they are relative to ``directory``'s parent.

    ``workers``: processes for the missing files (default: one per core up to :data:`MAX_WORKERS`, used from
    :data:`PARALLEL_FROM` missing files on).

    Raises:
        OSError: ``directory`` cannot be created or written.
    """
    directory = Path(directory)
    for sub in (_PREVIEWS, _THUMBS):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    base = directory.name
    paths: dict[tuple[str, str], tuple[Path, Path]] = {}
    for row in report.complete:
        if "preview" not in row.arrays:
            continue
        name = _file_name(row)
        small = row.sr_width is not None and row.sr_width <= THUMB_WIDTH
        full = directory / _PREVIEWS / name
        paths[row.image, row.model] = (full, full if small else directory / _THUMBS / name)
    missing = [(k, f, t) for k, (f, t) in paths.items() if not (f.is_file() and t.is_file())]
    jobs = [(image, model, str(f), str(t)) for (image, model), f, t in missing]
    results = _run(report, jobs, workers) if jobs else []
    errors = {(job[0], job[1]): error for job, error in zip(jobs, results) if error is not None}
    def link(path: Path) -> str:
        return f"{base}/{path.relative_to(directory).as_posix()}"

    files = {key: PreviewFiles(link(t), link(f)) for key, (f, t) in paths.items() if key not in errors}
    kept = {p for key, pair in paths.items() if key not in errors for p in pair}
    removed = _remove_stale(directory, kept)
    fulls = {f for key, (f, _) in paths.items() if key not in errors}
    return Gallery(directory, files, errors, written=len(jobs) - len(errors), reused=len(paths) - len(jobs),
                   removed=removed, thumb_bytes=_size(kept - fulls), full_bytes=_size(fulls))  # fmt: skip
