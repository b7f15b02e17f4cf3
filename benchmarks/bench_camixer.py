"""CAMixerSR-S ×4 forward speed, AMP quality, determinism and batch independence — on the CPU and on CUDA.

For every LR size (default 512×256; add 2048×1024 for an 8K output), setting (fp32; on CUDA also bf16/fp16
autocast and TF32; compiled with ``--compile``, always on CUDA, at the largest size) and ratio γ ∈ {1, 0.5, 0.25},
prints the median forward time of a whole-image pass (after a warm-up; the γ values take turns so a slow spell
hits them alike), LR pixels per second, achieved GFLOP/s (``model.flops(h, w, kept)``: 2 per multiply-add, the
windows actually kept) and the share of the device's fp32 matmul peak, measured here with a large matrix product on
the same threads.

On CUDA it also reports
* AMP quality: PSNR between the AMP and the fp32 output, and the WS-PSNR change against the HR panorama;
* determinism (two runs bit-identical) under cuDNN's deterministic settings, TF32 off;
* batch independence: for each kind of operation in the network, whether an image's result in a batch of 3 is
  bit-identical to its result alone (batched), and the same for the whole network with the per-image and the
  batched execution policy (:mod:`odisr.models.execution`), with the time of a batch of 4 tiles under both;
* channels-last vs NCHW activations (the memory-format choice of the CUDA policy);
* the top kernels by device time in one fp32 pass at the largest size (``--profile`` does it on the CPU too);
* the bytes each operator reads and writes in that pass, and the time floor they set at the device's measured copy
  bandwidth (``--traffic`` counts the CUDA policy's traffic on the CPU).

    python benchmarks/bench_camixer.py                      # CPU, 512×256, 2 threads
    python benchmarks/bench_camixer.py --quick              # CPU smoke run (small sizes, one repeat)
    python benchmarks/bench_camixer.py --device cuda --sizes 512x256 2048x1024     # ≤ 5 min on one H200

Input: ``fixtures/official_erp/layoutnet_lr_x4.png`` (512×256 LR) and ``layoutnet_hr.png`` (2048×1024, also the
2048×1024 LR input) under ``--shared``; weights ``weights/official/CAMixerSR_S.pth`` (random init, with a warning,
when absent). Writes everything as JSON to ``--json`` and to ``$OUT/bench_camixer.json`` when ``$OUT`` is set.
Imports only odisr's CAMixer modules and metrics (no Dask, Zarr, spandrel, torchvision): it runs where only torch,
numpy, OpenCV and Pillow are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _import_camixer() -> Any:
    """odisr's CAMixerSR module without running ``odisr.models``' package ``__init__`` (which registers every
    architecture and imports their third-party dependencies); returns the namespace of names used here."""
    import odisr  # light: no torch, no third-party imports

    for name in ("odisr.models", "odisr.models.archs"):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(REPO / Path(*name.split(".")))]
            sys.modules[name] = package
    from odisr.models.archs.camixersr import CAMixerSR
    from odisr.models.compiled import compile_model
    from odisr.models.execution import ExecutionPolicy, execution_policy, use_policy

    return types.SimpleNamespace(
        odisr=odisr, CAMixerSR=CAMixerSR, compile_model=compile_model, ExecutionPolicy=ExecutionPolicy,
        execution_policy=execution_policy, use_policy=use_policy,
    )  # fmt: skip


ODISR = _import_camixer()
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------------------------------ inputs
def load_image(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``(1, 3, H, W)`` float32 in [0, 1]; resized (PIL bicubic) to ``size = (W, H)`` when given."""
    img = Image.open(path).convert("RGB")
    if size is not None and img.size != size:
        img = img.resize(size, Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()


def lr_input(shared: Path, width: int, height: int) -> torch.Tensor:
    """The LR panorama: the 512×256 fixture, the 2048×1024 HR panorama, or either resized to ``width × height``."""
    folder = shared / "fixtures" / "official_erp"
    source = folder / ("layoutnet_hr.png" if width > 512 else "layoutnet_lr_x4.png")
    return load_image(source, (width, height))


def build_model(shared: Path, device: torch.device) -> Any:
    """CAMixerSR-S ×4 with the official weights (random init with a warning when the file is absent)."""
    model = ODISR.CAMixerSR(n_feats=36, scale=4)
    path = shared / "weights" / "official" / "CAMixerSR_S.pth"
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["params_ema"], strict=True)
    else:
        warnings.warn(f"{path} not found: random weights (timings valid, AMP quality figures are not)", stacklevel=2)
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def matmul_peak(device: torch.device, n: int) -> float:
    """fp32 matmul GFLOP/s (TF32 off), best of 5 products of two ``n × n`` matrices."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    best = min(timed(lambda: a @ b, device) for _ in range(5))
    return 2 * n**3 / best / 1e9


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """``precision``: fp32 (TF32 off), tf32 (float32 with TF32 matmuls and convolutions), bf16 or fp16 autocast."""
    if precision in AMP_DTYPES:
        with torch.autocast(device.type, dtype=AMP_DTYPES[precision]):
            yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def speed_rows(model: Any, x: torch.Tensor, ratios: list[float], repeats: int, precision: str, peak: float,
               label: str) -> list[dict[str, Any]]:  # fmt: skip
    """One row per γ: median time (γ values interleaved), LR px/s, GFLOP/s, % of peak, windows kept."""
    device, (h, w) = x.device, x.shape[-2:]
    times: dict[float, list[float]] = {r: [] for r in ratios}
    first: dict[float, float] = {}
    with torch.inference_mode(), autocast(device, precision):
        for ratio in ratios:  # warm-up (and, compiled, the compilation)
            model.set_ratio(ratio)
            first[ratio] = timed(lambda: model(x), device)
        for _ in range(repeats):
            for ratio in ratios:
                model.set_ratio(ratio)
                times[ratio].append(timed(lambda: model(x), device))
    rows = []
    for ratio in ratios:
        model.set_ratio(ratio)
        with torch.inference_mode(), autocast(device, precision):
            model(x)
        kept = model.kept_windows()[:, 0].tolist()
        median = statistics.median(times[ratio])
        gflops = model.flops(h, w, kept=kept) / 1e9
        rows.append({
            "setting": label, "precision": precision, "ratio": ratio, "lr_shape": [h, w], "median_s": median,
            "runs_s": times[ratio], "first_call_s": first[ratio], "lr_px_per_s": h * w / median,
            "gflops": gflops, "gflop_per_s": gflops / median, "pct_of_peak": 100 * gflops / median / peak,
            "kept_fraction": sum(kept) / (len(kept) * (h // 16) * (w // 16)),
        })  # fmt: skip
        r = rows[-1]
        print(f"  {label:<10} {w}×{h} γ={ratio:<4} {median:8.3f} s  {r['lr_px_per_s']:>12,.0f} LR px/s  "
              f"{r['gflop_per_s']:7.1f} GFLOP/s  {r['pct_of_peak']:5.1f} % of peak  kept {r['kept_fraction']:.2f}  "
              f"(first call {first[ratio]:.2f} s)", flush=True)  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------------- fidelity
def to_uint8(y: torch.Tensor) -> np.ndarray:
    return (y[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def amp_quality(model: Any, shared: Path, device: torch.device, ratio: float) -> list[dict[str, Any]]:
    """PSNR of each AMP output against fp32, and the WS-PSNR change against the HR panorama (512×256 LR)."""
    from odisr.metrics import psnr, ws_psnr

    folder = shared / "fixtures" / "official_erp"
    x = load_image(folder / "layoutnet_lr_x4.png").to(device)
    hr = np.asarray(Image.open(folder / "layoutnet_hr.png").convert("RGB"))
    model.set_ratio(ratio)
    outputs = {}
    for precision in ("fp32", *AMP_DTYPES):
        with torch.inference_mode(), autocast(device, precision):
            outputs[precision] = to_uint8(model(x))
    reference = ws_psnr(outputs["fp32"], hr)
    rows = []
    for precision in AMP_DTYPES:
        row = {"precision": precision, "ratio": ratio, "psnr_vs_fp32_db": psnr(outputs[precision], outputs["fp32"]),
               "ws_psnr_fp32_db": reference, "ws_psnr_delta_db": ws_psnr(outputs[precision], hr) - reference}
        rows.append(row)
        print(f"  {precision}: {row['psnr_vs_fp32_db']:.1f} dB from fp32, WS-PSNR Δ {row['ws_psnr_delta_db']:+.4f} dB "
              f"(fp32 WS-PSNR {reference:.3f} dB, γ={ratio})")  # fmt: skip
    return rows


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """cuDNN deterministic algorithms, no benchmark autotuning, TF32 off (restored afterwards)."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)  # fmt: skip
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
         torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = saved  # fmt: skip


def op_batch_independence(device: torch.device, memory_format: torch.memory_format) -> dict[str, Any]:
    """For each kind of operation in CAMixerSR-S (its real shapes on a 64×64 tile), whether image 1 of a batch of 3
    gives bit-identical results to image 1 alone."""
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        t = torch.rand(*shape, generator=gen).to(device)
        return t.contiguous(memory_format=memory_format) if t.ndim == 4 else t

    def conv(cin: int, cout: int, k: int, groups: int = 1, dilation: int = 1) -> Callable[[torch.Tensor], Any]:
        w = rand(cout, cin // groups, k, k) - 0.5
        return lambda t: F.conv2d(t, w, None, 1, dilation * (k // 2), dilation, groups)

    wl, grid = rand(36, 36) - 0.5, rand(1, 64, 64, 2) * 2 - 1
    ops: dict[str, tuple[Callable[..., torch.Tensor], tuple[int, ...]]] = {
        "conv 3→36 3×3 (head)": (conv(3, 36, 3), (3, 3, 64, 64)),
        "conv 36→36 1×1": (conv(36, 36, 1), (3, 36, 64, 64)),
        "conv 40→10 1×1 (predictor)": (conv(40, 10, 1), (3, 40, 64, 64)),
        "conv 10→1 3×3 (spatial attention)": (conv(10, 1, 3), (3, 10, 64, 64)),
        "conv 36→48 3×3 (tail)": (conv(36, 48, 3), (3, 36, 64, 64)),
        "depth-wise 3×3": (conv(36, 36, 3, groups=36), (3, 36, 64, 64)),
        "depth-wise 3×3 dilation 2": (conv(36, 36, 3, groups=36, dilation=2), (3, 36, 64, 64)),
        "conv 36→36 1×1 on 16×16": (conv(36, 36, 1), (3, 36, 16, 16)),
        "linear 36→36 (tokens)": (lambda t: F.linear(t, wl), (3 * 16, 256, 36)),
        "window attention (SDPA)": (lambda t: F.scaled_dot_product_attention(t, t * 0.5, t, scale=1.0), (48, 256, 36)),
        "layer norm (channels)": (lambda t: F.layer_norm(t.permute(0, 2, 3, 1), (36,)), (3, 36, 64, 64)),
        "gelu": (F.gelu, (3, 36, 64, 64)),
        "grid_sample": (lambda t: F.grid_sample(t, grid.expand(t.shape[0], -1, -1, -1), align_corners=True),
                        (3, 36, 64, 64)),
        "adaptive average pool": (lambda t: F.adaptive_avg_pool2d(t, 1), (3, 36, 64, 64)),
    }  # fmt: skip
    results = {}
    for name, (op, shape) in ops.items():
        x = rand(*shape)
        per = shape[0] // 3
        batch, alone = op(x), op(x[per : 2 * per])
        diff = (batch[per : 2 * per].float() - alone.float()).abs().max().item()
        results[name] = {"independent": diff == 0, "max_abs_diff": diff}
        print(f"    {name:<34} {'bit-identical' if diff == 0 else f'differs by {diff:.2e}'}")
    return results


def network_checks(model: Any, shared: Path, device: torch.device) -> dict[str, Any]:
    """Determinism and batch independence of the whole network under both execution policies, and the time of a
    batch of 4 tiles (288×288 LR: 256 + halo) with each."""
    x = lr_input(shared, 512, 256).to(device)[..., :64, :128]
    others = torch.rand(2, *x.shape[1:], generator=torch.Generator().manual_seed(7)).to(device)
    tiles = lr_input(shared, 2048, 1024).to(device)[0].unfold(1, 288, 256).unfold(2, 288, 256)
    tiles = tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, 288, 288)[:4].contiguous()
    base = ODISR.execution_policy(device)
    out: dict[str, Any] = {}
    for per_image in (True, False):
        policy = ODISR.ExecutionPolicy(base.memory_format, per_image, base.fused_conv, base.retain_heap)
        key = "per_image" if per_image else "batched"
        with ODISR.use_policy(policy), torch.inference_mode():
            for ratio in (1.0, 0.5):
                model.set_ratio(ratio)
                alone, again = model(x), model(x)
                batch = model(torch.cat([others[:1], x, others[1:]]))
                out[f"{key}_gamma{ratio}"] = {
                    "rerun_identical": bool(torch.equal(alone, again)),
                    "batch_identical": bool(torch.equal(alone, batch[1:2])),
                    "max_abs_diff_in_batch": (alone - batch[1:2]).abs().max().item(),
                }
            model.set_ratio(0.5)
            model(tiles)
            out[f"{key}_4_tiles_288_s"] = statistics.median(timed(lambda: model(tiles), device) for _ in range(3))
        print(f"    {key:<9}: γ=1 {out[f'{key}_gamma1.0']}; γ=0.5 {out[f'{key}_gamma0.5']}; "
              f"4 tiles of 288² in {out[f'{key}_4_tiles_288_s']:.3f} s")  # fmt: skip
    return out


def memory_format_times(model: Any, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Forward time (γ = 0.5) with NCHW and with channels-last activations and weights."""
    device, base = x.device, ODISR.execution_policy(x.device)
    result = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        policy = ODISR.ExecutionPolicy(fmt, base.per_image, base.fused_conv, base.retain_heap)
        with ODISR.use_policy(policy), torch.inference_mode():
            model.to(memory_format=fmt)  # weights follow (odisr relayouts to the policy on every move)
            model.set_ratio(0.5)
            model(x)
            result[name] = statistics.median(timed(lambda: model(x), device) for _ in range(repeats))
        print(f"    {name:<14} {result[name]:.3f} s")
    model.to(device)  # back to the default policy's layout
    return result


_VIEWS = frozenset("alias as_strided detach diagonal expand flatten lift_fresh permute reshape select slice split "
                   "split_with_sizes squeeze t transpose unbind unflatten unsqueeze view _reshape_alias "
                   "_unsafe_view".split())  # fmt: skip


def memory_traffic(model: Any, x: torch.Tensor, policy: Any, top: int = 12) -> dict[str, Any]:
    """Operators and the bytes they read and write in one forward pass (γ = 0.5) under the execution ``policy``:
    per operator family the calls and the bytes of its tensor arguments and results (views and scalars not
    counted). A pass cannot take less than ``bytes / memory bandwidth``: on a GPU, where these networks' thin maps
    make most kernels memory-bound, this floor against the measured time says how much is left to fusion and how
    much to slow kernels. Counted wherever the pass runs, so the CUDA policy's traffic can be counted on the CPU.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    calls: dict[str, int] = {}
    moved: dict[str, int] = {}

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN202 (torch's protocol)
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name not in _VIEWS:
                tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
                calls[name] = calls.get(name, 0) + 1
                moved[name] = moved.get(name, 0) + sum(t.numel() * t.element_size() for t in tensors if t.numel() > 1)
            return out

    with ODISR.use_policy(policy), torch.inference_mode():
        model.to(memory_format=policy.memory_format)  # weights follow the policy's layout
        model.set_ratio(0.5)
        with Counter():
            model(x)
    model.to(x.device)  # back to the device's own policy
    total, pixels = sum(moved.values()), x.shape[-2] * x.shape[-1]
    rows = sorted(({"op": k, "calls": calls[k], "bytes": v} for k, v in moved.items()), key=lambda r: -r["bytes"])
    print(f"    {sum(calls.values())} operator calls, {total / 1e9:.2f} GB moved ({total / pixels:,.0f} B per LR px)")
    for r in rows[:top]:
        print(f"    {r['bytes'] / 1e9:8.3f} GB {100 * r['bytes'] / total:5.1f} % {r['calls']:5d} calls  {r['op']}")
    return {"bytes": total, "bytes_per_lr_pixel": total / pixels, "calls": sum(calls.values()), "ops": rows}


def copy_bandwidth(device: torch.device, megabytes: int = 1024) -> float:
    """Bytes per second of a large device-to-device copy (read + write), median of 5."""
    src = torch.empty(megabytes << 18, device=device)  # float32: 4 bytes each
    dst = torch.empty_like(src)
    seconds = statistics.median(timed(lambda: dst.copy_(src), device) for _ in range(5))
    return 2 * src.numel() * 4 / seconds


def kernel_profile(model: Any, x: torch.Tensor, top: int = 15) -> list[dict[str, Any]]:
    """The ``top`` operators/kernels by self time in one fp32 forward pass (γ = 0.5, warm), as the next speed-up's
    starting point: device time on CUDA (kernels), CPU time on the CPU (operators)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = x.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.inference_mode():
        model.set_ratio(0.5)
        model(x)
        synchronize(x.device)
        with profile(activities=activities) as prof:
            model(x)
            synchronize(x.device)
    field = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, field, 0) > 0]
    total = sum(getattr(e, field) for e in events) or 1.0
    rows = sorted(({"name": e.key, "calls": e.count, "ms": getattr(e, field) / 1e3} for e in events),
                  key=lambda r: -r["ms"])[:top]  # fmt: skip
    print(f"    total self time {total / 1e3:.1f} ms ({'device' if cuda else 'CPU'})")
    for r in rows:
        print(f"    {r['ms']:8.2f} ms {100 * r['ms'] * 1e3 / total:5.1f} % {r['calls']:6d} calls  {r['name'][:90]}")
    return rows


# --------------------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("ODISR_SHARED", REPO.parent / "shared")))
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when present)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=None, help="LR sizes WxH (default 512x256; CUDA adds 2048x1024)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--compile", action="store_true", help="also time the compiled model (always on CUDA)")
    parser.add_argument("--profile", action="store_true", help="also profile one pass (always on CUDA)")
    parser.add_argument("--traffic", action="store_true",
                        help="also count the bytes each operator moves under the CUDA policy (always on CUDA)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 128×64 and 256×128, one repeat")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    cuda = device.type == "cuda"
    if args.quick:
        args.sizes, args.repeats = args.sizes or ["128x64", "256x128"], 1
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in (args.sizes or
             (["512x256", "2048x1024"] if cuda else ["512x256"]))]  # fmt: skip
    if not cuda:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    started = time.perf_counter()
    info = {"device": torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"), "tf32": False,
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}  # fmt: skip
    peak = matmul_peak(device, 8192 if cuda else 2048)
    info["matmul_peak_gflop_per_s"] = peak
    print(f"{info['device']} (torch {torch.__version__}): fp32 matmul peak {peak:,.0f} GFLOP/s", flush=True)

    model = build_model(args.shared, device)
    precisions = ["fp32", "tf32", "bf16", "fp16"] if cuda else ["fp32"]
    results: dict[str, Any] = {"info": info, "speed": []}
    print("forward pass, whole image:")
    for w, h in sizes:
        x = lr_input(args.shared, w, h).to(device)
        for precision in precisions:
            results["speed"] += speed_rows(model, x, args.ratios, args.repeats, precision, peak, precision)
    if cuda or args.compile:
        compiled = ODISR.compile_model(build_model(args.shared, device))
        for w, h in sizes[-1:]:  # each shape compiles anew (~40 s on an H200): the largest size only
            x = lr_input(args.shared, w, h).to(device)
            for precision in ("fp32", "bf16") if cuda else ("fp32",):
                label = f"compiled {precision}"
                results["speed"] += speed_rows(compiled, x, args.ratios, args.repeats, precision, peak, label)
    if cuda:
        print("AMP quality (512×256 LR; HR 2048×1024):")
        results["amp_quality"] = [row for r in (1.0, 0.5) for row in amp_quality(model, args.shared, device, r)]
        with deterministic():
            print("batch independence of single operations (cuDNN deterministic, TF32 off):")
            results["op_batch_independence"] = {
                name: op_batch_independence(device, fmt)
                for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last))
            }
            print("whole network (cuDNN deterministic, TF32 off):")
            results["network"] = network_checks(model, args.shared, device)
        print("memory format (2048×1024 LR, fp32, γ=0.5):")
        results["memory_format_s"] = memory_format_times(model, lr_input(args.shared, 2048, 1024).to(device), 3)
    if cuda or args.profile:
        w, h = sizes[-1]
        print(f"kernel profile ({w}×{h} LR, fp32, γ=0.5, one warm pass):")
        results["kernel_profile"] = kernel_profile(model, lr_input(args.shared, w, h).to(device))
    if cuda or args.traffic:
        w, h = sizes[-1]
        policy = ODISR.execution_policy(torch.device("cuda"))
        print(f"memory traffic ({w}×{h} LR, fp32, γ=0.5, CUDA policy{'' if cuda else ', counted on the CPU'}):")
        traffic = results["traffic"] = memory_traffic(model, lr_input(args.shared, w, h).to(device), policy)
        if cuda:
            bandwidth = traffic["copy_bandwidth_bytes_per_s"] = copy_bandwidth(device)
            fp32 = [r["median_s"] for r in results["speed"] if r["setting"] == "fp32" and r["ratio"] == 0.5
                    and r["lr_shape"] == [h, w]]  # fmt: skip
            floor = traffic["bytes"] / bandwidth
            measured = f"; fp32 forward {fp32[0]:.3f} s = {fp32[0] / floor:.1f}× the floor" if fp32 else ""
            print(f"    copy bandwidth {bandwidth / 1e12:.2f} TB/s: floor {floor:.3f} s{measured}")
    results["total_s"] = time.perf_counter() - started
    print(f"total {results['total_s']:.0f} s; load average {os.getloadavg() if hasattr(os, 'getloadavg') else '?'}")
    text = json.dumps(results, indent=1, default=float)
    if args.json:
        args.json.write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_camixer.json").write_text(text)


if __name__ == "__main__":
    main()
