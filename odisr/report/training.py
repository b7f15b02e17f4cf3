"""Reports on a training run directory (``odisr train ... --out RUN_DIR``): a summary and the training curves.

    from odisr.report.training import collect_run, render_training_html
    run = collect_run("runs/light_x2")
    print(run.summary_items())                      # [(label, value), ...]
    Path("train.html").write_text(render_training_html(run))

The curves (one PNG, three panels over the iteration): training losses (total, pixel, ratio); validation WS-PSNR
of the EMA weights with the starting weights and bicubic as reference lines; CAMixer's routing — the training mask
mean (the ratio loss pulls it to 0.5) and the attention fraction the inference rule would keep (keep/N), which
should approach γ.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from odisr.report.html import figure, page
from odisr.report.plots import figure_png
from odisr.train.history import COLUMNS, read_metrics
from odisr.train.rundir import RunDir, is_run_dir

__all__ = ["TrainingReport", "collect_run", "curves_png", "render_training_html", "write_training_report"]

Row = dict[str, float | None]


@dataclass(frozen=True)
class TrainingReport:
    """A run directory's ``run.json`` record (``status``) and ``metrics.csv`` rows."""

    path: str
    status: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    def series(self, column: str) -> tuple[list[float], list[float]]:
        """``(iterations, values)`` of the rows where ``column`` has a finite value."""
        pairs = [(r["iteration"], r.get(column)) for r in self.rows]
        kept = [(i, v) for i, v in pairs if i is not None and v is not None and math.isfinite(v)]
        return [p[0] for p in kept], [p[1] for p in kept]

    def tail_mean(self, column: str, share: float = 0.1) -> float | None:
        """Mean of ``column`` over the last ``share`` of the training rows (None when it has no values)."""
        _, values = self.series(column)
        if not values:
            return None
        n = max(1, math.ceil(len(values) * share))
        return sum(values[-n:]) / n

    def summary_items(self) -> list[tuple[str, str]]:
        """Label/value pairs describing the run (model, progress, validation, routing)."""
        s = self.status
        iters, _ = self.series("loss")
        items = [("run", self.path), ("model", f"{s.get('model', '?')} ({s.get('architecture', '?')}, "
                                               f"{s.get('parameters', '?')} parameters, ×{s.get('scale', '?')})")]
        items.append(("status", f"{s.get('status', 'unknown')}" + (f": {s['message']}" if s.get("message") else "")))
        if iters:
            last = next((r for r in reversed(self.rows) if r.get("seconds") is not None), {})
            seconds = last.get("seconds") or 0.0
            items.append(("iterations", f"{int(iters[-1])} in {seconds:.0f} s of training "
                                        f"({len(iters) / seconds if seconds else 0:.2f} it/s)"))
        _, psnr = self.series("val_ws_psnr")
        if psnr:
            start = s.get("start_scores", {}).get("ws_psnr")
            delta = f" (Δ {psnr[-1] - start:+.3f} dB from the starting weights, {start:.3f} dB)" if start else ""
            items.append(("val WS-PSNR", f"{psnr[-1]:.3f} dB last, {max(psnr):.3f} dB best{delta}"))
        if (bicubic := s.get("bicubic_scores", {}).get("ws_psnr")) is not None:
            items.append(("bicubic WS-PSNR", f"{bicubic:.3f} dB on the same val panoramas"))
        fraction, mask = self.tail_mean("attention_fraction"), self.tail_mean("mask_mean")
        official = self.tail_mean("official_fraction")
        if fraction is not None and mask is not None:
            expected = f"official expected {official:.3f}, " if official is not None else ""
            items.append(("routing (last 10%)", f"attention fraction: {expected}odisr rule {fraction:.3f} "
                                                f"(γ = {s.get('ratio')}); training mask mean {mask:.3f} (target 0.5)"))
        return items


def collect_run(path: str | os.PathLike[str]) -> TrainingReport:
    """Read a run directory.

    Raises:
        FileNotFoundError: ``path`` is not a run directory of ``odisr train``.
    """
    if not is_run_dir(path):
        raise FileNotFoundError(f"{path}: not a training run directory (no metrics.csv or run.json)")
    run = RunDir(path)
    rows = read_metrics(run.metrics_file) if run.metrics_file.is_file() else []
    return TrainingReport(str(path), run.status(), rows)


def curves_png(report: TrainingReport) -> bytes | None:
    """The three panels of the module docstring as PNG bytes; None without any training row."""
    if not report.series("loss")[0] and not report.series("val_ws_psnr")[0]:
        return None
    fig = Figure(figsize=(9, 10), layout="constrained")
    loss_ax, val_ax, route_ax = fig.subplots(3, 1, sharex=True)
    floors = []
    for column, label in (("loss", "total"), ("pixel_loss", "pixel"), ("ratio_loss", "ratio")):
        x, y = report.series(column)
        if x and any(v > 0 for v in y):
            floors.append(_noisy(loss_ax, x, y, label))
    loss_ax.set(ylabel="loss", title="training loss", yscale="log")
    if floors and min(floors) > 0:  # single steps with a ratio loss of ~0 would stretch the log axis to 1e-15
        loss_ax.set_ylim(bottom=min(floors) / 10)
    x, y = report.series("val_ws_psnr")
    val_ax.plot(x, y, marker="o", label="EMA weights")
    for key, label, style in (("start_scores", "starting weights", ":"), ("bicubic_scores", "bicubic", "--")):
        if (value := report.status.get(key, {}).get("ws_psnr")) is not None:
            val_ax.axhline(value, ls=style, color="grey", label=f"{label} ({value:.2f} dB)")
    val_ax.set(ylabel="WS-PSNR (dB)", title="validation")
    for column, label in (("official_fraction", "attention fraction, official rule (expected keep/N)"),
                          ("attention_fraction", "attention fraction, odisr's rule (keep/N)"),
                          ("mask_mean", "training mask mean")):
        x, y = report.series(column)
        if x:
            _noisy(route_ax, x, y, label)
    if (ratio := report.status.get("ratio")) is not None and report.series("attention_fraction")[0]:
        route_ax.axhline(ratio, ls="--", color="grey", label=f"γ = {ratio}")
    route_ax.set(ylabel="share of windows", xlabel="iteration", title="CAMixer routing", ylim=(0, 1))
    for ax in (loss_ax, val_ax, route_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return figure_png(fig)


def _noisy(ax: Any, x: list[float], y: list[float], label: str) -> float:
    """A per-iteration series: faint raw values and, for long runs, their running mean over ~1/50 of the run.
    Returns the smallest value of the line drawn in full (the running mean, or the values themselves)."""
    window = max(1, len(y) // 50)
    if window == 1:
        ax.plot(x, y, label=label, lw=0.8)
        return min(y)
    (line,) = ax.plot(x, y, lw=0.5, alpha=0.25)
    mean = np.convolve(y, np.ones(window) / window, mode="valid")
    ax.plot(x[window - 1 :], mean, color=line.get_color(), label=f"{label} (mean of {window})")
    return float(mean.min())


def _summary_html(report: TrainingReport) -> str:
    items = "\n".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in report.summary_items())
    return f"<h2>Summary</h2>\n<dl>\n{items}\n</dl>"


def render_training_html(report: TrainingReport) -> str:
    """A self-contained HTML page: summary and the training curves."""
    png = curves_png(report)
    curves = figure(png, "Training curves") if png else "<p class=\"note\">No iteration recorded yet.</p>"
    return page(report.path, f"{_summary_html(report)}\n<h2>Curves</h2>\n{curves}")


def write_training_report(
    path: str | os.PathLike[str], *, html: str | os.PathLike[str] | None = None,
    csv: str | os.PathLike[str] | None = None, json_path: str | os.PathLike[str] | None = None,
) -> TrainingReport:
    """Collect the run at ``path`` and write the HTML page, the metrics rows as CSV, and/or status + rows as JSON.

    Raises:
        FileNotFoundError: not a run directory. OSError: an output file cannot be written.
    """
    report = collect_run(path)
    if html is not None:
        Path(html).write_text(render_training_html(report), encoding="utf-8")
    if csv is not None:
        _write_rows(Path(csv), report.rows, COLUMNS)
    if json_path is not None:
        Path(json_path).write_text(json.dumps({"status": report.status, "rows": report.rows}, indent=1) + "\n",
                                   encoding="utf-8")  # fmt: skip
    return report


def _write_rows(path: Path, rows: Sequence[Row], columns: Sequence[str]) -> None:
    import csv as csv_module

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv_module.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
