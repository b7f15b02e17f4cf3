"""CAMixerSR (Wang et al., "CAMixerSR: Only Details Need More Attention", CVPR 2024, arXiv 2402.19289).

Lightweight ×2/×3/×4 (``n_feats=60``) and large-image S/M/B ×4 (``n_feats=36/48/60``) networks, loading the
official checkpoints strictly (``params_ema``/``params`` unwrapped). The shared mixer, predictor, FFN and routing
live in :mod:`odisr.models.archs.camixer_common`.

Differences from the official code (spec ``CAMIXERSR.md``, "our decisions"): inference is deterministic and
batch-independent (no Gumbel noise, per-image keep counts); γ is a runtime setting (:meth:`CAMixerSR.set_ratio`);
inputs of any size ≥ 1×1 (reflect padding where the size allows, replicate beyond); training works and returns
``TrainOutput(output, ratio_loss)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from odisr.models.archs.camixer_common import (
    BlockGroup,
    CAMixerNet,
    MixerStyle,
    PerImageConv2d,
    TrainOutput,
    detect_groups,
)
from odisr.models.registry import (
    Architecture,
    ModelSpec,
    StateDict,
    WeightFile,
    register_architecture,
    register_model,
)

SR_STYLE = MixerStyle(
    condition_channels=2,
    predictor_norm=True,
    slope=0.1,
    max_offset=8.0,
    residual_key=True,
    spatial_pointwise=False,
    spatial_kernel=3,
    spatial_dilation=2,
    ffn_kernel=3,
    ffn_bias=False,
)


class Group(BlockGroup):
    """Blocks followed by a 1×1 ``body_tail`` convolution and a residual connection; ``(B, C, H, W)`` in and out."""

    def __init__(self, n_feats: int, n_block: int, ratio: float) -> None:
        super().__init__(n_feats, n_block, SR_STYLE, ratio)
        self.body_tail = PerImageConv2d(n_feats, n_feats, 1)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return self.body_tail(self.run_blocks(x, condition)) + x


class CAMixerSR(CAMixerNet):
    """CAMixerSR network.

    Args:
        n_block: blocks per group (official ``[4, 4, 6, 6]``).
        n_group: number of groups.
        n_colors: image channels (3, RGB).
        n_feats: feature width C (60 lightweight/B, 48 M, 36 S).
        scale: upscaling factor s (2, 3 or 4).
        ratio: attention ratio γ in [0, 1] (official 0.5; 1 sends every window to attention).

    ``forward(x)`` takes ``(B, 3, h, w)`` float RGB in [0, 1] (any h, w ≥ 1) and returns the raw ``(B, 3, s·h, s·w)``
    output, not clamped; in training mode it returns ``TrainOutput(output, ratio_loss)`` with the official loss
    ``2γ·(mean decision − 0.5)²``. Raises ``ValueError`` for a wrongly shaped input or γ outside [0, 1].
    """

    architecture = "camixersr"

    def __init__(
        self,
        n_block: Sequence[int] = (4, 4, 6, 6),
        n_group: int = 4,
        n_colors: int = 3,
        n_feats: int = 60,
        scale: int = 4,
        ratio: float = 0.5,
    ) -> None:
        super().__init__(scale, ratio, n_block, n_group)
        act = nn.LeakyReLU(0.1, inplace=True)
        self.head = PerImageConv2d(n_colors, n_feats, 3, padding=1)
        self.global_predictor = nn.Sequential(
            PerImageConv2d(n_feats, 8, 1), act, PerImageConv2d(8, 2, 3, padding=1), act
        )
        self.body = nn.ModuleList(Group(n_feats, n_block[i], self.ratio) for i in range(n_group))
        self.body_tail = PerImageConv2d(n_feats, n_feats, 3, padding=1)
        self.tail = nn.Sequential(PerImageConv2d(n_feats, n_colors * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        self._match_layout()

    def forward(self, x: Tensor) -> Tensor | TrainOutput:
        self._check_input(x)
        h, w = x.shape[-2:]
        feats = self.head(self._prepare(x))
        condition = self.global_predictor(feats)
        body = feats
        for group in self.body:
            body = group(body, condition)
        return self._finish(self.tail(self.body_tail(body) + feats), h, w)

    def _full_res_convs(self) -> list[nn.Module]:
        return [self.global_predictor, self.body_tail, *(group.body_tail for group in self.body)]

    def _ratio_loss(self, mean_decision: Tensor) -> Tensor:
        return 2 * self.ratio * (mean_decision - 0.5) ** 2


def detect(state_dict: StateDict) -> dict[str, Any] | None:
    """CAMixerSR constructor kwargs inferred from an (unwrapped) state dict, or None if it is not a CAMixerSR."""
    if "dcn.weight" in state_dict:
        return None
    return detect_groups(state_dict, ("global_predictor.0.weight", "body.0.body.0.mixer.route.out_mask.0.weight"))


PAPER = "Wang et al., CAMixerSR: Only Details Need More Attention, CVPR 2024 (arXiv 2402.19289)"
OFFICIAL_URL = "https://github.com/icandle/CAMixerSR/raw/main/pretrained_models/"


def official_weights(path: str, git_blob_sha1: str, filename: str | None = None, **pins: Any) -> WeightFile:
    """A weight file of the official repository; ``path`` is relative to ``pretrained_models/``.

    ``filename`` (the local name) defaults to the file's own name.
    """
    name = filename or path.rsplit("/", 1)[-1]
    return WeightFile(filename=name, url=OFFICIAL_URL + path, git_blob_sha1=git_blob_sha1, **pins)


_LIGHT_X4 = official_weights("LightSR/CAMixerSRx4.pth", "832f81a75f68125e0038fcd4514493bd3cde8fbc")  # = LargeSR B

register_architecture(Architecture("camixersr", build=CAMixerSR, detect=detect))

for _name, _feats, _scale, _weights, _tag, _what in (
    ("camixersr-light-x2", 60, 2,
     official_weights("LightSR/CAMixerSRx2.pth", "8a6d6d19a8ee1aeeb5ac03b7a9618288265390be"),
     "lightweight", "lightweight ×2, 746K parameters (DIV2K)"),
    ("camixersr-light-x3", 60, 3,
     official_weights("LightSR/CAMixerSRx3.pth", "1bb089df3657fd48b31f4bcbdab41331f23a7879"),
     "lightweight", "lightweight ×3, 754K parameters (DIV2K)"),
    ("camixersr-light-x4", 60, 4, _LIGHT_X4, "lightweight", "lightweight ×4, 765K parameters (DIV2K)"),
    ("camixersr-s-x4", 36, 4,
     official_weights("LargeSR/CAMixerSR_S.pth", "eb470abd9295cb46d54436900d0a34be2bec0192",
                      sha256="49ffcfbb59583b4512ed7f4290b6f480b4bac50afb3d1db1553687bbdeff3076", size=3_323_709),
     "large", "large-image S ×4, 351K parameters"),
    ("camixersr-m-x4", 48, 4,
     official_weights("LargeSR/CAMixerSR_M.pth", "587c1704ae00808319015ab8754c80c054994eee"),
     "large", "large-image M ×4, 535K parameters"),
    ("camixersr-b-x4", 60, 4, _LIGHT_X4, "large", "large-image B ×4, 765K parameters (same file as light ×4)"),
):
    register_model(
        ModelSpec(
            _name, "camixersr", {"n_feats": _feats, "scale": _scale, "ratio": 0.5}, scale=_scale,
            weights=_weights, description=f"CAMixerSR {_what}", paper=PAPER, tags=(_tag,),
        )
    )
