"""Compiled models: a network's forward pass compiled by TorchInductor (``torch.compile``), once per input shape.

``compile_model(model)`` compiles ``model`` in place, with static shapes (``dynamic=False``): each distinct input
shape — the tile shape of a tiled run, the image shape of a whole-image run — is compiled once and then served
from the process's cache; the tiling engine gives every tile of a compiled model one input shape
(:meth:`odisr.inference.tiling.TileGrid.build` ``uniform=True``) so a batch run compiles exactly once. Compiled
kernels are also kept in TorchInductor's on-disk cache, which makes the next process's compilation faster.

Networks with data-dependent steps name their **compile regions** (``model.compile_regions()``: ``(module,
method)`` pairs) and only those methods are compiled; the rest of the forward pass runs eagerly around them.
CAMixer networks compile, per block, everything but the routing decision, the window attention over the windows
it selects (their number depends on the image) and the channel attention (its global pooling is replayed from the
whole image in tiled runs). Compiling the whole ``forward`` instead (``nn.Module.compile``, what other networks
get) broke CAMixer's graph at those steps inside the loop over blocks: TorchInductor then compiled each module's
``forward`` as a frame of its own, once per configuration, until its recompile limit (8) left the rest eager — on
an H200 the compiled model was slower than the eager one (0.438 s against 0.366 s for 2048×1024 LR, γ = 0.5;
README "Performance"). The regions have no graph break: two graphs per block shape.

What the first call costs (it compiles), CAMixerSR-S ×4: ≈ 10 s for 512×256 LR on 2 CPU threads with the regions
(2026-11-29; the whole-``forward`` compilation it replaces took 23.2 s for 2048×1024 on the H200). On the CPU
TorchInductor needs a C++ compiler (``g++``/``c++``, or ``$CXX``), and its kernels are slower than the eager
oneDNN path (README "Performance"): compile for CUDA.
"""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager

import torch
from torch import nn

__all__ = ["compile_model", "eager", "is_compiled"]

_REGIONS_COMPILED = "_odisr_compiled_regions"


def compile_model(model: nn.Module, *, mode: str | None = None) -> nn.Module:
    """Compile ``model``'s forward pass in place with TorchInductor (static shapes) and return it: its compile
    regions (``model.compile_regions()``) where it names them, else its whole forward (``nn.Module.compile``).

    ``mode``: ``torch.compile``'s mode (None = default; e.g. ``"max-autotune-no-cudagraphs"`` on CUDA).
    Raises ``RuntimeError`` when the model's parameters are on the CPU and no C++ compiler is found.
    """
    device = next(model.parameters(), torch.empty(0)).device
    if device.type == "cpu" and not _cxx_compiler():
        raise RuntimeError(
            "compile=True on the CPU needs a C++ compiler for TorchInductor (g++ or c++ on PATH, or $CXX); "
            "install one (e.g. apt-get install g++) or run without compile"
        )
    regions = getattr(model, "compile_regions", None)
    if not callable(regions):
        model.compile(dynamic=False, mode=mode)
        return model
    for module, name in regions():
        # an instance attribute shadows the method: calls through the module reach the compiled function
        setattr(module, name, torch.compile(getattr(module, name), dynamic=False, mode=mode))
    setattr(model, _REGIONS_COMPILED, True)
    return model


def is_compiled(model: nn.Module) -> bool:
    """True when ``model``'s calls go through compiled code (:func:`compile_model`)."""
    return bool(getattr(model, _REGIONS_COMPILED, False)) or getattr(model, "_compiled_call_impl", None) is not None


def eager() -> AbstractContextManager[None]:
    """Within the context, compiled models run their original, eager code (e.g. for a one-off input shape that is
    not worth a compilation)."""
    return torch.compiler.set_stance("force_eager")


def _cxx_compiler() -> str | None:
    candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return next((path for name in candidates if name and (path := shutil.which(name))), None)
