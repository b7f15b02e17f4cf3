"""The report of a run store, end to end: `odisr run` (a real LocalCluster, 2 single-threaded worker processes, a
real Zarr store) twice on a folder with a bad file, `--report`, then the HTML read back, opened in headless Chromium
served over 127.0.0.1; CAMixerSR-S's routing through the pipeline into the report; an archive of 300 pairs.

Budget: < 60 s on 2 quiet cores (cluster start-up once; bicubic on two 256×128 LR panoramas; CAMixerSR-S on one
128×64 LR; the 300-pair store is written by the pipeline's store functions).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from cli_support import odisr_cli, write_lr_panoramas
from browser_support import BASE_FLAGS, blank_fraction, chromium, screenshot, serve  # noqa: F401  (fixture)
from odisr.degrade import bicubic_erp
from odisr.io import read_image, write_image
from odisr.report import files_dir, write_report
from odisr.resize import imresize

REPO = Path(__file__).resolve().parents[1]
PANOS = ("hohonet_pano.png", "horizonnet_demo.png")  # 1024×512 → LR 256×128
EMPTY = {"—", "— / —", ""}


@pytest.fixture(scope="module")
def inputs(shared, tmp_path_factory) -> Path:
    """Two real LR panoramas (256×128) and a truncated PNG."""
    out = write_lr_panoramas(shared, tmp_path_factory.mktemp("in"), PANOS)
    good = (out / PANOS[0]).read_bytes()
    (out / "truncated.png").write_bytes(good[: len(good) // 3])
    return out


class Page(HTMLParser):
    """The parts of a report page the tests read: section titles in order, tables by title (header, rows), gallery
    entries (thumbnail src and link, or the reason shown instead)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tables: dict[str, tuple[list[str], list[list[str]]]] = {}
        self.thumbs: list[tuple[str, str]] = []
        self.reasons: list[str] = []
        self._text: list[str] | None = None
        self._row: list[str] | None = None
        self._href = ""
        self._in_reason = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("h2", "th", "td") or (tag == "div" and a.get("class", "").startswith("reason")):
            self._text, self._in_reason = [], tag == "div"
        elif tag == "table":
            self.tables[self.sections[-1]] = ([], [])
        elif tag == "tr":
            self._row = []
        elif tag == "a":
            self._href = a.get("href") or ""
        elif tag == "img" and a.get("loading") == "lazy":
            self.thumbs.append((a["src"], self._href))

    def handle_endtag(self, tag: str) -> None:
        if self._text is None or tag not in ("h2", "th", "td", "div"):
            if tag == "tr" and self._row is not None and self._row:
                self.tables[self.sections[-1]][1].append(self._row)
            return
        text = "".join(self._text).strip()
        self._text = None
        if tag == "h2":
            self.sections.append(text)
        elif tag == "th":
            self.tables[self.sections[-1]][0].append(text)
        elif tag == "td" and self._row is not None:
            self._row.append(text)
        elif tag == "div" and self._in_reason:
            self.reasons.append(text)

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def column(self, table: str, header: str) -> list[str]:
        headers, rows = self.tables[table]
        return [row[headers.index(header)] for row in rows]


def _no_empty_column(page: Page) -> None:
    for title, (headers, rows) in page.tables.items():
        for j, header in enumerate(headers):
            assert any(row[j] not in EMPTY for row in rows), f"column {header!r} of {title!r} is empty in every row"


# ---------------------------------------------------------------------------------------------------- run report


def test_run_report_lists_every_run_the_gallery_and_failures(inputs, scheduler, tmp_path):
    store, html = tmp_path / "out.zarr", tmp_path / "new" / "folder" / "report.html"
    args = ("run", inputs, "--out", store, "--model", "bicubic-x4", "--tile", 64, "--scheduler", scheduler)
    code, first = odisr_cli(*args)
    assert code == 1 and "2 done, 1 failed, 0 skipped" in first, first
    code, second = odisr_cli(*args, "--report", html)
    assert code == 1 and "0 done, 1 failed, 2 skipped" in second, second
    # the end of the run: the dashboard and the report written, its folder created
    tail = second.strip().splitlines()[-2:]
    assert tail[0].startswith("Dask dashboard: http://") and tail[1].startswith(f"report: {html}")
    assert "report: odisr report" in first  # without --report: the command that writes it

    page = Page(html.read_text(encoding="utf-8"))
    assert page.sections[:2] == ["Summary", "Runs"]
    assert page.column("Runs", "#") == ["1", "2"]
    assert page.column("Runs", "done") == ["2", "0"] and page.column("Runs", "skipped") == ["0", "2"]
    assert page.column("Runs", "failed") == ["1", "1"] and page.column("Runs", "device") == ["cpu", "cpu"]
    assert page.column("Runs", "workers") == ["2 (2 threads)"] * 2
    assert page.column("Runs", "scheduler") == [scheduler] * 2
    assert page.column("Runs", "output Mpx") == [f"{2 * 1024 * 512 / 1e6:.2f}", "0.00"]
    assert float(page.column("Runs", "Mpx/s")[0]) > 0 and all(page.column("Runs", "command"))
    runs = zarr.open_group(str(store), mode="r").attrs["runs"]
    assert [r["workers"] for r in runs] == [2, 2] and runs[1]["dashboard"].startswith("http://")

    # one thumbnail per complete pair, linking to its full preview; the failed pair's reason in its place
    assert len(page.thumbs) == 2
    for src, href in page.thumbs:
        thumb, full = Image.open(html.parent / src), Image.open(html.parent / href)
        assert (thumb.format, thumb.size, full.size) == ("JPEG", (320, 160), (1024, 512))
    (reason,) = page.reasons
    assert reason.startswith("failed: ") and "truncated" in reason and "ImageRead" in reason
    # per image: sizes and seconds, no metric column (nothing was scored), and no column empty in every row
    headers, rows = page.tables["Per image"]
    assert headers == ["image", "model", "status", "input (px)", "output (px)", "s"]
    assert sorted(page.column("Per image", "output (px)")) == ["1024×512", "1024×512", "—"]
    _no_empty_column(page)
    assert "Plots" not in page.sections and "WS-PSNR" not in html.read_text(encoding="utf-8")


def test_run_report_renders_in_headless_chromium(inputs, scheduler, chromium, tmp_path):  # noqa: F811
    store, html = tmp_path / "out.zarr", tmp_path / "report" / "index.html"
    odisr_cli("run", inputs, "--out", store, "--model", "bicubic-x4", "--tile", 64, "--scheduler", scheduler,
              "--report", html)  # fmt: skip
    with serve(html.parent) as url:
        shot = screenshot(chromium, url + "index.html", tmp_path / "shot.png", size=(1200, 1600), wait_ms=3000)
    assert blank_fraction(shot) < 0.9
    # the two thumbnails were loaded: the gallery area holds photo-like colours, not the grey placeholder
    colours = len(np.unique(shot.reshape(-1, 3), axis=0))
    assert colours > 2000, f"only {colours} colours: thumbnails not rendered"


# ---------------------------------------------------------------------------------------------------- routing


def test_camixer_routing_reaches_the_report(shared, official_s_weights, scheduler, tmp_path):
    lr = imresize(bicubic_erp(read_image(shared / "data" / "erp" / PANOS[0]), 4), 0.5, wrap=True)  # 128×64
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "pano.png", lr)
    store = tmp_path / "s.zarr"
    code, output = odisr_cli("run", folder, "--out", store, "--model", "camixersr-s-x4", "--weights",
                             official_s_weights, "--scheduler", scheduler)  # fmt: skip
    assert code == 0, output
    group = zarr.open_group(str(store), mode="r")["images/pano/camixersr-s-x4"]
    score = group["attention_score"]
    assert score.shape == (4, 8) and score.metadata.dimension_names == ("window_y", "window_x")
    assert group.attrs["routing"]["score_std"] and len(group.attrs["routing"]["kept"]) == 20
    np.testing.assert_allclose(group["attention"][...].mean(), np.mean(group.attrs["routing"]["kept"]), atol=1e-5)

    html = tmp_path / "r" / "report.html"
    write_report(store, html=html, json=tmp_path / "r" / "report.json")
    text = html.read_text(encoding="utf-8")
    page = Page(text)
    assert "CAMixer routing" in page.sections
    assert page.column("CAMixer routing", "routing") == ["per block"]
    assert page.column("CAMixer routing", "blocks discriminating windows") == ["0"]
    assert "Routes per block, not per window" in text and "share of windows kept for attention" in text
    verdict = json.loads((tmp_path / "r" / "report.json").read_text())["routing"]["camixersr-s-x4"]
    assert verdict["per_window"] is False and len(verdict["kept"]) == 20
    assert verdict["kept"] == pytest.approx(group.attrs["routing"]["kept"])


# ---------------------------------------------------------------------------------------------------- archive scale


def _bench_report():
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "benchmarks" / "bench_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dom(browser: str, url: str) -> str:
    """The page's DOM after its scripts ran (headless Chromium's --dump-dom)."""
    cmd = [browser, *BASE_FLAGS, "--virtual-time-budget=3000", "--dump-dom", url]
    return subprocess.run(cmd, check=True, timeout=120, capture_output=True, text=True).stdout


def test_archive_store_report_is_paginated_and_complete(chromium, tmp_path):  # noqa: F811
    store, out = tmp_path / "archive.zarr", tmp_path / "out"
    _bench_report().write_store(store, 300, failed=3, workers=1)
    kwargs = {"html": out / "report.html", "csv": out / "rows.csv", "json": out / "report.json"}
    report = write_report(store, **kwargs)
    assert len(report.rows) == 300
    rows = list(csv.DictReader((out / "rows.csv").open(encoding="utf-8")))
    assert len(rows) == 300 and sum(r["status"] == "failed" for r in rows) == 3
    doc = json.loads((out / "report.json").read_text())
    assert len(doc["rows"]) == 300 and doc["runs"][0]["done"] == 297
    text = (out / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert len(page.thumbs) == 297 and len(page.reasons) == 3 and len(page.tables["Per image"][1]) == 300
    files = list(files_dir(out / "report.html").rglob("*.jpg"))
    assert len(files) == 297  # 256 px wide previews serve as their own thumbnails
    size = sum(f.stat().st_size for f in files)
    assert f"297 previews, {size / 1e6:.1f} MB" in text  # the total size is stated
    # a second report reuses every file
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    write_report(store, **kwargs)
    assert "0 written now, 297 reused" in (out / "report.html").read_text(encoding="utf-8")
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    # in the browser: one page of the gallery and of the table at a time
    with serve(out) as url:
        dom = _dom(chromium, url + "report.html")
    assert "page 1 of 5 (300 of 300)" in dom and "page 1 of 3 (300 of 300)" in dom
    assert dom.count("<figure>") == 60 and dom.count("<figure hidden") == 300 - 60  # the first 60 entries shown
    assert dom.count("<tr hidden") == 300 - 100  # and the first 100 rows of the per-image table


def test_cli_prints_the_first_rows_only(tmp_path):
    store = tmp_path / "archive.zarr"
    _bench_report().write_store(store, 80, workers=1)
    code, output = odisr_cli("report", store)
    assert code == 0
    assert "… and 30 more rows (every row: --csv, --json or --html)" in output
    assert output.count("archive/pano_000") == 50
