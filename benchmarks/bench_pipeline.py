"""Pipeline overhead and scaling: `odisr run`'s Dask graph vs calling :func:`odisr.upscale` in a loop.

On 4 real panoramas (resized to ``--lr-width`` × ``--lr-width/2`` LR), with the same model, tile and halo:

* loop, 1 and 2 torch threads: ``read_image`` + ``odisr.upscale`` per image in this process, model loaded once;
* pipeline, 1 and 2 local workers × 1 thread: :func:`pipelines.batch_sr.run_job` into a fresh Zarr store
  (decode, tiled inference, compressed region writes, preview, completion markers), the model already loaded in
  each worker (as the loop's is); the cold cost (cluster start-up + first model load) is reported apart.

Each configuration runs ``--repeat`` times, interleaved, and the minimum is kept (the machine is shared). Besides
wall time, CPU time is measured (this process for the loop; workers + this process, which hosts the scheduler,
for the pipeline): the CPU ratio is the pipeline's overhead even when other jobs steal cores.

Reported: overhead = pipeline(1 worker) / loop(1 thread) in wall and CPU time (target ≤ 1.10), pipeline(2 workers) /
loop(2 threads), and scaling = pipeline(1 worker) / pipeline(2 workers). SR outputs are checked bit-identical.

    python benchmarks/bench_pipeline.py                                   # CAMixerSR-S ×4, official weights
    python benchmarks/bench_pipeline.py --model bicubic-x4 --lr-width 512 # the pipeline's own costs dominate
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
import zarr
from distributed import Client

from odisr.inference import upscale
from odisr.io import read_image, write_image
from odisr.resize import imresize
from odisr.sources import find_sources
from pipelines.batch_sr import Job, Settings, resolve_model, run_job
from pipelines.cluster import connect, get_model, preload

SHARED = Path(__file__).resolve().parents[2] / "shared"
PANOS = ("layoutnet_testpano.png", "vrview_petra.jpg", "vrview_machu_picchu.jpg", "psv_sphere_small.jpg")


def make_inputs(folder: Path, lr_width: int) -> list[Path]:
    """Real panoramas resized to ``lr_width`` × ``lr_width / 2`` LR (MATLAB bicubic, circular in longitude)."""
    paths = []
    for name in PANOS:
        paths.append(folder / f"{Path(name).stem}.png")
        hr = read_image(SHARED / "data" / "erp" / name)
        write_image(paths[-1], imresize(hr, size=(lr_width // 2, lr_width), wrap=True))
    return paths


def cpu_seconds() -> float:
    """User + system CPU time of the calling process (s)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float, object]:
    """(wall s, CPU s as counted by ``cpu``, result) of ``fn()``."""
    wall, used = time.perf_counter(), cpu()
    result = fn()
    return time.perf_counter() - wall, cpu() - used, result


def loop(paths: list[Path], args: argparse.Namespace, threads: int) -> dict[str, np.ndarray]:
    torch.set_num_threads(threads)
    model = get_model(args.choice.ref("cpu"))
    return {
        p.stem: upscale(read_image(p.read_bytes(), name=str(p)), model, tile=args.tile, halo=args.halo, device="cpu")
        for p in paths
    }


def start_cluster(stack: ExitStack, workers: int, args: argparse.Namespace) -> tuple[Client, float]:
    """A warm local cluster (model loaded in each worker) and its cold start-up time (s)."""
    start = time.perf_counter()
    client = stack.enter_context(connect(n_workers=workers, threads_per_worker=1))  # as `odisr run --workers N`
    preload(client, args.choice.ref("cpu"))
    return client, time.perf_counter() - start


def pipeline(client: Client, paths: list[Path], args: argparse.Namespace, out: Path) -> None:
    settings = Settings(scale=4, mode="odi", tile=args.tile, halo=args.halo, ratio=args.ratio, device="cpu")
    job = Job(find_sources(paths), str(out), [args.choice], settings, "bench_pipeline", overwrite=True)
    summary = run_job(job, client, progress=False)
    assert summary.done == len(paths) and summary.failed == 0, summary


def cluster_cpu(client: Client) -> Callable[[], float]:
    """CPU seconds of every worker process plus this process (driver and scheduler)."""
    return lambda: sum(client.run(cpu_seconds).values()) + cpu_seconds()


def measure(args: argparse.Namespace, paths: list[Path], tmp: Path) -> dict[str, float]:
    """Minimum wall and CPU seconds of each configuration over ``args.repeat`` interleaved rounds."""
    figures: dict[str, float] = {}

    def keep(name: str, wall: float, cpu: float) -> None:
        figures[f"{name}_wall"] = min(figures.get(f"{name}_wall", wall), wall)
        figures[f"{name}_cpu"] = min(figures.get(f"{name}_cpu", cpu), cpu)

    with ExitStack() as stack:
        clients = {}
        for n in (1, 2):
            clients[n], figures[f"pipeline_{n}w_cold"] = start_cluster(stack, n, args)
        for _ in range(args.repeat):
            for n in (1, 2):  # n torch threads for the loop, n single-threaded workers for the pipeline
                wall, cpu, reference = timed(lambda n=n: loop(paths, args, n), cpu_seconds)
                keep(f"loop_{n}t", wall, cpu)
                out, client = tmp / f"w{n}.zarr", clients[n]
                wall, cpu, _ = timed(lambda c=client, o=out: pipeline(c, paths, args, o), cluster_cpu(client))
                keep(f"pipeline_{n}w", wall, cpu)
                if n == 1:  # same thread count as the workers: bit-identical results
                    check_equal(out, reference, args.choice.name)
    return figures


def check_equal(store: Path, reference: dict[str, np.ndarray], model: str) -> None:
    root = zarr.open_group(str(store), mode="r")
    for key, sr in reference.items():
        np.testing.assert_array_equal(root[f"images/{key}/{model}/sr"][...], sr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="camixersr-s-x4")
    parser.add_argument("--weights", default=str(SHARED / "weights" / "official" / "CAMixerSR_S.pth"))
    parser.add_argument("--lr-width", type=int, default=256, help="LR width in pixels (height = width / 2)")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--halo", type=int, default=16)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration; the minimum is kept")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    weights = args.weights if args.model.startswith("camixersr") else None
    args.choice = resolve_model(args.model, weights=weights, scale=4, ratio=args.ratio)

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_inputs(Path(tmp), args.lr_width)
        figures = measure(args, paths, Path(tmp))
    mpx = len(paths) * args.lr_width**2 / 2 * 16 / 1e6
    figures["overhead_1_wall"] = figures["pipeline_1w_wall"] / figures["loop_1t_wall"]
    figures["overhead_1_cpu"] = figures["pipeline_1w_cpu"] / figures["loop_1t_cpu"]
    figures["overhead_2_wall"] = figures["pipeline_2w_wall"] / figures["loop_2t_wall"]
    figures["scaling_1_to_2"] = figures["pipeline_1w_wall"] / figures["pipeline_2w_wall"]
    print(f"{len(paths)} panoramas, LR {args.lr_width}×{args.lr_width // 2} → {mpx:.2f} output Mpx; {args.model}, "
          f"tile {args.tile}, halo {args.halo}; min of {args.repeat}")  # fmt: skip
    for name in ("loop_1t", "loop_2t", "pipeline_1w", "pipeline_2w"):
        wall, cpu = figures[f"{name}_wall"], figures[f"{name}_cpu"]
        print(f"  {name:<12} wall {wall:8.2f} s  CPU {cpu:8.2f} s  {mpx / wall:6.3f} Mpx/s")
    print(f"  cold start (cluster + model load): 1 worker {figures['pipeline_1w_cold']:.1f} s, "
          f"2 workers {figures['pipeline_2w_cold']:.1f} s")  # fmt: skip
    print(f"  overhead pipeline(1 worker)/loop(1 thread): wall {figures['overhead_1_wall']:.3f}, "
          f"CPU {figures['overhead_1_cpu']:.3f}  (target ≤ 1.10)")  # fmt: skip
    print(f"  pipeline(2 workers)/loop(2 threads): wall {figures['overhead_2_wall']:.3f}")
    print(f"  scaling 1 → 2 workers: {figures['scaling_1_to_2']:.2f}×")
    if args.json:
        args.json.write_text(json.dumps(figures | {"model": args.model, "lr_width": args.lr_width}, indent=2))


if __name__ == "__main__":
    main()
