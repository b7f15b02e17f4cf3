"""Super-resolution models: CAMixerSR / CAMixerOSR and the baselines, by name or from a checkpoint file.

>>> from odisr import models
>>> models.available()                                 # registered names, e.g. 'camixersr-s-x4'
>>> net = models.load("camixersr-s-x4", ratio=0.5)     # official weights, downloaded once and verified
>>> net = models.load("my_finetune.pth")              # architecture detected from the state dict

Every model is an :class:`SRModel`: ``(B, 3, h, w)`` float RGB in ``[0, 1]`` → raw ``(B, 3, s·h, s·w)``.
Weights are cached under ``$ODISR_HOME/weights`` (see :mod:`odisr.models.weights`).
"""

from __future__ import annotations

from odisr.models.base import SRModel
from odisr.models.loading import (
    build,
    detect_architecture,
    find_spec,
    load,
    parse_weights_args,
    resolve_weights_arg,
)
from odisr.models.registry import (
    Architecture,
    ModelSpec,
    WeightFile,
    architectures,
    available,
    get_architecture,
    get_spec,
    register_architecture,
    register_model,
)
from odisr.models.weights import (
    WeightsError,
    ensure_weights,
    load_state_dict_file,
    save_state_dict,
    weight_cache_path,
    weight_status,
)

# Last: the architecture modules import odisr.models.base/registry, which must exist by then.
from odisr.models import archs  # noqa: E402, F401  (registers every architecture and named model)

__all__ = [
    "Architecture",
    "ModelSpec",
    "SRModel",
    "WeightFile",
    "WeightsError",
    "architectures",
    "available",
    "build",
    "detect_architecture",
    "ensure_weights",
    "find_spec",
    "get_architecture",
    "get_spec",
    "load",
    "load_state_dict_file",
    "parse_weights_args",
    "register_architecture",
    "register_model",
    "resolve_weights_arg",
    "save_state_dict",
    "weight_cache_path",
    "weight_status",
]
