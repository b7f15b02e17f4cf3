"""Read an odisr Zarr store into per-image rows and per-model aggregates; write them as CSV and JSON.

The pipeline writes one group per (image, model), ``STORE.zarr/images/<key>/<model>/``, whose attrs hold
``status`` ("running" | "complete" | "failed"), ``error``, ``source``, ``model``, ``scale``, ``seconds``,
``metrics`` {ws_psnr, ws_ssim, psnr, ssim, ws_psnr_y, psnr_y, ssim_y}, ``bands`` [[lat_min°, lat_max°, dB], ...],
``lr_shape``/``sr_shape`` [h, w], ``attempt``, optional ``params``/``flops_per_lr_pixel``/``madds_720p``/``dataset``
and ``routing`` (per-block statistics of CAMixer's routing, :mod:`odisr.routing`), next to the arrays ``sr``,
``preview`` and optional ``attention``/``attention_score``. Collecting reads the pairs' metadata only, concurrently
(:mod:`odisr.report.reading`); arrays are read on demand with :meth:`StoreReport.read`. The root's ``runs`` are the
run records (:func:`run_table`).

The views are :class:`Table` records of display strings (with bold cells and footnotes), rendered by the CLI (rich),
the HTML report and :func:`to_markdown`; :func:`lightweight_table` is the lightweight-SR table of the papers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from odisr.report.reading import read_pairs
from odisr.report.runs import RunRecord, run_records
from odisr.routing import SPREAD_THRESHOLD, BlockStats, Granularity, granularity
from odisr.sources import dataset_name

__all__ = [
    "HEADLINE_METRICS",
    "METRICS",
    "DatasetScore",
    "ImageRow",
    "LightweightRow",
    "MetricStats",
    "ModelSummary",
    "NotAStoreError",
    "StoreReport",
    "Table",
    "aggregate_table",
    "collect",
    "compact",
    "comparison_table",
    "failure_table",
    "format_value",
    "headline_markdown",
    "image_table",
    "is_bicubic",
    "lightweight_results",
    "lightweight_table",
    "lightweight_tables",
    "per_image_table",
    "routing_table",
    "routing_verdicts",
    "run_table",
    "status_message",
    "summarize",
    "summary_items",
    "to_json",
    "to_markdown",
    "write_csv",
]

#: Every metric an evaluate run records (dB for the PSNR family, unitless for the SSIM family).
METRICS = ("ws_psnr", "ws_ssim", "psnr", "ssim", "ws_psnr_y", "psnr_y", "ssim_y")
#: The four metrics ODISR papers report, in table order.
HEADLINE_METRICS = ("ws_psnr", "ws_ssim", "psnr", "ssim")
#: Display names.
LABELS = {"ws_psnr": "WS-PSNR", "ws_ssim": "WS-SSIM", "psnr": "PSNR", "ssim": "SSIM",
          "ws_psnr_y": "WS-PSNR (Y)", "psnr_y": "PSNR (Y)", "ssim_y": "SSIM (Y)"}


class NotAStoreError(ValueError):
    """The path is not an odisr Zarr store (missing, not Zarr, or without the ``images`` group)."""


@dataclass(frozen=True)
class ImageRow:
    """One (image, model) result of the store, from the attrs of ``images/<image>/<model>``.

    Metrics are in dB (PSNR family) or unitless (SSIM family); None when not recorded (``odisr run`` without a
    reference, or a failed/running task); +inf when SR equals HR. ``bands`` holds (lat_min°, lat_max°, WS-PSNR dB).
    ``dataset``: the benchmark the image belongs to (recorded by ``odisr evaluate``; for older stores, the folder of
    ``source`` by :func:`odisr.sources.dataset_name`). ``madds_720p``: multiply-adds of one forward pass producing a
    1280×720 output (recorded by lightweight evaluations). ``lr_*``/``sr_*``: input and output size in pixels;
    ``attempt``: the token of the attempt that wrote the result; ``routing``: CAMixer's per-block routing statistics.
    """

    image: str
    model: str
    status: str
    source: str | None = None
    dataset: str = ""
    architecture: str | None = None
    scale: int | None = None
    ratio: float | None = None
    mode: str | None = None
    lr_width: int | None = None
    lr_height: int | None = None
    sr_width: int | None = None
    sr_height: int | None = None
    seconds: float | None = None
    params: int | None = None
    flops_per_lr_pixel: float | None = None
    madds_720p: float | None = None
    ws_psnr: float | None = None
    ws_ssim: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    ws_psnr_y: float | None = None
    psnr_y: float | None = None
    ssim_y: float | None = None
    error: str | None = None
    attempt: str | None = None
    bands: tuple[tuple[float, float, float], ...] = ()
    arrays: frozenset[str] = frozenset()
    routing: BlockStats | None = None

    @property
    def output_megapixels(self) -> float | None:
        """Output pixels / 10⁶ (None when the size was not recorded)."""
        return None if self.sr_width is None or self.sr_height is None else self.sr_width * self.sr_height / 1e6

    @property
    def label(self) -> str:
        """What to call the image: its source path/URL when recorded, else its store key."""
        return self.source or self.image

    def metric(self, name: str) -> float | None:
        return getattr(self, name)


#: CSV columns: every scalar field of :class:`ImageRow`, in declaration order.
CSV_COLUMNS = tuple(f.name for f in fields(ImageRow) if f.name not in ("bands", "arrays", "routing"))


@dataclass(frozen=True)
class MetricStats:
    """Mean and median of one metric over the ``n`` completed images that recorded it (None when n = 0)."""

    mean: float | None
    median: float | None
    n: int


@dataclass(frozen=True)
class ModelSummary:
    """Aggregate of one model over the store.

    ``count``: completed results; ``failures``: failed ones; ``incomplete``: running/unknown ones.
    ``delta_ws_psnr``: mean over the images both completed of (this model's WS-PSNR − ``baseline``'s), in dB,
    where ``baseline`` is the bicubic model of the same scale (None for the baseline itself or when absent).
    ``seconds_per_image``: mean wall time of the completed results, seconds.
    """

    model: str
    architecture: str | None
    scale: int | None
    params: int | None
    flops_per_lr_pixel: float | None
    count: int
    failures: int
    incomplete: int
    stats: Mapping[str, MetricStats]
    seconds_per_image: float | None
    baseline: str | None = None
    delta_ws_psnr: float | None = None


@dataclass(frozen=True)
class StoreReport:
    """Everything the report shows: the store's run records and one :class:`ImageRow` per (image, model).

    ``empty_images`` are image groups without any model group yet.
    """

    path: str
    odisr_version: str | None
    created: str | None
    runs: tuple[Mapping[str, Any], ...]
    rows: tuple[ImageRow, ...]
    empty_images: tuple[str, ...] = ()
    group: zarr.Group | None = field(default=None, compare=False, repr=False)

    @property
    def images(self) -> list[str]:
        return sorted({r.image for r in self.rows} | set(self.empty_images))

    @property
    def failures(self) -> list[ImageRow]:
        return [r for r in self.rows if r.status == "failed"]

    @property
    def complete(self) -> list[ImageRow]:
        return [r for r in self.rows if r.status == "complete"]

    @property
    def run_records(self) -> list[RunRecord]:
        """The store's runs, oldest first (:func:`odisr.report.runs.run_records`)."""
        return run_records(self.runs)

    def read(self, image: str, model: str, name: str) -> np.ndarray:
        """The array ``images/<image>/<model>/<name>`` (e.g. ``preview`` (y, x, 3) uint8, ``attention`` (y, x)
        float32) as numpy. Raises ``KeyError`` when absent."""
        if self.group is None:
            raise KeyError(f"{self.path}: store not open")
        return np.asarray(self.group["images"][image][model][name][...])


# --- reading ----------------------------------------------------------------------------------------------------


def _open(path: str | Path) -> zarr.Group:
    """Open ``path`` read-only as an odisr store; raises :class:`NotAStoreError` with the reason."""
    hint = "expected a STORE.zarr directory written by `odisr run` or `odisr evaluate`"
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.BaseZarrError) as exc:
        raise NotAStoreError(f"{path}: not a Zarr store ({exc}); {hint}") from None
    if "images" not in group and "odisr_version" not in group.attrs:
        raise NotAStoreError(f"{path}: a Zarr group, but not an odisr store (no 'images' group); {hint}")
    if "images" in group and not isinstance(group["images"], zarr.Group):
        raise NotAStoreError(f"{path}: 'images' is an array, not a group; {hint}")
    if group.metadata.zarr_format != 3:
        raise NotAStoreError(f"{path}: a Zarr v{group.metadata.zarr_format} group; odisr stores are Zarr v3 ({hint})")
    return group


def _number(value: Any, kind: type = float) -> Any:
    """A real number of the JSON attrs as ``kind`` (floats keep ±inf); None when missing, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    if kind is int:
        return int(value) if math.isfinite(value) else None
    return float(value)


def _bands(value: Any) -> tuple[tuple[float, float, float], ...]:
    try:
        return tuple((float(a), float(b), float(c)) for a, b, c in value or ())
    except (TypeError, ValueError):  # malformed record: show the row without bands rather than fail the report
        return ()


def _shape(value: Any) -> tuple[int | None, int | None]:
    """(width, height) of a recorded ``[h, w]`` shape; Nones when missing or malformed."""
    if isinstance(value, (list, tuple)) and len(value) >= 2:
        h, w = _number(value[0], int), _number(value[1], int)
        return w, h
    return None, None


def _routing(value: Any) -> BlockStats | None:
    try:
        return None if value is None else BlockStats.from_attrs(value)
    except (KeyError, TypeError, ValueError):  # malformed record: show the row without routing rather than fail
        return None


def _row(image: str, model: str, attrs: Mapping[str, Any], arrays: Iterable[str]) -> ImageRow:
    metrics = attrs.get("metrics") or {}
    error = attrs.get("error")
    source = None if attrs.get("source") is None else str(attrs["source"])
    (lr_width, lr_height), (sr_width, sr_height) = _shape(attrs.get("lr_shape")), _shape(attrs.get("sr_shape"))
    return ImageRow(
        image=image,
        model=model,  # the group name: the store's identity of the result
        status=str(attrs.get("status") or "unknown"),
        source=source,
        dataset=str(attrs.get("dataset") or dataset_name(source or "")),
        architecture=attrs.get("architecture"),
        scale=_number(attrs.get("scale"), int),
        ratio=_number(attrs.get("ratio")),
        mode=attrs.get("mode"),
        lr_width=lr_width,
        lr_height=lr_height,
        sr_width=sr_width,
        sr_height=sr_height,
        seconds=_number(attrs.get("seconds")),
        params=_number(attrs.get("params"), int),
        flops_per_lr_pixel=_number(attrs.get("flops_per_lr_pixel")),
        madds_720p=_number(attrs.get("madds_720p")),
        error=None if error is None else str(error),
        attempt=None if attrs.get("attempt") is None else str(attrs["attempt"]),
        bands=_bands(attrs.get("bands")),
        arrays=frozenset(arrays),
        routing=_routing(attrs.get("routing")),
        **{m: _number(metrics.get(m)) for m in METRICS},
    )


def collect(path: str | Path) -> StoreReport:
    """Read every ``images/<key>/<model>`` result of the odisr store at ``path`` (metadata only).

    Raises:
        NotAStoreError: ``path`` is missing, not Zarr, or not an odisr store.
    """
    root = _open(path)
    pairs, empty = read_pairs(root) if "images" in root else ({}, [])
    rows = sorted((_row(image, model, node.attrs, node.arrays) for (image, model), node in pairs.items()),
                  key=lambda r: (r.image, r.model))  # fmt: skip
    meta = root.attrs.asdict()
    return StoreReport(
        path=str(path),
        odisr_version=meta.get("odisr_version"),
        created=meta.get("created"),
        runs=tuple(meta.get("runs") or ()),
        rows=tuple(rows),
        empty_images=tuple(empty),
        group=root,
    )


# --- aggregates -------------------------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> MetricStats:
    if not values:
        return MetricStats(None, None, 0)
    return MetricStats(float(np.mean(values)), float(statistics.median(values)), len(values))


def _values(rows: Iterable[ImageRow], metric: str) -> list[float]:
    return [v for r in rows if r.status == "complete" and (v := r.metric(metric)) is not None]


def _first(rows: Iterable[ImageRow], attr: str) -> Any:
    return next((v for r in rows if (v := getattr(r, attr)) is not None), None)


def is_bicubic(model: str, architecture: str | None = None) -> bool:
    """Whether a model is the bicubic-interpolation baseline (by architecture, else by name)."""
    return architecture == "bicubic" or model.lower().startswith("bicubic")


def _paired_delta(rows: Sequence[ImageRow], base_rows: Sequence[ImageRow]) -> float | None:
    """Mean of per-image WS-PSNR differences over images where both results are complete and finite, dB."""
    base = {r.image: r.ws_psnr for r in base_rows if r.status == "complete"}
    diffs = [
        r.ws_psnr - b
        for r in rows
        if r.status == "complete" and r.ws_psnr is not None and (b := base.get(r.image)) is not None
        and math.isfinite(r.ws_psnr) and math.isfinite(b)
    ]
    return float(np.mean(diffs)) if diffs else None


def summarize(rows: Sequence[ImageRow]) -> list[ModelSummary]:
    """One :class:`ModelSummary` per model (sorted by name) from per-image rows."""
    by_model: dict[str, list[ImageRow]] = {}
    for r in rows:
        by_model.setdefault(r.model, []).append(r)
    bicubic = {
        _first(rs, "scale"): m for m, rs in sorted(by_model.items()) if is_bicubic(m, _first(rs, "architecture"))
    }
    out = []
    for model, rs in sorted(by_model.items()):
        scale, arch = _first(rs, "scale"), _first(rs, "architecture")
        baseline = bicubic.get(scale)
        if baseline == model:
            baseline = None
        seconds = _values(rs, "seconds")
        out.append(ModelSummary(
            model=model,
            architecture=arch,
            scale=scale,
            params=_first(rs, "params"),
            flops_per_lr_pixel=_first(rs, "flops_per_lr_pixel"),
            count=sum(r.status == "complete" for r in rs),
            failures=sum(r.status == "failed" for r in rs),
            incomplete=sum(r.status not in ("complete", "failed") for r in rs),
            stats={m: _stats(_values(rs, m)) for m in METRICS},
            seconds_per_image=float(np.mean(seconds)) if seconds else None,
            baseline=baseline,
            delta_ws_psnr=_paired_delta(rs, by_model[baseline]) if baseline else None,
        ))
    return out


# --- the lightweight-SR table of the papers -----------------------------------------------------------------------

#: The benchmarks of the lightweight-SR tables in the papers' column order; other datasets follow by name.
BENCHMARKS = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109")


@dataclass(frozen=True)
class DatasetScore:
    """Means of one model over the ``n`` completed images of one dataset: ``psnr_y`` (dB) and ``ssim_y`` on the
    BT.601 Y channel with ``scale`` border pixels cropped (the lightweight-SR convention)."""

    psnr_y: float | None
    ssim_y: float | None
    n: int


@dataclass(frozen=True)
class LightweightRow:
    """One model of the lightweight-SR table: ``params`` (learnable parameters), ``madds_720p`` (multiply-adds of one
    forward pass producing a 1280×720 output) and a :class:`DatasetScore` per dataset name."""

    model: str
    architecture: str | None
    scale: int | None
    params: int | None
    madds_720p: float | None
    scores: Mapping[str, DatasetScore]


def _group(rows: Iterable[ImageRow], attr: str) -> dict[Any, list[ImageRow]]:
    out: dict[Any, list[ImageRow]] = {}
    for r in rows:
        out.setdefault(getattr(r, attr), []).append(r)
    return out


def _score(rows: Sequence[ImageRow]) -> DatasetScore:
    psnr, ssim = _stats(_values(rows, "psnr_y")), _stats(_values(rows, "ssim_y"))
    return DatasetScore(psnr.mean, ssim.mean, psnr.n)


def lightweight_results(rows: Sequence[ImageRow]) -> list[LightweightRow]:
    """The rows of the lightweight-SR table from the completed results evaluated in ``lightweight`` mode (other modes
    score whole panoramas, not the benchmarks' Y-channel convention): one per model, ordered by scale, bicubic first,
    then by name; datasets with no Y-channel score are left out."""
    light = [r for r in rows if r.mode == "lightweight" and r.status == "complete"]
    out = []
    for model, rs in _group(light, "model").items():
        scores = {d: score for d, ds in _group(rs, "dataset").items() if (score := _score(ds)).n}
        out.append(LightweightRow(model, _first(rs, "architecture"), _first(rs, "scale"), _first(rs, "params"),
                                  _first(rs, "madds_720p"), scores))  # fmt: skip
    return sorted(out, key=lambda r: (r.scale or 0, not is_bicubic(r.model, r.architecture), r.model))


# --- formatting and export --------------------------------------------------------------------------------------


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.0f}"


def format_value(kind: str, value: Any) -> str:
    """Text for a table cell: dB metrics with 2 decimals, SSIMs with 4, seconds with 2, counts with K/M/G
    (``params``, ``flops_per_lr_pixel``), the lightweight tables' ``#Params`` (``765K``, ``1.32M``) and ``#MAdds``
    (``53.8G``), a signed Δ; "—" when missing."""
    if value is None:
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if kind in ("params", "flops_per_lr_pixel"):
        return _si(float(value))
    if kind == "#params":
        return f"{value / 1e3:.0f}K" if value < 1e6 else f"{value / 1e6:.2f}M"
    if kind == "#madds":
        return f"{value / 1e9:.1f}G"
    if kind == "delta":
        return f"{value:+.2f}"
    if "ssim" in kind:
        return f"{value:.4f}"
    if "psnr" in kind or kind in ("seconds", "seconds_per_image"):
        return f"{value:.2f}"
    return str(value)


def _csv_cell(value: Any) -> Any:
    return "" if value is None else value


def write_csv(rows: Iterable[ImageRow], dest: str | Path | io.TextIOBase) -> None:
    """Write one line per (image, model) with the :data:`CSV_COLUMNS` (missing values empty, ±inf as ``inf``)."""
    def _write(f: Any) -> None:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([_csv_cell(getattr(r, c)) for c in CSV_COLUMNS])

    if isinstance(dest, (str, Path)):
        with open(dest, "w", newline="", encoding="utf-8") as f:
            _write(f)
    else:
        _write(dest)


def _jsonable(value: Any) -> Any:
    """Plain JSON: non-finite floats → None (JSON has no NaN/inf), tuples/sets → lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    return value


def to_json(report: StoreReport, summaries: Sequence[ModelSummary] | None = None) -> str:
    """The report as strict JSON: ``{"store", "odisr_version", "created", "runs": [...], "rows": [...],
    "models": [...], "lightweight": [...], "routing": {...}}``.

    ``runs`` are the :class:`~odisr.report.runs.RunRecord` of every run; rows carry every :class:`ImageRow` field
    (``bands`` as [lat_min°, lat_max°, dB] lists, ``arrays`` as names, ``routing`` as per-block lists);
    ``lightweight`` the :class:`LightweightRow` records (``scores`` by dataset); ``routing`` the
    :class:`~odisr.routing.Granularity` of each content-aware model; +inf/NaN become null.
    """
    summaries = summarize(report.rows) if summaries is None else summaries
    doc = {
        "store": report.path,
        "odisr_version": report.odisr_version,
        "created": report.created,
        "runs": [asdict(r) for r in report.run_records],
        "rows": [asdict(r) for r in report.rows],
        "models": [asdict(s) for s in summaries],
        "lightweight": [asdict(r) for r in lightweight_results(report.rows)],
        "routing": {m: asdict(g) | {"per_window": g.per_window, "verdict": g.sentence()}
                    for m, g in routing_verdicts(report.rows).items()},
    }
    return json.dumps(_jsonable(doc), indent=2, allow_nan=False)


# --- table views (rendered by the CLI with rich and by the HTML report) -----------------------------------------


@dataclass(frozen=True)
class Table:
    """A titled table of display strings; ``numeric[i]`` says whether column i is right-aligned, ``bold`` holds the
    (row, column) indices of the cells to emphasise (the best of their group), ``notes`` the footnotes shown under it.
    """

    title: str
    headers: tuple[str, ...]
    numeric: tuple[bool, ...]
    cells: tuple[tuple[str, ...], ...]
    bold: frozenset[tuple[int, int]] = frozenset()
    notes: tuple[str, ...] = ()


def _table(
    title: str,
    columns: Sequence[tuple[str, bool]],
    cells: Iterable[Sequence[str]],
    *,
    bold: Iterable[tuple[int, int]] = (),
    notes: Iterable[str] = (),
) -> Table:
    return Table(title, tuple(c[0] for c in columns), tuple(c[1] for c in columns), tuple(map(tuple, cells)),
                 frozenset(bold), tuple(notes))  # fmt: skip


#: Cell texts of a missing value.
_EMPTY = frozenset({"—", "— / —", ""})


def compact(table: Table) -> Table:
    """``table`` without its columns that are empty ("—") in every row (e.g. metric columns of a store that
    ``odisr run`` filled without references); bold cells follow their columns. A table without rows is unchanged."""
    keep = [j for j in range(len(table.headers)) if not table.cells or any(row[j] not in _EMPTY for row in table.cells)]
    if len(keep) == len(table.headers):
        return table
    new = {old: new for new, old in enumerate(keep)}
    return Table(table.title, tuple(table.headers[j] for j in keep), tuple(table.numeric[j] for j in keep),
                 tuple(tuple(row[j] for j in keep) for row in table.cells),
                 frozenset((i, new[j]) for i, j in table.bold if j in new), table.notes)  # fmt: skip


def to_markdown(table: Table) -> str:
    """``table`` as GitHub Markdown: the bold title, a pipe table (numbers right-aligned, ``|`` escaped, bold cells
    as ``**…**``) and each footnote as a paragraph under it."""
    def line(row: Sequence[str], i: int | None = None) -> str:
        texts = (c.replace("|", "\\|") for c in row)
        return "| " + " | ".join(f"**{t}**" if (i, j) in table.bold else t for j, t in enumerate(texts)) + " |"

    rule = "|" + "|".join("---:" if n else "---" for n in table.numeric) + "|"
    lines = [f"**{table.title}**", "", line(table.headers), rule, *(line(r, i) for i, r in enumerate(table.cells))]
    return "\n".join(lines) + "".join(f"\n\n{note}" for note in table.notes) + "\n"


def _best(values: Sequence[float | None]) -> set[int]:
    """Indices of the highest value (all of them when tied); none when every value is missing."""
    present = [v for v in values if v is not None]
    return {i for i, v in enumerate(values) if present and v == max(present)}


def per_image_table(rows: Sequence[ImageRow], metric: str = "ws_psnr") -> Table:
    """``metric`` of the completed results side by side: one row per image, one column per model, the best of each
    image in bold (dB for the PSNR family, unitless for the SSIM family)."""
    done = [r for r in rows if r.status == "complete"]
    models = sorted({r.model for r in done})
    value = {(r.image, r.model): r.metric(metric) for r in done}
    labels = {r.image: posixpath.basename(r.label) for r in done}
    cells, bold = [], set()
    for i, image in enumerate(sorted(labels)):
        values = [value.get((image, m)) for m in models]
        bold |= {(i, 1 + j) for j in _best(values)}
        cells.append([labels[image], *(format_value(metric, v) for v in values)])
    columns = [("image", False), *((m, True) for m in models)]
    return _table(f"{_header(metric)} per image", columns, cells, bold=bold)


def _header(metric: str) -> str:
    return f"{LABELS[metric]} (dB)" if "psnr" in metric else LABELS[metric]


def _size(width: int | None, height: int | None) -> str:
    return "—" if width is None or height is None else f"{width}×{height}"


def image_table(rows: Sequence[ImageRow]) -> Table:
    """Per (image, model): image, model, status, input and output size (width×height px), seconds, and WS-PSNR,
    WS-SSIM, PSNR, SSIM (dB / unitless) where some row has them (:func:`compact`)."""
    columns = [("image", False), ("model", False), ("status", False), ("input (px)", True), ("output (px)", True),
               ("s", True)] + [(_header(m), True) for m in HEADLINE_METRICS]  # fmt: skip
    return compact(_table("Per image", columns, (
        [r.label, r.model, r.status, _size(r.lr_width, r.lr_height), _size(r.sr_width, r.sr_height),
         format_value("seconds", r.seconds), *(format_value(m, r.metric(m)) for m in HEADLINE_METRICS)]
        for r in rows
    )))


def aggregate_table(summaries: Sequence[ModelSummary]) -> Table:
    """Per model: completed/failed/incomplete counts and "mean / median" of each headline metric."""
    columns = [("model", False), ("images", True), ("failed", True), ("incomplete", True)]
    columns += [(f"{_header(m)} mean / median", True) for m in HEADLINE_METRICS]
    return compact(_table("Aggregate per model", columns, (
        [s.model, str(s.count), str(s.failures), str(s.incomplete)]
        + [f"{format_value(m, s.stats[m].mean)} / {format_value(m, s.stats[m].median)}" for m in HEADLINE_METRICS]
        for s in summaries
    )))


def comparison_table(summaries: Sequence[ModelSummary]) -> Table:
    """Per model: params, FLOPs per LR pixel, mean metrics, Δ WS-PSNR vs bicubic (dB), seconds per image (columns
    empty for every model left out, :func:`compact`)."""
    columns = [("model", False), ("scale", True), ("params", True), ("FLOPs / LR px", True)]
    columns += [(_header(m), True) for m in HEADLINE_METRICS]
    columns += [("Δ WS-PSNR vs bicubic (dB)", True), ("s / image", True)]
    return compact(_table("Model comparison (means)", columns, (
        [s.model, format_value("scale", s.scale), format_value("params", s.params),
         format_value("flops_per_lr_pixel", s.flops_per_lr_pixel),
         *(format_value(m, s.stats[m].mean) for m in HEADLINE_METRICS),
         format_value("delta", s.delta_ws_psnr), format_value("seconds", s.seconds_per_image)]
        for s in summaries
    )))


def _score_cell(score: DatasetScore | None, full: int) -> str:
    if score is None:
        return "—"
    text = f"{format_value('psnr_y', score.psnr_y)}/{format_value('ssim_y', score.ssim_y)}"
    return text if score.n == full else f"{text} ({score.n}/{full})"


_LIGHTWEIGHT_NOTES = (
    ("PSNR (dB) / SSIM on the Y channel (ITU-R BT.601) with `scale` border pixels cropped, mean over the dataset's "
     "images; the best of each scale in bold."),
    ("#MAdds: multiply-adds of one forward pass producing a 1280×720 HR output (LR 1280/s × 720/s), the model's own "
     "flops() / 2. Bicubic has no learned parameters and, as in the papers, no count (—)."),
)


def lightweight_table(results: Sequence[LightweightRow]) -> Table:
    """The lightweight-SR table of the papers (CAMixerSR, CVPR 2024, Table 2): Method, Scale, #Params, #MAdds, then
    "PSNR/SSIM" per dataset (Y channel, 2 and 4 decimals; :data:`BENCHMARKS` order first). The best PSNR among the
    models of the same scale is bold; a model that completed fewer of a dataset's images than another of its scale is
    marked ``(k/n)`` and not compared."""
    names = {d for r in results for d in r.scores}
    datasets = [d for d in BENCHMARKS if d in names] + sorted(names - set(BENCHMARKS))
    full: dict[tuple[int | None, str], int] = {}  # (scale, dataset) → most images a model of that scale completed
    for r in results:
        for d, score in r.scores.items():
            full[r.scale, d] = max(full.get((r.scale, d), 0), score.n)
    cells = [
        [r.model, f"×{r.scale}" if r.scale else "—", format_value("#params", r.params or None),
         format_value("#madds", r.madds_720p if r.params else None),  # non-learned (bicubic): no count
         *(_score_cell(r.scores.get(d), full.get((r.scale, d), 0)) for d in datasets)]
        for r in results
    ]  # fmt: skip
    bold = set()
    for j, d in enumerate(datasets, start=4):
        for scale in {r.scale for r in results}:
            ids = [i for i, r in enumerate(results) if r.scale == scale]
            psnr = [s.psnr_y if (s := results[i].scores.get(d)) and s.n == full[scale, d] else None for i in ids]
            bold |= {(ids[k], j) for k in _best(psnr)}
    partial = any(s.n < full[r.scale, d] for r in results for d, s in r.scores.items())
    notes = _LIGHTWEIGHT_NOTES + (("(k/n): only k of the n images completed; not compared.",) if partial else ())
    columns = [("Method", False), ("Scale", True), ("#Params", True), ("#MAdds", True), *((d, True) for d in datasets)]
    return _table("Lightweight SR (Y channel)", columns, cells, bold=bold, notes=notes)


def lightweight_tables(rows: Sequence[ImageRow]) -> list[Table]:
    """``[lightweight_table(...)]`` when ``rows`` hold lightweight-mode results, else ``[]``."""
    results = lightweight_results(rows)
    return [lightweight_table(results)] if results else []


def headline_markdown(report: StoreReport, summaries: Sequence[ModelSummary] | None = None) -> str:
    """The tables a paper or README quotes, as Markdown: the lightweight-SR table (when the store holds
    lightweight results) and the model comparison (params, FLOPs, WS-PSNR…, seconds per image)."""
    summaries = summarize(report.rows) if summaries is None else summaries
    tables = [*lightweight_tables(report.rows), comparison_table(summaries)]
    return "\n".join(to_markdown(t) for t in tables)


def failure_table(rows: Sequence[ImageRow]) -> Table:
    """The failed results with their one-line reason."""
    columns = [("image", False), ("model", False), ("reason", False)]
    failed = (r for r in rows if r.status == "failed")
    return _table("Failures", columns, ([r.label, r.model, r.error or "(no reason recorded)"] for r in failed))


def summary_items(report: StoreReport) -> list[tuple[str, str]]:
    """(label, value) lines describing the store: counts, output megapixels of the complete results, the runs."""
    done, failed = len(report.complete), len(report.failures)
    sizes = [mp for r in report.complete if (mp := r.output_megapixels) is not None]
    runs = report.run_records
    items = [
        ("store", report.path),
        ("odisr version", report.odisr_version or "—"),
        ("created", _when(report.created)),
        ("images", str(len(report.images))),
        ("models", ", ".join(sorted({r.model for r in report.rows})) or "—"),
        ("results", f"{done} complete, {failed} failed, {len(report.rows) - done - failed} incomplete"),
        ("output", f"{sum(sizes):,.1f} megapixels in {len(sizes)} complete results" if sizes else "—"),
        ("runs", str(len(runs))),
    ]
    if runs:
        last = runs[-1]
        end = f"finished {_when(last.finished)}" if last.complete else "not finished (running or interrupted)"
        items.append(("last run", f"#{last.index} {last.command} (started {_when(last.started)}, {end})"))
    return items


def _when(stamp: str | None) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` (UTC as recorded); "—" when missing."""
    return "—" if not stamp else stamp.replace("T", " ").removesuffix("+00:00").removesuffix("Z")


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def _workers(run: RunRecord) -> str:
    if run.workers is None:
        return "—"
    threads = "" if run.threads is None else f" ({run.threads} thread{'s' * (run.threads != 1)})"
    return f"{run.workers}{threads}"


def _fixed(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def run_table(runs: Sequence[RunRecord]) -> Table:
    """Every run of the store, oldest first: number, command, start and end (UTC), device, workers (threads),
    scheduler, done/failed/skipped pairs, wall time (s), output megapixels, throughput (output Mpx/s) and warm-up (s);
    columns no run recorded are left out (:func:`compact`)."""
    columns = [("#", True), ("command", False), ("started", False), ("finished", False), ("device", False),
               ("workers", True), ("scheduler", False), ("done", True), ("failed", True), ("skipped", True),
               ("s", True), ("output Mpx", True), ("Mpx/s", True), ("warm-up (s)", True)]  # fmt: skip
    return compact(_table("Runs", columns, (
        [str(r.index), r.command, _when(r.started), _when(r.finished) if r.complete else "not finished",
         r.device or "—", _workers(r), r.scheduler or "—", _count(r.done), _count(r.failed), _count(r.skipped),
         _fixed(r.seconds, 1), _fixed(r.output_megapixels, 2), _fixed(r.megapixels_per_s, 3),
         _fixed(r.warmup_seconds, 1)]
        for r in runs
    ), notes=["Counts are (image, model) pairs; Mpx/s: output megapixels of the run's completed pairs per second of "
              "its wall time."] if runs else ()))


def routing_verdicts(rows: Sequence[ImageRow]) -> dict[str, Granularity]:
    """Per content-aware model with routing statistics in its complete results: whether it routes per window or
    per block (:func:`odisr.routing.granularity`)."""
    by_model = _group([r for r in rows if r.status == "complete" and r.routing is not None], "model")
    return {m: g for m, rs in sorted(by_model.items()) if (g := granularity(r.routing for r in rs)) is not None}


def routing_table(rows: Sequence[ImageRow]) -> Table:
    """Per content-aware model: images, blocks, blocks that discriminate windows, the largest within-block spread σ
    of the scores (median over images) and the verdict (per window / per block)."""
    columns = [("model", False), ("images", True), ("blocks", True), ("blocks discriminating windows", True),
               ("max σ", True), ("routing", False)]  # fmt: skip
    verdicts = routing_verdicts(rows)
    return _table("CAMixer routing", columns, (
        [m, str(g.images), str(len(g.spread)), str(len(g.discriminating)), f"{max(g.spread):.3f}",
         "per window" if g.per_window else "per block"]
        for m, g in verdicts.items()
    ), notes=[f"σ: standard deviation of the predictor's attention probability over a block's windows; a block "
              f"discriminates windows when σ ≥ {SPREAD_THRESHOLD:g} (odisr.routing)."] if verdicts else ())


def status_message(report: StoreReport) -> str | None:
    """A sentence for stores with nothing to compare (no images, no results, only failures), else None."""
    if not report.images:
        return "This store has no images yet: run `odisr run` or `odisr evaluate` to fill it."
    if not report.rows:
        return f"No results yet: {len(report.images)} image(s) but no (image, model) result has started."
    if not report.complete:
        return f"No completed results: {len(report.failures)} of {len(report.rows)} result(s) failed, " \
               f"the others are incomplete. See the failures below."
    return None
