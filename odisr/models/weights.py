"""Weight files: where they are cached, how they are obtained, and how they are read and written safely.

Cache layout (under :func:`odisr.download.cache_root`, i.e. ``$ODISR_HOME``)::

    weights/<first 16 hex digits of the pin>/<basename>   pinned files (sha256, else git blob SHA-1)
    weights/<model name>/<basename>                       unpinned user-supplied files

Keying pinned files by their hash keeps apart files that share a basename (``LightSR/CAMixerSRx2.pth`` and
``ODISR/CAMixerSRx2.pth``) and shares identical files between names (CAMixerSR ×4 light = LargeSR B).

Checkpoints are read with ``torch.load(map_location="cpu", weights_only=True)`` — never by unpickling arbitrary
objects — or with :mod:`safetensors`. Training wrappers are unwrapped: ``params_ema`` (preferred, the EMA weights
BasicSR evaluates with), ``params``, ``state_dict``, ``model``; a DataParallel ``module.`` prefix is removed.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import torch

from odisr.download import IntegrityError, Pin, atomic_path, cache_root, fetch, verify
from odisr.models.registry import ModelSpec, WeightFile

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
"""Keys under which training frameworks nest the state dict, in order of preference."""

WeightStatus = Literal["cached", "downloadable", "user-supplied", "none"]


class WeightsError(ValueError):
    """A weight file cannot be read safely, holds no state dict, or does not fit the model."""


def _pin(wf: WeightFile) -> Pin:
    return Pin(sha256=wf.sha256, git_blob_sha1=wf.git_blob_sha1, size=wf.size)


def weight_cache_path(wf: WeightFile, *, model: str | None = None) -> Path:
    """Where ``wf`` lives in the cache: ``<ODISR_HOME>/weights/<pin or model>/<basename>`` (see module doc)."""
    key = (wf.sha256 or wf.git_blob_sha1 or "")[:16] or model or "unpinned"
    return cache_root() / "weights" / key / PurePosixPath(wf.filename).name


def weight_status(spec: ModelSpec) -> WeightStatus:
    """``"none"`` (no weights needed), ``"cached"`` (file present; verified on use), ``"downloadable"``
    (pinned URL) or ``"user-supplied"`` (no public URL: see ``spec.weights.instructions``)."""
    wf = spec.weights
    if wf is None:
        return "none"
    if weight_cache_path(wf, model=spec.name).is_file():
        return "cached"
    return "downloadable" if wf.url else "user-supplied"


def ensure_weights(spec: ModelSpec, *, progress: bool = True) -> Path | None:
    """Path of the verified weight file of ``spec``, downloading it when needed; ``None`` if it needs none.

    Raises
    ------
    FileNotFoundError
        User-supplied weights that are not in the cache (the message carries the instructions).
    odisr.download.DownloadError
        Download impossible (offline, no network), or a file that does not match its pins (``IntegrityError``).
    """
    wf = spec.weights
    if wf is None:
        return None
    path = weight_cache_path(wf, model=spec.name)
    hint = f"or pass weights=PATH (CLI: --weights {spec.name}=PATH)"
    if wf.url:
        return fetch(
            wf.url,
            filename=path.name,
            sha256=wf.sha256,
            git_blob_sha1=wf.git_blob_sha1,
            size=wf.size,
            cache_dir=path.parent,
            progress=progress,
            hint=hint,
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"model {spec.name!r} needs weights that odisr cannot download ({wf.filename}). {wf.instructions} "
            f"Then put the file at {path}, {hint}."
        )
    problems = verify(path, _pin(wf))
    if problems:
        raise IntegrityError(f"weight file {path} of model {spec.name!r} is not the expected one: {'; '.join(problems)}")
    return path


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint (``.pth``/``.pt``/… or ``.safetensors``) as a flat ``{key: Tensor}`` dict on CPU.

    The format is recognised from the content, not the suffix (a misnamed file still loads). Wrappers and the
    ``module.`` prefix are removed (see module doc).

    Raises
    ------
    FileNotFoundError
        No such file.
    WeightsError
        The file is not a tensor-only checkpoint (arbitrary pickled objects are refused, never executed), is
        truncated or corrupt, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    obj = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
    return _strip_module_prefix(_unwrap(obj, path))


def _is_safetensors(path: Path) -> bool:
    # safetensors starts with an 8-byte little-endian header length and a JSON header; torch files are zip/pickle.
    with path.open("rb") as f:
        return f.read(9)[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path} as safetensors: {exc}") from exc


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"cannot read {path} as a tensor-only checkpoint: {_torch_reason(exc)} odisr loads checkpoints with "
            "torch.load(weights_only=True) and never unpickles arbitrary objects. If the file comes from a source "
            "you trust, re-save its state dict as plain tensors (torch.save(state_dict, ...) or .safetensors)."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(f"cannot read {path}: it is truncated or not a PyTorch checkpoint ({exc})") from exc


def _torch_reason(exc: Exception) -> str:
    # Keep torch's diagnosis ("Unsupported global ..."), drop its advice to retry with weights_only=False.
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = " ".join(line for line in lines if not line.startswith(boilerplate))
    return (reason or lines[0]).rstrip(".") + "."


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    while not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj, Mapping) and _nonempty(obj.get(k))), None)
        if inner is None:
            raise WeightsError(f"{path} holds no state dict (found {_describe(obj)}; looked for {WRAPPER_KEYS})")
        obj = inner
    return {str(k): v for k, v in obj.items()}


def _nonempty(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value)


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)
        return f"a dict with keys {keys[:8]}{' …' if len(keys) > 8 else ''}"
    return f"a {type(obj).__name__}"


def _strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefix = "module."
    if all(k.startswith(prefix) for k in sd):
        return {k.removeprefix(prefix): v for k, v in sd.items()}
    return sd


def save_state_dict(
    path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``state_dict`` atomically (temporary file + rename) as ``.safetensors`` (by suffix) or ``.pth``.

    Tensors are saved detached, contiguous and on CPU. ``metadata`` (string → string) is stored in the
    safetensors header; for ``.pth`` it is ignored.
    """
    # clone(): safetensors refuses tensors that share memory (views of one storage)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata=dict(metadata) if metadata else None)
        else:
            torch.save(tensors, tmp)
    return Path(path)
