"""SwinIR (Liang et al., 'SwinIR: Image Restoration Using Swin Transformer', ICCVW 2021, arXiv:2108.10257).

An adapter around the maintained implementation in ``spandrel`` (``spandrel.architectures.SwinIR``), which loads the
official release files bit-exactly (``specs/BASELINES.md`` §1). :class:`SwinIR` *is* spandrel's network (subclass),
so ``state_dict()`` keys are the official ones; detection and hyper-parameter inference are spandrel's.

Checkpoint facts handled here:

* ``attn_mask`` is a persistent buffer whose shape depends on ``img_size`` (the training patch: 48 for the DIV2K
  ``s48w8`` classical files, 64 for ``s64w8`` and all lightweight files). A file loads ``strict=True`` only into a
  model built with its ``img_size``: the named models pin it, and :func:`detect_swinir` reads it from the mask
  shape. (The mask is recomputed for other input sizes, so ``img_size`` never limits the input.)
* Official files are ``{'params': state_dict}``. The official ``main_test_swinir.py`` loads ``params`` for
  classical/lightweight SR and ``params_ema`` only for real-world SR, whereas spandrel's loader (and odisr's
  :func:`~odisr.models.weights.load_state_dict_file`, following BasicSR) prefer ``params_ema`` when both exist.
  The released classical/lightweight files hold only ``params`` (their sizes match a single copy of the
  weights), so every rule loads the official tensors for the named models here. A user file holding both keys
  loads ``params_ema``; to get the official choice, re-save its ``params`` alone.
* spandrel's ``descriptor(x)`` clamps to [0, 1]; odisr's contract wants the raw output, which is what
  ``forward`` (= ``descriptor.model(x)``) returns.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from spandrel.architectures.SwinIR import SwinIR as _SpandrelSwinIR
from spandrel.architectures.SwinIR import SwinIRArch

from odisr.models.archs.adapters import run_with_min_size
from odisr.models.base import SRModel
from odisr.models.registry import (
    Architecture,
    ModelSpec,
    StateDict,
    WeightFile,
    register_architecture,
    register_model,
)

PAPER = "Liang et al., 'SwinIR: Image Restoration Using Swin Transformer', ICCVW 2021, arXiv:2108.10257"
RELEASE_URL = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"

#: Official ``define_model()`` arguments of the two SR families (besides ``upscale``).
LIGHTWEIGHT: dict[str, Any] = {
    "img_size": 64, "window_size": 8, "img_range": 1.0, "depths": [6] * 4, "embed_dim": 60,
    "num_heads": [6] * 4, "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect", "resi_connection": "1conv",
}
CLASSICAL_DIV2K: dict[str, Any] = {
    "img_size": 48, "window_size": 8, "img_range": 1.0, "depths": [6] * 6, "embed_dim": 180,
    "num_heads": [6] * 6, "mlp_ratio": 2.0, "upsampler": "pixelshuffle", "resi_connection": "1conv",
}

#: file → (sha256, size in bytes) of the release assets used here: third-party records (OpenModelDB), so the
#: downloader verifies them on first download.
RELEASE_ASSETS: dict[str, tuple[str, int]] = {
    "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth":
        ("193b229909ca89cd8b55de9c9e7fce146ae759d59dfcd78d8feb9dd1d6fa0fd7", 17147989),
    "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x3.pth":
        ("53af0cf0b15876752c1c2646a71444f739523b3d562e126d200521a817ab5d2c", 17180437),
    "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4.pth":
        ("09fad24e32ae62722e1a055efde9921328f4137981bab0a42a4a3a806306c58e", 17225941),
    "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2.pth":
        ("ac6d4895f73aa1b3d563937e29dcedcfdff4d401280e248f23db3c6f68e8343b", 59019939),
    "001_classicalSR_DIV2K_s48w8_SwinIR-M_x3.pth":
        ("d835497f2332aae839ae19a033290ced8686fa2a795f76fc5153ec2c83003f75", 59758497),
    "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4.pth":
        ("129dc773ba2d4c07f3eb0bb116fbe692011b7cc072d9ca12797cd3748198610a", 59611499),
}

_SPANDREL = SwinIRArch()


class SwinIR(SRModel, _SpandrelSwinIR):
    """SwinIR as an odisr :class:`~odisr.models.base.SRModel` (spandrel's network with official state-dict keys).

    ``forward(x)``: (B, 3, h, w) RGB in [0, 1] → raw (B, 3, s·h, s·w) in [0, 1] scale, not clamped. The network
    subtracts the DIV2K mean, reflect-pads to a multiple of ``window_size`` (8) and crops the output back; inputs
    with a side < 8 are first replicate-padded to 8 (reflection needs pad < size). Tiles should start at multiples
    of 8 LR pixels so that windows coincide; since every shifted-window block widens the receptive field (and the
    shift masks depend on the image border), tiled output approaches whole-image output as the halo grows.

    Args:
        upscale: scale s (2, 3, 4, 8). img_size: training patch size (48 or 64; fixes the stored ``attn_mask``).
        Other keyword arguments are spandrel's/official ``SwinIR`` arguments (``depths``, ``embed_dim``,
        ``num_heads``, ``window_size``, ``mlp_ratio``, ``upsampler``, ``resi_connection``, ``img_range``, …).

    Raises:
        ValueError: for ``upscale < 2`` or an upsampler that is not a super-resolution one.
    """

    architecture = "swinir"
    content_aware = False

    def __init__(self, *, upscale: int = 4, img_size: int = 64, **kwargs: Any) -> None:
        if upscale < 2 or kwargs.get("upsampler", LIGHTWEIGHT["upsampler"]) not in {
            "pixelshuffle", "pixelshuffledirect", "nearest+conv"
        }:
            raise ValueError(
                f"SwinIR: only super-resolution configurations are supported (upscale ≥ 2 and upsampler "
                f"'pixelshuffle', 'pixelshuffledirect' or 'nearest+conv'); got upscale={upscale}, "
                f"upsampler={kwargs.get('upsampler')!r}"
            )
        target = torch.get_default_device()
        # spandrel's constructor calls .item() (stochastic-depth rates), impossible on "meta": build on CPU, then move
        with torch.device("cpu") if target.type == "meta" else contextlib.nullcontext():
            super().__init__(**{**LIGHTWEIGHT, **kwargs, "upscale": upscale, "img_size": img_size})
        if target.type == "meta":
            self.to(target)
        self.scale = upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_with_min_size(super().forward, x, self.window_size, self.scale)


def detect_swinir(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor arguments of a SwinIR state dict, inferred by spandrel (``SwinIRArch.detect`` / ``.load``: the
    upsampler from the tail keys, embed_dim, mlp_ratio, window_size from ``relative_position_index``, img_size from
    the ``attn_mask`` shape, depths/heads per layer, resi_connection), or None if the keys are not SwinIR's.

    Raises:
        ValueError: for SwinIR files that are not 3-channel super-resolution models (denoising/JPEG, grayscale,
            pixel-unshuffle variants), naming what was found.
    """
    if not _SPANDREL.detect(state_dict):
        return None
    hyper = dict(_SPANDREL.load(dict(state_dict)).model.hyperparameters)
    hyper.pop("norm_layer", None)  # always nn.LayerNorm; not a serialisable argument
    if hyper["upscale"] < 2 or hyper["in_chans"] != 3 or hyper["start_unshuffle"] != 1:
        raise ValueError(
            f"this SwinIR checkpoint is not a 3-channel super-resolution model (upscale={hyper['upscale']}, "
            f"in_chans={hyper['in_chans']}, start_unshuffle={hyper['start_unshuffle']}); odisr supports the "
            f"classical, lightweight and real-world SR releases"
        )
    return hyper


def _register() -> None:
    register_architecture(Architecture("swinir", build=SwinIR, detect=detect_swinir))
    families = {
        "light": ("002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{s}.pth", LIGHTWEIGHT, "lightweight"),
        "classical": ("001_classicalSR_DIV2K_s48w8_SwinIR-M_x{s}.pth", CLASSICAL_DIV2K, "classical"),
    }
    for family, (pattern, kwargs, tag) in families.items():
        for scale in (2, 3, 4):
            filename = pattern.format(s=scale)
            sha256, size = RELEASE_ASSETS[filename]
            register_model(
                ModelSpec(
                    name=f"swinir-{family}-x{scale}",
                    architecture="swinir",
                    kwargs={"upscale": scale, **kwargs},
                    scale=scale,
                    weights=WeightFile(
                        filename=filename, url=RELEASE_URL + filename, sha256=sha256, size=size
                    ),
                    description=f"SwinIR {tag} ×{scale} (DIV2K-trained, {filename.split('_')[3]})",
                    paper=PAPER,
                    tags=("baseline", tag, "transformer"),
                )
            )


_register()
