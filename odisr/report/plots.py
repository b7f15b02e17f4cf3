"""Report figures as PNG bytes (matplotlib's Agg canvas, no pyplot: no global backend state, no display needed).

* :func:`band_plot` — WS-PSNR by latitude band, one line per model (latitude −90°…90° on the x axis);
* :func:`image_bar_plot` — per-image WS-PSNR, one bar per model in each image's group;
* :func:`attention_overlay` — CAMixer's attention-window map over the SR preview.
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

__all__ = ["attention_overlay", "band_plot", "band_means", "image_bar_plot"]

_DPI = 100


def _png(fig: Figure) -> bytes:
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
    return _png(fig)


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
    return _png(fig)


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
    if preview.ndim != 3 or preview.shape[2] != 3 or attention.ndim != 2:
        raise ValueError(f"expected preview (h, w, 3) and attention (a, b), got {preview.shape} and {attention.shape}")
    h, w = preview.shape[:2]
    fig = Figure(figsize=(9, 9 * h / w * 0.9 + 0.8), layout="constrained")
    ax = fig.add_subplot()
    extent = (0, w, h, 0)
    ax.imshow(preview, extent=extent)
    share = np.clip(np.nan_to_num(attention.astype(np.float32)), 0.0, 1.0)
    colours = ScalarMappable(Normalize(0.0, 1.0), "magma")
    # opacity grows with the attention share, so convolution-only windows leave the panorama visible
    ax.imshow(share, extent=extent, cmap=colours.cmap, norm=colours.norm, alpha=0.15 + 0.6 * share,
              interpolation="nearest")
    fig.colorbar(colours, ax=ax, shrink=0.8, label="fraction of blocks using attention")
    ax.set_axis_off()
    mean = f"mean {float(np.mean(share)):.2f}"
    ax.set_title(f"{title} — {mean}" if title else mean)
    return _png(fig)
