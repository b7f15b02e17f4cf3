"""Every GPU figure of the README in one command: the network, the pipeline and training on one CUDA device.

Runs, each in its own process with its own time limit, in order of importance, until ``--budget`` seconds are spent:

1. ``bench_camixer.py --device cuda``: forward time of CAMixerSR-S ×4 (512×256 and 2048×1024 LR; fp32, TF32,
   bf16, fp16, compiled), AMP quality, determinism and batch independence under cuDNN's deterministic settings,
   the top kernels of one fp32 pass, and the bytes its operators move against the measured copy bandwidth;
2. ``bench_pipeline.py --mode gpu``: ``odisr run``'s path on 8 panoramas of 2048×1024 LR against a warm
   ``odisr.upscale`` loop (throughput, GPU busy fraction, warm-up, first image, peak memory), fp32;
3. the authors' network against odisr's, same process, alternating (``--official ARCH``: ``vs_official.py`` of the
   shared benchmark folder with the authors' ``CAMixerSR_arch.py``), 2048×1024 LR;
4. section 2 with 512-px tiles (writes overlap the next tile's inference; whole-image runs cannot overlap them);
5. ``bench_train.py --device cuda --per-image --batches``: training iterations per second (fp32, fp16, bf16; and
   fp32 with per-image kernels, the trainer's path before it ran batched, and with its batches cut serially);
6. section 2 with the model compiled.

    python benchmarks/bench_gpu.py --shared ../shared --official PATH/CAMixerSR_arch.py     # ≤ 10 min on one H200
    python benchmarks/bench_gpu.py --device cpu --quick                                      # tries the wiring here

Writes two files to ``$OUT`` (or ``--out``): ``bench_gpu.log`` (every section's output) and ``bench_gpu.json``
(per section: status, seconds and the figures its script wrote as JSON). A section that fails or runs out of time is
recorded as such; the next one still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sections(args: argparse.Namespace) -> list[tuple[str, list[str], int]]:
    """``(name, argv, time limit in s)`` of each section, most important first."""
    py, quick = sys.executable, args.quick
    lr = args.shared / "fixtures" / "official_erp" / "layoutnet_hr.png"  # a 2048×1024 image, used as LR
    camixer = [py, str(HERE / "bench_camixer.py"), "--device", args.device, "--shared", str(args.shared)]
    camixer += ["--quick", "--compile"] if quick else ["--sizes", "512x256", "2048x1024"]
    pipeline = [py, str(HERE / "bench_pipeline.py"), "--mode", "gpu", "--device", args.device]
    pipeline += ["--lr-width", "256", "--count", "3"] if quick else ["--count", "8"]
    train = [py, str(HERE / "bench_train.py"), "--device", args.device]
    train += ["--batch", "2", "--patch", "32", "--steps", "4", "--chunk", "2", "--warmup", "1"] if quick else [
        "--steps", "20", "--chunk", "5", "--warmup", "2"]  # fmt: skip
    # the trainer's batched kernels against per-image ones, its batches cut ahead against serially (round by round)
    train += ["--per-image", "--batches"]
    out = [("camixer", camixer, 200), ("pipeline", pipeline, 100)]
    if args.official:
        vs = args.shared / "bench" / "vs_official.py"
        image = ["--image", str(lr)] if not quick else []
        out.append(("vs_official", [py, str(vs), str(args.official), "--device", args.device, *image], 60))
    # whether writes overlapping the next tile close the gap to the warm loop (whole-image runs cannot overlap them)
    out.append(("pipeline_tiled", [*pipeline, "--tile", "64" if quick else "512"], 100))
    out += [("train", train, 200), ("pipeline_compiled", [*pipeline, "--compile"], 120)]
    return [s for s in out if not args.only or s[0] in args.only]


def run_section(name: str, argv: list[str], limit: float, log: Path) -> dict[str, object]:
    """Run one section, its output streamed to the console and appended to ``log``; returns its status, seconds
    and the JSON files it wrote to its ``$OUT``."""
    print(f"\n===== {name} (limit {limit:.0f} s): {' '.join(argv)}", flush=True)
    with tempfile.TemporaryDirectory() as out, log.open("a") as sink:
        sink.write(f"\n===== {name}: {' '.join(argv)}\n")
        env = {**os.environ, "OUT": out, "PYTHONUNBUFFERED": "1"}
        start = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(limit, process.kill)  # also when the section hangs without printing
        watchdog.start()
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            sink.write(line)
        code = process.wait()
        watchdog.cancel()
        seconds = time.perf_counter() - start
        figures = {path.stem: json.loads(path.read_text()) for path in Path(out).glob("*.json")}
    status = "timeout" if seconds >= limit else ("ok" if code == 0 else f"exit {code}")
    print(f"===== {name}: {status} in {seconds:.0f} s", flush=True)
    return {"status": status, "seconds": round(seconds, 1), "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("ODISR_SHARED", HERE.parents[1] / "shared")))
    parser.add_argument("--official", type=Path, help="the authors' CAMixerSR_arch.py (section vs_official)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=580, help="seconds for all sections together")
    parser.add_argument("--only", nargs="+", help="run only these sections")
    parser.add_argument("--quick", action="store_true", help="small sizes: try the wiring (e.g. on the CPU)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench_gpu_out")))
    args = parser.parse_args()
    args.shared = args.shared.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["ODISR_SHARED"] = str(args.shared)
    start, results = time.perf_counter(), {}
    for name, argv, limit in sections(args):
        left = args.budget - (time.perf_counter() - start)
        if left < 20:
            results[name] = {"status": "skipped: budget spent"}
            continue
        results[name] = run_section(name, argv, min(limit, left), args.out / "bench_gpu.log")
        (args.out / "bench_gpu.json").write_text(json.dumps(results, indent=1))
    statuses = {name: r["status"] for name, r in results.items()}
    print(f"\nbench_gpu: {statuses} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
