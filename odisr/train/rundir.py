"""The layout of a training run directory (``odisr train CONFIG --out RUN_DIR``)::

    RUN_DIR/config.yaml                      the resolved configuration (every key)
    RUN_DIR/metrics.csv                      one row per iteration (:mod:`odisr.train.history`)
    RUN_DIR/run.json                         status (running | finished | stopped), model, parameters, bicubic
                                             reference scores on the val panoramas, latest checkpoint
    RUN_DIR/checkpoints/iter_0000500.pth     {"params", "params_ema"}: the official (BasicSR) layout
    RUN_DIR/checkpoints/iter_0000500.safetensors   params_ema (params without EMA), metadata in the header
    RUN_DIR/checkpoints/state_0000500.pt     full training state for --resume (only the latest is kept)
    RUN_DIR/checkpoints/latest.json          which checkpoint is the latest, written last

Every file is written to a temporary name and renamed (:func:`odisr.download.atomic_path`), and ``latest.json``
only after the files it names exist: a killed process or a full disk never leaves a half-written checkpoint as
the latest. Nothing here imports torch, so reports read run directories cheaply.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from odisr.download import atomic_path

__all__ = ["RunDir", "is_run_dir"]


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class RunDir:
    """Paths and small JSON records of the run directory ``root`` (module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.config_file = self.root / "config.yaml"
        self.metrics_file = self.root / "metrics.csv"
        self.status_file = self.root / "run.json"
        self.checkpoints = self.root / "checkpoints"
        self.latest_file = self.checkpoints / "latest.json"

    def started(self) -> bool:
        """True when a run has been started here (a resolved config or metrics exist)."""
        return self.config_file.is_file() or self.metrics_file.is_file()

    def weights_file(self, iteration: int, suffix: str = ".pth") -> Path:
        return self.checkpoints / f"iter_{iteration:07d}{suffix}"

    def state_file(self, iteration: int) -> Path:
        return self.checkpoints / f"state_{iteration:07d}.pt"

    def latest(self) -> dict[str, Any] | None:
        """``{"iteration", "weights", "safetensors", "state"}`` (file names in ``checkpoints/``) or None."""
        return read_json(self.latest_file) if self.latest_file.is_file() else None

    def set_latest(self, iteration: int) -> dict[str, Any]:
        """Point ``latest.json`` at the checkpoint of ``iteration`` (its files must exist) and drop older states."""
        record = {
            "iteration": iteration,
            "weights": self.weights_file(iteration).name,
            "safetensors": self.weights_file(iteration, ".safetensors").name,
            "state": self.state_file(iteration).name,
        }
        files = [name for key, name in record.items() if key != "iteration"]
        missing = [name for name in files if not (self.checkpoints / name).is_file()]
        if missing:
            raise FileNotFoundError(f"cannot mark iteration {iteration} as latest: {self.checkpoints} lacks {missing}")
        write_json(self.latest_file, record)
        for old in self.checkpoints.glob("state_*.pt"):
            if old.name != record["state"]:
                old.unlink(missing_ok=True)
        return record

    def status(self) -> dict[str, Any]:
        """The ``run.json`` record ({} before the run wrote one)."""
        return read_json(self.status_file) if self.status_file.is_file() else {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``run.json`` (atomically) and return the record."""
        record = {**self.status(), **fields}
        write_json(self.status_file, record)
        return record


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """True for a directory written by ``odisr train`` (it has ``metrics.csv`` or ``run.json``)."""
    run = RunDir(path)
    return run.root.is_dir() and (run.metrics_file.is_file() or run.status_file.is_file())
