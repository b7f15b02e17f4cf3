"""Registry of architectures (how to build and recognise a network) and of named models (an architecture,
its constructor arguments and its official weight file).

Architecture modules in :mod:`odisr.models.archs` register themselves when imported::

    register_architecture(Architecture("camixersr", build=CAMixerSR, detect=detect_camixersr))
    register_model(ModelSpec("camixersr-s-x4", "camixersr", {"n_feats": 36, "scale": 4}, scale=4,
                             weights=WeightFile(url=..., filename="CAMixerSR_S.pth", sha256=...)))

Names are the public interface (``odisr models list``, ``--model``); they never change meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from odisr.models.base import SRModel

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class WeightFile:
    """A pinned weight file.

    ``url`` is None for user-supplied weights (no pinnable public URL); ``instructions`` then says where to get
    the file. Integrity is checked with ``sha256`` when known, else with ``git_blob_sha1`` (the SHA-1 GitHub stores:
    ``sha1(b"blob <size>\\0" + bytes)``).
    """

    filename: str
    url: str | None = None
    sha256: str | None = None
    git_blob_sha1: str | None = None
    size: int | None = None
    instructions: str = ""


@dataclass(frozen=True)
class Architecture:
    """How to build a network and how to recognise its state dict.

    ``detect(state_dict)`` returns the constructor keyword arguments inferred from key names and tensor shapes,
    or None when the state dict is not of this architecture.
    """

    name: str
    build: Callable[..., SRModel]
    detect: Callable[[StateDict], dict[str, Any] | None]


@dataclass(frozen=True)
class ModelSpec:
    """A named, ready-to-use model: architecture + constructor arguments + official weights."""

    name: str
    architecture: str
    kwargs: dict[str, Any]
    scale: int
    weights: WeightFile | None = None
    description: str = ""
    paper: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_ARCHITECTURES: dict[str, Architecture] = {}
_MODELS: dict[str, ModelSpec] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add an architecture; raises ``ValueError`` if the name is taken."""
    if arch.name in _ARCHITECTURES:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    _ARCHITECTURES[arch.name] = arch
    return arch


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a named model; raises ``ValueError`` if the name is taken or its architecture is unknown."""
    if spec.name in _MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    if spec.architecture not in _ARCHITECTURES:
        raise ValueError(f"model {spec.name!r} names unknown architecture {spec.architecture!r}")
    _MODELS[spec.name] = spec
    return spec


def architectures() -> dict[str, Architecture]:
    """All registered architectures by name (a copy)."""
    return dict(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; raises ``KeyError`` listing the known ones."""
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHITECTURES))}") from None


def available() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_MODELS)


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; raises ``KeyError`` listing the known names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(available())}") from None
