"""Compiled models: a network's forward pass compiled by TorchInductor (``torch.compile``), once per input shape.

``compile_model(model)`` compiles ``model`` in place (``nn.Module.compile``, so it stays an :class:`SRModel` with
its attributes and ``routing()``), with static shapes (``dynamic=False``): each distinct input shape — the tile
shape of a tiled run, the image shape of a whole-image run — is compiled once and then served from the process's
cache; the tiling engine gives every tile of a compiled model one input shape
(:meth:`odisr.inference.tiling.TileGrid.build` ``uniform=True``) so a batch run compiles exactly once. Compiled
kernels are also kept in TorchInductor's on-disk cache, which makes the next process's compilation faster.

CAMixer's window attention runs eagerly inside the compiled network (``CAMixer._attend_selected`` is excluded
from compilation): the number of windows it processes depends on the image, and compiling it would compile again
for every count. Everything around it — convolutions, layer norms, the predictor, the routing rule — is compiled.

What the first call costs (it compiles), CAMixerSR-S ×4, 2026-11-29: ≈ 27 s for a 256×128 LR image on 2 CPU threads
(shared machine); 23.2 s for 2048×1024 on one H200 (fp32; bf16 then 12.6 s more). On that H200 the compiled model
was slower than the eager one in fp32 (0.438 s vs 0.366 s at γ = 0.5: TorchInductor's recompile limit was hit in
two of CAMixer's functions, which then ran eagerly) — see README "Performance".
On the CPU TorchInductor needs a C++ compiler (``g++``/``c++``, or ``$CXX``).
"""

from __future__ import annotations

import os
import shutil

import torch
from torch import nn

__all__ = ["compile_model", "is_compiled"]


def compile_model(model: nn.Module, *, mode: str | None = None) -> nn.Module:
    """Compile ``model``'s forward pass in place with TorchInductor (static shapes) and return it.

    ``mode``: ``torch.compile``'s mode (None = default; e.g. ``"max-autotune-no-cudagraphs"`` on CUDA).
    Raises ``RuntimeError`` when the model's parameters are on the CPU and no C++ compiler is found.
    """
    device = next(model.parameters(), torch.empty(0)).device
    if device.type == "cpu" and not _cxx_compiler():
        raise RuntimeError(
            "compile=True on the CPU needs a C++ compiler for TorchInductor (g++ or c++ on PATH, or $CXX); "
            "install one (e.g. apt-get install g++) or run without compile"
        )
    model.compile(dynamic=False, mode=mode)
    return model


def is_compiled(model: nn.Module) -> bool:
    """True when ``model``'s calls go through a compiled forward (:func:`compile_model`)."""
    return getattr(model, "_compiled_call_impl", None) is not None


def _cxx_compiler() -> str | None:
    candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return next((path for name in candidates if name and (path := shutil.which(name))), None)
