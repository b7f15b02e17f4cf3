"""The HTML report: one page (CSS and a little vanilla JavaScript inline, figures as embedded base64 PNGs) and, when
written to a file, its preview files in ``<report>_files/`` (:mod:`odisr.report.gallery`).

All text from the store (file names, model names, commands, error messages) is HTML-escaped. Long lists (the
gallery, the per-image table, the failures) are paginated and filterable by the inline script; without JavaScript
every entry is shown. The page fetches nothing from elsewhere.
"""

from __future__ import annotations

import base64
import logging
import posixpath
from collections.abc import Sequence
from html import escape
from string import Template

import numpy as np

from odisr.report import plots
from odisr.report.gallery import Gallery
from odisr.report.tables import (
    METRICS,
    ImageRow,
    ModelSummary,
    StoreReport,
    Table,
    aggregate_table,
    comparison_table,
    failure_table,
    image_table,
    lightweight_tables,
    routing_table,
    routing_verdicts,
    run_table,
    status_message,
    summarize,
    summary_items,
)

__all__ = ["render_html"]

log = logging.getLogger(__name__)

#: Entries per page of the paginated lists.
TABLE_PAGE, GALLERY_PAGE = 100, 60

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
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; word-break: break-all; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; }
.message { background: #fff4d6; border: 1px solid #e8c766; padding: .6rem 1rem; }
.note { color: #666; font-size: .9rem; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: .75rem; }
.gallery figure { margin: 0; font-size: .8rem; word-break: break-all; }
.gallery img, .gallery .reason { display: block; width: 100%; aspect-ratio: 2 / 1; object-fit: contain;
  background: #eee; box-sizing: border-box; }
.gallery .reason { background: #fdecea; color: #9b1c1c; padding: .4rem; overflow: auto; font-size: .75rem; }
.gallery .pending { background: #f1f1f1; color: #555; }
.pager { margin: .5rem 0; display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; font-size: .9rem; }
.pager input { padding: .2rem .4rem; min-width: 16rem; }
</style>
</head>
<body>
<h1>odisr report — $title</h1>
$body
<script>
$script
</script>
</body>
</html>
""")

#: Pagination and filtering of every element marked ``data-pager="PAGE SIZE"``: its rows (a table) or children.
_SCRIPT = """
document.querySelectorAll("[data-pager]").forEach(function (list) {
  var items = Array.prototype.slice.call(list.tBodies ? list.tBodies[0].rows : list.children);
  var size = parseInt(list.getAttribute("data-pager"), 10) || 100;
  if (items.length <= size) { return; }
  var texts = items.map(function (el) { return el.textContent.toLowerCase(); });
  var bar = document.createElement("div");
  bar.className = "pager";
  bar.innerHTML = '<input type="search" placeholder="filter (name, model, status…)" aria-label="filter">' +
    '<button type="button">&lsaquo; previous</button><span></span><button type="button">next &rsaquo;</button>';
  list.parentNode.insertBefore(bar, list);
  var input = bar.querySelector("input"), buttons = bar.querySelectorAll("button");
  var label = bar.querySelector("span"), page = 0, matching = items;
  function draw() {
    var pages = Math.max(1, Math.ceil(matching.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    items.forEach(function (el) { el.hidden = true; });
    matching.slice(page * size, (page + 1) * size).forEach(function (el) { el.hidden = false; });
    label.textContent = "page " + (page + 1) + " of " + pages + " (" + matching.length + " of " + items.length + ")";
    buttons[0].disabled = page === 0;
    buttons[1].disabled = page >= pages - 1;
  }
  input.addEventListener("input", function () {
    var q = input.value.trim().toLowerCase();
    matching = q ? items.filter(function (el, i) { return texts[i].indexOf(q) >= 0; }) : items;
    page = 0;
    draw();
  });
  buttons[0].addEventListener("click", function () { page -= 1; draw(); });
  buttons[1].addEventListener("click", function () { page += 1; draw(); });
  draw();
});
"""


def _cell(text: str, numeric: bool, bold: bool) -> str:
    inner = f"<b>{escape(text)}</b>" if bold else escape(text)
    return f"<td class=\"num\">{inner}</td>" if numeric else f"<td>{inner}</td>"


def _table(table: Table, empty: str = "none", *, pager: int | None = None) -> str:
    if not table.cells:
        return f"<h2>{escape(table.title)}</h2>\n<p class=\"note\">{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "\n".join(
        "<tr>" + "".join(_cell(c, num, (i, j) in table.bold) for j, (c, num) in enumerate(zip(row, table.numeric)))
        + "</tr>"
        for i, row in enumerate(table.cells)
    )
    notes = "".join(f"\n<p class=\"note\">{escape(note)}</p>" for note in table.notes)
    paged = f" data-pager=\"{pager}\"" if pager else ""
    return (f"<h2>{escape(table.title)}</h2>\n<table{paged}>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}\n</tbody>\n</table>{notes}")


def page(title: str, body: str, *, script: str = "") -> str:
    """A whole, self-contained HTML page with the reports' style: ``title`` (escaped here), ``body`` (HTML), and an
    inline ``script``."""
    return _PAGE.substitute(title=escape(title), body=body, script=script)


def figure(png: bytes, caption: str) -> str:
    """An HTML <figure> holding ``png`` inline (base64) with ``caption`` as its alt text and caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{escape(caption)}\">"
            f"<figcaption class=\"note\">{escape(caption)}</figcaption></figure>")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def _summary(report: StoreReport, gallery: Gallery | None) -> str:
    items = summary_items(report)
    if gallery is not None:
        size = _megabytes(gallery.thumb_bytes + gallery.full_bytes)
        items.append(("report files", f"{size} in {gallery.directory.name}/ ({len(gallery.files)} previews)"))
    lines = "\n".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    message = status_message(report)
    note = f"\n<p class=\"message\">{escape(message)}</p>" if message else ""
    return f"<h2>Summary</h2>\n<dl>\n{lines}\n</dl>{note}"


def _has_metrics(rows: Sequence[ImageRow]) -> bool:
    return any(r.metric(m) is not None for r in rows for m in METRICS)


def _figures(report: StoreReport) -> str:
    parts = []
    if (png := plots.band_plot(report.rows)) is not None:
        parts.append(figure(png, "WS-PSNR by latitude band, one line per model (mean over completed images)"))
    if (png := plots.image_bar_plot(report.rows)) is not None:
        parts.append(figure(png, "WS-PSNR per image, grouped by image, one bar per model"))
    return "<h2>Plots</h2>\n" + "\n".join(parts) if parts else ""


def _map_figure(report: StoreReport, r: ImageRow) -> str:
    """The routing maps of one result over its preview (grey when absent); a note when unreadable."""
    try:
        fraction = report.read(r.image, r.model, "attention") if "attention" in r.arrays else None
        score = report.read(r.image, r.model, "attention_score") if "attention_score" in r.arrays else None
        shape = (score if score is not None else fraction).shape
        preview = (report.read(r.image, r.model, "preview") if "preview" in r.arrays
                   else np.full((shape[0] * 8, shape[1] * 8, 3), 128, np.uint8))  # fmt: skip
        title = f"{r.image} · {r.model}"
        if score is None:
            return figure(plots.attention_overlay(preview, fraction, title=title),
                           f"CAMixer attention windows: {r.label} — {r.model}")  # fmt: skip
        png = plots.routing_overlay(preview, score, fraction, title=title)
    except (KeyError, ValueError, OSError) as exc:  # one unreadable array must not sink the report
        log.warning("routing maps of %s/%s not shown: %s", r.image, r.model, exc)
        return (f"<p class=\"note\">Routing maps of {escape(r.label)} ({escape(r.model)}) unreadable: "
                f"{escape(str(exc))}</p>")
    return figure(png, f"CAMixer routing per LR window: {r.label} — {r.model} (attention score; decisions)")


def _routing(report: StoreReport, limit: int) -> str:
    """Per content-aware model: the verdict (per window or per block) and the per-block chart; then the score and
    decision maps of up to ``limit`` results."""
    verdicts = routing_verdicts(report.rows)
    with_maps = [r for r in report.complete if {"attention", "attention_score"} & r.arrays]
    if not verdicts and not with_maps:
        return ""
    parts = ["<h2>CAMixer routing</h2>"]
    if verdicts:
        table = routing_table(report.rows)
        parts.append(_table(table).split("\n", 1)[1])  # the section heading is ours
    for model, verdict in verdicts.items():
        chart = plots.block_chart(verdict, title=model)
        parts.append(f"<h3>{escape(model)}</h3>\n<p>{escape(verdict.sentence())}</p>\n"
                     + figure(chart, f"{model}: per block, mean attention score ± within-block spread σ (bars) "
                                      f"and share of windows kept for attention (dots)"))  # fmt: skip
    parts += [_map_figure(report, r) for r in with_maps[:limit]]
    if len(with_maps) > limit:
        parts.append(f"<p class=\"note\">{len(with_maps) - limit} more routing maps not shown.</p>")
    return "\n".join(parts)


def _tile(r: ImageRow, gallery: Gallery) -> str:
    """One gallery entry: the thumbnail linking to the full preview, or the reason there is none."""
    name = posixpath.basename(r.label.rstrip("/")) or r.label
    caption = (f"<figcaption title=\"{escape(r.label)}\">{escape(name)}<br>"
               f"<span class=\"note\">{escape(r.model)}</span></figcaption>")
    files = gallery.files.get((r.image, r.model))
    if files is not None:
        alt = escape(f"{r.label} — {r.model}")
        return (f"<figure><a href=\"{escape(files.full)}\"><img loading=\"lazy\" src=\"{escape(files.thumb)}\" "
                f"alt=\"{alt}\"></a>{caption}</figure>")
    if r.status == "failed":
        reason = f"failed: {r.error or '(no reason recorded)'}"
    elif r.status == "complete":
        reason = f"preview unreadable: {gallery.errors.get((r.image, r.model), 'no preview stored')}"
    else:
        return f"<figure><div class=\"reason pending\">{escape(r.status)}: not finished</div>{caption}</figure>"
    return f"<figure><div class=\"reason\">{escape(reason)}</div>{caption}</figure>"


def _gallery(report: StoreReport, gallery: Gallery | None) -> str:
    if not report.rows:
        return ""
    if gallery is None:
        return ("<h2>Gallery</h2>\n<p class=\"note\">Previews are written next to an HTML report written to a file "
                "(<code>odisr report STORE --html report.html</code>).</p>")
    thumbs = (f"thumbnails {_megabytes(gallery.thumb_bytes)}" if gallery.thumb_bytes
              else "previews small enough to be their own thumbnails")  # fmt: skip
    sizes = (f"{len(gallery.files)} previews, {_megabytes(gallery.full_bytes)}; {thumbs}; in "
             f"{gallery.directory.name}/ ({gallery.written} written now, {gallery.reused} reused). "
             "Click a thumbnail for the full preview.")
    tiles = "\n".join(_tile(r, gallery) for r in report.rows)
    return (f"<h2>Gallery</h2>\n<p class=\"note\">{escape(sizes)}</p>\n"
            f"<div class=\"gallery\" data-pager=\"{GALLERY_PAGE}\">\n{tiles}\n</div>")


def render_html(
    report: StoreReport,
    summaries: Sequence[ModelSummary] | None = None,
    *,
    max_attention: int = 12,
    gallery: Gallery | None = None,
) -> str:
    """The whole report as one HTML document (UTF-8 text).

    Sections: summary (store, counts, output megapixels, report files; a clear message when there is nothing to
    compare), the runs (command, times, device, workers, counts, output megapixels, throughput, warm-up), the
    lightweight-SR table of the papers (stores with lightweight evaluations), model comparison, aggregate per model,
    plots (WS-PSNR by latitude band, per-image bars; only with metrics), CAMixer routing (per model: routes per
    window or per block, per-block chart; score and decision maps of up to ``max_attention`` results), the gallery
    of previews (``gallery``: the files written by :func:`odisr.report.gallery.write_gallery`; failures show their
    reason), per-image table (paginated), failures. Columns empty for every row are left out.
    """
    summaries = summarize(report.rows) if summaries is None else summaries
    body = "\n".join(part for part in (
        _summary(report, gallery),
        _table(run_table(report.run_records), "no runs recorded"),
        *(_table(t) for t in lightweight_tables(report.rows)),
        _table(comparison_table(summaries), "no results"),
        _table(aggregate_table(summaries), "no results"),
        _figures(report) if _has_metrics(report.rows) else "",
        _routing(report, max_attention),
        _gallery(report, gallery),
        _table(image_table(report.rows), "no results", pager=TABLE_PAGE),
        _table(failure_table(report.rows), "no failures", pager=TABLE_PAGE),
    ) if part)  # fmt: skip
    return page(report.path, body, script=_SCRIPT.strip())
