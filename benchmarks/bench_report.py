"""Time ``odisr report`` stages on a synthetic store of N images × 2 models:
``python benchmarks/bench_report.py [--images 500] [--attention 4]``.

The store is written in a temporary directory with the documented layout (attrs, a 64×128 preview per result,
``--attention`` attention maps); prints the wall time of collect (attrs of every result), summarize, CSV, JSON
and HTML (plots included) in seconds.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from odisr.report import collect, render_html, summarize, to_json, write_csv

MODELS = ("camixersr-s-x4", "bicubic-x4")


def _write_store(path: Path, n_images: int, n_attention: int) -> None:
    rng = np.random.default_rng(0)
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"odisr_version": "bench", "created": "now", "runs": []})
    images = root.create_group("images")
    for i in range(n_images):
        image = images.create_group(f"pano_{i:05d}")
        for m, model in enumerate(MODELS):
            g = image.create_group(model)
            ws = float(27 + 2 * (m == 0) + rng.normal(0, 1))
            g.attrs.update({
                "status": "complete", "model": model, "scale": 4, "source": f"set/pano_{i:05d}.jpg",
                "seconds": float(rng.uniform(0.5, 5)), "metrics": {"ws_psnr": ws, "ws_ssim": 0.8, "psnr": ws - 0.5,
                                                                    "ssim": 0.78},
                "bands": [[-90 + 22.5 * k, -67.5 + 22.5 * k, ws + rng.normal(0, 0.5)] for k in range(8)],
            })
            p = g.create_array("preview", shape=(64, 128, 3), dtype="uint8", dimension_names=["y", "x", "band"])
            p[...] = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
            if m == 0 and i < n_attention:
                a = g.create_array("attention", shape=(4, 8), dtype="float32", dimension_names=["y", "x"])
                a[...] = rng.uniform(0, 1, (4, 8)).astype(np.float32)


def _timed(label: str, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    print(f"{label:10s} {time.perf_counter() - t0:7.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--attention", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.zarr"
        _timed("write", _write_store, store, args.images, args.attention)
        report = _timed("collect", collect, store)
        summaries = _timed("summarize", summarize, report.rows)
        _timed("csv", write_csv, report.rows, io.StringIO())
        _timed("json", to_json, report, summaries)
        page = _timed("html", render_html, report, summaries)
        print(f"{len(report.rows)} results, HTML {len(page) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
