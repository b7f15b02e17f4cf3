"""Mode presets: the shipped YAML files load, bad files fail with messages naming the file and the key.

Budget: ~1 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odisr.config import PRESETS_DIR, ConfigError, UpscaleConfig, load_config, presets
from odisr.inference import upscale

EXPECTED = {
    "lightweight_x2": ("lightweight", 2),
    "lightweight_x3": ("lightweight", 3),
    "lightweight_x4": ("lightweight", 4),
    "large_x4": ("large", 4),
    "odi_x2": ("odi", 2),
    "odi_x4": ("odi", 4),
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_presets_are_valid(name: str) -> None:
    cfg = load_config(PRESETS_DIR / f"{name}.yaml")
    assert (cfg.mode, cfg.scale) == EXPECTED[name]
    assert cfg == load_config(name)  # a preset name works as well as its path
    assert cfg.ratio == 0.5 and cfg.device == "auto"
    assert (cfg.tile is None) == (cfg.mode == "lightweight")


def test_presets_listing_and_overrides() -> None:
    assert set(EXPECTED) <= set(presets())
    assert "train_camixersr_light_x2" in presets(training=True) and not any("train" in p for p in presets())
    cfg = load_config("odi_x4", tile=128, ratio=1.0, halo=None)  # None overrides are ignored
    assert (cfg.tile, cfg.ratio, cfg.halo) == (128, 1.0, 16)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: bicubic-x4\ntiles: 64\n", "unknown key 'tiles'"),
        ("model: bicubic-x4\ntile: 0\n", "key 'tile': Input should be greater than 0"),
        ("model: bicubic-x4\ntile: -16\n", "key 'tile'"),
        ("model: bicubic-x4\nratio: 1.5\n", "key 'ratio': Input should be less than or equal to 1"),
        ("model: bicubic-x4\nratio: -0.1\n", "key 'ratio'"),
        ("model: bicubic-x4\nscale: 2\n", "key 'scale': 2 does not match model 'bicubic-x4', which is ×4"),
        ("model: bicubic-x4\nmode: sphere\n", "key 'mode'"),
        ("model: bicubic-x4\ndevice: gpu\n", "key 'device': must be auto, cpu, cuda, cuda:N or mps"),
        ("model: bicubic-x4\namp: fp8\n", "key 'amp': must be false, true, fp16 or bf16"),
        ("model: bicubic-x4\nbatch_size: 0\n", "key 'batch_size'"),
        ("model: bicubic-x4\nhalo: -1\n", "key 'halo'"),
        ("model: no-such-model\n", "key 'model': unknown model 'no-such-model'"),
        ("scale: 4\n", "key 'model': Field required"),
        ("- a\n- b\n", "expected a mapping"),
        ("model: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_presets_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match="no such config file or preset .*odi_x4"):
        load_config("no_such_preset")


def test_weights_paths_are_accepted_without_a_scale_check(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "model: /models/my_camixer.pth\nscale: 3\n"))
    assert cfg.model == "/models/my_camixer.pth" and cfg.scale == 3


def test_config_drives_upscale(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "model: bicubic-x2\nmode: large\ntile: 8\nhalo: 2\ndevice: cpu\n"))
    assert isinstance(cfg, UpscaleConfig)
    img = np.random.default_rng(0).integers(0, 256, (20, 12, 3), dtype=np.uint8)
    out = upscale(img, **cfg.upscale_kwargs())
    assert out.shape == (40, 24, 3) and out.dtype == np.uint8
