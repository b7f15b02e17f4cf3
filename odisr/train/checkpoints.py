"""Writing and reading the checkpoints of a run (layout in :mod:`odisr.train.rundir`).

A checkpoint of iteration ``k`` is three files, each written atomically, then ``latest.json`` pointing at them:

* ``iter_k.pth`` — ``{"params": weights, "params_ema": EMA weights}``, tensors only: the official BasicSR layout,
  so :func:`odisr.models.load` (architecture detected, ``params_ema`` taken) and the authors' code load it;
* ``iter_k.safetensors`` — the EMA weights; the header metadata ``odisr`` holds JSON with the model name,
  iteration and γ;
* ``state_k.pt`` — everything ``--resume`` needs to continue bit-identically: network, EMA, optimiser, schedule,
  gradient scaler, the RNG streams (torch CPU and CUDA of every rank, the patch sampler's generator) and the
  iteration (the data position: the sampler's generator state fixes every later batch). It holds only tensors
  and plain Python values, so it loads with ``torch.load(weights_only=True)``.

Non-finite weights are never written: :func:`save_checkpoint` refuses them, so ``latest`` always names the last
good checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from odisr.download import atomic_path
from odisr.models import save_state_dict
from odisr.train.rundir import RunDir

__all__ = ["NonFiniteError", "load_state", "non_finite", "save_checkpoint"]


class NonFiniteError(RuntimeError):
    """A loss or weights became NaN or infinite; the run stops and keeps its last good checkpoint."""


def non_finite(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys of floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _cpu(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}


def _save_torch(path: Path, obj: Any) -> None:
    # through a file object: torch.save names the zip's records after a path it is given, and the temporary
    # file's random name would make two identical checkpoints differ byte for byte
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


def save_checkpoint(
    run: RunDir,
    iteration: int,
    params: Mapping[str, torch.Tensor],
    params_ema: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    metadata: Mapping[str, str],
) -> dict[str, Any]:
    """Write the checkpoint of ``iteration`` and make it the latest; returns the ``latest.json`` record.

    Raises:
        NonFiniteError: ``params`` or ``params_ema`` hold NaN/inf (nothing is written).
        OSError: a file cannot be written (the previous latest checkpoint stays the latest).
    """
    bad = non_finite(params) + non_finite(params_ema)
    if bad:
        raise NonFiniteError(f"iteration {iteration}: non-finite weights in {bad[:5]}; checkpoint not written")
    params, params_ema = _cpu(params), _cpu(params_ema)
    _save_torch(run.weights_file(iteration), {"params": params, "params_ema": params_ema})
    # one metadata entry: safetensors writes its header's metadata map in an arbitrary order (a hash map)
    header = {"odisr": json.dumps(dict(metadata), sort_keys=True)}
    save_state_dict(run.weights_file(iteration, ".safetensors"), params_ema, metadata=header)
    _save_torch(run.state_file(iteration), dict(state))
    return run.set_latest(iteration)


def load_state(run: RunDir) -> tuple[int, dict[str, Any]]:
    """``(iteration, training state)`` of the latest checkpoint of ``run``.

    Raises:
        FileNotFoundError: the run has no checkpoint yet (``--resume`` has nothing to resume).
    """
    latest = run.latest()
    if latest is None:
        raise FileNotFoundError(f"{run.root}: no checkpoint to resume from ({run.latest_file} is missing)")
    state = torch.load(run.checkpoints / latest["state"], map_location="cpu", weights_only=True)
    return int(latest["iteration"]), state
