"""Shared test fixtures.

Reference material lives in ``../shared/`` next to the checkout (or where ``$ODISR_SHARED`` points); tests that
need it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("ODISR_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of the shared reference material; skips the test when it is absent."""
    path = _shared_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"shared reference material not found at {path} (set $ODISR_SHARED)")
    return path


@pytest.fixture(scope="session")
def official_s_weights(shared: Path) -> Path:
    """The official CAMixerSR-S ×4 checkpoint."""
    return shared / "weights" / "official" / "CAMixerSR_S.pth"


@pytest.fixture(scope="module")
def scheduler(request: pytest.FixtureRequest):
    """Address of a real local Dask cluster for the test module: single-threaded worker processes, as many as the
    module's ``SCHEDULER_WORKERS`` (default 2)."""
    from distributed import LocalCluster

    workers = getattr(request.module, "SCHEDULER_WORKERS", 2)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address
