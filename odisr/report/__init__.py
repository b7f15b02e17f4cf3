"""Reports on an odisr Zarr store: its runs, per-image and per-model tables (CSV/JSON), plots, CAMixer routing, and
an HTML page with a gallery of the SR previews (files next to it).

    from odisr.report import collect, summarize, render_html, write_report
    report = collect("runs/odi.zarr")
    mean_ws_psnr = {s.model: s.stats["ws_psnr"].mean for s in summarize(report.rows)}   # dB
    write_report("runs/odi.zarr", html="out/report.html")   # + out/report_files/ (previews, thumbnails)
"""

from __future__ import annotations

from pathlib import Path

from odisr.report.gallery import Gallery, files_dir, write_gallery
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
    "Gallery",
    "ImageRow",
    "MetricStats",
    "ModelSummary",
    "NotAStoreError",
    "StoreReport",
    "collect",
    "files_dir",
    "headline_markdown",
    "render_html",
    "summarize",
    "to_json",
    "write_csv",
    "write_gallery",
    "write_report",
]


def write_report(
    store: str | Path,
    *,
    html: str | Path | None = None,
    csv: str | Path | None = None,
    json: str | Path | None = None,
    markdown: str | Path | None = None,
    previews: bool = True,
    workers: int | None = None,
) -> StoreReport:
    """Collect ``store`` and write the requested files (HTML report, per-image CSV, JSON runs + rows + aggregates,
    Markdown of the lightweight-SR table and the model comparison); missing parent folders are created.

    With ``html``, the previews of the complete results go to ``<html stem>_files/`` next to it
    (:func:`~odisr.report.gallery.write_gallery`, ``workers`` processes; ``previews=False``: no gallery).

    Raises:
        NotAStoreError: ``store`` is not an odisr store.
        OSError: an output file cannot be written.
    """
    report = collect(store)
    summaries = summarize(report.rows)
    for path in (html, csv, json, markdown):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if csv is not None:
        write_csv(report.rows, csv)
    if json is not None:
        Path(json).write_text(to_json(report, summaries) + "\n", encoding="utf-8")
    if markdown is not None:
        Path(markdown).write_text(headline_markdown(report, summaries), encoding="utf-8")
    if html is not None:
        gallery = write_gallery(report, files_dir(html), workers=workers) if previews else None
        Path(html).write_text(render_html(report, summaries, gallery=gallery), encoding="utf-8")
    return report
