"""Time the LR degradations on real panoramas: ``python benchmarks/bench_degrade.py [--repeat 3]``.

Prints, per panorama and scale, the best wall time of ``bicubic_erp`` and ``fisheye`` (seconds) and the fisheye
LR's PSNR against ERP bicubic (dB, whole image), to follow how far the two degradations are apart.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from odisr.degrade import bicubic_erp, fisheye

SHARED = Path(os.environ.get("ODISR_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _best(fn, *args, repeat: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    for name in ("horizonnet_demo.png", "vrview_petra.jpg", "aframe_lake.jpg"):
        hr = np.asarray(Image.open(SHARED / "data" / "erp" / name).convert("RGB"))
        for s in args.scales:
            t_b, lr_b = _best(bicubic_erp, hr, s, repeat=args.repeat)
            t_f, lr_f = _best(fisheye, hr, s, repeat=args.repeat)
            mse = np.mean((lr_b.astype(np.float64) - lr_f) ** 2)
            print(f"{name:24s} {hr.shape[1]}×{hr.shape[0]} ×{s}: bicubic_erp {t_b:.3f} s, fisheye {t_f:.3f} s, "
                  f"PSNR(fisheye, bicubic) {10 * np.log10(255**2 / mse):.2f} dB")


if __name__ == "__main__":
    main()
