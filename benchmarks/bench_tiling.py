"""Tiled vs whole-image inference on a real panorama: fidelity, halo cost and the 360° seam.

    python benchmarks/bench_tiling.py          # layoutnet_testpano 2048×1024 → 512×256 LR, CAMixerSR-S ×4
    python benchmarks/bench_tiling.py --image hohonet_pano.png --halos 0 16   # quicker (256×128 LR)

For each halo: WS-PSNR of the SR output against the HR panorama, PSNR between tiled and whole-image outputs,
the LR pixels fed to the network (halos, window padding and the global-context copy included), wall time and
process CPU time, all relative to whole-image inference; for the default halo also without the global context (on shared cores, ``--threads 1`` CPU time is the most reliable cost figure).
Seam: the panorama is rolled by half its width, super-resolved, rolled back, and compared with the direct result
over the 32 output columns on each side of the ±180° meridian (odi = circular padding; large = reflect, as the
official code). Writes a JSON summary with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from odisr.inference import DEFAULT_HALO, TileGrid, upscale
from odisr.inference.engine import context_size
from odisr.inference.tiling import align_up
from odisr.io import read_image
from odisr.metrics import psnr, ws_psnr
from odisr.models import load
from odisr.resize import imresize

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEAM_COLUMNS = 32  # output columns on each side of the 180° meridian


def seam_psnr(direct: np.ndarray, rolled_back: np.ndarray, cols: int = SEAM_COLUMNS) -> float:
    """PSNR (dB) between two SR panoramas over ``cols`` output columns on each side of the left/right edge."""
    edge = np.concatenate([direct[:, -cols:], direct[:, :cols]], axis=1)
    other = np.concatenate([rolled_back[:, -cols:], rolled_back[:, :cols]], axis=1)
    return psnr(edge, other)


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """``fn``'s result, wall seconds and CPU seconds of this process (robust to other jobs on shared cores)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default="layoutnet_testpano.png", help="panorama in shared/data/erp/")
    p.add_argument("--tile", type=int, default=128, help="LR tile size (px)")
    p.add_argument("--halos", type=int, nargs="+", default=[0, 16, 32], help="halos to measure (LR px)")
    p.add_argument("--ratio", type=float, default=1.0, help="CAMixer ratio γ")
    p.add_argument("--no-seam", action="store_true", help="skip the 360° seam measurements")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 gives the cleanest CPU-time ratios)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    hr = read_image(SHARED / "data" / "erp" / args.image)
    lr = imresize(hr, 0.25, wrap=True)  # ERP bicubic degradation, circular in longitude
    model = load("camixersr-s-x4", weights=SHARED / "weights" / "official" / "CAMixerSR_S.pth", ratio=args.ratio)
    h, w = lr.shape[:2]
    print(f"{args.image}: HR {hr.shape[1]}×{hr.shape[0]} → LR {w}×{h}; CAMixerSR-S ×4, γ={args.ratio}, "
          f"tile {args.tile}, {torch.get_num_threads()} threads")

    def cost(tile: int | None, halo: int, context: bool = True) -> int:
        """LR pixels fed to the network, the global-context copy (padded to the window) included."""
        grid = TileGrid.build(h, w, window=16, mode="odi", tile=tile, halo=halo)
        if not context or len(grid) == 1:
            return grid.processed_pixels()
        ch, cw = context_size(grid, batch_size=4)
        return grid.processed_pixels() + align_up(ch, 16) * align_up(cw, 16)

    whole, t_whole, cpu_whole = timed(upscale, lr, model, mode="odi")
    res: dict = {"image": args.image, "lr": [h, w], "tile": args.tile, "ratio": args.ratio,
                 "default_halo": DEFAULT_HALO, "threads": torch.get_num_threads()}
    res["whole"] = {"seconds": t_whole, "cpu_seconds": cpu_whole, "pixels": cost(None, DEFAULT_HALO),
                    "ws_psnr": ws_psnr(whole, hr)}
    print(f"whole image (odi, halo {DEFAULT_HALO}): {t_whole:.1f} s, WS-PSNR {res['whole']['ws_psnr']:.4f} dB, "
          f"{res['whole']['pixels'] / (h * w):.3f}× the LR pixels")
    res["tiled"] = []
    tiled_default = None
    for halo in args.halos:
        out, secs, cpu = timed(upscale, lr, model, mode="odi", tile=args.tile, halo=halo)
        row = {"halo": halo, "seconds": secs, "cpu_seconds": cpu, "pixels": cost(args.tile, halo),
               "ws_psnr": ws_psnr(out, hr), "psnr_vs_whole": psnr(out, whole)}
        row["pixel_ratio_vs_whole"] = row["pixels"] / res["whole"]["pixels"]
        row["pixel_ratio_vs_image"] = row["pixels"] / (h * w)
        row["time_ratio_vs_whole"] = secs / t_whole
        row["cpu_ratio_vs_whole"] = cpu / cpu_whole
        row["ws_psnr_delta"] = row["ws_psnr"] - res["whole"]["ws_psnr"]
        res["tiled"].append(row)
        if halo == DEFAULT_HALO:
            tiled_default = out
            own = upscale(lr, model, mode="odi", tile=args.tile, halo=halo, global_context=False)
            res["default_halo_without_context"] = {
                "ws_psnr_delta": ws_psnr(own, hr) - res["whole"]["ws_psnr"], "psnr_vs_whole": psnr(own, whole),
                "pixels": cost(args.tile, halo, context=False)}
            print(f"  without the global context: WS-PSNR Δ {res['default_halo_without_context']['ws_psnr_delta']:+.4f}"
                  f" dB, PSNR vs whole {res['default_halo_without_context']['psnr_vs_whole']:.2f} dB")
        print(f"tile {args.tile} halo {halo:2d}: WS-PSNR {row['ws_psnr']:.4f} dB (Δ {row['ws_psnr_delta']:+.4f}), "
              f"PSNR vs whole {row['psnr_vs_whole']:.2f} dB, pixels ×{row['pixel_ratio_vs_whole']:.3f} of whole "
              f"(×{row['pixel_ratio_vs_image']:.3f} of the image), "
              f"time ×{row['time_ratio_vs_whole']:.2f} ({secs:.1f} s), CPU time ×{row['cpu_ratio_vs_whole']:.2f}")

    if not args.no_seam:
        rolled = np.roll(lr, w // 2, axis=1)
        back = w // 2 * model.scale
        res["seam"] = {}
        for mode, tile, direct in (("odi", None, whole), ("odi", args.tile, tiled_default),
                                   ("large", None, None), ("large", args.tile, None)):
            if direct is None:
                direct = upscale(lr, model, mode=mode, tile=tile)
            out = np.roll(upscale(rolled, model, mode=mode, tile=tile), -back, axis=1)
            key = f"{mode}_{'whole' if tile is None else f'tile{tile}'}"
            res["seam"][key] = seam_psnr(direct, out)
            print(f"seam {key}: PSNR {res['seam'][key]:.2f} dB over ±{SEAM_COLUMNS} output columns at 180°")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
