"""Training and fine-tuning on panoramas: ``odisr train CONFIG --out RUN_DIR`` and its Python API.

>>> from odisr.train import load_train_config, train
>>> cfg = load_train_config("train_camixersr_light_x2", ["optim.iterations=100"])
>>> result = train(cfg, "runs/light_x2")            # resumable: train(cfg, "runs/light_x2", resume=True)

Modules, one concept each: :mod:`~odisr.train.config` (validated YAML), :mod:`~odisr.train.network` (what is
trained), :mod:`~odisr.train.data` (pairs, ERP patches, batches), :mod:`~odisr.train.losses` (L1, WS-L1),
:mod:`~odisr.train.routing` (CAMixer's mask mean and attention fraction), :mod:`~odisr.train.ema`,
:mod:`~odisr.train.optim` (Adam/AdamW, cosine/multistep + warm-up), :mod:`~odisr.train.distributed` (torchrun,
DDP), :mod:`~odisr.train.validation` (through :func:`odisr.upscale`), :mod:`~odisr.train.checkpoints`,
:mod:`~odisr.train.rundir` (run directory layout), :mod:`~odisr.train.history` (``metrics.csv``) and
:mod:`~odisr.train.loop` (the loop itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from odisr.train.config import TrainConfig, TrainConfigError, apply_overrides, load_train_config
from odisr.train.rundir import RunDir, is_run_dir

if TYPE_CHECKING:
    from odisr.train.loop import RunError, TrainResult, train

__all__ = [
    "RunDir",
    "RunError",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "apply_overrides",
    "is_run_dir",
    "load_train_config",
    "train",
]


def __getattr__(name: str) -> Any:
    # Lazy so that reading a run directory (``odisr report RUN_DIR``) does not import torch.
    if name in ("RunError", "TrainResult", "train"):
        from odisr.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'odisr.train' has no attribute {name!r}")
