"""The run records of an odisr store (root attrs ``runs``, appended by every ``odisr run``/``odisr evaluate``).

Each record holds ``id`` (newer stores), ``command``, ``config``, ``started``/``finished`` (ISO 8601, UTC;
``finished`` None while running or after an interrupted run), ``summary`` {done, failed, skipped, seconds,
megapixels_per_s, warmup_seconds, output_megapixels} and, from odisr 0.1 stores written after the run reports were
added, the cluster: ``device``, ``workers``, ``threads``, ``scheduler``, ``dashboard`` (see
:func:`pipelines.store.record_run`). Older records lack some keys: the device then comes from ``config``, and the
output megapixels from throughput × wall time (the throughput is defined as output megapixels over wall time, so the
product is exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RunRecord", "run_records"]


@dataclass(frozen=True)
class RunRecord:
    """One run of the store. Counts are (image, model) pairs; ``seconds``: wall time of the run;
    ``megapixels_per_s``: output megapixels of its completed pairs per second of wall time; ``warmup_seconds``: time
    before the first pair completed (recorded by newer versions only); None when not recorded."""

    index: int
    command: str
    started: str | None
    finished: str | None
    device: str | None = None
    workers: int | None = None
    threads: int | None = None
    scheduler: str | None = None
    dashboard: str | None = None
    done: int | None = None
    failed: int | None = None
    skipped: int | None = None
    seconds: float | None = None
    output_megapixels: float | None = None
    megapixels_per_s: float | None = None
    warmup_seconds: float | None = None

    @property
    def complete(self) -> bool:
        """Whether the run recorded its end (False: still running, or interrupted)."""
        return self.finished is not None


def _num(value: Any, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return kind(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _record(index: int, raw: Mapping[str, Any]) -> RunRecord:
    summary = raw.get("summary") if isinstance(raw.get("summary"), Mapping) else {}
    config = raw.get("config") if isinstance(raw.get("config"), Mapping) else {}
    seconds, rate = _num(summary.get("seconds")), _num(summary.get("megapixels_per_s"))
    output = _num(summary.get("output_megapixels"))
    if output is None and seconds is not None and rate is not None:
        output = rate * seconds
    return RunRecord(
        index=index,
        command=str(raw.get("command") or "?"),
        started=_text(raw.get("started")),
        finished=_text(raw.get("finished")),
        device=_text(raw.get("device") or config.get("device")),
        workers=_num(raw.get("workers"), int),
        threads=_num(raw.get("threads"), int),
        scheduler=_text(raw.get("scheduler")),
        dashboard=_text(raw.get("dashboard")),
        done=_num(summary.get("done"), int),
        failed=_num(summary.get("failed"), int),
        skipped=_num(summary.get("skipped"), int),
        seconds=seconds,
        output_megapixels=output,
        megapixels_per_s=rate,
        warmup_seconds=_num(summary.get("warmup_seconds")),
    )


def run_records(runs: Iterable[Any]) -> list[RunRecord]:
    """The store's ``runs`` attr as records, numbered from 1 in the order they ran; malformed entries (not a
    mapping) are skipped."""
    return [_record(i, raw) for i, raw in enumerate(runs, start=1) if isinstance(raw, Mapping)]
