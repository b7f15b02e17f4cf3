"""Read an odisr Zarr store into per-image rows and per-model aggregates; write them as CSV and JSON.

The pipeline writes one group per (image, model), ``STORE.zarr/images/<key>/<model>/``, whose attrs hold
``status`` ("running" | "complete" | "failed"), ``error``, ``source``, ``model``, ``scale``, ``seconds``,
``metrics`` {ws_psnr, ws_ssim, psnr, ssim, ws_psnr_y, psnr_y, ssim_y}, ``bands`` [[lat_min°, lat_max°, dB], ...],
optional ``params``/``flops_per_lr_pixel``/``madds_720p``/``dataset``, next to the arrays ``sr``, ``preview`` and
optional ``attention``. Collecting reads attrs only (one metadata listing); arrays are read on demand with
:meth:`StoreReport.read`.

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
    1280×720 output (recorded by lightweight evaluations).
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
    bands: tuple[tuple[float, float, float], ...] = ()
    arrays: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """What to call the image: its source path/URL when recorded, else its store key."""
        return self.source or self.image

    def metric(self, name: str) -> float | None:
        return getattr(self, name)


#: CSV columns: every scalar field of :class:`ImageRow`, in declaration order.
CSV_COLUMNS = tuple(f.name for f in fields(ImageRow) if f.name not in ("bands", "arrays"))


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


def _row(image: str, model: str, attrs: Mapping[str, Any], arrays: Iterable[str]) -> ImageRow:
    metrics = attrs.get("metrics") or {}
    error = attrs.get("error")
    source = None if attrs.get("source") is None else str(attrs["source"])
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
        seconds=_number(attrs.get("seconds")),
        params=_number(attrs.get("params"), int),
        flops_per_lr_pixel=_number(attrs.get("flops_per_lr_pixel")),
        madds_720p=_number(attrs.get("madds_720p")),
        error=None if error is None else str(error),
        bands=_bands(attrs.get("bands")),
        arrays=frozenset(arrays),
        **{m: _number(metrics.get(m)) for m in METRICS},
    )


def collect(path: str | Path) -> StoreReport:
    """Read every ``images/<key>/<model>`` result of the odisr store at ``path`` (attrs only).

    Raises:
        NotAStoreError: ``path`` is missing, not Zarr, or not an odisr store.
    """
    root = _open(path)
    groups: dict[tuple[str, ...], Mapping[str, Any]] = {}
    arrays: dict[tuple[str, str], list[str]] = {}
    if "images" in root:
        for name, node in root["images"].members(max_depth=2):
            parts = tuple(name.split("/"))
            if isinstance(node, zarr.Group):
                groups[parts] = node.attrs.asdict()
            elif len(parts) == 3:
                arrays.setdefault(parts[:2], []).append(parts[2])
    rows = sorted(
        (_row(k[0], k[1], attrs, arrays.get(k, ())) for k, attrs in groups.items() if len(k) == 2),
        key=lambda r: (r.image, r.model),
    )
    with_models = {r.image for r in rows}
    empty = sorted(k[0] for k in groups if len(k) == 1 and k[0] not in with_models)
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
    """The report as strict JSON: ``{"store", "odisr_version", "created", "rows": [...], "models": [...],
    "lightweight": [...]}``.

    Rows carry every :class:`ImageRow` field (``bands`` as [lat_min°, lat_max°, dB] lists, ``arrays`` as names);
    ``lightweight`` the :class:`LightweightRow` records (``scores`` by dataset); +inf/NaN become null.
    """
    summaries = summarize(report.rows) if summaries is None else summaries
    doc = {
        "store": report.path,
        "odisr_version": report.odisr_version,
        "created": report.created,
        "rows": [asdict(r) for r in report.rows],
        "models": [asdict(s) for s in summaries],
        "lightweight": [asdict(r) for r in lightweight_results(report.rows)],
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


def image_table(rows: Sequence[ImageRow]) -> Table:
    """Per (image, model): image, model, status, WS-PSNR, WS-SSIM, PSNR, SSIM (dB / unitless), seconds."""
    columns = [("image", False), ("model", False), ("status", False)]
    columns += [(_header(m), True) for m in HEADLINE_METRICS] + [("s", True)]
    return _table("Per image", columns, (
        [r.label, r.model, r.status, *(format_value(m, r.metric(m)) for m in HEADLINE_METRICS),
         format_value("seconds", r.seconds)]
        for r in rows
    ))


def aggregate_table(summaries: Sequence[ModelSummary]) -> Table:
    """Per model: completed/failed/incomplete counts and "mean / median" of each headline metric."""
    columns = [("model", False), ("images", True), ("failed", True), ("incomplete", True)]
    columns += [(f"{_header(m)} mean / median", True) for m in HEADLINE_METRICS]
    return _table("Aggregate per model", columns, (
        [s.model, str(s.count), str(s.failures), str(s.incomplete)]
        + [f"{format_value(m, s.stats[m].mean)} / {format_value(m, s.stats[m].median)}" for m in HEADLINE_METRICS]
        for s in summaries
    ))


def comparison_table(summaries: Sequence[ModelSummary]) -> Table:
    """Per model: params, FLOPs per LR pixel, mean metrics, Δ WS-PSNR vs bicubic (dB), seconds per image."""
    columns = [("model", False), ("scale", True), ("params", True), ("FLOPs / LR px", True)]
    columns += [(_header(m), True) for m in HEADLINE_METRICS]
    columns += [("Δ WS-PSNR vs bicubic (dB)", True), ("s / image", True)]
    return _table("Model comparison (means)", columns, (
        [s.model, format_value("scale", s.scale), format_value("params", s.params),
         format_value("flops_per_lr_pixel", s.flops_per_lr_pixel),
         *(format_value(m, s.stats[m].mean) for m in HEADLINE_METRICS),
         format_value("delta", s.delta_ws_psnr), format_value("seconds", s.seconds_per_image)]
        for s in summaries
    ))


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
    """(label, value) lines describing the store and its last run."""
    done, failed = len(report.complete), len(report.failures)
    items = [
        ("store", report.path),
        ("odisr version", report.odisr_version or "—"),
        ("created", report.created or "—"),
        ("images", str(len(report.images))),
        ("models", ", ".join(sorted({r.model for r in report.rows})) or "—"),
        ("results", f"{done} complete, {failed} failed, {len(report.rows) - done - failed} incomplete"),
        ("runs", str(len(report.runs))),
    ]
    if report.runs and isinstance(last := report.runs[-1], Mapping):
        items.append(("last run", (f"{last.get('command', '?')} (started {last.get('started', '?')}, "
                                   f"finished {last.get('finished') or 'not finished'})")))
        summary = last.get("summary") or {}
        items += [(f"last run {k.replace('_', ' ')}", f"{v:.4g}" if isinstance(v, float) else str(v))
                  for k, v in summary.items()]
    return items


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
