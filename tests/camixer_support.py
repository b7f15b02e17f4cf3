"""Helpers shared by the CAMixerSR and CAMixerOSR tests (official fixtures, key lists, common checks)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from odisr.models.archs import camixer_common
from odisr.models.archs.camixer_common import CAMixerNet, TrainOutput


SHARED = Path(os.environ.get("ODISR_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def fixture_pairs(name: str) -> list[dict[str, Any]]:
    """Whole-image entries of ``manifest_<name>.json`` for parametrisation (none when shared/ is absent)."""
    if not (SHARED / "README.md").is_file():
        return []
    return [p for p in manifest_pairs(SHARED, name) if not p["constructor_args"].get("tile")]


def fixtures_dir(shared: Path) -> Path:
    return shared / "fixtures" / "camixersr"


def load_params(path: Path, key: str = "params_ema") -> dict[str, torch.Tensor]:
    """A checkpoint's state dict, unwrapped from ``{key: state_dict}``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt[key] if key in ckpt else ckpt


def manifest_pairs(shared: Path, name: str) -> list[dict[str, Any]]:
    with open(fixtures_dir(shared) / f"manifest_{name}.json") as f:
        return json.load(f)["pairs"]


def pair_id(pair: dict[str, Any]) -> str:
    return f"{pair['pair']}__{pair['input_file'].removesuffix('.npy')}"


def pair_model(cls: type[CAMixerNet], pair: dict[str, Any], shared: Path) -> CAMixerNet:
    """The network of a manifest entry, with its checkpoint loaded strictly, in eval mode."""
    kwargs = {k: v for k, v in pair["constructor_args"].items() if k != "tile"}
    model = cls(**kwargs).eval()
    folder = "official" if pair["official_weights"] else "random_init"
    path = shared / "weights" / folder / Path(pair["checkpoint"]).name
    model.load_state_dict(load_params(path, pair["param_key"]), strict=True)
    return model


def load_array(shared: Path, name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(fixtures_dir(shared) / name))


def run_pair(model: CAMixerNet, pair: dict[str, Any], shared: Path, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, official output) for a manifest entry, with the recorded per-block keep counts forced."""
    x = load_array(shared, pair["input_file"])
    keep = [kept for kept, _ in pair["keep_per_predictor"]]
    with torch.no_grad(), model.force_keep(keep):
        out = model(x, **kwargs)
    return out, load_array(shared, pair["output_file"])


def selected_windows(model: CAMixerNet) -> list[set[int]]:
    """Per block, the flat indices of the windows of image 0 that took attention."""
    return [set(torch.flatten(r.selected[0]).nonzero().flatten().tolist()) for r in model.routing()]


def read_key_list(path: Path) -> set[tuple[str, tuple[int, ...]]]:
    """A ``state_dict_keys`` file: one ``name<TAB>(shape)`` per line."""
    entries = set()
    for line in path.read_text().splitlines():
        if line.strip():
            name, shape = line.split("\t")
            entries.add((name, tuple(int(d) for d in re.findall(r"\d+", shape))))
    return entries


def abbreviate(name: str) -> str:
    """``body.2.body.5.x`` → ``body.{g}.body.{b}.x`` and ``body.2.x`` → ``body.{g}.x`` (the ``_abbrev`` files)."""
    name = re.sub(r"^body\.\d+\.body\.\d+\.", "body.{g}.body.{b}.", name)
    return re.sub(r"^body\.\d+\.", "body.{g}.", name)


def model_key_list(model: torch.nn.Module, abbreviated: bool) -> set[tuple[str, tuple[int, ...]]]:
    fmt = abbreviate if abbreviated else str
    return {(fmt(k), tuple(v.shape)) for k, v in model.state_dict().items()}


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ)·v written out (the official computation)."""
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def counted_flops(model: CAMixerNet, x: torch.Tensor, monkeypatch: Any, **kwargs: Any) -> int:
    """FLOPs seen by FlopCounterMode, with attention as explicit matmuls (the fused SDPA kernel is not counted)."""
    monkeypatch.setattr(camixer_common, "window_attention", explicit_attention)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, **kwargs)
    return int(counter.get_total_flops())


def assert_batch_independent(model: CAMixerNet, x: torch.Tensor, **kwargs: Any) -> None:
    """``x`` (1, 3, h, w) alone, twice, and between two different images gives bit-identical outputs."""
    gen = torch.Generator().manual_seed(7)
    others = (torch.rand(x.shape, generator=gen), x.flip(-1) * 0.6 + 0.2)
    with torch.no_grad():
        alone = model(x, **kwargs)
        kept_alone = model.kept_windows()[:, 0]
        again = model(x, **kwargs)
        batch = model(torch.cat([others[0], x, others[1]]), **kwargs)
        kept_batch = model.kept_windows()
    assert torch.equal(alone, again)
    assert torch.equal(kept_alone, kept_batch[:, 1])
    assert torch.equal(alone, batch[1:2]), f"max |Δ| {(alone - batch[1:2]).abs().max().item():.3g}"


def train_step(model: CAMixerNet, x: torch.Tensor, hr: torch.Tensor, **kwargs: Any) -> TrainOutput:
    """One AdamW step on L1 + ratio loss; checks the predictor receives gradients and its weights move."""
    model.train()
    predictor_weight = model.mixers()[0].route.out_mask[0].weight
    before = predictor_weight.detach().clone()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(x, **kwargs)
    assert isinstance(out, TrainOutput)
    loss = torch.nn.functional.l1_loss(out.output, hr) + out.ratio_loss
    loss.backward()
    for mixer in model.mixers():
        for name, p in mixer.route.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert mixer.route.out_mask[0].weight.grad.abs().sum() > 0  # straight-through gradient of the hard mask
    optimiser.step()
    assert not torch.equal(before, predictor_weight.detach())
    return out
