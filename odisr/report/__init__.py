"""Reports on an odisr Zarr store: per-image and per-model tables (CSV/JSON), plots, a self-contained HTML page.

    from odisr.report import collect, summarize, render_html
    report = collect("runs/odi.zarr")
    mean_ws_psnr = {s.model: s.stats["ws_psnr"].mean for s in summarize(report.rows)}   # dB
    Path("report.html").write_text(render_html(report))
"""

from __future__ import annotations

from pathlib import Path

from odisr.report.html import render_html
from odisr.report.tables import (
    ImageRow,
    MetricStats,
    ModelSummary,
    NotAStoreError,
    StoreReport,
    collect,
    headline_markdown,
    summarize,
    to_json,
    write_csv,
)

__all__ = [
    "ImageRow",
    "MetricStats",
    "ModelSummary",
    "NotAStoreError",
    "StoreReport",
    "collect",
    "headline_markdown",
    "render_html",
    "summarize",
    "to_json",
    "write_csv",
    "write_report",
]


def write_report(
    store: str | Path,
    *,
    html: str | Path | None = None,
    csv: str | Path | None = None,
    json: str | Path | None = None,
    markdown: str | Path | None = None,
) -> StoreReport:
    """Collect ``store`` and write the requested files (HTML report, per-image CSV, JSON rows + aggregates,
    Markdown of the lightweight-SR table and the model comparison).

    Raises:
        NotAStoreError: ``store`` is not an odisr store.
        OSError: an output file cannot be written.
    """
    report = collect(store)
    summaries = summarize(report.rows)
    if csv is not None:
        write_csv(report.rows, csv)
    if json is not None:
        Path(json).write_text(to_json(report, summaries) + "\n", encoding="utf-8")
    if markdown is not None:
        Path(markdown).write_text(headline_markdown(report, summaries), encoding="utf-8")
    if html is not None:
        Path(html).write_text(render_html(report, summaries), encoding="utf-8")
    return report
