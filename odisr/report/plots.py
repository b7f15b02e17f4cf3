"""Report figures as PNG bytes (matplotlib's Agg canvas, no pyplot: no global backend state, no display needed).

* :func:`band_plot` — WS-PSNR by latitude band, one line per model (latitude −90°…90° on the x axis);
* :func:`image_bar_plot` — per-image WS-PSNR, one bar per model in each image's group;
* :func:`attention_overlay` — CAMixer's attention-window map over the SR preview;
* :func:`routing_overlay` — the predictor's attention scores (and the decisions) of every LR window over the preview;
* :func:`block_chart` — per CAMixer block: mean attention score, its within-block spread σ and the kept share.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from odisr.report.tables import ImageRow
from odisr.routing import Granularity

__all__ = ["attention_overlay", "band_means", "band_plot", "block_chart", "image_bar_plot", "routing_overlay"]

_DPI = 100


def figure_png(fig: Figure) -> bytes:
    """The matplotlib figure rendered as PNG bytes (the reports' DPI)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def band_means(rows: Sequence[ImageRow]) -> dict[str, list[tuple[float, float, float]]]:
    """Per model, the mean WS-PSNR (dB) of each latitude band over its completed images:
    ``{model: [(lat_min°, lat_max°, mean dB), ...]}`` from south to north.

    Bands are matched by rank (k-th band from the south), not by their exact edges, which move by a fraction of a
    row between image heights; the edges shown are the mean edges. Infinite values (error-free bands) are left out.
    """
    acc: dict[str, dict[tuple[int, int], list[tuple[float, float, float]]]] = {}
    for r in rows:
        if r.status != "complete":
            continue
        ordered = sorted(r.bands, key=lambda b: b[0] + b[1])
        for k, band in enumerate(ordered):
            if math.isfinite(band[2]):
                acc.setdefault(r.model, {}).setdefault((len(ordered), k), []).append(band)
    return {
        model: sorted((tuple(float(v) for v in np.mean(b, axis=0)) for b in bands.values()), key=lambda b: b[0] + b[1])
        for model, bands in sorted(acc.items())
    }


def band_plot(rows: Sequence[ImageRow]) -> bytes | None:
    """WS-PSNR (dB) by latitude band, one line per model; None when no completed row has bands."""
    means = band_means(rows)
    if not means:
        return None
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for model, bands in means.items():
        centres = [(lo + hi) / 2 for lo, hi, _ in bands]
        ax.plot(centres, [db for *_, db in bands], marker="o", label=model)
    ax.set(xlim=(-90, 90), xticks=range(-90, 91, 30), xlabel="latitude (°)", ylabel="WS-PSNR (dB)",
           title="WS-PSNR by latitude band (mean over images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure_png(fig)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def image_bar_plot(rows: Sequence[ImageRow], max_images: int = 40) -> bytes | None:
    """Per-image WS-PSNR (dB) as grouped bars (one group per image, one bar per model); the first
    ``max_images`` images (by key) only. None when no completed row has a finite WS-PSNR."""
    done = [r for r in rows if r.status == "complete" and r.ws_psnr is not None and math.isfinite(r.ws_psnr)]
    if not done:
        return None
    all_images = sorted({r.image for r in done})
    images = all_images[:max_images]
    models = sorted({r.model for r in done})
    value = {(r.image, r.model): r.ws_psnr for r in done}
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(6.0, 0.35 * len(images) * max(1, len(models)) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(images))
    for k, model in enumerate(models):
        heights = [value.get((img, model), np.nan) for img in images]
        ax.bar(x + (k - (len(models) - 1) / 2) * width, heights, width, label=model)
    finite = [value[k] for k in value if k[0] in images]
    ax.set_ylim(min(finite) - 1.0, max(finite) + 0.5)  # bars from 0 dB would hide differences of tenths of a dB
    ax.set_xticks(x, [_short(i) for i in images], rotation=45, ha="right", fontsize="small")
    shown = f" (first {len(images)} of {len(all_images)})" if len(all_images) > len(images) else ""
    ax.set(ylabel="WS-PSNR (dB)", title=f"WS-PSNR per image{shown}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return figure_png(fig)


def attention_overlay(preview: np.ndarray, attention: np.ndarray, title: str = "") -> bytes:
    """CAMixer's attention map drawn over the panorama preview.

    Args:
        preview: (h, w, 3) uint8 RGB SR preview.
        attention: (a, b) float32 in [0, 1], one value per LR window (fraction of CAMixer blocks that sent the
            window to attention); stretched over the whole preview, nearest neighbour.
        title: figure title (plain text).

    Raises:
        ValueError: shapes not (h, w, 3) and 2-D.
    """
    _check_maps(preview, attention)
    h, w = preview.shape[:2]
    fig = Figure(figsize=(9, 9 * h / w * 0.9 + 0.8), layout="constrained")
    ax = fig.add_subplot()
    share = _overlay(fig, ax, preview, attention, "magma", "fraction of blocks using attention", shade=True)
    mean = f"mean {float(np.mean(share)):.2f}"
    ax.set_title(f"{title} — {mean}" if title else mean)
    return figure_png(fig)


def _check_maps(preview: np.ndarray, *maps: np.ndarray) -> None:
    if preview.ndim != 3 or preview.shape[2] != 3 or any(m.ndim != 2 for m in maps):
        shapes = " and ".join(str(m.shape) for m in maps)
        raise ValueError(f"expected preview (h, w, 3) and attention maps (a, b), got {preview.shape} and {shapes}")


def _overlay(fig: Figure, ax: object, preview: np.ndarray, values: np.ndarray, cmap: str, label: str, *,
             shade: bool) -> np.ndarray:
    """Draw per-window ``values`` in [0, 1] over ``preview`` on ``ax`` with a colour bar; returns them clipped.

    ``shade``: opacity grows with the value (convolution-only windows leave the panorama visible); else a uniform
    opacity, so that equal values look equal everywhere."""
    h, w = preview.shape[:2]
    extent = (0, w, h, 0)
    ax.imshow(preview, extent=extent)
    clipped = np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0)
    colours = ScalarMappable(Normalize(0.0, 1.0), cmap)
    ax.imshow(clipped, extent=extent, cmap=colours.cmap, norm=colours.norm,
              alpha=0.15 + 0.6 * clipped if shade else 0.6, interpolation="nearest")  # fmt: skip
    fig.colorbar(colours, ax=ax, shrink=0.8, label=label)
    ax.set_axis_off()
    return clipped


def routing_overlay(preview: np.ndarray, score: np.ndarray, fraction: np.ndarray | None = None,
                    title: str = "") -> bytes:
    """The predictor's attention score of every LR window over the panorama preview (left) and, when given, the
    share of blocks that sent each window to attention (right); the colour scales span the full [0, 1].

    Args:
        preview: (h, w, 3) uint8 RGB SR preview.
        score: (a, b) float32 in [0, 1], per LR window the predictor's attention probability, mean over blocks
            (the store's ``attention_score``); stretched over the whole preview, nearest neighbour.
        fraction: optional (a, b) float32 in [0, 1], the store's ``attention`` (decisions).
        title: figure title (plain text).

    Raises:
        ValueError: shapes not (h, w, 3) and 2-D.
    """
    maps = (score,) if fraction is None else (score, fraction)
    _check_maps(preview, *maps)
    h, w = preview.shape[:2]
    fig = Figure(figsize=(6 * len(maps) + 1, 6 * h / w + 1.0), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    lo, hi = float(np.nanmin(score)), float(np.nanmax(score))
    _overlay(fig, axes[0], preview, score, "viridis", "attention score (mean over blocks)", shade=False)
    axes[0].set_title(f"predictor's score: {lo:.3f}–{hi:.3f}, σ {float(np.nanstd(score)):.3f}", fontsize="medium")
    if fraction is not None:
        share = _overlay(fig, axes[1], preview, fraction, "magma", "fraction of blocks using attention", shade=True)
        axes[1].set_title(f"decisions: mean {float(np.mean(share)):.2f}", fontsize="medium")
    if title:
        fig.suptitle(title)
    return figure_png(fig)


def block_chart(verdict: Granularity, title: str = "") -> bytes:
    """Per CAMixer block (forward order): the mean attention score as bars with the within-block spread σ as error
    bars (median over the images), and the share of windows kept for attention as dots; all in [0, 1]."""
    n = len(verdict.spread)
    x = np.arange(1, n + 1)
    fig = Figure(figsize=(max(5.0, 0.3 * n + 2), 2.8), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x, verdict.score_mean, yerr=verdict.spread, color="#7aa6c2", ecolor="#333", capsize=2,
           label="mean attention score ± σ")  # fmt: skip
    ax.plot(x, verdict.kept, "o", color="#c2410c", markersize=4, label="share of windows kept")
    ax.set(xlim=(0.4, n + 0.6), ylim=(0, 1.05), xlabel="block", ylabel="share")
    ax.set_xticks(x, [str(i) if n <= 24 or i % 2 else "" for i in x], fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper right", ncols=2)
    if title:
        ax.set_title(title, fontsize="medium")
    return figure_png(fig)
