"""``odisr metrics``: printed table, JSON/CSV output against the reference values, folder matching, failures.

Budget: < 12 s (one 1024×512 and one 2048×1024 reference pair; the folder tests use 32×64 images).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from odisr.cli.main import app
from odisr.io import write_image

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["metrics", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def fixtures(shared: Path) -> tuple[Path, dict]:
    root = shared / "fixtures" / "metrics"
    return root, json.loads((root / "reference_values.json").read_text())


def test_pairs_print_and_write_the_reference_values(fixtures: tuple[Path, dict], tmp_path: Path) -> None:
    root, ref = fixtures
    names = ["horizonnet", "layoutnet"]
    paths = [str(root / ref[n][k]) for n in names for k in ("hr", "distorted")]
    out = tmp_path / "scores.json"
    code, output = _run(*paths, "--out", str(out), "--bands", "3")
    assert code == 0, output
    for n in names:
        assert f"{ref[n]['ws_psnr_rgb']:.4f}" in output and f"{ref[n]['ws_ssim_rgb']:.4f}" in output
        assert f"{ref[n]['psnr_rgb']:.4f}" in output
    assert "latitude band" in output and "mean" in output
    doc = json.loads(out.read_text())
    assert doc["settings"] == {"y_channel": False, "crop_border": 0, "bands": 3} and doc["failed"] == []
    for n, pair in zip(names, doc["pairs"]):
        assert pair["ws_psnr"] == pytest.approx(ref[n]["ws_psnr_rgb"], abs=1e-6)
        assert pair["ws_ssim"] == pytest.approx(ref[n]["ws_ssim_rgb"], abs=1e-6)
        assert pair["psnr"] == pytest.approx(ref[n]["psnr_rgb"], abs=1e-6)
        assert [b["lat_max_deg"] for b in pair["bands"]] == pytest.approx([90, 30, -30], abs=0.2)
    assert doc["mean"]["ws_psnr"] == pytest.approx(np.mean([ref[n]["ws_psnr_rgb"] for n in names]), abs=1e-6)


def test_y_channel_and_crop_border(fixtures: tuple[Path, dict], tmp_path: Path) -> None:
    root, ref = fixtures
    r = ref["horizonnet"]
    out = tmp_path / "y.csv"
    code, output = _run(str(root / r["hr"]), str(root / r["distorted"]), "--y-channel", "--crop-border", "4",
                        "--out", str(out))
    assert code == 0, output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["error"] == ""
    assert float(rows[0]["ws_psnr"]) == pytest.approx(r["ws_psnr_y"], abs=1e-6)  # WS metrics never cropped
    assert float(rows[0]["psnr"]) == pytest.approx(r["psnr_y_crop"], abs=1e-6)
    assert float(rows[0]["ssim"]) == pytest.approx(r["ssim_y_crop"], abs=1e-6)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    hr_dir, sr_dir = tmp_path / "HR", tmp_path / "SR"
    hr_dir.mkdir()
    sr_dir.mkdir()
    images = {name: rng.integers(0, 256, (32, 64, 3), dtype=np.uint8) for name in ("alpha", "beta", "gamma")}
    for name, img in images.items():
        write_image(hr_dir / f"{name}.png", img)
    write_image(sr_dir / "alpha.png", images["alpha"])  # exact stem: identical → inf dB
    write_image(sr_dir / "beta_x4_SR.png", np.clip(images["beta"].astype(int) + 3, 0, 255).astype(np.uint8))
    (sr_dir / "gamma_SR.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # unreadable
    write_image(sr_dir / "delta.png", images["alpha"])  # no HR partner
    (sr_dir / "readme.txt").write_text("not an image")
    return hr_dir, sr_dir


def test_folders_are_matched_by_name_and_failures_reported(tmp_path: Path) -> None:
    hr_dir, sr_dir = _folders(tmp_path)
    out = tmp_path / "scores.json"
    code, output = _run("--hr", str(hr_dir), "--sr", str(sr_dir), "--out", str(out))
    assert code == 1, output
    assert "FAILED" in output and "gamma_SR.jpg" in output and "delta.png: no HR image" in output
    doc = json.loads(out.read_text())
    assert [Path(p["sr"]).name for p in doc["pairs"]] == ["alpha.png", "beta_x4_SR.png"]
    assert doc["pairs"][0]["ws_psnr"] == "inf" and doc["pairs"][0]["ssim"] == pytest.approx(1.0)
    assert doc["pairs"][1]["ws_psnr"] < 60
    assert len(doc["failed"]) == 1 and "gamma_SR.jpg" in doc["failed"][0]["error"]
    assert [Path(p).name for p in doc["unmatched_sr"]] == ["delta.png"]


def test_missing_partner_and_mismatched_shapes_fail_by_name(tmp_path: Path) -> None:
    hr_dir, sr_dir = _folders(tmp_path)
    (sr_dir / "beta_x4_SR.png").unlink()
    code, output = _run("--hr", str(hr_dir), "--sr", str(sr_dir))
    assert code == 1 and "no SR image beta.*" in output
    small = tmp_path / "small.png"
    write_image(small, np.zeros((16, 32, 3), np.uint8))
    code, output = _run(str(hr_dir / "alpha.png"), str(small))
    assert code == 1
    assert "alpha.png" in output and "small.png" in output and "differ in shape" in output


@pytest.mark.parametrize(
    "args, message",
    [(["a.png"], "pairs"), ([], "--hr DIR"), (["--hr", "."], "--hr DIR"), (["a.png", "b.png", "--out", "x.txt"],
                                                                          ".csv or .json")],
)
def test_usage_errors(args: list[str], message: str) -> None:
    code, output = _run(*args)
    assert code == 2 and message in output


def test_help_explains_the_command() -> None:
    code, output = _run("--help")
    assert code == 0
    for word in ("WS-PSNR", "--y-channel", "--crop-border", "--bands", "--out", "_SR", "latitude"):
        assert word in output
