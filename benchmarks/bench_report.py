"""Archive-scale report: ``odisr report`` of a store with ``--pairs`` complete (image, model) results.

    python benchmarks/bench_report.py                          # 10,000 pairs, store kept in $TMPDIR/odisr-bench-report
    python benchmarks/bench_report.py --pairs 2000 --store /tmp/s.zarr

The store is written once (and reused by later runs with the same ``--store`` and ``--pairs``) by the pipeline's own
store functions (:mod:`pipelines.store`: ``begin_pair`` → ``sr`` written as a region → ``write_preview`` →
``complete_pair``), in worker processes: small ERP images (LR 64×32, SR ×4 256×128, smooth synthetic content), one
model, ``--failed`` pairs recorded as failed with a reason, and a run record. Nothing of the report is precomputed.

Then, timed: the whole report as ``odisr report STORE --html --csv --json`` writes it (:func:`odisr.report.
write_report`), first into an empty folder (every preview read and encoded) and again (previews reused), and its
stages once each: collect (metadata of every pair), summarize, CSV, JSON, gallery files, HTML rendering.
Printed: every time, the HTML size, the preview files' size and count, the machine's load; with ``$OUT`` set,
also written to ``$OUT/bench_report.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "bicubic-x4"
LR_SHAPE, SCALE = (32, 64), 4


def synthetic_sr(i: int) -> np.ndarray:
    """A smooth (256×128, JPEG-friendly) RGB uint8 image that differs per index ``i``."""
    h, w = LR_SHAPE[0] * SCALE, LR_SHAPE[1] * SCALE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (i % 97) / 97 * 2 * np.pi
    base = 0.5 + 0.25 * np.sin(x / w * 2 * np.pi + phase)[..., None] + 0.2 * np.cos(y / h * np.pi)[..., None]
    tint = np.array([1.0, 0.8 + 0.2 * ((i // 97) % 2), 0.6 + 0.4 * (i % 3) / 2], np.float32)
    return np.clip(base * tint * 255, 0, 255).astype(np.uint8)


def _write_pairs(store: str, indices: range, failed: int) -> None:
    """Write pairs ``indices`` of the synthetic store with the pipeline's store functions (one worker's share)."""
    import zarr

    from pipelines import store as st

    root = zarr.open_group(store, mode="r+")
    h, w = LR_SHAPE
    for i in indices:
        key = f"pano_{i:05d}"
        root.require_group(f"images/{key}")
        attrs = {"source": f"archive/{key}.jpg", "model": MODEL, "architecture": "bicubic", "scale": SCALE,
                 "mode": "odi", "tile": 64, "lr_shape": [h, w], "sr_shape": [h * SCALE, w * SCALE], "params": 0}
        if i < failed:
            st.fail_pair(store, key, MODEL, attrs, f"ImageReadError: archive/{key}.jpg: truncated file (synthetic)")
            continue
        group = st.begin_pair(store, key, MODEL, attrs)
        sink = st.RegionSink(group, st.create_sr(group, (h * SCALE, w * SCALE), 256))
        with sink:
            sink[:, :, :] = synthetic_sr(i)
        st.write_preview(group, sink.preview.result())
        st.complete_pair(sink, {"seconds": 0.05 + (i % 10) / 100})


def write_store(path: Path, pairs: int, failed: int = 0, workers: int | None = None) -> None:
    """A store of ``pairs`` (image, model) results (``failed`` of them failed) and one finished run record."""
    from pipelines import store as st

    root = st.open_store(str(path))
    index = st.record_run(root, f"odisr run archive/ --out {path.name} --model {MODEL}", {"scale": SCALE},
                          device="cpu", workers=2, threads=2, scheduler="local")  # fmt: skip
    n = workers or min(4, os.cpu_count() or 1)
    shares = [range(k, pairs, n) for k in range(n)]
    if n == 1 or pairs < 200:
        for share in shares:
            _write_pairs(str(path), share, failed)
    else:
        with ProcessPoolExecutor(n, mp_context=get_context("spawn")) as pool:
            list(pool.map(_write_pairs, [str(path)] * n, shares, [failed] * n))
    megapixels = (pairs - failed) * LR_SHAPE[0] * LR_SHAPE[1] * SCALE**2 / 1e6
    st.finish_run(root, index, {"done": pairs - failed, "failed": failed, "skipped": 0, "seconds": 600.0,
                                "megapixels_per_s": megapixels / 600.0})  # fmt: skip


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the report's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)``, printing its wall time and CPU time (CPU: comparable on a loaded machine)."""
    t0, c0 = time.perf_counter(), _cpu()
    out = fn(*args, **kwargs)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    print(f"  {label:28s} {seconds:8.2f} s wall {cpu:8.2f} s CPU", flush=True)
    return out, seconds


def _folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--failed", type=int, default=20, help="pairs recorded as failed (with a reason)")
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "odisr-bench-report" / "s.zarr")
    parser.add_argument("--workers", type=int, default=None, help="report worker processes (default: per core)")
    args = parser.parse_args()

    from odisr.report import collect, files_dir, render_html, summarize, to_json, write_csv, write_gallery, write_report

    marker = args.store / f".bench-{args.pairs}-{args.failed}"
    if not marker.exists():
        shutil.rmtree(args.store, ignore_errors=True)
        args.store.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.pairs} pairs into {args.store} …", flush=True)
        _, seconds = _timed("write store (not counted)", write_store, args.store, args.pairs, args.failed)
        marker.write_text(f"{seconds:.1f}\n")
    load = os.getloadavg()
    print(f"store {args.store}: {args.pairs} pairs ({args.failed} failed); {os.cpu_count()} CPUs, "
          f"load {load[0]:.1f}/{load[1]:.1f}")  # fmt: skip
    results: dict[str, Any] = {"pairs": args.pairs, "failed": args.failed, "cpus": os.cpu_count(), "load": load}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        html = out / "report.html"
        kwargs = {"html": html, "csv": out / "rows.csv", "json": out / "report.json", "workers": args.workers}
        print("odisr report --html --csv --json:")
        _, results["report_first_s"] = _timed("first (previews written)", write_report, args.store, **kwargs)
        _, results["report_again_s"] = _timed("again (previews reused)", write_report, args.store, **kwargs)
        results["html_bytes"] = html.stat().st_size
        results["files_bytes"], results["files"] = _folder_size(files_dir(html))
        results["csv_rows"] = sum(1 for _ in (out / "rows.csv").open(encoding="utf-8")) - 1
        print("stages:")
        report, results["collect_s"] = _timed("collect (metadata)", collect, args.store)
        summaries, results["summarize_s"] = _timed("summarize", summarize, report.rows)
        _, results["csv_s"] = _timed("csv", write_csv, report.rows, io.StringIO())
        _, results["json_s"] = _timed("json", to_json, report, summaries)
        shutil.rmtree(files_dir(html))
        gallery, results["gallery_s"] = _timed("gallery (previews written)", write_gallery, report,
                                               files_dir(html), workers=args.workers)  # fmt: skip
        _, results["html_s"] = _timed("html (render)", render_html, report, summaries, gallery=gallery)
    print(f"HTML {results['html_bytes'] / 1e6:.2f} MB; previews and thumbnails {results['files_bytes'] / 1e6:.1f} MB "
          f"in {results['files']} files; CSV {results['csv_rows']} rows")  # fmt: skip
    if os.environ.get("OUT"):
        dest = Path(os.environ["OUT"]) / "bench_report.json"
        dest.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written {dest}")


if __name__ == "__main__":
    main()
