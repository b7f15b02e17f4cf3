"""The network a run trains: a registered model's architecture, optionally resized, optionally initialised.

``model`` names the architecture and scale (``camixersr-light-x2``); ``model_args`` replace its constructor
arguments (a narrower ``n_feats``, fewer blocks) — checkpoints still load by architecture detection, which reads
those sizes back from the keys and shapes. ``init`` loads weights strictly: a registered model's official file or
a checkpoint path (``params_ema`` preferred in ``{"params", "params_ema"}`` files, as BasicSR evaluates them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from odisr.models import SRModel, available, ensure_weights, find_spec, get_architecture, load_state_dict_file
from odisr.models.loading import load_strict

__all__ = ["build_network", "initial_weights"]


def build_network(
    model: str, model_args: Mapping[str, Any] | None = None, *, device: str | torch.device = "cpu"
) -> SRModel:
    """The untrained network of registered ``model`` with ``model_args`` replacing its constructor arguments.

    ``device="meta"`` allocates nothing (used to validate configurations).

    Raises:
        KeyError: unknown model (close names suggested).
        TypeError, ValueError: ``model_args`` the architecture does not accept.
    """
    spec = find_spec(model)
    arch = get_architecture(spec.architecture)
    with torch.device(device):
        return arch.build(**{**spec.kwargs, **dict(model_args or {})})


def initial_weights(net: SRModel, init: str | None) -> str:
    """Load ``init`` into ``net`` strictly and say where the weights came from (``"random initialisation"``).

    ``init`` is a registered model name (its official weights, downloaded and verified when needed) or a
    checkpoint file (``.pth``/``.safetensors``).

    Raises:
        FileNotFoundError: the file does not exist, or the official weights are user-supplied and missing.
        odisr.models.WeightsError: unreadable checkpoint or weights that do not fit the network (keys listed).
        odisr.download.DownloadError: official weights not cached and not downloadable.
    """
    if init is None:
        return "random initialisation"
    if init in available():
        path = ensure_weights(find_spec(init))
        if path is None:
            raise ValueError(f"init: model {init!r} has no weights to start from")
    else:
        path = Path(init).expanduser()
    load_strict(net, load_state_dict_file(path), source=path, label=f"{type(net).__name__} being trained")
    return str(path)
