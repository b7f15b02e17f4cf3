"""Helpers shared by the training tests: tiny real panoramas, tiny configurations, running ``odisr train``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from odisr.io import read_image, write_image
from odisr.resize import imresize

REPO = Path(__file__).resolve().parents[1]

#: Tiny CAMixerSR (2 groups of 1 block, 8 features): ~12K parameters, a training step in ~0.1 s on one thread.
TINY_CAMIXER = {"model": "camixersr-light-x2", "model_args": {"n_feats": 8, "n_block": [1, 1], "n_group": 2}}


def make_panoramas(shared: Path, out: Path, names: tuple[str, ...], height: int) -> list[Path]:
    """Real panoramas of ``shared/data/erp`` shrunk to ``2·height × height`` (ERP-aware bicubic), PNGs in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        image = read_image(shared / "data" / "erp" / name)
        small = imresize(image, size=(height, 2 * height), wrap=True)
        paths.append(write_image(out / Path(name).with_suffix(".png").name, np.asarray(small)))
    return paths


def tiny_config(train: list[Path], val: list[Path], **changes: Any) -> dict[str, Any]:
    """A complete tiny training configuration (CAMixerSR ×2, LR patches of 16 px, batch 2) as a dict."""
    cfg: dict[str, Any] = {
        **TINY_CAMIXER,
        "data": {"train": [str(p) for p in train], "val": [str(p) for p in val], "patch": 16, "batch": 2},
        "loss": {"pixel": "ws_l1"},
        "optim": {"iterations": 4, "lr": 1e-3},
        "checkpoint_every": 2,
        "val_every": None,
    }
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            cfg.setdefault(section, {})[leaf] = value
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def odisr_env(threads: int = 1) -> dict[str, str]:
    """Environment for ``odisr`` subprocesses: this checkout first on the path, a fixed thread count."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def odisr_train(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m odisr train ARGS`` in a subprocess (no progress bar), output captured."""
    command = [sys.executable, "-m", "odisr", "train", *map(str, args), "--no-progress"]
    return subprocess.run(command, env=odisr_env(), capture_output=True, text=True, timeout=timeout)
