"""Distributed training with ``torchrun --nproc-per-node 2`` on the CPU (DDP over gloo).

* A deterministic network (tiny AWSRN, latitude-weighted L1) trained 10 iterations by two processes with the same
  global batch ends within 1e-5 of the single-process run: every rank draws the whole global batch and cuts its
  half, and WS-L1 is normalised by the global batch's weights, so DDP's gradient average is the single-process
  gradient.
* CAMixerSR trains under torchrun too (ratio loss, routing read-out averaged over the ranks, rank 0 writes). Its
  weights are not compared with one process: each rank draws its own Gumbel routing noise, and the official ratio
  loss ``2γ(mean − 0.5)²`` is computed per rank on the local batch, as in BasicSR's DDP training.

Budget: ~30 s on 2 quiet cores (three process starts per torchrun job).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odisr.train import RunDir
from odisr.train.history import read_metrics
from train_support import make_panoramas, odisr_env, odisr_train, tiny_config, write_config

AWSRN = {"model": "awsrn-s-x2", "model_args": {"n_resblocks": 1, "n_feats": 8, "block_feats": 16, "n_awru": 2}}


def torchrun(cfg: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "odisr", "train", str(cfg), "--out", str(out), "--no-progress"]  # fmt: skip
    return subprocess.run(command, env=odisr_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def train_panoramas(shared: Path, tmp_path_factory) -> list[Path]:
    return make_panoramas(shared, tmp_path_factory.mktemp("panos"), ("hohonet_pano.png", "vrview_petra.jpg"), 64)


@pytest.mark.slow
def test_two_processes_match_one_process(train_panoramas, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "awsrn.yaml", tiny_config(
        train_panoramas, [], **AWSRN, data__batch=4, optim__iterations=10, checkpoint_every=10, threads=1))  # fmt: skip
    single, ddp = RunDir(tmp_path / "single"), RunDir(tmp_path / "ddp")
    one = odisr_train(cfg, "--out", single.root)
    assert one.returncode == 0, one.stderr
    two = torchrun(cfg, ddp.root)
    assert two.returncode == 0, two.stderr + two.stdout
    assert ddp.status()["world_size"] == 2 and single.status()["world_size"] == 1
    a, b = (torch.load(r.weights_file(10), map_location="cpu", weights_only=True) for r in (single, ddp))
    worst = max(float((a[key][k] - b[key][k]).abs().max()) for key in a for k in a[key])
    assert worst <= 1e-5
    changed = max(float((a["params"][k] - b0).abs().max()) for k, b0 in _initial(cfg).items())
    assert changed > 100 * max(worst, 1e-7)  # the runs really trained: the agreement is not trivial
    losses = [[r["loss"] for r in read_metrics(run.metrics_file)] for run in (single, ddp)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-7)


@pytest.mark.slow
def test_camixer_trains_under_torchrun(train_panoramas, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "camixer.yaml", tiny_config(
        train_panoramas, [], data__batch=4, optim__iterations=3, checkpoint_every=3, threads=1))  # fmt: skip
    run = RunDir(tmp_path / "run")
    result = torchrun(cfg, run.root)
    assert result.returncode == 0, result.stderr + result.stdout
    rows = read_metrics(run.metrics_file)  # no val panoramas: no row 0
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(r["ratio_loss"] is not None and 0 <= r["mask_mean"] <= 1 for r in rows)
    assert run.latest()["iteration"] == 3 and run.status()["world_size"] == 2


def _initial(cfg: Path) -> dict[str, torch.Tensor]:
    from odisr.train import load_train_config
    from odisr.train.network import build_network

    c = load_train_config(cfg)
    torch.manual_seed(c.seed)
    return build_network(c.model, c.model_args).state_dict()
