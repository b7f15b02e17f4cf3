"""CAMixerOSR: official checkpoint format and fixtures, the latitude condition, routing rule, training, cost.

Budget: about 40 s on 2 cores (6 fixture forwards of the 1.3M-parameter network on 64×64/128×128 inputs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from camixer_support import (
    assert_batch_independent,
    counted_flops,
    fixture_pairs,
    load_array,
    load_params,
    model_key_list,
    pair_id,
    pair_model,
    read_key_list,
    run_pair,
    selected_windows,
    train_step,
)
from odisr.models.archs.camixer_common import keep_counts
from odisr.models.archs.camixer_osr import CAMixerOSR, detect
from odisr.models.registry import available, get_architecture, get_spec

KEY_LISTS = {
    "constructed_CAMixerOSR_x2_nf60_abbrev.txt": 2,
    "constructed_CAMixerOSR_x4_nf60.txt": 4,
    "constructed_CAMixerOSR_x4_nf60_abbrev.txt": 4,
}


def _weights(shared: Path, scale: int) -> Path:
    return shared / "weights" / "random_init" / f"RANDOMINIT_CAMixerOSR_x{scale}_seed{200 + scale}.pth"


@pytest.fixture(scope="module")
def osr_x2(shared: Path) -> CAMixerOSR:
    model = CAMixerOSR(scale=2).eval()
    model.load_state_dict(load_params(_weights(shared, 2)), strict=True)
    return model


def _latitude(h: int, w: int) -> torch.Tensor:
    """cos of the pixel-centre latitude of each row, ``(1, 1, h, w)`` (the official ``get_condition``)."""
    rows = torch.arange(h, dtype=torch.float64)
    return torch.cos((-1 + (2 * rows + 1) / h) * torch.pi / 2).float().view(1, 1, h, 1).expand(1, 1, h, w)


# --- checkpoint format ------------------------------------------------------------------------------------------------
def test_key_lists_cover_every_camixerosr_file(shared: Path) -> None:
    files = {p.name for p in (shared / "specs" / "state_dict_keys").iterdir() if "CAMixerOSR" in p.name}
    assert files == set(KEY_LISTS)


@pytest.mark.parametrize("name", sorted(KEY_LISTS))
def test_state_dict_matches_official_key_list(shared: Path, name: str) -> None:
    expected = read_key_list(shared / "specs" / "state_dict_keys" / name)
    model = CAMixerOSR(scale=KEY_LISTS[name])
    assert model_key_list(model, abbreviated=name.endswith("_abbrev.txt")) == expected
    assert "rgb_mean" not in model.state_dict()  # a buffer that follows .to(), not part of the official format


@pytest.mark.parametrize(("scale", "params"), [(2, 1_305_147), (4, 1_324_623)])
def test_random_init_checkpoints_load_strictly(shared: Path, scale: int, params: int) -> None:
    model = CAMixerOSR(scale=scale)
    model.load_state_dict(load_params(_weights(shared, scale)), strict=True)
    assert model.num_params == params


# --- official fixtures ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pair", fixture_pairs("odisr"), ids=pair_id)
def test_official_fixture_reproduced(shared: Path, pair: dict) -> None:
    model = pair_model(CAMixerOSR, pair, shared)
    condition = pair.get("condition", "")
    kwargs = {"condition": load_array(shared, condition)} if condition.endswith(".npy") else {}
    out, ref = run_pair(model, pair, shared, **kwargs)
    assert selected_windows(model) == [set(s) for s in pair["selected_windows_per_predictor"]]
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5


def test_condition_fixture_is_cos_latitude(shared: Path) -> None:
    for size in (64, 128):
        stored = load_array(shared, f"condition_cos_latitude_{size}x{size}.npy")
        assert torch.allclose(stored, _latitude(size, size), atol=1e-6)


# --- routing rule ---------------------------------------------------------------------------------------------------
def test_default_ratio_is_the_official_int_n_r_rule() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(64, 37, generator=gen)
    r = (p > 0.5).float().mean(1)
    assert torch.equal(keep_counts(p, 0.5), (37 * r).long())
    assert CAMixerOSR(n_block=(1,), n_group=1, n_feats=12).ratio == 0.5


def test_shifted_windows_alternate(osr_x2: CAMixerOSR) -> None:
    osr_x2.set_ratio(1.0)
    with torch.no_grad():
        osr_x2(torch.rand(1, 3, 32, 48), _latitude(32, 48))
    routing = osr_x2.routing()
    assert [r.shift for r in routing] == [0, 8] * 12
    assert all(r.selected.all() and r.selected.shape == (1, 2, 3) for r in routing)


# --- condition and sizes --------------------------------------------------------------------------------------------
def test_condition_none_is_zeros_and_broadcasts(osr_x2: CAMixerOSR) -> None:
    osr_x2.set_ratio(0.5)
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        default = osr_x2(x)
        zeros = osr_x2(x, torch.zeros(2, 1, 24, 40))
        shared_map = osr_x2(x, _latitude(24, 40))
        per_image = osr_x2(x, _latitude(24, 40).expand(2, 1, 24, 40))
    assert torch.equal(default, zeros)
    assert torch.equal(shared_map, per_image)
    assert not torch.equal(shared_map, zeros)


def test_any_size_pads_the_condition_too(osr_x2: CAMixerOSR) -> None:
    """The official network fails on 50×70 (unpadded condition); here any size from 1×1 works."""
    for h, w in ((50, 70), (1, 1), (5, 9)):
        with torch.no_grad():
            out = osr_x2(torch.rand(1, 3, h, w), _latitude(h, w))
        assert out.shape == (1, 3, 2 * h, 2 * w) and torch.isfinite(out).all()


def test_rejects_bad_condition(osr_x2: CAMixerOSR) -> None:
    with pytest.raises(ValueError, match="condition_map"):
        osr_x2(torch.rand(2, 3, 16, 16), torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match="condition must have shape"):
        osr_x2(torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 32))


@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_output_is_batch_independent(osr_x2: CAMixerOSR, shared: Path, ratio: float) -> None:
    osr_x2.set_ratio(ratio)
    x = load_array(shared, "input_b_astronaut128.npy")[..., 32:80, 0:64]
    assert_batch_independent(osr_x2, x, condition=_latitude(48, 64))


# --- training, cost, autocast -----------------------------------------------------------------------------------------
def test_training_step_updates_predictor() -> None:
    torch.manual_seed(0)
    model = CAMixerOSR(n_block=(2,), n_group=1, n_feats=16, scale=2)
    x, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 64, 64)
    out = train_step(model, x, hr, condition=_latitude(32, 32))
    decisions = torch.stack([r.selected.float().mean((1, 2)) for r in model.routing()])
    assert out.ratio_loss.item() == pytest.approx((decisions.mean().item() - 0.5) ** 2, abs=1e-6)


def test_flops_match_flop_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = CAMixerOSR(n_block=(2, 1), n_group=2, n_feats=24, scale=2).eval()
    x, condition = torch.rand(1, 3, 30, 40), _latitude(30, 40)  # padded to 32×48: 6 windows
    keep = [6, 2, 0]
    with model.force_keep(keep):
        counted = counted_flops(model, x, monkeypatch, condition=condition)
    deformable = 3 * 2 * 32 * 48 * 24 * 24 * 9  # the 3 DCNv2 main convolutions FlopCounterMode does not see
    assert counted + deformable == model.flops(30, 40, kept=keep)


def test_bfloat16_autocast_runs() -> None:
    torch.manual_seed(0)
    model = CAMixerOSR(n_block=(2,), n_group=1, n_feats=16, scale=2).eval()
    x, condition = torch.rand(1, 3, 20, 24), _latitude(20, 24)
    with torch.no_grad():
        ref = model(x, condition)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, condition)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out.float() - ref).abs().mean() < 0.05


# --- registry ---------------------------------------------------------------------------------------------------------
def test_registry_entries() -> None:
    assert {"camixersr-odi-x2", "camixersr-odi-x4"} <= set(available())
    spec = get_spec("camixersr-odi-x4")
    assert spec.architecture == "camixer_osr" and spec.scale == 4
    assert spec.weights.url.endswith("/pretrained_models/ODISR/CAMixerSRx4.pth")
    assert spec.weights.git_blob_sha1 == "26f0cca359323b523d4b37ed5f86dd072bdcf844"
    assert spec.weights.filename != get_spec("camixersr-light-x4").weights.filename  # same upstream name
    assert CAMixerOSR.uses_latitude and CAMixerOSR.content_aware and CAMixerOSR.window_size == 16


def test_detect_infers_constructor(shared: Path, official_s_weights: Path) -> None:
    sd = load_params(_weights(shared, 4))
    kwargs = detect(sd)
    assert kwargs == {"n_block": (6, 6, 6, 6), "n_group": 4, "n_colors": 3, "n_feats": 60, "scale": 4}
    get_architecture("camixer_osr").build(**kwargs).load_state_dict(sd, strict=True)
    assert detect(load_params(official_s_weights)) is None
