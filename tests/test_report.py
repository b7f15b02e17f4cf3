"""The store report (odisr.report, `odisr report`). Budget: < 20 s (tiny real Zarr stores written here).

The stores follow the documented layout exactly: root attrs {odisr_version, created, runs}, ``images/<key>/``
groups without attrs, ``images/<key>/<model>/`` groups with the task's attrs and the ``sr``/``preview``/
``attention`` arrays.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from typer.testing import CliRunner

from odisr.report import NotAStoreError, collect, render_html, summarize, to_json, write_csv
from odisr.report.plots import attention_overlay, band_means
from odisr.report.tables import ImageRow, format_value

CAMIXER, BICUBIC = "camixersr-s-x4", "bicubic-x4"
IMG_TAG = '<img src="data:image/png;base64,'
#: A hostile file name: every HTML special character.
NASTY_SOURCE = 'panos/<b>lake</b> & "sky" \'1\'.png'
NASTY_ERROR = "ImageReadError: cannot decode <script>alert(1)</script> (truncated file)"
BAND_EDGES = [(-90 + 22.5 * k, -90 + 22.5 * (k + 1)) for k in range(8)]


def _metrics(ws_psnr: float, ws_ssim: float, psnr: float, ssim: float) -> dict[str, float]:
    return {"ws_psnr": ws_psnr, "ws_ssim": ws_ssim, "psnr": psnr, "ssim": ssim,
            "ws_psnr_y": ws_psnr + 1.5, "psnr_y": psnr + 1.5, "ssim_y": ssim + 0.01}


# (key, model) → metrics; the WS-PSNR of band k is ws_psnr − 2 + k·0.5 dB (a known profile to average).
RESULTS = {
    ("lake", CAMIXER): _metrics(30.25, 0.8512, 29.75, 0.8301),
    ("lake", BICUBIC): _metrics(27.5, 0.7705, 27.0, 0.7502),
    ("petra", CAMIXER): _metrics(28.0, 0.8010, 27.5, 0.7905),
    ("petra", BICUBIC): _metrics(26.75, 0.7400, 26.25, 0.7311),
}
SECONDS = {CAMIXER: (3.5, 4.5), BICUBIC: (0.25, 0.75)}
PARAMS = {CAMIXER: 765_000, BICUBIC: 0}


def _bands(ws_psnr: float) -> list[list[float]]:
    return [[lo, hi, ws_psnr - 2 + 0.5 * k] for k, (lo, hi) in enumerate(BAND_EDGES)]


def _new_store(path: Path) -> zarr.Group:
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({
        "odisr_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z",
        "runs": [{"command": "odisr evaluate data/ --out store.zarr", "config": {"scale": 4},
                  "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:01:00Z",
                  "summary": {"done": 4, "failed": 1, "skipped": 0, "seconds": 60.0, "megapixels_per_s": 0.5}}],
    })
    root.create_group("images")
    return root


def _task(root: zarr.Group, key: str, model: str, attrs: dict, *, attention: bool = False) -> None:
    """One (image, model) group as a pipeline task writes it: arrays first, ``status`` last."""
    images = root["images"]
    image = images[key] if key in images else images.create_group(key)
    g = image.create_group(model)
    g.attrs.update({"status": "running", "model": model, "scale": 4})
    rng = np.random.default_rng(len(key) + len(model))
    sr = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    a = g.create_array("sr", shape=sr.shape, chunks=(32, 32, 3), dtype="uint8", dimension_names=["y", "x", "band"],
                       compressors=zarr.codecs.ZstdCodec(level=3))
    a[...] = sr
    p = g.create_array("preview", shape=(32, 64, 3), chunks=(32, 64, 3), dtype="uint8",
                       dimension_names=["y", "x", "band"])
    p[...] = sr[::2, ::2]
    if attention:
        att = g.create_array("attention", shape=(4, 8), chunks=(4, 8), dtype="float32", dimension_names=["y", "x"])
        att[...] = np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 8)
    g.attrs.update(attrs)


def _complete(root: zarr.Group, key: str, model: str, k: int) -> None:
    m = RESULTS[(key, model)]
    _task(root, key, model, {
        "status": "complete", "source": f"panos/{key}.jpg", "architecture": model.split("-")[0],
        "seconds": SECONDS[model][k], "params": PARAMS[model], "metrics": m, "bands": _bands(m["ws_psnr"]),
        "lr_shape": [16, 32], "sr_shape": [64, 128], "mode": "odi", "ratio": 0.5 if model == CAMIXER else None,
    }, attention=(key, model) == ("lake", CAMIXER))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two images × two models complete, one image whose CAMixer task failed (with a hostile name)."""
    path = tmp_path_factory.mktemp("report") / "store.zarr"
    root = _new_store(path)
    for k, key in enumerate(("lake", "petra")):
        for model in (CAMIXER, BICUBIC):
            _complete(root, key, model, k)
    _task(root, "panos__b-lake-b-sky-1-3f2a9c01", CAMIXER,
          {"status": "failed", "source": NASTY_SOURCE, "error": NASTY_ERROR})
    return path


def _expected(model: str, metric: str) -> list[float]:
    return [RESULTS[(key, model)][metric] for key in ("lake", "petra")]


# --- collecting and aggregating ---------------------------------------------------------------------------------


def test_collect_reads_every_result(store: Path) -> None:
    report = collect(store)
    assert report.odisr_version == "0.1.0" and len(report.runs) == 1
    assert [(r.image, r.model, r.status) for r in report.rows] == [
        ("lake", BICUBIC, "complete"), ("lake", CAMIXER, "complete"),
        ("panos__b-lake-b-sky-1-3f2a9c01", CAMIXER, "failed"),
        ("petra", BICUBIC, "complete"), ("petra", CAMIXER, "complete"),
    ]
    lake = report.rows[1]
    assert lake.ws_psnr == 30.25 and lake.ssim_y == pytest.approx(0.8401) and lake.seconds == 3.5
    assert lake.arrays == {"sr", "preview", "attention"} and len(lake.bands) == 8
    assert report.failures[0].error == NASTY_ERROR and report.failures[0].label == NASTY_SOURCE
    np.testing.assert_array_equal(report.read("lake", CAMIXER, "attention"),
                                  np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 8))


def test_aggregates_from_stored_numbers(store: Path) -> None:
    summaries = {s.model: s for s in summarize(collect(store).rows)}
    cam, bic = summaries[CAMIXER], summaries[BICUBIC]
    assert (cam.count, cam.failures, cam.incomplete) == (2, 1, 0)
    assert (bic.count, bic.failures) == (2, 0)
    for model, s in summaries.items():
        for metric in ("ws_psnr", "ws_ssim", "psnr", "ssim", "psnr_y"):
            values = _expected(model, metric)
            assert s.stats[metric].mean == pytest.approx(statistics.mean(values))
            assert s.stats[metric].median == pytest.approx(statistics.median(values))
            assert s.stats[metric].n == 2
        assert s.seconds_per_image == pytest.approx(statistics.mean(SECONDS[model]))
    paired = [c - b for c, b in zip(_expected(CAMIXER, "ws_psnr"), _expected(BICUBIC, "ws_psnr"))]
    assert cam.baseline == BICUBIC and cam.delta_ws_psnr == pytest.approx(statistics.mean(paired))
    assert bic.baseline is None and bic.delta_ws_psnr is None
    assert cam.params == 765_000 and cam.flops_per_lr_pixel is None


def test_summarize_median_differs_from_mean_and_counts_incomplete() -> None:
    rows = [ImageRow(f"i{k}", "m", "complete", ws_psnr=v) for k, v in enumerate((30.0, 31.0, 35.0))]
    rows += [ImageRow("i3", "m", "running"), ImageRow("i4", "m", "failed", error="x")]
    (s,) = summarize(rows)
    assert (s.stats["ws_psnr"].mean, s.stats["ws_psnr"].median) == (32.0, 31.0)
    assert (s.count, s.failures, s.incomplete) == (3, 1, 1)
    assert s.stats["ssim"].mean is None and s.baseline is None


def test_band_means(store: Path) -> None:
    means = band_means(collect(store).rows)
    assert set(means) == {CAMIXER, BICUBIC}
    for model, bands in means.items():
        assert [(lo, hi) for lo, hi, _ in bands] == BAND_EDGES
        for k, (_, _, db) in enumerate(bands):
            assert db == pytest.approx(statistics.mean(v - 2 + 0.5 * k for v in _expected(model, "ws_psnr")))


def test_band_means_match_bands_by_rank_across_heights() -> None:
    # Another image height moves the band edges by a fraction of a row: still the same 8 bands (north first,
    # as odisr.metrics.ws_psnr_bands lists them).
    a = ImageRow("a", "m", "complete", bands=tuple((lo, hi, 30.0) for lo, hi in reversed(BAND_EDGES)))
    b = ImageRow("b", "m", "complete", bands=tuple((lo + 0.2, hi + 0.2, 31.0) for lo, hi in reversed(BAND_EDGES)))
    (bands,) = band_means([a, b]).values()
    assert len(bands) == 8 and bands[0] == pytest.approx((-89.9, -67.4, 30.5))


# --- CSV / JSON -------------------------------------------------------------------------------------------------


def test_csv_rows(store: Path) -> None:
    buf = io.StringIO()
    write_csv(collect(store).rows, buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(rows) == 5
    by_key = {(r["image"], r["model"]): r for r in rows}
    for (key, model), metrics in RESULTS.items():
        for name, value in metrics.items():
            assert float(by_key[(key, model)][name]) == pytest.approx(value)
    failed = by_key[("panos__b-lake-b-sky-1-3f2a9c01", CAMIXER)]
    assert failed["status"] == "failed" and failed["ws_psnr"] == "" and failed["error"] == NASTY_ERROR
    assert failed["source"] == NASTY_SOURCE


def test_json_is_strict_and_complete(store: Path) -> None:
    report = collect(store)
    doc = json.loads(to_json(report), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["store"] == str(store) and len(doc["rows"]) == 5
    lake = next(r for r in doc["rows"] if (r["image"], r["model"]) == ("lake", CAMIXER))
    assert lake["ws_psnr"] == 30.25 and lake["bands"][0] == [-90.0, -67.5, 28.25]
    models = {m["model"]: m for m in doc["models"]}
    assert models[CAMIXER]["stats"]["ws_psnr"]["mean"] == pytest.approx(statistics.mean(_expected(CAMIXER, "ws_psnr")))
    assert models[CAMIXER]["failures"] == 1


def test_infinite_psnr_is_null_in_json_and_inf_in_tables(tmp_path: Path) -> None:
    root = _new_store(tmp_path / "s.zarr")
    _task(root, "same", BICUBIC, {"status": "complete", "metrics": _metrics(math.inf, 1.0, math.inf, 1.0)})
    report = collect(tmp_path / "s.zarr")
    assert report.rows[0].ws_psnr == math.inf and format_value("ws_psnr", report.rows[0].ws_psnr) == "inf"
    assert json.loads(to_json(report))["rows"][0]["ws_psnr"] is None


# --- HTML -------------------------------------------------------------------------------------------------------


def _embedded_pngs(page: str) -> list[Image.Image]:
    blobs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in blobs]


def test_html_is_self_contained_with_plots_and_escaped_names(store: Path) -> None:
    page = render_html(collect(store))
    # band plot + per-image bars + one attention overlay; nothing fetched from elsewhere, one inline script (pager)
    assert page.count(IMG_TAG) == 3
    assert all(im.format == "PNG" and im.width > 200 for im in _embedded_pngs(page))
    assert "http://" not in page and "https://" not in page
    assert page.count("<script") == 1 and "<script>\n" in page and "src=" not in page.split("<script>")[1]
    assert "panos/&lt;b&gt;lake&lt;/b&gt; &amp; &quot;sky&quot; &#x27;1&#x27;.png" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>lake</b>" not in page
    cam_mean = format_value("ws_psnr", statistics.mean(_expected(CAMIXER, "ws_psnr")))
    delta = format_value("delta", statistics.mean(np.subtract(_expected(CAMIXER, "ws_psnr"),
                                                              _expected(BICUBIC, "ws_psnr"))))
    for text in ("Model comparison", "Aggregate per model", "Per image", "Failures", delta, cam_mean):
        assert text in page


def test_attention_overlay_png() -> None:
    preview = np.zeros((50, 100, 3), np.uint8)
    png = attention_overlay(preview, np.full((3, 6), 0.25, np.float32), title="x")
    assert Image.open(io.BytesIO(png)).format == "PNG"
    with pytest.raises(ValueError, match="attention"):
        attention_overlay(preview, np.zeros((2, 3, 4), np.float32))


def test_empty_store_reports_clearly(tmp_path: Path) -> None:
    _new_store(tmp_path / "empty.zarr")
    report = collect(tmp_path / "empty.zarr")
    page = render_html(report)
    assert report.rows == () and page.count(IMG_TAG) == 0
    assert "no images yet" in page
    assert json.loads(to_json(report))["rows"] == []


def test_only_failures_reports_clearly(tmp_path: Path) -> None:
    root = _new_store(tmp_path / "failed.zarr")
    _task(root, "a", CAMIXER, {"status": "failed", "error": "CUDA out of memory"})
    _task(root, "b", CAMIXER, {"status": "running"})
    report = collect(tmp_path / "failed.zarr")
    page = render_html(report)
    assert page.count(IMG_TAG) == 0
    assert "No completed results: 1 of 2 result(s) failed" in page and "CUDA out of memory" in page


# --- errors and the CLI -----------------------------------------------------------------------------------------


def test_not_a_store_errors(tmp_path: Path) -> None:
    with pytest.raises(NotAStoreError, match="not a Zarr store"):
        collect(tmp_path / "missing.zarr")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(NotAStoreError, match="photo.png"):
        collect(tmp_path / "photo.png")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_group("data")
    with pytest.raises(NotAStoreError, match="not an odisr store"):
        collect(tmp_path / "other.zarr")


def _odisr(*args: str):
    """Run the real ``odisr`` command line (imported here: the other tests need no CLI)."""
    from odisr.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_cli_report_writes_files(store: Path, tmp_path: Path) -> None:
    out = {ext: tmp_path / f"r.{ext}" for ext in ("html", "csv", "json")}
    result = _odisr("report", str(store), "--html", str(out["html"]), "--csv", str(out["csv"]),
                    "--json", str(out["json"]))
    assert result.exit_code == 0, result.output
    for text in ("Per image", "Aggregate per model", "Model comparison", "Failures", CAMIXER, "<script>alert(1)"):
        assert text in result.output
    assert out["html"].read_text(encoding="utf-8").count(IMG_TAG) == 3
    assert len(list(csv.DictReader(out["csv"].open(encoding="utf-8")))) == 5
    assert len(json.loads(out["json"].read_text(encoding="utf-8"))["rows"]) == 5


def test_cli_empty_store_exit_0(tmp_path: Path) -> None:
    _new_store(tmp_path / "empty.zarr")
    result = _odisr("report", str(tmp_path / "empty.zarr"))
    assert result.exit_code == 0 and "no images yet" in result.output


def test_cli_not_a_store_exit_1(tmp_path: Path) -> None:
    result = _odisr("report", str(tmp_path / "nothing.zarr"))
    assert result.exit_code == 1
    assert "error:" in result.output and "nothing.zarr" in result.output and "Traceback" not in result.output


def test_cli_unwritable_output_exit_1(store: Path, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    result = _odisr("report", str(store), "--csv", str(tmp_path / "file.txt" / "rows.csv"))
    assert result.exit_code == 1 and "cannot write the report" in result.output


def test_cli_creates_missing_output_folders(store: Path, tmp_path: Path) -> None:
    html, csv_path = tmp_path / "out" / "report.html", tmp_path / "tables" / "rows.csv"
    result = _odisr("report", str(store), "--html", str(html), "--csv", str(csv_path))
    assert result.exit_code == 0, result.output
    assert html.is_file() and csv_path.is_file()
    previews = sorted(p.name for p in (tmp_path / "out" / "report_files" / "previews").iterdir())
    assert len(previews) == 4 and all(p.endswith(".jpg") for p in previews)  # the 4 complete results


# --- run stores -------------------------------------------------------------------------------------------------


def test_tables_leave_out_columns_empty_in_every_row(tmp_path: Path) -> None:
    """A store filled by `odisr run` (no references): no metric columns, sizes and seconds instead."""
    from odisr.report.tables import aggregate_table, comparison_table, image_table

    root = _new_store(tmp_path / "run.zarr")
    _task(root, "lake", BICUBIC, {"status": "complete", "seconds": 0.5, "lr_shape": [16, 32], "sr_shape": [64, 128],
                                  "params": 0})  # fmt: skip
    _task(root, "bad", BICUBIC, {"status": "failed", "error": "NotERPError: 200×128 is not 2:1"})
    report = collect(tmp_path / "run.zarr")
    table = image_table(report.rows)
    assert table.headers == ("image", "model", "status", "input (px)", "output (px)", "s")
    assert table.cells[1][3:] == ("32×16", "128×64", "0.50")
    summaries = summarize(report.rows)
    assert aggregate_table(summaries).headers == ("model", "images", "failed", "incomplete")
    assert comparison_table(summaries).headers == ("model", "scale", "params", "s / image")
    page = render_html(report)
    assert "Plots" not in page and "WS-PSNR" not in page and "NotERPError: 200×128 is not 2:1" in page


def test_run_records_old_and_new() -> None:
    from odisr.report.runs import run_records
    from odisr.report.tables import run_table

    old = {"command": "odisr run a/", "config": {"device": "cpu"}, "started": "2026-01-01T00:00:00+00:00",
           "finished": "2026-01-01T00:01:40+00:00",
           "summary": {"done": 4, "failed": 0, "skipped": 0, "seconds": 100.0, "megapixels_per_s": 0.25}}
    new = {"command": "odisr run a/ --report r.html", "config": {}, "started": "2026-01-02T00:00:00+00:00",
           "finished": None, "summary": None, "device": "cuda", "workers": 1, "threads": 1, "scheduler": "local"}
    done = {**new, "finished": "2026-01-02T00:00:30+00:00",
            "summary": {"done": 2, "failed": 1, "skipped": 4, "seconds": 30.0, "megapixels_per_s": 0.5,
                        "warmup_seconds": 4.25, "output_megapixels": 14.5}}  # fmt: skip
    first, interrupted, finished = run_records([old, new, "garbage", done])
    assert first.output_megapixels == pytest.approx(25.0) and first.device == "cpu" and first.workers is None
    assert not interrupted.complete and interrupted.done is None
    assert finished.index == 4 and finished.output_megapixels == 14.5 and finished.warmup_seconds == 4.25
    table = run_table([first, interrupted, finished])
    rows = [dict(zip(table.headers, row)) for row in table.cells]
    assert rows[0]["output Mpx"] == "25.00" and rows[0]["workers"] == "—"
    assert rows[0]["finished"] == "2026-01-01 00:01:40"
    assert rows[1]["finished"] == "not finished" and rows[1]["done"] == "—"
    assert rows[2]["warm-up (s)"] == "4.2" and rows[2]["workers"] == "1 (1 thread)" and rows[2]["Mpx/s"] == "0.500"


def test_collect_reads_what_zarr_reads(store: Path) -> None:
    """The concurrent reader finds the same groups, attrs and arrays as zarr's own walk of the store."""
    report = collect(store)
    walked = {}
    for name, node in zarr.open_group(str(store), mode="r")["images"].members(max_depth=2):
        parts = name.split("/")
        if len(parts) == 2 and isinstance(node, zarr.Group):
            walked[tuple(parts)] = (node.attrs.get("status"), set(node.array_keys()))
    assert {(r.image, r.model): (r.status, set(r.arrays)) for r in report.rows} == walked


def test_gallery_reuses_files_and_removes_stale_ones(store: Path, tmp_path: Path) -> None:
    from odisr.report import write_gallery

    report = collect(store)
    first = write_gallery(report, tmp_path / "r_files")
    assert (first.written, first.reused, first.removed) == (4, 0, 0) and not first.errors
    files = first.files[("lake", CAMIXER)]
    assert files.thumb == files.full and files.full.startswith("r_files/previews/")  # 64 px: its own thumbnail
    assert Image.open(tmp_path / files.full).size == (64, 32)
    again = write_gallery(report, tmp_path / "r_files")
    assert (again.written, again.reused, again.removed) == (0, 4, 0) and again.full_bytes == first.full_bytes
    # the result is recomputed (new attempt): its file is remade, the old one deleted
    zarr.open_group(str(store), mode="r+")["images/lake/" + CAMIXER].attrs["attempt"] = "0123456789abcdef"
    try:
        third = write_gallery(collect(store), tmp_path / "r_files")
    finally:
        del zarr.open_group(str(store), mode="r+")["images/lake/" + CAMIXER].attrs["attempt"]
    assert (third.written, third.reused, third.removed) == (1, 3, 1)
    assert "0123456789ab" in third.files[("lake", CAMIXER)].full


def test_gallery_worker_processes_write_the_same_files(store: Path, tmp_path: Path, monkeypatch) -> None:
    from odisr.report import gallery

    report = collect(store)
    alone = gallery.write_gallery(report, tmp_path / "a_files", workers=1)
    monkeypatch.setattr(gallery, "PARALLEL_FROM", 2)  # 4 previews: enough for the process pool
    pooled = gallery.write_gallery(report, tmp_path / "b_files", workers=2)
    assert pooled.written == alone.written == 4 and not pooled.errors
    for key, files in alone.files.items():
        other = pooled.files[key]
        assert (tmp_path / files.full).read_bytes() == (tmp_path / other.full).read_bytes()
