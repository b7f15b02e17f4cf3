"""Check a store: re-read every (image, model) pair and sort it into verified, corrupt, unverifiable, failed or
running/orphaned (``odisr verify``).

A complete pair *verifies* when its ``sr`` array has the recorded shape and every chunk still matches the digest
recorded when it was written (:mod:`pipelines.checksum`). A ``running`` pair is one whose task has not finished:
*orphaned* for sure when every run recorded in the store has finished (its writer was killed; the next run of the
same command redoes it), otherwise running or orphaned (a run is in progress, or was killed without a trace).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import zarr

from pipelines import store as st
from pipelines.checksum import check

VERIFIED, CORRUPT, UNVERIFIABLE, FAILED, RUNNING = "verified", "corrupt", "unverifiable", "failed", "running"
#: Verdicts that make ``odisr verify`` exit non-zero: complete pairs that do not verify.
BAD = (CORRUPT, UNVERIFIABLE)


@dataclass(frozen=True)
class PairCheck:
    """The verdict on one pair: ``verdict`` is one of the constants above, ``detail`` says why (one line)."""

    key: str
    model: str
    verdict: str
    detail: str = ""
    source: str = ""


def pairs(root: zarr.Group) -> Iterator[tuple[str, str, zarr.Group]]:
    """Every (image key, model, group) of an odisr store, in key order."""
    for key, image in sorted(root["images"].groups()):
        for model, group in sorted(image.groups()):
            yield key, model, group


def verify_store(path: str, on_pair: Callable[[PairCheck], None] | None = None) -> list[PairCheck]:
    """Verdicts on every pair of the store at ``path`` (a directory or an fsspec URL), in key order.

    ``on_pair`` is called after each pair (progress). Memory: one chunk of ``sr`` at a time.

    Raises:
        pipelines.store.StoreError: ``path`` is not an odisr store.
    """
    root = st.open_store(path, create=False) if _exists(path) else _missing(path)
    runs_open = any(run.get("finished") is None for run in root.attrs.get("runs", []))
    results = []
    for key, model, group in pairs(root):
        result = _check_pair(key, model, group, runs_open)
        results.append(result)
        if on_pair is not None:
            on_pair(result)
    return results


def mark_for_redo(path: str, check: PairCheck) -> None:
    """Record a corrupt pair as ``failed``, its error naming the damage, so that the next run of the same command
    recomputes it (a complete pair would be skipped)."""
    group = zarr.open_group(path, path=st.pair_path(check.key, check.model), mode="r+")
    group.attrs.update({"status": st.FAILED, "error": f"odisr verify: {check.detail}"})


def _exists(path: str) -> bool:
    try:
        zarr.open_group(path, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False
    return True


def _missing(path: str) -> Any:
    raise st.StoreError(f"{path}: no such odisr store")


def _check_pair(key: str, model: str, group: zarr.Group, runs_open: bool) -> PairCheck:
    attrs = dict(group.attrs)
    status, source = attrs.get("status"), str(attrs.get("source", ""))
    if status == st.FAILED:
        return PairCheck(key, model, FAILED, str(attrs.get("error", "")), source)
    if status != st.COMPLETE:
        detail = (
            "running, or orphaned by a killed run; re-running the command redoes it"
            if runs_open
            else "orphaned: every run has finished but this pair never completed; re-running the command redoes it"
        )
        return PairCheck(key, model, RUNNING, detail, source)
    return PairCheck(key, model, *_check_sr(group, attrs), source)


def _check_sr(group: zarr.Group, attrs: dict[str, Any]) -> tuple[str, str]:
    try:
        sr = group[st.SR]
    except KeyError:
        return CORRUPT, "marked complete but its sr array is missing"
    expected = attrs.get("sr_shape")
    if expected is not None and list(sr.shape[:2]) != list(expected):
        return CORRUPT, f"sr is {list(sr.shape[:2])}, the pair recorded {expected}"
    recorded = attrs.get("sr_checksum")
    if recorded is None:
        return UNVERIFIABLE, "no sr_checksum recorded (an older odisr wrote it); re-run with --overwrite to record one"
    try:
        problems = list(check(sr, recorded))
    except ValueError as exc:
        return UNVERIFIABLE, str(exc)
    if problems:
        shown = "; ".join(f"chunk {st.SR}/c/{chunk.replace('.', '/')}: {why}" for chunk, why in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return CORRUPT, f"{len(problems)} chunk(s) do not match their checksum: {shown}{more}"
    return VERIFIED, f"{len(recorded['chunks'])} chunks match"
