"""Peak memory and time of SAN (full configuration, random weights) on one LR image:
``python benchmarks/bench_san_memory.py [--size 256 256] [--scale 4] [--threads N]``.

Each measurement runs in a fresh Python subprocess so that its peak resident set size (``ru_maxrss``) belongs to
that run alone. The child reports the RSS after building the model and the input (baseline), the peak RSS after
one ``torch.no_grad()`` forward pass, and the forward time (s). For comparison the script prints the size of the
(M × M) float32 centring matrix that the official MPN-COV ``Covpool`` allocates per SOCA call (M = h·w LR pixels);
our SAN computes the same covariance as (x−μ)(x−μ)ᵀ/M without it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    """Peak RSS of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(h: int, w: int, scale: int, threads: int | None) -> dict[str, float]:
    import psutil
    import torch

    from odisr.models.archs.san import SAN

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SAN(scale=scale).eval()  # n_resgroups 20, n_resblocks 10, n_feats 64, reduction 16
    x = torch.rand(1, 3, h, w)
    baseline = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    with torch.no_grad():
        y = model(x)
    seconds = time.perf_counter() - t0
    assert y.shape == (1, 3, scale * h, scale * w) and bool(torch.isfinite(y).all())
    return {"baseline_rss_mib": baseline, "peak_rss_mib": _rss_mib(), "forward_s": seconds,
            "threads": torch.get_num_threads(), "params": model.num_params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"), help="LR size (pixels)")
    parser.add_argument("--scale", type=int, default=4, choices=[2, 3, 4])
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the child (default: torch's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    h, w = args.size
    if args.child:
        print(json.dumps(child(h, w, args.scale, args.threads)))
        return
    cmd = [sys.executable, __file__, "--child", "--size", str(h), str(w), "--scale", str(args.scale)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    m = h * w
    print(f"SAN ×{args.scale} full ({result['params']:,} params), LR {h}×{w} → {args.scale * h}×{args.scale * w}, "
          f"{result['threads']} threads")
    print(f"  RSS after build + input : {result['baseline_rss_mib']:8.0f} MiB")
    print(f"  peak RSS (forward)      : {result['peak_rss_mib']:8.0f} MiB "
          f"(+{result['peak_rss_mib'] - result['baseline_rss_mib']:.0f} MiB for the forward pass)")
    print(f"  forward time            : {result['forward_s']:8.1f} s")
    print(f"  official Covpool centring matrix alone: {m}×{m} float32 = {m * m * 4 / 2**30:.1f} GiB per SOCA call")


if __name__ == "__main__":
    main()
