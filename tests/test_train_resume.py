"""Exact resume: ``odisr train`` killed with SIGKILL at a random iteration and resumed with ``--resume`` ends with a
checkpoint bit-identical to an uninterrupted run (CPU, one thread), and the same metrics, row for row.

The killed run cuts its batches ahead on a worker thread (``data.prefetch: true``, the default on CUDA), the
uninterrupted one serially: its checkpoints hold the sampler state from before the batch drawn ahead.

Real subprocesses and a real SIGKILL (no cleanup code can run). Budget: ~20 s on 2 quiet cores (three process
starts; a tiny CAMixerSR for 24 iterations).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from odisr.train import RunDir
from odisr.train.history import read_metrics
from train_support import make_panoramas, odisr_env, odisr_train, tiny_config, write_config

ITERATIONS = 24
TIMING = {"it_per_s", "seconds"}  # the only columns allowed to differ


def _rows_written(metrics: Path) -> int:
    try:
        return max(0, len(metrics.read_text().splitlines()) - 1)  # rows after the header (no val: no row 0)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(shared: Path, tmp_path: Path) -> None:
    train = make_panoramas(shared, tmp_path / "panos", ("hohonet_pano.png", "vrview_petra.jpg"), 64)
    configs = {prefetch: write_config(tmp_path / f"train_{prefetch}.yaml", tiny_config(
        train, [], optim__iterations=ITERATIONS, checkpoint_every=4, threads=1, data__sampling="sphere",
        data__prefetch=prefetch)) for prefetch in (False, True)}  # fmt: skip

    whole = odisr_train(configs[False], "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    kill_at = random.randint(5, ITERATIONS - 6)
    killed = RunDir(tmp_path / "killed")
    command = [sys.executable, "-m", "odisr", "train", str(configs[True]), "--out", str(killed.root), "--no-progress"]
    proc = subprocess.Popen(command, env=odisr_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _rows_written(killed.metrics_file) < kill_at and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"the run ended before the kill at iteration {kill_at}"
    stopped_at = killed.latest()["iteration"] if killed.latest() else 0
    assert stopped_at < ITERATIONS, (kill_at, stopped_at)

    resumed = odisr_train(configs[True], "--out", killed.root, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert killed.status()["resumed_from"] == stopped_at

    a, b = RunDir(tmp_path / "whole"), killed
    final = ITERATIONS
    assert a.weights_file(final, ".safetensors").read_bytes() == b.weights_file(final, ".safetensors").read_bytes()
    ca, cb = (torch.load(r.weights_file(final), map_location="cpu", weights_only=True) for r in (a, b))
    for key in ("params", "params_ema"):
        assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key]), f"{key} differ (killed at {kill_at})"
    rows_a, rows_b = read_metrics(a.metrics_file), read_metrics(b.metrics_file)
    assert [r["iteration"] for r in rows_b] == list(range(1, ITERATIONS + 1))  # one row per iteration, once
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in rows_b]
