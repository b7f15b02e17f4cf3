"""The fast CAMixer paths: per-device execution policy, fused oneDNN kernels, compiled models, uniform tiles.

The default (uncompiled, fp32) path is the fast one: every fixture test of ``test_camixersr.py`` and
``test_camixer_osr.py`` runs through it at its usual tolerance. Here: the fast path against a plain reference
execution (NCHW activations, no fused kernels) on official fixtures, the fused kernels against the plain ops, the
compiled model against the official fixture and its recompilations over a tiled batch run, and the pieces
(layout on ``.to()``, heap retention, uniform tile grids, config/CLI/pipeline plumbing).

Budget: ~25 s on 2 idle cores, plus ~60 s for the one compiling test (marked slow).
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from camixer_support import fixture_pairs, load_array, pair_id, pair_model, run_pair
from odisr.inference import upscale
from odisr.inference.tiling import TileGrid
from odisr.models.archs.camixer_osr import CAMixerOSR
from odisr.models.archs.camixersr import CAMixerSR
from odisr.models.compiled import compile_model, eager, is_compiled
from odisr.models.execution import ExecutionPolicy, batched, execution_policy, retain_heap, use_policy
from odisr.models.fused import conv2d_then, fused_kernel_available, linear

# Plain execution: NCHW activations, plain PyTorch ops, one image at a time.
REFERENCE = ExecutionPolicy(memory_format=torch.contiguous_format, per_image=True)
CHANNELS_LAST = torch.channels_last

# Fixtures whose inputs are images or where float32 rounding does not blow up (the two uniform-noise inputs of the
# trained S network are chaotic: a 1e-7 relative change moves the output by 1.8e-4, see test_camixersr.NOISY).
FAST_PAIRS = [
    p for p in fixture_pairs("light") + fixture_pairs("odisr")
    if pair_id(p) in {"S_x4_r1.0__input_b_astronaut128", "RI_odisr_x2_coslat__input_a_rand64"}
]  # fmt: skip


def _run_fixture(pair: dict, shared: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(fast output, reference-execution output) of a manifest entry, keep counts forced as recorded."""
    cls = CAMixerOSR if pair["pair"].startswith("RI_odisr") else CAMixerSR
    model = pair_model(cls, pair, shared)
    condition = pair.get("condition", "")
    kwargs = {"condition": load_array(shared, condition)} if condition.endswith(".npy") else {}
    fast, _ = run_pair(model, pair, shared, **kwargs)
    with use_policy(REFERENCE):
        reference, _ = run_pair(model.to("cpu"), pair, shared, **kwargs)
    return fast, reference


# --- the fast path against the plain reference execution ---------------------------------------------------------
@pytest.mark.parametrize("pair", FAST_PAIRS, ids=pair_id)
def test_fast_path_matches_reference_execution(shared: Path, pair: dict) -> None:
    fast, reference = _run_fixture(pair, shared)
    assert (fast - reference).abs().max() <= 1e-5


def test_weights_follow_the_device_policy_on_every_move() -> None:
    model = CAMixerSR(n_block=(1,), n_group=1, n_feats=12, scale=2)
    convs = [p for p in model.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert all(p.is_contiguous(memory_format=CHANNELS_LAST) for p in convs)  # CPU: channels-last
    param = convs[0]
    with use_policy(REFERENCE):
        model.float()  # any move re-lays the weights out for the policy in force
    assert all(p.is_contiguous() for p in convs) and convs[0] is param  # same Parameter objects (optimisers)
    model.to("cpu")
    assert all(p.is_contiguous(memory_format=CHANNELS_LAST) for p in convs)
    assert execution_policy("cuda").memory_format == torch.contiguous_format  # the H200 measurements' choice


# --- fused kernels ----------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not fused_kernel_available(), reason="this PyTorch build has no oneDNN pointwise kernels")
@pytest.mark.parametrize(("kernel", "groups", "dilation"), [(1, 1, 1), (3, 1, 1), (3, 24, 1), (3, 24, 2)])
@pytest.mark.parametrize("post", ["none", "gelu", "add", "mul"])
def test_fused_convolution_computes_the_plain_ops(kernel: int, groups: int, dilation: int, post: str) -> None:
    gen = torch.Generator().manual_seed(kernel * 10 + groups)
    x = torch.randn(2, 24, 20, 28, generator=gen).contiguous(memory_format=CHANNELS_LAST)
    other = torch.randn(2, 24, 20, 28, generator=gen).contiguous(memory_format=CHANNELS_LAST)
    weight = torch.randn(24, 24 // groups, kernel, kernel, generator=gen).contiguous(memory_format=CHANNELS_LAST)
    bias = torch.randn(24, generator=gen)
    args = (weight, bias, (1, 1), (dilation * (kernel // 2),) * 2, (dilation, dilation), groups, post)
    extra = other if post in ("add", "mul") else None
    with torch.no_grad():
        fused = conv2d_then(x, *args, extra)
        with use_policy(REFERENCE):
            plain = conv2d_then(x, *args, extra)
    assert fused.is_contiguous(memory_format=CHANNELS_LAST)
    if post == "gelu":  # oneDNN's erf vs PyTorch's
        assert (fused - plain).abs().max() <= 2e-6
    else:
        assert torch.equal(fused, plain)


def test_fused_kernels_step_aside_for_autograd() -> None:
    """With a graph being recorded, the plain ops run (the oneDNN kernels have no backward); the linear kernel
    gives ``F.linear``'s values on CAMixer's token shapes."""
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=CHANNELS_LAST)
    weight = torch.randn(8, 8, 1, 1, requires_grad=True)
    out = conv2d_then(x, weight, None, (1, 1), (0, 0), (1, 1), 1, "add", x)
    out.sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    tokens, w, b = torch.randn(64, 256, 36), torch.randn(36, 36), torch.randn(36)  # CAMixer's window tokens
    with torch.no_grad():
        assert torch.equal(linear(tokens, w, b), F.linear(tokens, w, b))
    with pytest.raises(ValueError, match="needs"):
        conv2d_then(x, weight, None, (1, 1), (0, 0), (1, 1), 1, "add")


class _CountConvolutions(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204  (torch's signature)
        self.calls += func is torch.ops.aten.convolution.default
        return func(*args, **(kwargs or {}))


def _train_step(model: CAMixerSR, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One training-mode forward/backward with fixed Gumbel noise: output, head gradient, convolutions run."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with _CountConvolutions() as count:
        out = model(x)
        (out.output.abs().mean() + out.ratio_loss).backward()
    return out.output.detach(), model.head.weight.grad.clone(), count.calls


def test_training_runs_batched_within_rounding_of_per_image() -> None:
    """`batched` (the trainer's forward): convolutions see the whole batch instead of one image at a time, with
    the per-image outputs and gradients up to float32 rounding."""
    torch.manual_seed(0)
    model, x = CAMixerSR(n_block=(2,), n_group=1, n_feats=16, scale=2).train(), torch.rand(4, 3, 32, 32)
    with use_policy(execution_policy("cpu")):
        ref_out, ref_grad, ref_calls = _train_step(model, x)
    with batched("cpu"):
        out, grad, calls = _train_step(model, x)
    assert calls * 3 < ref_calls  # batch 4: the per-image path runs most convolutions 4 times
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


# --- process settings and tiles -----------------------------------------------------------------------------------------
def test_retained_heap_serves_activations_without_page_faults() -> None:
    if not retain_heap():
        pytest.skip("not glibc (or ODISR_RETAIN_HEAP=0): the heap setting does not apply")
    sizes = (18 << 20, 37 << 20, 5 << 20)  # feature maps of a 512×256 forward pass
    for _ in range(2):  # the first round grows the heap
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            maps = [torch.empty(n // 4).fill_(1.0) for n in sizes]
            del maps
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 2_000  # 10 rounds × 60 MB would be ~150 000 faults if each allocation were mapped afresh


def test_uniform_grid_gives_every_tile_one_shape_and_keeps_the_cores() -> None:
    plain = TileGrid.build(70, 100, window=16, mode="odi", tile=32, halo=16)
    uniform = TileGrid.build(70, 100, window=16, mode="odi", tile=32, halo=16, uniform=True)
    assert len({t.input_shape for t in plain}) > 1
    assert {t.input_shape for t in uniform} == {(64, 64)}
    for a, b in zip(plain, uniform, strict=True):
        assert (a.y0, a.y1, a.x0, a.x1, a.halo) == (b.y0, b.y1, b.x0, b.x1, b.halo)
        assert np.array_equal(a.rows, b.rows[: len(a.rows)]) and np.array_equal(a.cols, b.cols[: len(a.cols)])
    assert {t.input_shape for t in uniform.split(next(iter(uniform)), 16)} == {(48, 48)}


# --- compiled models -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compiled_model_compiles_once_for_a_tiled_run_and_matches_eager() -> None:
    """TorchInductor on the CPU (~60 s): one compilation of the two regions (``compile_regions``) for all blocks,
    tiles and batches of two images, without graph breaks; within 1e-5 of the eager code."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = CAMixerSR(n_block=(2,), n_group=1, n_feats=16, scale=2, ratio=1.0).eval()  # (random weights: γ < 1
    # would route windows whose probability is within rounding of 0.5 differently in eager and compiled runs)
    gen = np.random.default_rng(0)
    images = [gen.integers(0, 256, (70, 100, 3), dtype=np.uint8), gen.integers(0, 256, (50, 90, 3), dtype=np.uint8)]
    uncompiled = [upscale(img, model, mode="odi", tile=32, batch_size=3) for img in images]
    compile_model(model)
    assert is_compiled(model)
    counters.clear()
    compiled = [upscale(images[0], model, mode="odi", tile=32, batch_size=3)]
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 2 and not counters["graph_break"]  # the two regions shared by the blocks, unbroken
    compiled.append(upscale(images[1], model, mode="odi", tile=32, batch_size=3))  # other size, same tiles
    assert counters["stats"]["unique_graphs"] == graphs  # no recompilation
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():  # (outside the engine's global-context replay: compiles once more)
        with eager():
            reference = model(x)  # its own eager code
        assert (model(x) - reference).abs().max() <= 1e-5
    for a, b in zip(uncompiled, compiled, strict=True):  # the first tile's input is the same; edge tiles read more context
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff[:64, :64].max() <= 1 and diff.mean() < 0.01  # (a stale global context gave 0.44)


def test_compile_flag_reaches_every_entry_point(shared: Path) -> None:
    """``compile`` in the config, on the CLI, in the pipeline's model reference (compiling is lazy: no call here)."""
    from typer.testing import CliRunner

    from odisr.cli.main import app
    from odisr.config import load_config
    from pipelines.batch_sr import Settings
    from pipelines.cluster import ModelRef, get_model

    assert load_config("odi_x4", compile=True).compile and not load_config("odi_x4").compile
    assert "--compile" in CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert Settings(scale=2).compile is False
    path = shared / "weights" / "random_init" / "RANDOMINIT_CAMixerSR_light_x2_seed102.pth"
    assert is_compiled(get_model(ModelRef(str(path), compile=True)))
    assert not is_compiled(get_model(ModelRef(str(path))))
