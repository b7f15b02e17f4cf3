"""``metrics.csv`` of a training run: one row per iteration, validation scores on the rows where they were taken.

Columns (:data:`COLUMNS`):

=====================  =====================================================================================
``iteration``          1-based optimiser step (row 0: validation of the starting weights, no training values)
``loss``               total loss = pixel loss + ratio_weight · ratio loss (mean over the ranks)
``pixel_loss``         L1 or WS-L1 (:mod:`odisr.train.losses`)
``ratio_loss``         the network's ratio loss (CAMixer; empty for other networks)
``mask_mean``          training mask mean: share of windows whose hard Gumbel decision was attention (the ratio
                       loss pulls it to 0.5; the official noisy inference keeps ~2γ·mask_mean of the windows)
``attention_fraction`` share of windows odisr's deterministic inference rule would send to attention, keep/N
                       (:mod:`odisr.train.routing` explains why it can differ from γ)
``official_fraction``  share of windows the official (Gumbel) inference keeps in expectation, min(2γ·E[r], 1):
                       the quantity the ratio loss drives towards γ
``lr``                 learning rate of the step
``it_per_s``           iterations per second of this step (wall clock, data included)
``seconds``            training wall time so far (validation and checkpoints excluded)
``val_ws_psnr``        mean WS-PSNR (dB) of the EMA weights on the val panoramas (validation rows only)
``val_ws_ssim``        mean WS-SSIM of the same
=====================  =====================================================================================

Rows are flushed as they are written. On ``--resume`` rows after the checkpoint's iteration are dropped first, so
that the file again holds exactly one row per iteration.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from odisr.download import atomic_path

__all__ = ["COLUMNS", "MetricsLog", "read_metrics"]

COLUMNS = (
    "iteration", "loss", "pixel_loss", "ratio_loss", "mask_mean", "attention_fraction", "official_fraction", "lr",
    "it_per_s", "seconds", "val_ws_psnr", "val_ws_ssim",
)  # fmt: skip

Row = dict[str, float | None]


def read_metrics(path: str | os.PathLike[str]) -> list[Row]:
    """The rows of a ``metrics.csv`` as ``{column: float or None}`` (None for empty cells)."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if not float(value).is_integer() or abs(value) >= 1e15 else str(int(value))


class MetricsLog:
    """Appends rows to ``metrics.csv``; ``resume_after=k`` first drops the rows of iterations above ``k``."""

    def __init__(self, path: str | os.PathLike[str], *, resume_after: int | None = None) -> None:
        self.path = Path(path)
        if resume_after is not None and self.path.is_file():
            kept = [row for row in read_metrics(self.path) if (row["iteration"] or 0) <= resume_after]
            self._rewrite(kept)
        elif resume_after is None or not self.path.is_file():
            self._rewrite([])
        self._file: IO[str] = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)

    def _rewrite(self, rows: list[Row]) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows([_cell(row.get(c)) for c in COLUMNS] for row in rows)

    def append(self, row: Mapping[str, float | None]) -> None:
        """Write one row (missing columns empty) and flush it to disk."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown metrics columns {sorted(unknown)}; columns: {COLUMNS}")
        self._writer.writerow([_cell(row.get(c)) for c in COLUMNS])
        self._file.flush()

    def close(self) -> None:
        self._file.close()
