"""Training speed of ``odisr train``: iterations per second of CAMixerSR light ×2 and S ×4, fp32 and AMP.

Each measurement runs the real training step (:meth:`odisr.train.loop.Trainer.step`: patch sampling and cutting,
forward in training mode with Gumbel routing, L1 + ratio loss, backward, Adam, EMA) on a synthetic 2048×1024
panorama (random pixels: the speed does not depend on the content), after ``--warmup`` untimed steps; the
precisions take turns in rounds of ``--chunk`` steps so that a noisy spell hits them alike, and the median rate of
the rounds is reported. AMP runs only on CUDA (fp16 with a gradient scaler, bf16 without); on the CPU only fp32 is
measured. ``--per-image`` adds fp32 with the inference policy's per-image kernels, the trainer's path before it
ran batched (:func:`odisr.models.execution.batched`); ``--batches`` adds fp32 with the batches cut the other way
than the device's default (ahead on a worker thread on CUDA, serially in the step on the CPU:
:mod:`odisr.train.prefetch`). Peak GPU memory is reported on CUDA.

    python benchmarks/bench_train.py                                   # CUDA: batch 16, patch 64 (~3 min on a GPU)
    python benchmarks/bench_train.py --batch 2 --patch 32 --steps 4    # a quick try on the CPU

Prints one line per (model, precision) and writes ``$OUT/bench_train.json`` when ``$OUT`` is set (or ``--json``).
Needs torch, odisr's core dependencies and Pillow; not Dask or Zarr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odisr.device import resolve_device
from odisr.models.execution import execution_policy, use_policy
from odisr.io import write_image
from odisr.train.config import validate
from odisr.train.distributed import Dist
from odisr.train.loop import Trainer
from odisr.train.rundir import RunDir

MODELS = ("camixersr-light-x2", "camixersr-s-x4")
PER_IMAGE = "/per-image"
AHEAD, SERIAL = "/batches-ahead", "/serial-batches"


def make_trainer(model: str, amp: str, args: argparse.Namespace, panorama: Path, device: torch.device) -> Trainer:
    cfg = validate({
        "model": model, "amp": False if amp == "fp32" else amp, "device": str(device),
        "data": {"train": [str(panorama)], "patch": args.patch, "batch": args.batch},
        "optim": {"iterations": 10**6}, "val_every": None,
    }, source="bench_train")  # fmt: skip
    return Trainer(cfg, RunDir(tempfile.mkdtemp()), Dist(), device, progress=False)


def rate(trainer: Trainer, steps: int, start: int, per_image: bool = False) -> float:
    """Iterations per second over ``steps`` steps (CUDA synchronised by the step itself); ``per_image``: with the
    inference policy's per-image kernels instead of the trainer's batched ones (the comparison of ``--per-image``)."""
    policy = use_policy(execution_policy(trainer.device)) if per_image else contextlib.nullcontext()
    t0 = time.perf_counter()
    with policy:
        for i in range(steps):
            trainer.step(trainer.net, start + i)
    return steps / (time.perf_counter() - t0)


def bench_model(model: str, precisions: list[str], args: argparse.Namespace, panorama: Path,
                device: torch.device) -> list[dict[str, Any]]:  # fmt: skip
    trainers = {p: make_trainer(model, p.split("/")[0], args, panorama, device) for p in precisions}
    for p, trainer in trainers.items():
        variant = p.removeprefix(p.split("/")[0])
        trainer.batches.ahead = {AHEAD: True, SERIAL: False}.get(variant, trainer.batches.ahead)
    for p, trainer in trainers.items():
        for i in range(args.warmup):
            trainer.step(trainer.net, i + 1)
    rates: dict[str, list[float]] = {p: [] for p in precisions}
    done = args.warmup + 1
    for _ in range(max(1, args.steps // args.chunk)):
        for p, trainer in trainers.items():
            rates[p].append(rate(trainer, args.chunk, done, per_image=p.endswith(PER_IMAGE)))
            print(f"  {model} {p}: {rates[p][-1]:.3f} it/s", flush=True)  # a section cut short still shows
        done += args.chunk
    out = []
    for p, trainer in trainers.items():
        it_s = statistics.median(rates[p])
        row = {"model": model, "precision": p, "batch": args.batch, "patch": args.patch, "it_per_s": it_s,
               "patches_per_s": it_s * args.batch, "rounds": rates[p], "parameters": trainer.net.num_params}
        if device.type == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out.append(row)
        print(f"{model:20s} {p:14s} batch {args.batch} patch {args.patch}: {it_s:7.3f} it/s "
              f"({it_s * args.batch:7.1f} patches/s)", flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64, help="LR patch size (pixels)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per (model, precision)")
    parser.add_argument("--chunk", type=int, default=10, help="steps per timed round (precisions alternate)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--per-image", action="store_true",
                        help="also time fp32 with per-image kernels (the inference policy) beside the batched ones")
    parser.add_argument("--batches", action="store_true",
                        help="also time fp32 with the other batch preparation than the device's default (cut "
                             "ahead on a worker thread, or serially in the step; odisr.train.prefetch)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.chunk = min(args.chunk, args.steps)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = ["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"]
    precisions += ["fp32" + PER_IMAGE] if args.per_image else []
    precisions += ["fp32" + (SERIAL if device.type == "cuda" else AHEAD)] if args.batches else []
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        panorama = write_image(Path(tmp) / "noise.png",
                               np.random.default_rng(0).integers(0, 256, (1024, 2048, 3), dtype=np.uint8))
        results = [row for model in args.models for row in bench_model(model, precisions, args, panorama, device)]
    record = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}  # fmt: skip
    target = args.json or (Path(os.environ["OUT"]) / "bench_train.json" if os.environ.get("OUT") else None)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written {target}")


if __name__ == "__main__":
    main()
