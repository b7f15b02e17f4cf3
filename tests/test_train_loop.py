"""``odisr train`` end to end on tiny networks and real panoramas shrunk to 128×64: checkpoints in the official layout
that load with architecture detection, metrics.csv, validation, the ratio loss moving CAMixer's routing, the
baselines through the same command, the NaN stop, the training report.

Budget: ~40 s on 2 quiet cores (tiny models, 16-32 px LR patches, a few iterations each).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from odisr.cli.main import app
from odisr.models import load, load_state_dict_file
from odisr.models.archs.camixersr import CAMixerSR
from odisr.train import RunDir, load_train_config, train
from odisr.train.history import COLUMNS, read_metrics
from odisr.train.network import build_network
from train_support import TINY_CAMIXER, make_panoramas, tiny_config, write_config

SCHEDULER_WORKERS = 1  # the `scheduler` fixture (conftest.py): one worker process suffices here


@pytest.fixture(scope="module")
def panoramas(shared: Path, tmp_path_factory) -> dict[str, list[Path]]:
    """Two real training panoramas (128×64) and one val panorama (64×32), shrunk from the shared ones."""
    root = tmp_path_factory.mktemp("panos")
    return {
        "train": make_panoramas(shared, root / "train", ("hohonet_pano.png", "vrview_petra.jpg"), 64),
        "val": make_panoramas(shared, root / "val", ("horizonnet_demo.png",), 32),
    }


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in the subprocess tests: a fixed thread count, and no spinning threads on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path: Path, panoramas: dict[str, list[Path]], **changes: object) -> Path:
    return write_config(tmp_path / "train.yaml", tiny_config(panoramas["train"], panoramas["val"], **changes))


def _train(cfg_file: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", str(cfg_file), "--out", str(out), "--no-progress", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def tiny_run(panoramas, tmp_path_factory) -> RunDir:
    """A tiny CAMixerSR ×2 trained 4 iterations, validated at 0, 2 and 4, checkpoints at 2 and 4."""
    root = tmp_path_factory.mktemp("tiny")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_train_config(_config(root, panoramas, optim__iterations=4, val_every=2))
        result = train(cfg, root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.status == "finished" and result.latest["iteration"] == 4
    return RunDir(root / "run")


def test_camixer_run_writes_official_checkpoints_and_metrics(tiny_run: RunDir, tmp_path: Path) -> None:
    run = tiny_run
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [
        "iter_0000002.pth", "iter_0000002.safetensors", "iter_0000004.pth", "iter_0000004.safetensors",
        "latest.json", "state_0000004.pt"]  # fmt: skip
    ckpt = torch.load(run.weights_file(4), map_location="cpu", weights_only=True)
    assert set(ckpt) == {"params", "params_ema"}
    assert any(not torch.equal(ckpt["params"][k], ckpt["params_ema"][k]) for k in ckpt["params"])  # EMA 0.999
    ema = load_state_dict_file(run.weights_file(4, ".safetensors"))
    assert all(torch.equal(ema[k], v) for k, v in ckpt["params_ema"].items())
    # architecture and sizes detected from the keys; the EMA weights are what loads
    net = load(run.weights_file(4))
    assert isinstance(net, CAMixerSR) and net.scale == 2 and net.num_params == build_network(**TINY_CAMIXER).num_params
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ckpt["params_ema"].items())
    x = torch.rand(1, 3, 20, 36)
    torch.testing.assert_close(net(x), load(run.weights_file(4, ".safetensors"))(x), rtol=0, atol=0)

    rows = read_metrics(run.metrics_file)
    assert list(rows[0]) == list(COLUMNS) and [r["iteration"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["iteration"] for r in rows if r["val_ws_psnr"] is not None] == [0, 2, 4]
    assert all(0 <= r["mask_mean"] <= 1 and 0 <= r["attention_fraction"] <= 1 for r in rows[1:])
    assert all(r["loss"] == pytest.approx(r["pixel_loss"] + r["ratio_loss"], rel=1e-5) for r in rows[1:])
    lrs = [r["lr"] for r in rows[1:]]
    assert lrs[0] == pytest.approx(1e-3) and lrs == sorted(lrs, reverse=True)  # cosine decay
    status = run.status()
    assert status["status"] == "finished" and status["parameters"] == net.num_params
    assert status["bicubic_scores"]["ws_psnr"] > status["start_scores"]["ws_psnr"] + 10  # untrained vs bicubic
    assert status["start_scores"]["ws_psnr"] == pytest.approx(rows[0]["val_ws_psnr"])

    report = CliRunner().invoke(app, ["report", str(run.root), "--html", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert "val WS-PSNR" in report.output and "attention fraction" in report.output
    html = (tmp_path / "r.html").read_text()
    assert "Training curves" in html and "data:image/png;base64," in html
    again, output = _train(run.root / "config.yaml", run.root)
    assert again == 2 and "already holds a training run" in output


@pytest.mark.slow
def test_checkpoints_run_through_odisr_run_and_evaluate(tiny_run: RunDir, panoramas, scheduler, tmp_path: Path):
    """A checkpoint of `odisr train` is a --model for `odisr run` and `odisr evaluate` (architecture detected)."""
    import zarr

    from odisr import upscale
    from odisr.degrade import bicubic_erp
    from odisr.io import read_image, write_image

    ckpt = tiny_run.weights_file(4)
    hr = read_image(panoramas["val"][0])
    (tmp_path / "lr").mkdir()
    lr = write_image(tmp_path / "lr" / "pano.png", bicubic_erp(hr, 2))
    runner = CliRunner()
    done = runner.invoke(app, ["run", str(lr), "--out", str(tmp_path / "run.zarr"), "--model", str(ckpt),
                               "--config", "odi_x2", "--tile", "16", "--scheduler", scheduler], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    (pair,) = [g for _, image in zarr.open_group(str(tmp_path / "run.zarr"), mode="r")["images"].groups()
               for _, g in image.groups()]  # fmt: skip
    expected = upscale(read_image(lr), load(ckpt), mode="odi", tile=16, device="cpu")
    np.testing.assert_array_equal(pair["sr"][...], expected)
    scored = runner.invoke(app, ["evaluate", str(panoramas["val"][0]), "--out", str(tmp_path / "eval.zarr"),
                                 "--model", str(ckpt), "--model", "bicubic", "--scale", "2", "--config", "odi_x2",
                                 "--scheduler", scheduler], catch_exceptions=False)  # fmt: skip
    assert scored.exit_code == 0, scored.output
    metrics = {m: g.attrs["metrics"] for _, image in zarr.open_group(str(tmp_path / "eval.zarr"), mode="r")["images"]
               .groups() for m, g in image.groups()}  # fmt: skip
    assert len(metrics) == 2 and all(np.isfinite(m["ws_psnr"]) for m in metrics.values())


def test_ratio_loss_moves_the_routing_towards_gamma(panoramas, tmp_path: Path) -> None:
    """Start from a predictor that sends every window to attention (p ≈ 0.88 > 0.5 everywhere: the inference rule
    keeps all windows; the training mask mean is σ(2p − 1) ≈ 0.68, the Gumbel sample taking the probabilities as
    logits); the straight-through routing and the ratio loss must pull the mask mean to 0.5, and the attention
    fraction (keep/N) must leave "all windows", and the official rule's expected attention fraction must reach γ."""
    torch.manual_seed(0)
    net = build_network(**TINY_CAMIXER)
    with torch.no_grad():
        for mixer in net.mixers():
            mixer.route.out_mask[2].bias.copy_(torch.tensor([2.0, -2.0]))
    init = tmp_path / "biased.pth"
    torch.save({"params": net.state_dict()}, init)
    cfg = load_train_config(_config(tmp_path, panoramas, init=str(init), optim__iterations=30, optim__lr=3e-3,
                                    loss__ratio_weight=10.0, data__patch=32, data__batch=4, checkpoint_every=30))
    train(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(RunDir(tmp_path / "run").metrics_file)[1:]
    first, last = rows[:5], rows[-15:]
    mask = [float(np.mean([r["mask_mean"] for r in part])) for part in (first, last)]
    ratio = [float(np.mean([r["ratio_loss"] for r in part])) for part in (first, last)]
    official = [float(np.mean([r["official_fraction"] for r in part])) for part in (first, last)]
    assert mask[0] > 0.6 and abs(mask[1] - 0.5) < 0.1 and ratio[1] < ratio[0] / 3, (mask, ratio)
    assert rows[0]["attention_fraction"] == 1.0 and min(r["attention_fraction"] for r in rows) < 1.0
    # the official inference's expected share of attention windows, 2γ·E[r], goes from ~2γ·0.68 to γ
    assert official[0] > 2 * net.ratio * 0.6 and abs(official[1] - net.ratio) < 0.1, official


def test_camixerosr_trains_on_fisheye_lr_with_the_latitude_condition(panoramas, tmp_path: Path) -> None:
    cfg = _config(tmp_path, panoramas, model="camixersr-odi-x2", model_args={"n_feats": 8, "n_block": [2, 2],
                  "n_group": 2}, data__degrade="fisheye", optim__iterations=2, checkpoint_every=2)  # fmt: skip
    code, output = _train(cfg, tmp_path / "run")
    assert code == 0, output
    run = RunDir(tmp_path / "run")
    rows = read_metrics(run.metrics_file)
    assert [r["iteration"] for r in rows] == [0, 1, 2] and rows[2]["ratio_loss"] is not None
    net = load(run.weights_file(2))
    assert net.architecture == "camixer_osr" and net.uses_latitude and net.scale == 2
    assert run.status()["bicubic_scores"]["ws_psnr"] > 20  # the val pair was made by the fisheye degradation


@pytest.mark.parametrize(
    ("model", "args", "arch"),
    [
        ("swinir-light-x2", {"depths": [1], "num_heads": [2], "embed_dim": 12, "img_size": 16}, "swinir"),
        ("san-x2", {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 16, "reduction": 4}, "san"),
        ("awsrn-s-x2", {"n_resblocks": 1, "n_feats": 8, "block_feats": 16, "n_awru": 1}, "awsrn"),
    ],
)
def test_baselines_train_through_the_same_command(panoramas, tmp_path: Path, model, args, arch) -> None:
    cfg = _config(tmp_path, panoramas, model=model, model_args=args, optim__iterations=2, checkpoint_every=2)
    code, output = _train(cfg, tmp_path / "run")
    assert code == 0, output
    run = RunDir(tmp_path / "run")
    rows = read_metrics(run.metrics_file)[1:]
    assert len(rows) == 2 and all(r["ratio_loss"] is None and r["attention_fraction"] is None for r in rows)
    assert all(r["loss"] == r["pixel_loss"] for r in rows)  # no ratio loss for networks without routing
    net = load(run.weights_file(2))
    assert net.architecture == arch and net.scale == 2
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 3, 32, 32)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(panoramas, tmp_path: Path) -> None:
    """A learning rate of 1e37 moves every weight by up to 1e38 in the first Adam step (still finite: checkpointed);
    the next forward pass overflows. The run stops before applying that step, exit code 1, latest = iteration 1."""
    cfg = _config(tmp_path, panoramas, optim__lr=1e37, optim__iterations=5, checkpoint_every=1,
                  model="awsrn-s-x2", model_args={"n_resblocks": 1, "n_feats": 8, "block_feats": 16, "n_awru": 1})
    code, output = _train(cfg, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    assert code == 1, output
    assert "stopped: iteration 2: the loss is" in output and "latest checkpoint is iteration 1" in output
    assert run.latest()["iteration"] == 1 and run.status()["status"] == "stopped"
    weights = torch.load(run.weights_file(1), map_location="cpu", weights_only=True)["params"]
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not run.weights_file(2).exists() and max(r["iteration"] for r in read_metrics(run.metrics_file)) == 1
    assert json.loads(run.latest_file.read_text())["state"] == "state_0000001.pt"
