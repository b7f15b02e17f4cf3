"""Pipeline overhead and scaling: `odisr run`'s Dask graph vs calling :func:`odisr.upscale` in a loop.

On N real panoramas (downscaled to ``--lr-width`` × ``--lr-width/2`` LR), with the same model, tile and halo:

* loop, 1 and 2 torch threads: ``read_image`` + ``odisr.upscale`` per image, in this process, model loaded once;
* pipeline, 1 and 2 local workers × 1 thread: :func:`pipelines.batch_sr.run_job` into a fresh Zarr store
  (decode, tiled inference, compressed region writes, preview, completion markers), the model already loaded in
  each worker (as the loop's is); the cold cost (cluster start-up + first model load) is reported apart.

Reported: seconds, output Mpx/s, overhead ratio = pipeline(1 worker) / loop(1 thread) (target ≤ 1.10), the full
machine ratio pipeline(2 workers) / loop(2 threads), and scaling = pipeline(1 worker) / pipeline(2 workers). The
pipeline's SR images are checked equal to the loop's.

    python benchmarks/bench_pipeline.py                                   # CAMixerSR-S ×4, official weights
    python benchmarks/bench_pipeline.py --model bicubic-x4 --lr-width 512 # the pipeline's own cost dominates
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from distributed import Client, LocalCluster

from odisr.inference import upscale
from odisr.io import read_image, write_image
from odisr.resize import imresize
from odisr.sources import find_sources
from pipelines.batch_sr import Job, Settings, resolve_model, run_job
from pipelines.cluster import TorchThreads, get_model, preload

SHARED = Path(__file__).resolve().parents[2] / "shared"
PANOS = ("layoutnet_testpano.png", "vrview_petra.jpg", "vrview_machu_picchu.jpg", "psv_sphere_small.jpg")


def make_inputs(folder: Path, names: tuple[str, ...], lr_width: int) -> list[Path]:
    """Real panoramas resized to ``lr_width`` × ``lr_width / 2`` LR (MATLAB bicubic, circular in longitude)."""
    paths = []
    for name in names:
        hr = read_image(SHARED / "data" / "erp" / name)
        paths.append(folder / f"{Path(name).stem}.png")
        write_image(paths[-1], imresize(hr, size=(lr_width // 2, lr_width), wrap=True))
    return paths


def loop(paths: list[Path], args: argparse.Namespace, threads: int) -> tuple[float, dict[str, np.ndarray]]:
    torch.set_num_threads(threads)
    model = get_model(args.choice.ref("cpu"))
    start, outputs = time.perf_counter(), {}
    for path in paths:
        lr = read_image(path.read_bytes(), name=str(path))
        outputs[path.stem] = upscale(lr, model, mode="odi", tile=args.tile, halo=args.halo, device="cpu")
    return time.perf_counter() - start, outputs


def pipeline(paths: list[Path], args: argparse.Namespace, workers: int, out: Path) -> tuple[float, float]:
    """(warm seconds of run_job, cold seconds: cluster start + model load on every worker)."""
    cold = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.register_plugin(TorchThreads())
            preload(client, args.choice.ref("cpu"))
            cold = time.perf_counter() - cold
            settings = Settings(scale=4, mode="odi", tile=args.tile, halo=args.halo, ratio=args.ratio, device="cpu")
            job = Job(find_sources(paths), str(out), [args.choice], settings, "bench_pipeline", overwrite=True)
            start = time.perf_counter()
            summary = run_job(job, client, progress=False)
            warm = time.perf_counter() - start
    assert summary.done == len(paths) and summary.failed == 0, summary
    return warm, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="camixersr-s-x4")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "official" / "CAMixerSR_S.pth"))
    parser.add_argument("--lr-width", type=int, default=256, help="LR width in pixels (height = width / 2)")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--halo", type=int, default=16)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    weights = args.weights if args.model.startswith("camixersr") else None
    args.choice = resolve_model(args.model, weights=weights, scale=4, ratio=args.ratio)

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(Path(tmp), PANOS, args.lr_width)
        mpx = sum(read_image(p).size / 3 for p in paths) * 16 / 1e6
        for threads in (1, 2):
            figures[f"loop_{threads}t"], reference = loop(paths, args, threads)
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}.zarr"
            figures[f"pipeline_{workers}w"], figures[f"pipeline_{workers}w_cold"] = pipeline(paths, args, workers, out)
            root = zarr.open_group(str(out), mode="r")
            for key, sr in reference.items():
                np.testing.assert_array_equal(root[f"images/{key}/{args.choice.name}/sr"][...], sr)
    figures["overhead_1"] = figures["pipeline_1w"] / figures["loop_1t"]
    figures["overhead_2"] = figures["pipeline_2w"] / figures["loop_2t"]
    figures["scaling_1_to_2"] = figures["pipeline_1w"] / figures["pipeline_2w"]
    print(f"{len(paths)} panoramas, LR {args.lr_width}×{args.lr_width // 2} → {mpx:.2f} output Mpx; {args.model}, "
          f"tile {args.tile}, halo {args.halo}")  # fmt: skip
    for name in ("loop_1t", "loop_2t", "pipeline_1w", "pipeline_2w"):
        print(f"  {name:<12} {figures[name]:8.2f} s  {mpx / figures[name]:6.3f} Mpx/s")
    print(f"  cold start (cluster + model load): 1 worker {figures['pipeline_1w_cold']:.1f} s, "
          f"2 workers {figures['pipeline_2w_cold']:.1f} s")  # fmt: skip
    print(f"  overhead pipeline(1 worker)/loop(1 thread)   = {figures['overhead_1']:.3f}  (target ≤ 1.10)")
    print(f"  full machine pipeline(2 workers)/loop(2 thr.) = {figures['overhead_2']:.3f}")
    print(f"  scaling 1 → 2 workers                         = {figures['scaling_1_to_2']:.2f}×")
    if args.json:
        args.json.write_text(json.dumps(figures | {"model": args.model, "lr_width": args.lr_width}, indent=2))


if __name__ == "__main__":
    main()
