"""The papers' lightweight-SR table (issue 6): from store rows, in the terminal, HTML, Markdown and JSON, and at the
end of a real `odisr evaluate` on Set5/Set14 ×4 (MATLAB-bicubic LR from ``LR_bicubic/``).

Budget: < 90 s on 2 cores. The unit part writes tiny attrs-only stores (< 5 s); the end-to-end part starts one real
LocalCluster (1 single-threaded worker process; most of the time is its first import of torch) and runs bicubic ×4
on Set5 and Set14, and the official CAMixerSR-S on Set5 (5 small images, whole-image inference).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from odisr.cli.main import app
from odisr.report import collect, render_html, to_json
from odisr.report.tables import (
    DatasetScore,
    LightweightRow,
    lightweight_results,
    lightweight_table,
    per_image_table,
    to_markdown,
)
from odisr.sources import dataset_name

SCHEDULER_WORKERS = 1  # the `scheduler` fixture (conftest.py): one worker process suffices here
CAMIXER, BICUBIC, SWINIR = "camixersr-light-x4", "bicubic-x4", "swinir-light-x4"
SET5 = ("baby", "bird", "butterfly", "head", "woman")


# --- tiny stores ------------------------------------------------------------------------------------------------


def _store(path: Path, results: list[dict]) -> Path:
    """An odisr store whose (image, model) groups hold ``results``' attrs (collect reads attrs only)."""
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"odisr_version": "0.1.0", "created": "2026-01-01T00:00:00Z", "runs": []})
    images = root.create_group("images")
    for attrs in results:
        image = images.require_group(attrs["key"])
        image.create_group(attrs["model"]).attrs.update({k: v for k, v in attrs.items() if k != "key"})
    return path


def _result(dataset: str | None, image: str, model: str, psnr_y: float, ssim_y: float, **extra) -> dict:
    learned = not model.startswith("bicubic")
    attrs = {
        "key": f"{(dataset or 'x').lower()}__{image}", "model": model, "status": "complete", "mode": "lightweight",
        "source": f"/data/{dataset or 'x'}/HR/{image}.png", "scale": 4, "architecture": model.split("-")[0],
        "params": 765_322 if learned else 0, "madds_720p": 53.8e9 if learned else 1.4e7,
        "metrics": {"psnr_y": psnr_y, "ssim_y": ssim_y, "ws_psnr": psnr_y - 1},
    }  # fmt: skip
    if dataset is not None:
        attrs["dataset"] = dataset
    return attrs | extra


# Set5: CAMixer 32.5/0.90 on average, bicubic 28.4/0.81; Set14: SwinIR beats CAMixer; an ODI-mode result is ignored.
CAMIXER_SET5 = [(32.0 + 0.25 * k, 0.89 + 0.005 * k) for k in range(5)]  # mean 32.50/0.9000
RESULTS = (
    [_result("Set5", img, CAMIXER, p, s) for img, (p, s) in zip(SET5, CAMIXER_SET5)]
    + [_result("Set5", img, BICUBIC, 28.4, 0.8113) for img in SET5]
    + [_result("Set14", img, m, p, 0.78) for img in ("lenna", "zebra") for m, p in ((CAMIXER, 28.8), (SWINIR, 28.9))]
    + [_result("Set14", "lenna", BICUBIC, 26.0, 0.70), _result("erp", "pano", CAMIXER, 40.0, 0.99, mode="odi")]
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _store(tmp_path_factory.mktemp("light") / "light.zarr", RESULTS)


def _cells(table) -> dict[str, dict[str, str]]:
    return {row[0]: dict(zip(table.headers, row)) for row in table.cells}


def test_rows_average_each_dataset_and_skip_other_modes(store: Path) -> None:
    results = {r.model: r for r in lightweight_results(collect(store).rows)}
    assert list(results) == [BICUBIC, CAMIXER, SWINIR]  # bicubic first, then by name
    camixer = results[CAMIXER]
    assert set(camixer.scores) == {"Set5", "Set14"}  # the ODI-mode panorama is not a lightweight benchmark
    set5 = camixer.scores["Set5"]
    assert set5.n == 5
    assert set5.psnr_y == pytest.approx(np.mean([p for p, _ in CAMIXER_SET5]))
    assert set5.ssim_y == pytest.approx(np.mean([s for _, s in CAMIXER_SET5]))
    assert camixer.params == 765_322 and camixer.madds_720p == 53.8e9


def test_table_in_the_papers_layout(store: Path) -> None:
    table = lightweight_table(lightweight_results(collect(store).rows))
    assert table.headers == ("Method", "Scale", "#Params", "#MAdds", "Set5", "Set14")  # Set5 before Set14
    cells = _cells(table)
    assert cells[CAMIXER] == {"Method": CAMIXER, "Scale": "×4", "#Params": "765K", "#MAdds": "53.8G",
                              "Set5": "32.50/0.9000", "Set14": "28.80/0.7800"}  # fmt: skip
    assert cells[BICUBIC]["#Params"] == cells[BICUBIC]["#MAdds"] == "—"  # no learned parameters, no count
    assert cells[BICUBIC]["Set14"] == "26.00/0.7000 (1/2)"  # fewer images than the others: marked, not compared
    assert cells[SWINIR]["Set5"] == "—"
    rows = [row[0] for row in table.cells]
    assert table.bold == {(rows.index(CAMIXER), 4), (rows.index(SWINIR), 5)}
    assert any("1280×720" in note for note in table.notes) and any("(k/n)" in note for note in table.notes)


def test_best_is_chosen_within_each_scale() -> None:
    def row(model: str, scale: int, psnr: float) -> LightweightRow:
        return LightweightRow(model, None, scale, 1000, None, {"Set5": DatasetScore(psnr, 0.9, 5)})

    table = lightweight_table([row("a-x2", 2, 37.0), row("b-x2", 2, 37.5), row("a-x4", 4, 31.0), row("b-x4", 4, 30.0)])
    assert table.bold == {(1, 4), (2, 4)}
    assert [r[1] for r in table.cells] == ["×2", "×2", "×4", "×4"] and table.cells[0][2] == "1K"


def test_markdown_html_and_json(store: Path) -> None:
    report = collect(store)
    table = lightweight_table(lightweight_results(report.rows))
    markdown = to_markdown(table)
    lines = markdown.splitlines()
    assert lines[2] == "| Method | Scale | #Params | #MAdds | Set5 | Set14 |"
    assert lines[3] == "|---|---:|---:|---:|---:|---:|"
    assert f"| {CAMIXER} | ×4 | 765K | 53.8G | **32.50/0.9000** | 28.80/0.7800 |" in lines
    assert "1280×720" in markdown
    html = render_html(report)
    assert "Lightweight SR (Y channel)" in html and "<b>32.50/0.9000</b>" in html and "1280×720" in html
    doc = json.loads(to_json(report))
    camixer = next(r for r in doc["lightweight"] if r["model"] == CAMIXER)
    assert camixer["scores"]["Set5"] == {"psnr_y": pytest.approx(32.5), "ssim_y": pytest.approx(0.9), "n": 5}


def test_markdown_escapes_pipes() -> None:
    table = lightweight_table([LightweightRow("odd|name", None, 4, 10, None, {"Set5": DatasetScore(30.0, 0.9, 1)})])
    assert "| odd\\|name | ×4 |" in to_markdown(table)


def test_old_store_without_dataset_attr_uses_the_image_folder(tmp_path: Path) -> None:
    old = _store(tmp_path / "old.zarr", [_result(None, img, BICUBIC, 28.0, 0.8) for img in SET5[:2]])
    [(name, score)] = lightweight_results(collect(old).rows)[0].scores.items()
    assert name == "x" and score.n == 2  # /data/x/HR/<img>.png → "x"


def test_per_image_table_bolds_the_best_model(store: Path) -> None:
    rows = [r for r in collect(store).rows if r.dataset == "Set5"]
    table = per_image_table(rows, "psnr_y")
    assert table.title == "PSNR (Y) (dB) per image" and table.headers == ("image", BICUBIC, CAMIXER)
    assert table.cells[0] == ("baby.png", "28.40", "32.00") and table.bold == {(i, 2) for i in range(5)}


@pytest.mark.parametrize(("name", "expected"), [
    ("/work/shared/data/sr/Set5/HR/baby.png", "Set5"),
    ("data/erp/pano.png", "erp"),
    ("/b/Set14.zip!HR/lenna.png", "Set14"),
    ("/b/Urban100.tar.gz!img_001.png", "Urban100"),
    ("s3://bucket/GT/x.png", "bucket"),
    ("x.png", ""),
])  # fmt: skip
def test_dataset_name(name: str, expected: str) -> None:
    assert dataset_name(name) == expected


def test_cli_report_prints_and_writes_markdown(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    result = CliRunner().invoke(app, ["report", str(store), "--markdown", str(out)])
    assert result.exit_code == 0, result.output
    assert "Lightweight SR (Y channel)" in result.output and "32.50/0.9000" in result.output
    markdown = out.read_text(encoding="utf-8")
    assert "**Lightweight SR (Y channel)**" in markdown and "**Model comparison (means)**" in markdown


# --- `odisr evaluate` on Set5 / Set14 -----------------------------------------------------------------------------


def _evaluate(shared: Path, dataset: str, store: Path, scheduler: str, *extra: str) -> str:
    root = shared / "data" / "sr" / dataset
    args = ["evaluate", root / "HR", "--lr-dir", root / "LR_bicubic" / "X4", "--out", store, "--scale", 4,
            "--config", "lightweight_x4", "--model", "bicubic", "--scheduler", scheduler, *extra]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _table_line(output: str, model: str) -> list[str]:
    """The cells of ``model``'s row in the printed lightweight table (the last table of the output)."""
    line = next(ln for ln in output[output.index("Lightweight SR"):].splitlines() if f" {model} " in ln)
    return [c.strip() for c in re.split(r"[│|]", line) if c.strip()]


def _mean(store: Path, model: str, dataset: str, metric: str) -> float:
    root = zarr.open_group(str(store), mode="r")
    values = [g.attrs["metrics"][metric] for _, image in root["images"].groups() for m, g in image.groups()
              if m == model and g.attrs["dataset"] == dataset]  # fmt: skip
    return float(np.mean(values))


def test_evaluate_prints_the_table_for_set5_then_set14(shared, scheduler, tmp_path) -> None:
    store = tmp_path / "sr.zarr"
    output = _evaluate(shared, "Set5", store, scheduler)
    assert "PSNR (Y) (dB) per image" in output and "Model comparison (means)" in output
    assert _table_line(output, BICUBIC) == [BICUBIC, "×4", "—", "—", "28.43/0.8113"]  # the field's Set5 bicubic
    output = _evaluate(shared, "Set14", store, scheduler, "--dataset", "Set14-bicubic-LR")
    cells = _table_line(output, BICUBIC)
    set14 = f"{_mean(store, BICUBIC, 'Set14-bicubic-LR', 'psnr_y'):.2f}/"
    assert cells[:5] == [BICUBIC, "×4", "—", "—", "28.43/0.8113"] and cells[5].startswith(set14)
    assert 25.5 < float(set14[:-1]) < 26.5  # the field's Set14 ×4 bicubic PSNR-Y is 26.00 dB


def test_camixer_s_row_equals_the_store_and_beats_bicubic(shared, official_s_weights, scheduler, tmp_path) -> None:
    store = tmp_path / "set5.zarr"
    output = _evaluate(shared, "Set5", store, scheduler, "--model", "camixersr-s-x4",
                       "--weights", f"camixersr-s-x4={official_s_weights}")  # fmt: skip
    psnr, ssim = (_mean(store, "camixersr-s-x4", "Set5", m) for m in ("psnr_y", "ssim_y"))
    assert _table_line(output, "camixersr-s-x4") == ["camixersr-s-x4", "×4", "351K", "25.2G", f"{psnr:.2f}/{ssim:.4f}"]
    assert psnr > _mean(store, BICUBIC, "Set5", "psnr_y") + 3.0 and ssim > _mean(store, BICUBIC, "Set5", "ssim_y")
    report = collect(store)
    table = lightweight_table(lightweight_results(report.rows))
    assert table.bold == {([r[0] for r in table.cells].index("camixersr-s-x4"), 4)}
