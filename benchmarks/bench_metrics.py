"""Time WS-PSNR and WS-SSIM on a 4096×2048 panorama pair, single-threaded, with their peak memory.

    python benchmarks/bench_metrics.py [--repeat 3] [--image PATH] [--compare]

The pair is ``aframe_lake.jpg`` from the shared data and a degraded copy (Pillow bicubic ↓4 then ↑4, as the metric
fixtures were made). Peak memory is what the call allocates beyond its inputs (``tracemalloc``, which sees numpy
and OpenCV-in-numpy buffers), also given as a multiple of one float64 RGB copy of the image. ``--compare`` also
times the alternatives considered: float64 squared errors (no uint8 fast path) and scikit-image's SSIM map.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/torch load their thread pools

import argparse
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from odisr import metrics
from odisr.erp import latitude_weights
from odisr.io import read_image

SHARED = Path(os.environ.get("ODISR_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def degraded(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Bicubic ↓factor then ↑factor with Pillow: the distortion of the metric fixtures."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((w // factor, h // factor), Image.BICUBIC)
    return np.asarray(small.resize((w, h), Image.BICUBIC))


def measure(fn: Callable[[], float], repeat: int) -> tuple[float, float, float, float]:
    """(value, best wall seconds, best CPU seconds, peak MB allocated during one call).

    CPU seconds are what one core spends: on a shared machine they are the steadier figure.
    """
    tracemalloc.start()
    value = fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return value, min(wall), min(cpu), peak


def float64_ws_psnr(hr: np.ndarray, sr: np.ndarray) -> float:
    """The straightforward vectorised form (whole image in float64), for comparison."""
    diff = hr.astype(np.float64) - sr.astype(np.float64)
    w = latitude_weights(hr.shape[0])[:, None, None]
    return 10 * np.log10(255.0**2 * w.sum() * hr.shape[1] * 3 / (w * diff * diff).sum())


def skimage_ws_ssim(hr: np.ndarray, sr: np.ndarray) -> float:
    """WS-SSIM from scikit-image's SSIM map (METRICS.md), for comparison."""
    from skimage.metrics import structural_similarity

    values = []
    for c in range(3):
        _, full = structural_similarity(hr[..., c].astype(np.float64), sr[..., c].astype(np.float64),
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255, full=True)
        ssim_map = full[5:-5, 5:-5]
        w = latitude_weights(ssim_map.shape[0])[:, None]
        values.append((ssim_map * w).mean() / w.mean())
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=SHARED / "data" / "erp" / "aframe_lake.jpg")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also time the alternatives considered")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    hr = read_image(args.image)
    sr = degraded(hr)
    copy_mb = hr.size * 8 / 2**20
    print(f"{args.image.name}: {hr.shape[1]}×{hr.shape[0]} RGB uint8, 1 thread, best of {args.repeat}; "
          f"one float64 RGB copy = {copy_mb:.0f} MB")
    cases: dict[str, Callable[[], float]] = {
        "ws_psnr": lambda: metrics.ws_psnr(hr, sr),
        "ws_psnr (Y)": lambda: metrics.ws_psnr(hr, sr, y_channel=True),
        "ws_ssim": lambda: metrics.ws_ssim(hr, sr),
        "psnr": lambda: metrics.psnr(hr, sr),
        "ssim (Y, crop 4)": lambda: metrics.ssim(hr, sr, crop_border=4, y_channel=True),
    }
    if args.compare:
        cases["float64 ws_psnr (alt.)"] = lambda: float64_ws_psnr(hr, sr)
        cases["skimage ws_ssim (alt.)"] = lambda: skimage_ws_ssim(hr, sr)
    print(f"{'metric':<24}{'value':>12}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}{'× copy':>8}")
    for name, fn in cases.items():
        value, wall, cpu, peak = measure(fn, args.repeat)
        print(f"{name:<24}{value:>12.6f}{wall:>9.3f}{cpu:>9.3f}{peak:>9.0f}{peak / copy_mb:>8.2f}")


if __name__ == "__main__":
    main()
