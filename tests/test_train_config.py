"""Training configurations: shipped presets load, ``--set`` overrides, bad files name the file and the dotted key.

Budget: ~2 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from odisr.cli.main import app
from odisr.config import PRESETS_DIR
from odisr.train import TrainConfigError, apply_overrides, load_train_config

PRESETS = {
    "train_camixersr_light_x2": ("camixersr-light-x2", "l1", "adamw", 500000),
    "finetune_camixersr_s_x4_erp": ("camixersr-s-x4", "ws_l1", "adam", 200),
    "train_camixerosr_x4": ("camixersr-odi-x4", "l1", "adam", 500000),
    "train_camixersr_small_x2_cpu": ("camixersr-light-x2", "ws_l1", "adam", 2000),
}
BASE = "model: camixersr-light-x2\ndata: {train: [x/]}\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_presets_are_valid(name: str) -> None:
    cfg = load_train_config(name)
    assert (cfg.model, cfg.loss.pixel, cfg.optim.name, cfg.optim.iterations) == PRESETS[name]
    assert cfg == load_train_config(PRESETS_DIR / f"{name}.yaml")
    assert cfg.ratio == 0.5 and cfg.data.train == ["samples:train"] and cfg.data.val == ["samples:val"]


def test_paper_settings_of_the_from_scratch_presets() -> None:
    light = load_train_config("train_camixersr_light_x2")  # the authors' train_example.yml
    assert (light.optim.lr, light.optim.weight_decay, light.optim.betas, light.ema) == (5e-4, 1e-4, (0.9, 0.99), 0.999)
    assert light.optim.milestones == [250000, 400000, 450000, 475000] and light.optim.gamma == 0.5
    assert (light.data.patch, light.data.batch, light.loss.ratio_weight) == (64, 64, 1.0)
    osr = load_train_config("train_camixerosr_x4")  # OSRT-light ×4: fisheye LR, Adam 2e-4
    assert (osr.data.degrade, osr.optim.lr, osr.data.patch) == ("fisheye", 2e-4, 64)


def test_overrides_use_dotted_keys_and_yaml_values(tmp_path: Path) -> None:
    cfg = load_train_config(_write(tmp_path, BASE), ["data.patch=48", "optim.betas=[0.8, 0.9]", "init=null",
                                                     "optim.iterations=100", "amp=bf16"], device="cpu")  # fmt: skip
    assert (cfg.data.patch, cfg.optim.betas, cfg.init, cfg.optim.iterations, cfg.amp, cfg.device) == (
        48, (0.8, 0.9), None, 100, "bf16", "cpu")
    assert apply_overrides({"a": 1}, ["b.c.d=x"]) == {"a": 1, "b": {"c": {"d": "x"}}}
    with pytest.raises(TrainConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["data.patch"])
    with pytest.raises(TrainConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["data..patch=3"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "data: {train: [x/], pach: 48}\n", "unknown key 'data.pach' (allowed here: train, val, patch"),
        (BASE + "optimiser: {}\n", "unknown key 'optimiser'"),
        (BASE + "optim: {lr: -1}\n", "key 'optim.lr': Input should be greater than 0"),
        (BASE + "optim: {schedule: multistep}\n", "key 'optim.milestones': the multistep schedule needs milestones"),
        (BASE + "optim: {warmup: 10, iterations: 10}\n", "key 'optim.warmup'"),
        (BASE + "optim: {betas: [0.9, 1.5]}\n", "key 'optim.betas': both betas must be in [0, 1)"),
        (BASE + "ratio: 1.5\n", "key 'ratio': Input should be less than or equal to 1"),
        (BASE + "amp: fp8\n", "key 'amp': must be false, true, fp16 or bf16"),
        (BASE + "device: gpu\n", "key 'device': must be auto, cpu"),
        (BASE + "data: {train: [x/], sampling: cube}\n", "key 'data.sampling'"),
        (BASE + "loss: {pixel: l2}\n", "key 'loss.pixel'"),
        (BASE + "model_args: {n_feets: 8}\n", "key 'model_args': camixersr-light-x2 cannot be built"),
        (BASE + "init: /no/such/weights.pth\n", "key 'init': '/no/such/weights.pth' is neither"),
        ("model: camixer-light-x2\ndata: {train: [x/]}\n", "key 'model': unknown model 'camixer-light-x2'"),
        ("model: camixersr-light-x2\n", "key 'data' is required"),
        ("- a\n- b\n", "expected a mapping"),
        ("model: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_configs_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TrainConfigError) as info:
        load_train_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_unknown_preset_lists_the_training_presets() -> None:
    with pytest.raises(TrainConfigError, match="train_camixersr_light_x2"):
        load_train_config("train_nonexistent")


def test_cli_rejects_bad_configs_and_bad_resumes(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["train", str(_write(tmp_path, BASE + "optim: {lr: 0}\n")), "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "optim.lr" in bad.output
    nothing = runner.invoke(app, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert nothing.exit_code == 2 and "no training run to resume" in nothing.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(load_train_config(_write(tmp_path, BASE)).dump()))
    changed = runner.invoke(app, ["train", "--out", str(run), "--resume", "--set", "optim.lr=0.1"])
    assert changed.exit_code == 2 and "changes optim.lr" in changed.output
    no_config = runner.invoke(app, ["train", "--out", str(tmp_path / "r2")])
    assert no_config.exit_code == 2 and "give a training CONFIG" in no_config.output
