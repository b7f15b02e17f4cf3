"""Peak memory of tiled upscaling into a compressed Zarr array: it depends on the tile, not on the image.

    python benchmarks/bench_memory.py                     # both cases, each in a fresh subprocess
    python benchmarks/bench_memory.py --case bicubic      # one case in this process

Cases (CPU):
* ``bicubic``: a 4096×2048 LR panorama (aframe_lake.jpg) ×4 → a 16384×8192 SR panorama (402 MB as uint8) into a
  Zarr v3 array chunked by tile·4 output pixels, zstd-compressed. Target: peak RSS < 3 GB.
* ``camixer``: CAMixerSR-S ×4 (official weights, γ = 0.5) on a 1024×512 LR panorama → 4096×2048.

Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the case's own process (imports included), with
the RSS before upscaling (psutil) for reference. Prints one JSON line per case; ``--json`` writes them all.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CASES = {
    # case: (LR panorama, model, tile, ratio)
    "bicubic": ("aframe_lake.jpg", "bicubic-x4", 256, None),
    "camixer": ("hohonet_pano.png", "camixersr-s-x4", 128, 0.5),
}


def run_case(case: str) -> dict:
    """Upscale the case's panorama into a Zarr array in a temporary directory; return the figures."""
    import numpy as np
    import psutil
    import zarr

    from odisr.inference import effective_tile, upscale
    from odisr.io import read_image
    from odisr.models import load

    image, name, tile, ratio = CASES[case]
    weights = SHARED / "weights" / "official" / "CAMixerSR_S.pth" if name.startswith("camixer") else None
    model = load(name, weights=weights, ratio=ratio)
    lr = read_image(SHARED / "data" / "erp" / image)
    h, w = lr.shape[:2]
    s = model.scale
    chunk = effective_tile(tile, model.window_size) * s
    rss_before = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        sr = zarr.create_array(
            Path(tmp) / "sr.zarr", shape=(h * s, w * s, 3), chunks=(chunk, chunk, 3), dtype="uint8",
            compressors=zarr.codecs.ZstdCodec(level=3), dimension_names=("y", "x", "band"),
        )  # fmt: skip
        t0 = time.perf_counter()
        upscale(lr, model, mode="odi", tile=tile, device="cpu", batch_size=2, sink=sr)
        seconds = time.perf_counter() - t0
        # spot check: the SR mean follows the LR mean (nothing left unwritten, no garbage)
        corner = sr[: 4 * chunk, : 4 * chunk]
        lr_corner = lr[: 4 * chunk // s, : 4 * chunk // s]
        mean_gap = float(abs(corner.mean() - lr_corner.mean()))
        stored = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {
        "case": case, "model": name, "lr": [h, w], "sr": [h * s, w * s], "tile": tile, "chunk": chunk,
        "seconds": round(seconds, 1), "rss_before_gb": round(rss_before / 1e9, 3), "peak_rss_gb": round(peak / 1e9, 3),
        "sr_raw_gb": round(h * s * w * s * 3 / 1e9, 3), "zarr_gb": round(stored / 1e9, 3),
        "mean_gap_corner": round(mean_gap, 3), "ok": bool(peak < 3e9 and mean_gap < 2.0 and np.isfinite(mean_gap)),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    p.add_argument("--json", type=Path, help="write all results here")
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)), flush=True)
        return
    results = []
    for case in CASES:  # each in a fresh process, so one case's peak cannot hide in another's
        proc = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
