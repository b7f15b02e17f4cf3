"""CAMixer's routing of one image, window by window and block by block: the maps inference fills, the per-block
statistics a store records, and the verdict a report states without loading the model.

For block b of a CAMixer network (Wang et al., CVPR 2024) and the LR window (i, j) of an image:

* the *decision* d_b(i, j) ∈ {0, 1}: 1 when the block sent the window through self-attention (a block whose window
  grid is shifted, CAMixerOSR's odd blocks, gives each image window the area-weighted share of the shifted windows
  that overlap it);
* the *score* p_b(i, j) ∈ [0, 1]: the predictor's attention probability of the window (``probs[..., 0]`` of the
  official code), from which the decisions are taken (the ``keep`` highest-scoring windows, see
  :mod:`odisr.models.archs.camixer_common`).

Per block, over the windows of the image: the mean score, the *within-block spread* σ_b (population standard
deviation of p_b over the windows) and the *kept share* (mean of d_b, the fraction of windows that took attention).

Whether a model's routing discriminates windows or only whole blocks (:func:`granularity`): a block discriminates
windows when σ_b ≥ :data:`SPREAD_THRESHOLD` (0.05). Two equal groups of windows whose probabilities differ by 0.1
have σ = 0.05; below that, a block gives every window of the image practically the same probability, so which
windows it keeps is decided by differences far smaller than the predictor's own resolution and the block acts on
the image as a whole (all windows, or none, or an arbitrary subset at γ ≠ 0.5). Over several images the median σ_b
of each block is used. The model routes *per window* when at least one block discriminates windows, else *per block*.
Measured on a 256×128 LR panorama: the official CAMixerSR-S ×4 weights have σ_b ≤ 0.032 in all 20 blocks (block
means 0, 0.03 … 0.62, 1), so they route per block; the untrained random-init checkpoints have σ_b ≤ 0.01.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SPREAD_THRESHOLD", "BlockStats", "Granularity", "RoutingMaps", "granularity"]

#: Within-block spread σ_b (probability units) from which a block counts as discriminating windows.
SPREAD_THRESHOLD = 0.05


@dataclass(frozen=True)
class BlockStats:
    """Per block (forward order) of one image: mean score, within-block spread σ (population std of the window
    scores) and kept share (fraction of windows that took attention); all in [0, 1]."""

    score_mean: tuple[float, ...]
    score_std: tuple[float, ...]
    kept: tuple[float, ...]

    def to_attrs(self) -> dict[str, list[float]]:
        """JSON-ready form for the pair attrs (``routing``), 5 decimals."""
        return {k: [round(float(v), 5) for v in getattr(self, k)] for k in ("score_mean", "score_std", "kept")}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> BlockStats:
        """Inverse of :meth:`to_attrs`; raises ``KeyError``/``TypeError``/``ValueError`` on a malformed record."""
        values = {k: tuple(float(v) for v in attrs[k]) for k in ("score_mean", "score_std", "kept")}
        if len({len(v) for v in values.values()}) != 1:
            raise ValueError("routing statistics: score_mean, score_std and kept differ in length")
        return cls(**values)


@dataclass
class RoutingMaps:
    """Per-block decisions and scores of every LR window of one image, filled tile by tile during inference.

    ``windows``: ``(nH, nW)``, the image's LR windows (``ceil(H / window)``, ``ceil(W / window)``). ``decisions`` and
    ``scores`` are ``(n_blocks, nH, nW)`` float32, allocated by the first :meth:`put` (NaN until filled).
    """

    windows: tuple[int, int]
    decisions: np.ndarray | None = None
    scores: np.ndarray | None = None

    def put(self, wy: int, wx: int, routing: np.ndarray) -> None:
        """Store one tile's windows: ``routing`` ``(2, n_blocks, h, w)`` (decisions, scores) at window ``(wy, wx)``."""
        if self.decisions is None or self.scores is None:
            self.decisions, self.scores = np.full((2, routing.shape[1], *self.windows), np.nan, np.float32)
        h, w = routing.shape[-2:]
        self.decisions[:, wy : wy + h, wx : wx + w] = routing[0]
        self.scores[:, wy : wy + h, wx : wx + w] = routing[1]

    @property
    def filled(self) -> bool:
        return self.scores is not None and bool(np.isfinite(self.scores).all())

    def fraction(self) -> np.ndarray:
        """``(nH, nW)`` float32: share of blocks that sent each window to attention (the store's ``attention``)."""
        return self._arrays()[0].mean(0)

    def score(self) -> np.ndarray:
        """``(nH, nW)`` float32: the predictor's attention probability of each window, mean over blocks (the store's
        ``attention_score``)."""
        return self._arrays()[1].mean(0)

    def stats(self) -> BlockStats:
        """Per-block mean score, within-block spread σ and kept share over the image's windows."""
        decisions, scores = self._arrays()
        flat = scores.reshape(len(scores), -1).astype(np.float64)
        return BlockStats(tuple(flat.mean(1)), tuple(flat.std(1)), tuple(decisions.reshape(len(decisions), -1).mean(1)))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.decisions is None or self.scores is None:
            raise ValueError("no routing recorded: the model is not content-aware or no tile ran")
        return self.decisions, self.scores


@dataclass(frozen=True)
class Granularity:
    """The verdict on a model's routing over ``images`` images: per block, the median spread σ, mean score and mean
    kept share; ``per_window`` when some block's median σ reaches ``threshold``."""

    images: int
    spread: tuple[float, ...]
    score_mean: tuple[float, ...]
    kept: tuple[float, ...]
    threshold: float = SPREAD_THRESHOLD

    @property
    def discriminating(self) -> list[int]:
        """Indices of the blocks that discriminate windows."""
        return [b for b, s in enumerate(self.spread) if s >= self.threshold]

    @property
    def per_window(self) -> bool:
        return bool(self.discriminating)

    def sentence(self) -> str:
        """One sentence for the report, with the numbers it rests on."""
        n, k = len(self.spread), len(self.discriminating)
        where = f"median over {self.images} image{'s' * (self.images != 1)}"
        if self.per_window:
            return (f"Routes per window: {k} of {n} blocks give their windows different attention scores "
                    f"(within-block spread σ ≥ {self.threshold:g}; largest {max(self.spread):.3f}, {where}).")
        return (f"Routes per block, not per window: in every one of the {n} blocks the windows get nearly the same "
                f"attention score (within-block spread σ ≤ {max(self.spread, default=0):.3f} < {self.threshold:g}, "
                f"{where}), so each block treats the image as a whole; its score map cannot show spatial structure.")


def granularity(stats: Iterable[BlockStats], threshold: float = SPREAD_THRESHOLD) -> Granularity | None:
    """The verdict over the images of one model (their :class:`BlockStats`); None when there is none or their
    block counts differ (different architectures under one name)."""
    stats = list(stats)
    if not stats or len({len(s.score_std) for s in stats}) != 1:
        return None

    def per_block(field: str, reduce: Any) -> tuple[float, ...]:
        return tuple(float(reduce(col)) for col in zip(*(getattr(s, field) for s in stats)))

    return Granularity(len(stats), per_block("score_std", statistics.median), per_block("score_mean", statistics.fmean),
                       per_block("kept", statistics.fmean), threshold)  # fmt: skip
