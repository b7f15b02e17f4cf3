"""The self-contained HTML report: one file, CSS inline, every figure an embedded base64 PNG.

All text from the store (file names, model names, error messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from html import escape
from string import Template

import numpy as np

from odisr.report import plots
from odisr.report.tables import (
    ModelSummary,
    StoreReport,
    Table,
    aggregate_table,
    comparison_table,
    failure_table,
    image_table,
    lightweight_tables,
    status_message,
    summarize,
    summary_items,
)

__all__ = ["render_html"]

log = logging.getLogger(__name__)

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>odisr report — $title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; word-break: break-all; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; word-break: break-all; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; }
.message { background: #fff4d6; border: 1px solid #e8c766; padding: .6rem 1rem; }
.note { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>odisr report — $title</h1>
$body
</body>
</html>
""")


def _cell(text: str, numeric: bool, bold: bool) -> str:
    inner = f"<b>{escape(text)}</b>" if bold else escape(text)
    return f"<td class=\"num\">{inner}</td>" if numeric else f"<td>{inner}</td>"


def _table(table: Table, empty: str = "none") -> str:
    if not table.cells:
        return f"<h2>{escape(table.title)}</h2>\n<p class=\"note\">{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "\n".join(
        "<tr>" + "".join(_cell(c, num, (i, j) in table.bold) for j, (c, num) in enumerate(zip(row, table.numeric)))
        + "</tr>"
        for i, row in enumerate(table.cells)
    )
    notes = "".join(f"\n<p class=\"note\">{escape(note)}</p>" for note in table.notes)
    return (f"<h2>{escape(table.title)}</h2>\n<table>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}\n</tbody>\n</table>{notes}")


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{escape(caption)}\">"
            f"<figcaption class=\"note\">{escape(caption)}</figcaption></figure>")


def _summary(report: StoreReport) -> str:
    items = "\n".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in summary_items(report))
    message = status_message(report)
    note = f"\n<p class=\"message\">{escape(message)}</p>" if message else ""
    return f"<h2>Summary</h2>\n<dl>\n{items}\n</dl>{note}"


def _attention_figures(report: StoreReport, limit: int) -> list[str]:
    """Overlays for completed results with an ``attention`` array, on their ``preview`` (grey when absent)."""
    rows = [r for r in report.complete if "attention" in r.arrays]
    out = []
    for r in rows[:limit]:
        try:
            attention = report.read(r.image, r.model, "attention")
            preview = (report.read(r.image, r.model, "preview") if "preview" in r.arrays
                       else np.full((attention.shape[0] * 8, attention.shape[1] * 8, 3), 128, np.uint8))
            png = plots.attention_overlay(preview, attention, title=f"{r.image} · {r.model}")
        except (KeyError, ValueError, OSError) as exc:  # one unreadable array must not sink the report
            log.warning("attention map of %s/%s not shown: %s", r.image, r.model, exc)
            out.append(f"<p class=\"note\">Attention map of {escape(r.label)} ({escape(r.model)}) unreadable: "
                       f"{escape(str(exc))}</p>")
            continue
        out.append(_figure(png, f"CAMixer attention windows: {r.label} — {r.model}"))
    if len(rows) > limit:
        out.append(f"<p class=\"note\">{len(rows) - limit} more attention maps not shown.</p>")
    return out


def _figures(report: StoreReport, max_attention: int) -> str:
    parts = []
    if (png := plots.band_plot(report.rows)) is not None:
        parts.append(_figure(png, "WS-PSNR by latitude band, one line per model (mean over completed images)"))
    if (png := plots.image_bar_plot(report.rows)) is not None:
        parts.append(_figure(png, "WS-PSNR per image, grouped by image, one bar per model"))
    parts += _attention_figures(report, max_attention)
    if not parts:
        return "<h2>Plots</h2>\n<p class=\"note\">No metrics recorded yet: nothing to plot.</p>"
    return "<h2>Plots</h2>\n" + "\n".join(parts)


def render_html(
    report: StoreReport, summaries: Sequence[ModelSummary] | None = None, *, max_attention: int = 12
) -> str:
    """The whole report as one HTML document (UTF-8 text).

    Sections: summary (store, runs, counts; a clear message when there is nothing to compare), the lightweight-SR
    table of the papers (stores with lightweight evaluations), model comparison, aggregate per model, plots (WS-PSNR
    by latitude band, per-image WS-PSNR bars, up to ``max_attention`` attention-map overlays), per-image table,
    failures.
    """
    summaries = summarize(report.rows) if summaries is None else summaries
    body = "\n".join([
        _summary(report),
        *(_table(t) for t in lightweight_tables(report.rows)),
        _table(comparison_table(summaries), "no results"),
        _table(aggregate_table(summaries), "no results"),
        _figures(report, max_attention),
        _table(image_table(report.rows), "no results"),
        _table(failure_table(report.rows), "no failures"),
    ])
    return _PAGE.substitute(title=escape(report.path), body=body)
