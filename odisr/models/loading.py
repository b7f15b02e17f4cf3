"""Ready-to-run models: :func:`load` a registered name or a checkpoint file, strictly, in eval mode.

* ``load("camixersr-s-x4")``: the spec's architecture and constructor arguments, weights from the cache (downloaded
  and verified when needed) or from ``weights=PATH``.
* ``load("some/file.pth")``: every registered :class:`~odisr.models.registry.Architecture` is asked to ``detect``
  the state dict; the single one that recognises it is built with the detected arguments.

Weights always load strictly. A mismatch raises one :class:`~odisr.models.weights.WeightsError` listing the
missing, unexpected and shape-mismatched keys. ``ratio=`` on a model that is not content-aware only warns (it is
ignored), so that one ratio can be passed to every model of a comparison.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from odisr.device import resolve_device
from odisr.models.base import SRModel
from odisr.models.compiled import compile_model
from odisr.models.registry import Architecture, ModelSpec, architectures, available, get_architecture, get_spec
from odisr.models.weights import WeightsError, ensure_weights, load_state_dict_file

PathLike = str | os.PathLike[str]
_SHOWN = 5  # keys quoted per category in a mismatch message


def load(
    name_or_path: str | os.PathLike[str],
    *,
    weights: PathLike | None = None,
    device: str | torch.device = "cpu",
    ratio: float | None = None,
    compile: bool = False,
) -> SRModel:
    """A registered model or a checkpoint file as an :class:`SRModel` in ``eval()`` mode on ``device``.

    Parameters
    ----------
    name_or_path:
        A registered model name (see :func:`odisr.models.available`) or the path of a checkpoint
        (``.pth``/``.pt``/``.safetensors``) whose architecture is detected from its keys and shapes.
    weights:
        Checkpoint to use instead of the model's official weights (only with a model name).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a :class:`torch.device`, or ``"auto"`` (CUDA, else MPS,
        else CPU).
    ratio:
        CAMixer's ratio γ ∈ [0, 1], the share of windows routed to self-attention, applied with
        ``model.set_ratio``. Ignored with a ``UserWarning`` for models that are not content-aware.
    compile:
        Compile the forward pass with TorchInductor (:func:`odisr.models.compiled.compile_model`): static shapes,
        compiled on the first call for each input shape (tens of seconds to minutes, see README "Performance"),
        then served from the process's cache. Outputs stay within 1e-5 of the uncompiled model's.

    Raises
    ------
    FileNotFoundError
        ``weights`` or the path does not exist (checked first), or user-supplied weights are missing.
    KeyError
        Unknown model name (the message suggests close names).
    ValueError
        ``weights`` given together with a checkpoint path.
    WeightsError
        Unreadable/unsafe checkpoint, architecture not recognised, or weights that do not fit the model.
    RuntimeError
        ``compile=True`` on the CPU without a C++ compiler.
    odisr.download.DownloadError
        Official weights not cached and not downloadable (offline, no network, integrity failure).
    """
    weights_path = _existing_file(weights) if weights is not None else None
    if _is_model_name(name_or_path):
        spec = get_spec(str(name_or_path))
        path = weights_path or ensure_weights(spec)  # before building: a missing file fails fast
        state_dict = load_state_dict_file(path) if path is not None else None
        model, label = build(spec), _label(spec.architecture, spec.kwargs, name=spec.name)
    else:
        if weights_path is not None:
            raise ValueError(f"weights= goes with a model name; {name_or_path} is a file: pass just the file")
        path = _existing_file(name_or_path, unknown_name=True)
        state_dict = load_state_dict_file(path)
        arch, kwargs = detect_architecture(state_dict, source=path)
        model, label = _build(arch, kwargs), _label(arch.name, kwargs)
    if state_dict is not None:
        load_strict(model, state_dict, source=path, label=label)
    elif model.state_dict():
        raise WeightsError(f"{label} has no official weights; pass weights=PATH")
    _apply_ratio(model, ratio)
    model = model.to(resolve_device(device)).eval()
    return compile_model(model) if compile else model


def build(name_or_spec: str | ModelSpec, *, device: str | torch.device = "cpu") -> SRModel:
    """The untrained network of a registered model, constructed on ``device`` (``"meta"`` allocates nothing)."""
    spec = name_or_spec if isinstance(name_or_spec, ModelSpec) else find_spec(name_or_spec)
    return _build(get_architecture(spec.architecture), spec.kwargs, device=device)


def _build(arch: Architecture, kwargs: Mapping[str, Any], device: str | torch.device = "cpu") -> SRModel:
    with torch.device(device):
        return arch.build(**kwargs)


def detect_architecture(
    state_dict: Mapping[str, torch.Tensor], *, source: PathLike | None = None
) -> tuple[Architecture, dict[str, Any]]:
    """The one registered architecture that recognises ``state_dict``, and its constructor arguments.

    Raises :class:`WeightsError` when none or several recognise it (the message lists the architectures tried).
    """
    matches, tried = [], []
    for arch in architectures().values():
        try:
            kwargs = arch.detect(state_dict)
        except Exception as exc:  # a detector that trips on a foreign state dict is a "no", but say so
            tried.append(f"{arch.name} (detector failed: {type(exc).__name__}: {exc})")
            continue
        tried.append(arch.name)
        if kwargs is not None:
            matches.append((arch, dict(kwargs)))
    what = f"{source}" if source is not None else "the state dict"
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(a.name for a, _ in matches)
        raise WeightsError(f"{what} is recognised by several architectures ({names}); load it by name with weights=")
    keys = list(state_dict)
    raise WeightsError(
        f"{what} is not a checkpoint of any registered architecture (tried: {', '.join(tried) or 'none'}). "
        f"It has {len(keys)} tensors, e.g. {', '.join(keys[:_SHOWN])}. If you know the model, "
        f"load it by name: load(NAME, weights=PATH)."
    )


def load_strict(model: SRModel, state_dict: Mapping[str, torch.Tensor], *, source: PathLike, label: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, with one readable error on any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = [
        _listing(items, what)
        for items, what in ((missing, "missing keys"), (unexpected, "unexpected keys"), (reshaped, "shapes differ"))
        if items
    ]
    if problems:
        raise WeightsError(
            f"weights {source} do not fit {label}: {'; '.join(problems)}. Wrong model name or scale? "
            f"`odisr models info {source}` shows which architecture the file is, and load({str(source)!r}) "
            "builds the model it fits."
        )
    model.load_state_dict(state_dict, strict=True)


def _listing(items: list[str], what: str) -> str:
    more = f", … ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return f"{len(items)} {what} ({', '.join(items[:_SHOWN])}{more})"


def _label(architecture: str, kwargs: Mapping[str, Any], *, name: str | None = None) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"model {name!r} ({architecture}: {args})" if name else f"{architecture}({args})"


def _apply_ratio(model: SRModel, ratio: float | None) -> None:
    if ratio is None:
        return
    if model.content_aware:
        model.set_ratio(ratio)
    else:
        warnings.warn(f"ratio={ratio} ignored: {model.architecture} is not content-aware", UserWarning, stacklevel=3)


def _is_model_name(name_or_path: PathLike) -> bool:
    return isinstance(name_or_path, str) and name_or_path in available()


def _existing_file(path: PathLike, *, unknown_name: bool = False) -> Path:
    """``path`` as a Path if it is a file; otherwise one error naming it (and close model names)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if unknown_name and isinstance(path, str) and not _looks_like_path(path):
        raise _unknown_model(path)
    raise FileNotFoundError(f"weight file not found: {path}")


def _unknown_model(name: str) -> KeyError:
    close = difflib.get_close_matches(name, available(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return KeyError(f"unknown model {name!r}; {hint}known models: {', '.join(available())}")


def find_spec(name: str) -> ModelSpec:
    """:func:`~odisr.models.registry.get_spec`, whose ``KeyError`` also suggests close names (typos)."""
    if name not in available():
        raise _unknown_model(name)
    return get_spec(name)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text).suffix in {".pth", ".pt", ".safetensors", ".ckpt", ".bin"}


def resolve_weights_arg(arg: str) -> tuple[str | None, Path]:
    """Parse one CLI ``--weights`` value: ``"NAME=PATH"`` → ``(NAME, PATH)``, ``"PATH"`` → ``(None, PATH)``.

    Raises ``KeyError`` for an unknown model name and ``FileNotFoundError`` for a missing file.
    """
    if Path(arg).expanduser().is_file():  # a file whose name contains '=' is still a file
        return None, Path(arg).expanduser()
    name, sep, path = arg.partition("=")
    if not sep or _looks_like_path(name):
        return None, _existing_file(arg)
    return find_spec(name).name, _existing_file(path)


def parse_weights_args(args: Iterable[str]) -> dict[str | None, Path]:
    """Several ``--weights`` values as ``{model name or None: path}``; a name given twice is a ``ValueError``."""
    out: dict[str | None, Path] = {}
    for arg in args:
        name, path = resolve_weights_arg(arg)
        if name in out:
            raise ValueError(f"--weights given twice for {name or 'the model'}: {out[name]} and {path}")
        out[name] = path
    return out
