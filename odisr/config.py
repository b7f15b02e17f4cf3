"""Mode presets for :func:`odisr.upscale`: validated YAML files (``configs/*.yaml``).

A preset names the model and how to run it::

    model: camixersr-odi-x4     # registry name (``odisr models list``) or a weights file path
    scale: 4                    # must match the model
    mode: odi                   # odi | large | lightweight
    tile: auto                  # LR pixels, rounded up to the model's window; null = whole image; auto = from a
                                # GPU's free memory (whole image when it fits), 256 on the CPU
    halo: 16                    # LR pixels; null = the engine's default
    ratio: 0.5                  # CAMixer attention ratio γ in [0, 1]; null = the model's own
    device: auto                # auto | cpu | cuda | cuda:N | mps
    batch_size: 4
    amp: false                  # false | true | fp16 | bf16 (CUDA/MPS autocast)
    compile: false              # true: TorchInductor-compiled forward (first call compiles; README "Performance")

Unknown keys and bad values are errors that name the file and the key (:class:`ConfigError`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from odisr.resources import shipped_folder

__all__ = ["PRESETS_DIR", "ConfigError", "UpscaleConfig", "load_config", "presets"]

#: The preset files: ``configs/`` of the checkout, or its copy inside the installed package.
PRESETS_DIR = shipped_folder("configs")

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(value: str) -> str:
    """``value`` when it is a device setting odisr accepts: auto, cpu, cuda, cuda:N or mps (``ValueError`` else)."""
    if not _DEVICE.match(value):
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
    return value


def check_amp(value: Any) -> Any:
    """``value`` when it is an autocast setting: false, true, "fp16" or "bf16" (``ValueError`` else, also for 0/1)."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)  # 1 == True, 0.0 == False
    if numeric or value not in (False, True, "fp16", "bf16"):
        raise ValueError("must be false, true, fp16 or bf16")
    return value


class ConfigError(ValueError):
    """A preset file that cannot be used; the message names the file, the key and the fix."""


class UpscaleConfig(BaseModel):
    """The settings of one :func:`odisr.upscale` run (see the module docstring for each key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    scale: int | None = Field(default=None, ge=1, le=8)
    mode: Literal["odi", "large", "lightweight"] = "odi"
    tile: Annotated[int, Field(gt=0)] | Literal["auto"] | None = None
    halo: int | None = Field(default=None, ge=0)
    ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    device: str = "auto"
    batch_size: int = Field(default=4, gt=0)
    amp: bool | Literal["fp16", "bf16"] = False
    compile: bool = False

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("amp", mode="before")
    @classmethod
    def _known_amp(cls, value: Any) -> Any:
        return check_amp(value)

    @model_validator(mode="after")
    def _scale_matches_model(self) -> UpscaleConfig:
        from odisr.models import registry

        import odisr.models.archs  # noqa: F401  (registers the named models)

        if self.model not in registry.available():
            if not _looks_like_path(self.model):
                raise ValueError(
                    f"key 'model': unknown model {self.model!r}; "
                    "use a name from `odisr models list` or a weights file path"
                )
            return self
        expected = registry.get_spec(self.model).scale
        if self.scale is not None and self.scale != expected:
            raise ValueError(f"key 'scale': {self.scale} does not match model {self.model!r}, which is ×{expected}")
        return self

    def upscale_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`odisr.upscale` (everything but ``scale``, which the model fixes)."""
        return self.model_dump(exclude={"scale"})


def _looks_like_path(model: str) -> bool:
    return "/" in model or "\\" in model or model.endswith((".pth", ".pt", ".safetensors", ".ckpt"))


TRAINING_PREFIXES = ("train_", "finetune_")
"""Name prefixes of the shipped training presets (``odisr train``); the others are mode presets (``odisr run``)."""


def presets(training: bool = False) -> list[str]:
    """Names of the shipped mode presets (``configs/<name>.yaml``), or with ``training`` of the training ones."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml") if p.stem.startswith(TRAINING_PREFIXES) == training)


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    preset = PRESETS_DIR / f"{path}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"{path}: no such config file or preset (presets: {', '.join(presets())})")


def load_config(path: str | Path, **overrides: Any) -> UpscaleConfig:
    """Read and validate a preset YAML file (a path, or a preset name such as ``"odi_x4"``).

    ``overrides`` replace keys of the file (``None`` values are ignored, so CLI options can be passed through).

    Raises:
        ConfigError: missing file, invalid YAML, not a mapping, unknown keys or bad values — naming the file
            and each offending key.
    """
    file = _resolve(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of keys (model, scale, mode, ...), got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return UpscaleConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(file, exc)) from None


def _describe(file: Path, exc: ValidationError) -> str:
    lines, seen = [], set()
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else ""
        if key and key in seen:  # one line per key (a union type reports once per member)
            continue
        seen.add(key)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(UpscaleConfig.model_fields)
            lines.append(f"{file}: unknown key {key!r} (allowed keys: {allowed})")
        elif err["loc"]:
            lines.append(f"{file}: key {key!r}: {msg} (got {err.get('input')!r})")
        else:
            lines.append(f"{file}: {msg}")
    return "\n".join(lines)
