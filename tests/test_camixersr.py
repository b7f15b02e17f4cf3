"""CAMixerSR: official checkpoint format, official fixtures, deterministic routing, ratio γ, training, cost.

Budget: about 60 s on 2 cores (30 fixture forwards on 64×64/128×128 inputs, one 256×512 panorama).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camixer_support import (
    assert_batch_independent,
    counted_flops,
    explicit_attention,
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
from odisr.models.archs import camixer_common
from odisr.models.archs.camixer_common import pad_to_multiple, window_attention
from odisr.models.archs.camixersr import CAMixerSR, detect
from odisr.models.registry import available, get_architecture, get_spec

KEY_LISTS = {  # file in specs/state_dict_keys/ → constructor kwargs
    "CAMixerSR_S.pth__params_ema.txt": {"n_feats": 36, "scale": 4},
    "CAMixerSR_S.pth__params_ema_abbrev.txt": {"n_feats": 36, "scale": 4},
    "constructed_CAMixerSR_M_x4_nf48_abbrev.txt": {"n_feats": 48, "scale": 4},
    "constructed_CAMixerSR_light_x2_nf60_abbrev.txt": {"n_feats": 60, "scale": 2},
    "constructed_CAMixerSR_light_x3_nf60_abbrev.txt": {"n_feats": 60, "scale": 3},
    "constructed_CAMixerSR_light_x4_nf60_abbrev.txt": {"n_feats": 60, "scale": 4},
}
# The trained S network is chaotic on uniform-noise inputs: the official code itself moves by 3.7e-5 (input a) and
# 6.5e-5 (input c) between 1 and 2 CPU threads, and by up to 1.8e-4 for a 1e-7 relative change of the input; the
# official float32 outputs are 5e-5-6e-5 away from the exact (float64) ones
# (test_noise_fixtures_are_limited_by_float32_rounding). Those two inputs are therefore checked at that noise level;
# every other fixture at 1e-5.
NOISY = {"S_x4_r0.5__input_a_rand64", "S_x4_r0.5__input_c_rand50x70",
         "S_x4_r1.0__input_a_rand64", "S_x4_r1.0__input_c_rand50x70"}


@pytest.fixture(scope="module")
def s_model(official_s_weights: Path) -> CAMixerSR:
    model = CAMixerSR(n_feats=36, scale=4).eval()
    model.load_state_dict(load_params(official_s_weights), strict=True)
    return model


@pytest.fixture(scope="module")
def astronaut(shared: Path) -> torch.Tensor:
    return load_array(shared, "input_b_astronaut128.npy")


# --- checkpoint format ----------------------------------------------------------------------------------------------
def test_key_lists_cover_every_camixersr_file(shared: Path) -> None:
    files = {p.name for p in (shared / "specs" / "state_dict_keys").iterdir() if "CAMixerSR" in p.name}
    assert files == set(KEY_LISTS)


@pytest.mark.parametrize("name", sorted(KEY_LISTS))
def test_state_dict_matches_official_key_list(shared: Path, name: str) -> None:
    expected = read_key_list(shared / "specs" / "state_dict_keys" / name)
    model = CAMixerSR(**KEY_LISTS[name])
    assert model_key_list(model, abbreviated=name.endswith("_abbrev.txt")) == expected


@pytest.mark.parametrize("key", ["params_ema", "params"])
def test_official_s_checkpoint_loads_strictly(official_s_weights: Path, key: str) -> None:
    model = CAMixerSR(n_feats=36, scale=4)
    model.load_state_dict(load_params(official_s_weights, key), strict=True)
    assert model.num_params == 351_238


@pytest.mark.parametrize(("scale", "params"), [(2, 745_846), (3, 753_961), (4, 765_322)])
def test_random_init_checkpoints_load_strictly(shared: Path, scale: int, params: int) -> None:
    path = shared / "weights" / "random_init" / f"RANDOMINIT_CAMixerSR_light_x{scale}_seed{100 + scale}.pth"
    model = CAMixerSR(n_feats=60, scale=scale)
    model.load_state_dict(load_params(path), strict=True)
    assert model.num_params == params


def test_m_variant_parameter_count() -> None:
    assert CAMixerSR(n_feats=48, scale=4).num_params == 534_558


# --- official fixtures ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pair", fixture_pairs("light"), ids=pair_id)
def test_official_fixture_reproduced(shared: Path, pair: dict) -> None:
    model = pair_model(CAMixerSR, pair, shared)
    out, ref = run_pair(model, pair, shared)
    assert out.shape == ref.shape
    assert selected_windows(model) == [set(s) for s in pair["selected_windows_per_predictor"]]
    err = (out - ref).abs()
    if pair_id(pair) in NOISY:
        assert err.max() <= 3e-4 and err.mean() <= 5e-6
    else:
        assert err.max() <= 1e-5


@pytest.mark.parametrize("name", ["a_rand64", "c_rand50x70"])
def test_noise_fixtures_are_limited_by_float32_rounding(s_model: CAMixerSR, shared: Path, name: str) -> None:
    """Why 1e-5 cannot be asked on the noise inputs: float32 rounding alone moves the output by more than that.

    The same network evaluated in float64 (the exact output, to ~1e-12) differs from the official float32 fixture
    by more than 1e-5 (measured 6.1e-5 and 5.4e-5): no implementation, exact or not, can match the fixture to 1e-5
    without replaying the official kernels' rounding. Our float32 output is in the same band (5.1e-5, 2.0e-4).
    """
    x = load_array(shared, f"input_{name}.npy")
    official = load_array(shared, f"out_S_x4_r1.0__{name}.npy")
    exact = copy.deepcopy(s_model).double()
    exact.set_ratio(1.0)
    s_model.set_ratio(1.0)
    try:
        with torch.inference_mode():
            reference, ours = exact(x.double()), s_model(x).double()
    finally:
        s_model.set_ratio(0.5)
    official_err = (official.double() - reference).abs().max().item()
    our_err = (ours - reference).abs().max().item()
    print(f"{name}: |official − exact| {official_err:.2e}, |odisr − exact| {our_err:.2e}")
    assert official_err > 1e-5
    assert our_err <= 3e-4


def test_deterministic_rule_on_astronaut(s_model: CAMixerSR, astronaut: torch.Tensor, shared: Path) -> None:
    """S ×4 at γ = 0.5 without noise: 47.59 dB from the seeded official output (spec, decision 2)."""
    s_model.set_ratio(0.5)
    with torch.no_grad():
        out = s_model(astronaut).clamp(0, 1)
    ref = load_array(shared, "out_S_x4_r0.5__b_astronaut128.npy").clamp(0, 1)
    psnr = 10 * math.log10(1 / F.mse_loss(out, ref).item())
    assert psnr == pytest.approx(47.59, abs=0.05)


def test_real_panorama_matches_official_uint8(s_model: CAMixerSR, shared: Path) -> None:
    """Whole 512×256 ERP image, γ = 1: the official uint8 output and its WS-PSNR against the HR panorama."""
    from odisr.io import image_to_tensor, read_image, tensor_to_image
    from odisr.metrics import ws_psnr

    folder = shared / "fixtures" / "official_erp"
    ref_values = json.loads((folder / "reference_values.json").read_text())["layoutnet_r1.0"]
    s_model.set_ratio(1.0)
    with torch.no_grad():
        sr = tensor_to_image(s_model(image_to_tensor(read_image(folder / "layoutnet_lr_x4.png"))))
    official = read_image(folder / "layoutnet_official_S_x4_r1.0.png")
    diff = np.abs(sr.astype(np.int16) - official.astype(np.int16))
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.999
    assert ws_psnr(sr, read_image(folder / "layoutnet_hr.png")) == pytest.approx(ref_values["ws_psnr_rgb"], abs=0.01)


# --- determinism, batch independence, sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_output_is_batch_independent(s_model: CAMixerSR, astronaut: torch.Tensor, ratio: float) -> None:
    s_model.set_ratio(ratio)
    assert_batch_independent(s_model, astronaut[..., 16:64, 8:88])


@pytest.mark.parametrize(("h", "w"), [(1, 1), (8, 8), (7, 20), (12, 12), (17, 33)])
def test_any_input_size(s_model: CAMixerSR, h: int, w: int) -> None:
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        out = s_model(x)
    assert out.shape == (2, 3, 4 * h, 4 * w)
    assert torch.isfinite(out).all()


def test_padding_reflects_where_possible_then_replicates() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    padded = pad_to_multiple(x, 16)
    assert padded.shape == (1, 1, 16, 16)
    assert torch.equal(padded[..., :5, :7], F.pad(x, (0, 3, 0, 2), mode="reflect"))  # the official padding
    assert torch.equal(padded[..., 15, 15], padded[..., 4, 6])  # beyond the reflection: replicated edge
    y = torch.rand(1, 3, 50, 70)
    assert torch.equal(pad_to_multiple(y, 16), F.pad(y, (0, 10, 0, 14), mode="reflect"))


def test_rejects_bad_input(s_model: CAMixerSR) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, h, w\)"):
        s_model(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="one count per block"):
        with s_model.force_keep([1, 2]):
            pass


# --- ratio γ and routing -------------------------------------------------------------------------------------------
def test_set_ratio_validates() -> None:
    model = CAMixerSR(n_block=(1,), n_group=1, n_feats=12, scale=2)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            model.set_ratio(bad)
    with pytest.raises(ValueError):
        CAMixerSR(ratio=2.0)
    model.set_ratio(0.25)
    assert model.ratio == 0.25 and all(m.ratio == 0.25 for m in model.mixers())


def test_ratio_controls_routing(s_model: CAMixerSR, astronaut: torch.Tensor) -> None:
    x = torch.cat([astronaut[..., :64, :64], astronaut[..., 64:, 64:]])
    kept = {}
    for ratio in (0.0, 0.5, 1.0):
        s_model.set_ratio(ratio)
        with torch.no_grad():
            s_model(x)
        routing = s_model.routing()
        assert len(routing) == 20
        assert all(r.selected.shape == (2, 4, 4) and r.selected.dtype == torch.bool for r in routing)
        kept[ratio] = s_model.kept_windows()
    assert kept[0.0].sum() == 0 and torch.all(kept[1.0] == 16)
    assert 0 < kept[0.5].sum() < kept[1.0].sum()


def test_flops_reflect_ratio_and_match_flop_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = CAMixerSR(n_block=(2, 1), n_group=2, n_feats=24, scale=3).eval()
    x = torch.rand(1, 3, 40, 50)  # padded to 48×64: 12 windows
    for keep in ([12, 12, 12], [5, 0, 12]):
        with model.force_keep(keep):
            assert counted_flops(model, x, monkeypatch) == model.flops(40, 50, kept=keep)
    model.set_ratio(1.0)
    full = model.flops(40, 50)
    model.set_ratio(0.5)
    assert model.flops(40, 50) == model.flops(40, 50, kept=[6, 6, 6]) < full


def test_flops_of_s_model_per_32x32_patch(s_model: CAMixerSR) -> None:
    s_model.set_ratio(1.0)
    full = s_model.flops(32, 32)
    s_model.set_ratio(0.5)
    half = s_model.flops(32, 32)
    # 4 windows per block; attention (q/k projections + 2 matmuls) of 2 windows saved in each of 20 blocks.
    assert full - half == 20 * 2 * (2 * 256 * 2 * 36 * 36 + 4 * 256 * 256 * 36)


def test_sdpa_matches_explicit_attention() -> None:
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(9, 256, 36, generator=gen) * s for s in (1.5, 1.5, 1.0))
    assert (window_attention(q, k, v) - explicit_attention(q, k, v)).abs().max() <= 1e-5


# --- training ---------------------------------------------------------------------------------------------------------
def test_training_step_updates_predictor() -> None:
    torch.manual_seed(0)
    model = CAMixerSR(n_block=(2,), n_group=1, n_feats=16, scale=2, ratio=0.5)
    x, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 64, 64)
    out = train_step(model, x, hr)
    assert out.output.shape == (2, 3, 64, 64)
    decisions = torch.stack([r.selected.float().mean((1, 2)) for r in model.routing()])
    assert out.ratio_loss.item() == pytest.approx(2 * 0.5 * (decisions.mean().item() - 0.5) ** 2, abs=1e-6)


def test_bfloat16_autocast_runs() -> None:
    torch.manual_seed(0)
    model = CAMixerSR(n_block=(2,), n_group=1, n_feats=16, scale=2, ratio=1.0).eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out.float() - ref).abs().mean() < 0.05


# --- registry --------------------------------------------------------------------------------------------------------
def test_registry_entries() -> None:
    names = {"camixersr-light-x2", "camixersr-light-x3", "camixersr-light-x4", "camixersr-s-x4",
             "camixersr-m-x4", "camixersr-b-x4"}
    assert names <= set(available())
    s = get_spec("camixersr-s-x4")
    assert s.kwargs["n_feats"] == 36 and s.scale == 4
    assert s.weights.url == "https://github.com/icandle/CAMixerSR/raw/main/pretrained_models/LargeSR/CAMixerSR_S.pth"
    assert s.weights.sha256.startswith("49ffcfbb") and s.weights.size == 3_323_709
    assert get_spec("camixersr-b-x4").weights == get_spec("camixersr-light-x4").weights
    assert get_spec("camixersr-light-x3").weights.git_blob_sha1 == "1bb089df3657fd48b31f4bcbdab41331f23a7879"


def test_detect_infers_constructor(official_s_weights: Path, shared: Path) -> None:
    sd = load_params(official_s_weights)
    kwargs = detect(sd)
    assert kwargs == {"n_block": (4, 4, 6, 6), "n_group": 4, "n_colors": 3, "n_feats": 36, "scale": 4}
    get_architecture("camixersr").build(**kwargs).load_state_dict(sd, strict=True)
    osr = load_params(shared / "weights" / "random_init" / "RANDOMINIT_CAMixerOSR_x2_seed202.pth")
    assert detect(osr) is None
    assert detect({"head.weight": torch.zeros(8, 3, 3, 3)}) is None


def test_window_attention_is_used_for_the_forward(monkeypatch: pytest.MonkeyPatch, astronaut: torch.Tensor,
                                                  s_model: CAMixerSR) -> None:
    """The fused SDPA path and the explicit official computation agree on a whole network."""
    s_model.set_ratio(1.0)
    x = astronaut[..., :48, :48]
    with torch.no_grad():
        fused = s_model(x)
        monkeypatch.setattr(camixer_common, "window_attention", explicit_attention)
        explicit = s_model(x)
    assert (fused - explicit).abs().max() <= 1e-5
