"""CAMixerSR speed versus the attention ratio γ on a real ERP panorama (CPU).

Measures LR pixels per second of one whole-image forward pass of CAMixerSR-S ×4 (official weights) on a 256×512
(H×W) LR panorama — ``data/erp/layoutnet_testpano.png`` resized with PIL bicubic — at γ = 1.0 and γ = 0.5:
one warm-up, then the median of ``--repeats`` timed runs (the ratios taking turns), on ``--threads`` CPU threads. Also prints the analytic
FLOPs of each run (from the windows actually kept) and the windows kept per block.

    python benchmarks/bench_camixer.py [--shared ../shared] [--threads 2] [--repeats 3] [--json out.json]

The paper's point: attention on the content-rich windows only (γ = 0.5) must be measurably faster than γ = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from odisr.models.archs.camixersr import CAMixerSR

REPO = Path(__file__).resolve().parents[1]


def load_panorama(shared: Path, height: int = 256, width: int = 512) -> torch.Tensor:
    """The LR panorama as ``(1, 3, height, width)`` float32 in [0, 1]."""
    img = Image.open(shared / "data" / "erp" / "layoutnet_testpano.png").convert("RGB")
    arr = np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def time_interleaved(model: CAMixerSR, x: torch.Tensor, ratios: list[float], repeats: int) -> dict[float, list]:
    """Wall-clock seconds of ``repeats`` forward passes per ratio, after one warm-up each.

    The ratios take turns (γ₁, γ₂, γ₁, γ₂, …) so that a slow spell of a shared machine hits them alike.
    """
    times: dict[float, list[float]] = {r: [] for r in ratios}
    with torch.inference_mode():
        for ratio in ratios:
            model.set_ratio(ratio)
            model(x)
        for _ in range(repeats):
            for ratio in ratios:
                model.set_ratio(ratio)
                start = time.perf_counter()
                model(x)
                times[ratio].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("ODISR_SHARED", REPO.parent / "shared")))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--channels-last", action="store_true", help="weights and input in channels-last layout")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    x = load_panorama(args.shared)
    h, w = x.shape[-2:]
    ckpt = torch.load(args.shared / "weights" / "official" / "CAMixerSR_S.pth", map_location="cpu", weights_only=True)
    model = CAMixerSR(n_feats=36, scale=4).eval()
    model.load_state_dict(ckpt["params_ema"], strict=True)

    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    timings = time_interleaved(model, x, args.ratios, args.repeats)
    results = []
    for ratio in args.ratios:
        model.set_ratio(ratio)
        with torch.inference_mode():
            model(x)
        times = timings[ratio]
        kept = model.kept_windows()[:, 0].tolist()
        median = statistics.median(times)
        results.append({
            "model": "camixersr-s-x4", "ratio": ratio, "lr_shape": [h, w], "threads": args.threads,
            "channels_last": args.channels_last,
            "runs_s": [round(t, 3) for t in times], "median_s": round(median, 3),
            "lr_pixels_per_s": round(h * w / median), "gflops": round(model.flops(h, w, kept=kept) / 1e9, 2),
            "kept_windows_per_block": kept, "windows_per_block": (h // 16) * (w // 16),
        })
        print(f"γ={ratio:.2f}  median {median:.2f} s  runs {[round(t, 2) for t in times]}  "
              f"{h * w / median:,.0f} LR px/s  {results[-1]['gflops']} GFLOPs  "
              f"kept {sum(kept)}/{len(kept) * results[-1]['windows_per_block']} windows")
    if len(results) > 1:
        print(f"speed-up γ={results[-1]['ratio']} vs γ={results[0]['ratio']}: "
              f"{results[0]['median_s'] / results[-1]['median_s']:.2f}×")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "loadavg": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
