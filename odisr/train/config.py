"""Training configurations for ``odisr train``: validated YAML files (``configs/train_*.yaml``, ``finetune_*.yaml``).

A configuration names the network, the data, the loss and the optimiser (values are examples)::

    model: camixersr-light-x2      # registry name (``odisr models list``): architecture and scale
    model_args: {}                 # constructor arguments replacing the model's (e.g. a narrower n_feats)
    init: null                     # registry name or checkpoint path to start from (strict load)
    ratio: 0.5                     # CAMixer's γ, the target of the ratio loss; null = the model's own
    data:
      train: [panoramas/]          # files, folders, globs, zip/tar, URLs (as ``odisr run``), or samples:<split>
      val: [val/]                  # HR panoramas scored during training (may be empty)
      patch: 64                    # LR patch size, pixels
      batch: 8                     # global batch (split over the ranks of a torchrun job)
      degrade: bicubic             # bicubic (ERP-aware, as ``odisr evaluate``) | fisheye (OSRT)
      sampling: sphere             # erp (uniform over pixels) | sphere (uniform over the sphere's area)
      flip: true                   # random horizontal flips (a mirrored ERP image is a valid panorama)
      roll: true                   # random longitude roll: patches may cross the 180° meridian
      val_tile: null               # tile (LR px) for validation through odisr.upscale; null = whole image
      prefetch: null               # cut the next batch on a thread while this one trains; null = on CUDA only
    loss:
      pixel: ws_l1                 # l1 | ws_l1 (latitude-weighted L1, as in OSRT)
      ratio_weight: 1.0            # × the network's own ratio loss (CAMixer only)
    optim:
      name: adam                   # adam | adamw
      lr: 5.0e-4
      betas: [0.9, 0.99]
      weight_decay: 0.0
      schedule: cosine             # cosine (to min_lr) | multistep (milestones, gamma)
      milestones: []
      gamma: 0.5
      min_lr: 0.0
      warmup: 0                    # iterations of linear warm-up
      iterations: 2000
      grad_clip: null              # max global gradient norm, or null
    ema: 0.999                     # EMA decay of the weights that are validated and saved as params_ema; 0 = none
    amp: false                     # false | true | fp16 | bf16 (CUDA autocast; ignored on the CPU)
    seed: 0
    device: auto                   # auto | cpu | cuda | cuda:N | mps
    threads: null                  # torch CPU threads per process; null = torch's default
    checkpoint_every: 500
    val_every: 500                 # null = validate only at the end

Unknown keys and bad values are errors naming the file and the dotted key (:class:`TrainConfigError`).
``--set data.patch=48`` (:func:`apply_overrides`) replaces single keys with YAML values before validation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from odisr.config import PRESETS_DIR, check_amp, check_device, presets

__all__ = [
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainConfigError",
    "apply_overrides",
    "load_train_config",
    "resolve_config_file",
]

class TrainConfigError(ValueError):
    """A training configuration that cannot be used; the message names the file, the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the panoramas come from and how patches are cut from them (module docstring)."""

    train: list[str] = Field(min_length=1)
    val: list[str] = Field(default_factory=list)
    patch: int = Field(default=64, ge=4, le=4096)
    batch: int = Field(default=8, ge=1)
    degrade: Literal["bicubic", "fisheye"] = "bicubic"
    sampling: Literal["erp", "sphere"] = "sphere"
    flip: bool = True
    roll: bool = True
    val_tile: int | None = Field(default=None, gt=0)
    prefetch: bool | None = None  # None: on CUDA only (odisr.train.prefetch)


class LossConfig(_Section):
    """Pixel loss and the weight of the network's ratio loss."""

    pixel: Literal["l1", "ws_l1"] = "l1"
    ratio_weight: float = Field(default=1.0, ge=0.0)


class OptimConfig(_Section):
    """Optimiser and learning-rate schedule."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(default=5e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(default=0.0, ge=0.0)
    schedule: Literal["cosine", "multistep"] = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(default=0.5, gt=0.0)
    min_lr: float = Field(default=0.0, ge=0.0)
    warmup: int = Field(default=0, ge=0)
    iterations: int = Field(default=2000, ge=1)
    grad_clip: float | None = Field(default=None, gt=0.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError("both betas must be in [0, 1)")
        return value

    @model_validator(mode="after")
    def _schedule_fits(self) -> OptimConfig:
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("key 'optim.milestones': the multistep schedule needs milestones (iterations)")
        if self.milestones != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError("key 'optim.milestones': must be increasing positive iterations")
        if self.warmup >= self.iterations:
            raise ValueError(f"key 'optim.warmup': {self.warmup} must be below optim.iterations ({self.iterations})")
        if self.min_lr > self.lr:
            raise ValueError(f"key 'optim.min_lr': {self.min_lr} is above optim.lr ({self.lr})")
        return self


class TrainConfig(_Section):
    """One training run (module docstring lists every key)."""

    model: str = Field(min_length=1)
    model_args: dict[str, Any] = Field(default_factory=dict)
    init: str | None = None
    ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    data: DataConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    ema: float = Field(default=0.999, ge=0.0, lt=1.0)
    amp: bool | Literal["fp16", "bf16"] = False
    seed: int = Field(default=0, ge=0)
    device: str = "auto"
    threads: int | None = Field(default=None, ge=1)
    checkpoint_every: int = Field(default=500, ge=1)
    val_every: int | None = Field(default=500, ge=1)

    _known_device = field_validator("device")(classmethod(lambda cls, value: check_device(value)))
    _known_amp = field_validator("amp", mode="before")(classmethod(lambda cls, value: check_amp(value)))

    @model_validator(mode="after")
    def _model_is_buildable(self) -> TrainConfig:
        from odisr.models import available
        from odisr.train.network import build_network

        if self.model not in available():
            raise ValueError(
                f"key 'model': unknown model {self.model!r}; use a registry name from `odisr models list` "
                "(a checkpoint to start from goes in 'init')"
            )
        try:
            build_network(self.model, self.model_args, device="meta")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"key 'model_args': {self.model} cannot be built with {self.model_args}: {exc}") from None
        if self.init is not None and self.init not in available() and not Path(self.init).expanduser().is_file():
            raise ValueError(f"key 'init': {self.init!r} is neither a registered model nor an existing checkpoint file")
        return self

    def dump(self) -> dict[str, Any]:
        """The resolved configuration as plain YAML-able data (every key, defaults filled in)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------------- loading
def resolve_config_file(name_or_path: str | Path) -> Path:
    """A configuration file path, or the shipped preset of that name (``train_camixersr_light_x2``).

    Raises:
        TrainConfigError: neither a file nor a preset (the message lists the training presets).
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    names = ", ".join(presets(training=True))
    raise TrainConfigError(f"{name_or_path}: no such training config file or preset (training presets: {names})")


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``data`` with ``KEY=VALUE`` overrides applied: dotted keys, values parsed as YAML.

    ``["data.patch=48", "optim.betas=[0.9, 0.999]", "init=null"]`` — intermediate mappings are created as needed;
    whether a key exists is checked by validation afterwards.

    Raises:
        TrainConfigError: an override without ``=``, with an empty key part, or with a value that is not YAML.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise TrainConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. data.patch=48")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[parts[-1]] = value
    return out


def read_yaml_mapping(file: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; :class:`TrainConfigError` naming the file otherwise."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"{file}: invalid YAML: {exc}") from None
    except OSError as exc:
        raise TrainConfigError(f"{file}: cannot read the config ({exc})") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise TrainConfigError(f"{file}: expected a mapping of keys (model, data, optim, ...), got {kind}")
    return data


def load_train_config(
    name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = (), **replace: Any
) -> TrainConfig:
    """Read, override and validate a training configuration.

    Args:
        name_or_path: a YAML file or the name of a shipped preset.
        overrides: ``--set`` items (``"optim.iterations=100"``).
        replace: top-level keys to replace (``device="cpu"``); ``None`` values are ignored.

    Raises:
        TrainConfigError: missing file, invalid YAML, unknown keys or bad values — one line per problem, each
            naming the file and the dotted key.
    """
    file = resolve_config_file(name_or_path)
    data = apply_overrides(read_yaml_mapping(file), overrides)
    data.update({k: v for k, v in replace.items() if v is not None})
    return validate(data, source=file)


def validate(data: dict[str, Any], *, source: str | Path) -> TrainConfig:
    """:class:`TrainConfig` of ``data``; :class:`TrainConfigError` naming ``source`` and each bad key otherwise."""
    try:
        return TrainConfig(**data)
    except ValidationError as exc:
        raise TrainConfigError(describe_errors(source, exc, TrainConfig)) from None


def describe_errors(source: str | Path, exc: ValidationError, schema: type[BaseModel]) -> str:
    """One line per offending dotted key of a pydantic error, naming ``source`` (unknown keys list the allowed)."""
    lines, seen = [], set()
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        key = ".".join(loc)
        if key in seen:  # a union type reports once per member
            continue
        seen.add(key)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_section(schema, loc[:-1]).model_fields)
            lines.append(f"{source}: unknown key {key!r} (allowed here: {allowed})")
        elif err["type"] == "missing":
            lines.append(f"{source}: key {key!r} is required")
        elif loc and not msg.startswith("key '"):
            lines.append(f"{source}: key {key!r}: {msg} (got {err.get('input')!r})")
        else:
            lines.append(f"{source}: {msg}")
    return "\n".join(lines)


def _section(schema: type[BaseModel], path: list[str]) -> type[BaseModel]:
    for part in path:
        annotation = schema.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        schema = annotation
    return schema
