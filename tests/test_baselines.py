"""SwinIR, SAN and AWSRN: conformance with the official code (shared fixtures), checkpoint formats, registry entries
and the SRModel contract.

The fixtures (``shared/fixtures/baselines``) are outputs of the official code with random weights; every weight
file is loaded through auto-detection (``odisr.models.load(path)``). Budget: ~20 s of CPU (33 s wall with one
thread on the shared machine); the full lightweight SwinIR on the 96×96 input dominates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from spandrel.architectures.SwinIR import SwinIR as SpandrelSwinIR

from odisr import models
from odisr.models.archs.awsrn import AWSRN, detect_awsrn
from odisr.models.archs.san import SAN, covariance, detect_san, sqrtm_newton_schulz
from odisr.models.archs.swinir import RELEASE_URL, SwinIR, detect_swinir

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

INPUTS = {"A": "input_A_rand_48x48.npy", "B": "input_B_astronaut_96x96.npy", "C": "input_C_rand_37x45.npy"}
# fixture id → (architecture, inputs); tolerances from the fixtures' README (max |Δ|, SwinIR on 0–1, others 0–255)
FIXTURES = {
    "swinir_light_x4_seed321": ("swinir", "ABC"),
    "swinir_light_x4_reduced_seed321_perturbed": ("swinir", "AC"),
    "san_x4_reduced_seed301": ("san", "ABC"),
    "san_x4_reduced_seed301_perturbed": ("san", "AC"),
    "awsrn_s_x4_seed311": ("awsrn", "ABC"),
    "awsrn_s_x4_seed311_perturbed": ("awsrn", "AC"),
    "awsrn_sd_x4_seed312": ("awsrn", "ABC"),
    "awsrn_sd_x4_seed312_perturbed": ("awsrn", "AC"),
}
TOLERANCE = {"swinir": (1.0, 1e-5), "san": (255.0, 1e-3), "awsrn": (255.0, 1e-3)}  # (output scale, max |Δ|)
DETECTORS = {"swinir": detect_swinir, "san": detect_san, "awsrn": detect_awsrn}


@pytest.fixture(scope="module")
def fixtures_dir(shared: Path) -> Path:
    return shared / "fixtures" / "baselines"


@pytest.fixture(scope="module")
def manifest(fixtures_dir: Path) -> dict[str, dict]:
    return {f["id"]: f for f in json.loads((fixtures_dir / "manifest.json").read_text())["fixtures"]}


def _weights(fixtures_dir: Path, fixture_id: str) -> Path:
    return next(fixtures_dir.glob(f"{fixture_id}.pt*"))


def _input(fixtures_dir: Path, letter: str) -> torch.Tensor:
    return torch.from_numpy(np.load(fixtures_dir / INPUTS[letter]))


# --------------------------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("fixture_id", FIXTURES)
def test_fixture_reproduced_after_auto_detection(fixtures_dir: Path, manifest: dict, fixture_id: str) -> None:
    arch, letters = FIXTURES[fixture_id]
    model = models.load(_weights(fixtures_dir, fixture_id))  # architecture and hyper-parameters from the file
    assert model.architecture == arch and model.scale == manifest[fixture_id]["scale"]
    assert model.num_params == manifest[fixture_id]["n_params"]
    out_scale, tol = TOLERANCE[arch]
    for letter in letters:
        with torch.no_grad():
            out = model(_input(fixtures_dir, letter)) * out_scale
        ref = np.load(fixtures_dir / f"{fixture_id}_out_{letter}.npy")
        assert out.shape == ref.shape
        err = float(np.abs(out.numpy() - ref).max())
        assert err <= tol, f"{fixture_id} input {letter}: max |Δ| = {err:.3g} > {tol}"


def test_every_fixture_and_output_of_the_manifest_is_covered(manifest: dict) -> None:
    assert {fid: "".join(o["input"] for o in f["outputs"]) for fid, f in manifest.items()} == {
        fid: letters for fid, (_, letters) in FIXTURES.items()
    }


def test_reduced_san_configuration_is_detected_from_the_file(fixtures_dir: Path) -> None:
    sd = models.load_state_dict_file(fixtures_dir / "san_x4_reduced_seed301.pt")
    kwargs = detect_san(sd)
    assert kwargs == {"scale": 4, "n_resgroups": 2, "n_resblocks": 2, "n_feats": 64, "reduction": 16}
    assert list(SAN(**kwargs).state_dict()) == list(sd)  # same keys in the same order as the official model


@pytest.mark.parametrize("fixture_id", FIXTURES)
def test_each_fixture_is_recognised_by_exactly_its_architecture(fixtures_dir: Path, fixture_id: str) -> None:
    sd = models.load_state_dict_file(_weights(fixtures_dir, fixture_id))
    arch, kwargs = models.detect_architecture(sd)
    assert arch.name == FIXTURES[fixture_id][0]
    assert all(detect(sd) is None for name, detect in DETECTORS.items() if name != arch.name)


def test_swinir_fixture_hyperparameters(fixtures_dir: Path) -> None:
    sd = models.load_state_dict_file(fixtures_dir / "swinir_light_x4_reduced_seed321_perturbed.pth")
    kw = detect_swinir(sd)
    assert kw is not None
    assert (kw["upscale"], kw["img_size"], kw["window_size"], kw["embed_dim"]) == (4, 64, 8, 60)
    assert (kw["depths"], kw["num_heads"], kw["upsampler"]) == ([2, 2], [6, 6], "pixelshuffledirect")


# --------------------------------------------------------------------------------------------- SAN format


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_san_full_configuration_matches_official_key_list(fixtures_dir: Path, scale: int) -> None:
    lines = (fixtures_dir / f"san_full_x{scale}_state_dict_keys.txt").read_text().splitlines()
    official = {key: json.loads(shape) for key, shape in (line.split("\t") for line in lines)}
    model = models.build(f"san-x{scale}", device="meta")  # shapes only: no 16M-parameter initialisation
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official
    zeros = {k: torch.zeros(shape) for k, shape in official.items()}
    model.load_state_dict(zeros, strict=True, assign=True)
    assert not any(p.is_meta for p in model.parameters())  # every parameter came from the file
    assert detect_san(zeros) == models.get_spec(f"san-x{scale}").kwargs


def test_san_expected_parameter_counts() -> None:
    # BASELINES.md §2 (counts of the official code at the full configuration)
    expected = {2: 15_712_800, 3: 15_897_440, 4: 15_860_512}
    assert {s: models.build(f"san-x{s}", device="meta").num_params for s in expected} == expected


def test_covariance_equals_centring_matrix_form() -> None:
    """MPN-COV's x·Î·xᵀ with Î = I/M − 11ᵀ/M² (O(M²) memory) equals our centred product."""
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    f = x.flatten(2)
    m = f.shape[-1]
    i_hat = torch.eye(m, dtype=x.dtype) / m - torch.ones(m, m, dtype=x.dtype) / m**2
    torch.testing.assert_close(covariance(x), f @ i_hat @ f.transpose(1, 2))


def test_newton_schulz_is_the_approximate_root_not_the_exact_one() -> None:
    """Five iterations approximate √Σ well for a well-conditioned Σ (rel. error ~1e-4) but stay measurably off for
    a spread spectrum (~4%): trained SAN weights expect this approximation."""
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    for eigenvalues, lo, hi in (([1.0, 1.1, 0.9, 1.05, 0.95, 1.0], 0, 1e-3), ([1e2, 10, 1, 0.1, 0.01, 1e-3], 0.02, 1)):
        sigma = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
        exact = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64).sqrt()) @ q.T
        rel = torch.linalg.norm(sqrtm_newton_schulz(sigma[None])[0] - exact) / torch.linalg.norm(exact)
        assert lo <= rel <= hi
    with pytest.raises(ValueError, match="at least 2"):
        sqrtm_newton_schulz(sigma[None], iterations=1)


def test_san_pads_tiny_inputs_and_follows_dtype(fixtures_dir: Path) -> None:
    model = models.load(fixtures_dir / "san_x4_reduced_seed301_perturbed.pt").double()
    x = torch.rand(1, 3, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        padded = model(torch.nn.functional.pad(x, (0, 0, 0, 1), mode="replicate"))
    assert out.shape == (1, 3, 12, 20) and out.dtype == torch.float64
    torch.testing.assert_close(out, padded[..., :12, :])
    with pytest.raises(ValueError, match="scale 3 or a power of 2"):
        SAN(scale=5, n_resgroups=1, n_resblocks=1)


def test_san_is_not_tile_invariant(fixtures_dir: Path) -> None:
    """Global SOCA statistics: a tile's output depends on the tile extent even far from its border (documented)."""
    model = models.load(fixtures_dir / "san_x4_reduced_seed301_perturbed.pt")
    x = _input(fixtures_dir, "A")
    with torch.no_grad():
        whole, left = model(x), model(x[..., :, :32])
    interior = (whole[..., :, :64] - left[..., :, :64]).abs().max().item() * 255  # ≥ 16 LR px from the cut
    assert interior > 0.5  # measured 1.7 grey levels


def test_san_flops_include_the_non_local_attention() -> None:
    model = SAN(scale=2, n_resgroups=1, n_resblocks=1)
    # 8×8 → four 4×4 quadrants: N = 16 queries, 4 pooled keys, 8 inner channels, θφᵀ and ·g (2 FLOPs per MAC),
    # twice (the shared block runs twice)
    attention = 2 * 4 * (2 * 2 * 16 * 4 * 8)
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 8, 8))
    assert model.flops(8, 8) == counter.get_total_flops() + attention


# --------------------------------------------------------------------------------------------- AWSRN format

# BASELINES.md §3: parameter counts of the official code (= the paper's)
AWSRN_PARAMS = {
    "awsrn-s": (397_482, 476_757, 587_742),
    "awsrn-sd": (348_098, 388_013, 443_894),
    "awsrn-m": (1_063_742, 1_143_017, 1_254_002),
    "awsrn": (1_396_872, 1_476_147, 1_587_132),
}


@pytest.mark.parametrize("family", AWSRN_PARAMS)
def test_awsrn_named_models_have_official_parameter_counts(family: str) -> None:
    for scale, expected in zip((2, 3, 4), AWSRN_PARAMS[family], strict=True):
        spec = models.get_spec(f"{family}-x{scale}")
        model = models.build(spec)
        assert model.num_params == expected, spec.name
        assert model.variant == {"awsrn-s": "S", "awsrn-sd": "SD", "awsrn-m": "M", "awsrn": "full"}[family]
        assert detect_awsrn(model.state_dict()) == spec.kwargs


def test_awsrn_state_dict_has_official_weight_norm_keys_and_no_mean(fixtures_dir: Path) -> None:
    official = models.load_state_dict_file(fixtures_dir / "awsrn_s_x4_seed311.pt")
    model = AWSRN(scale=4)
    assert list(model.state_dict()) == list(official)  # same keys, same order
    assert "rgb_mean" not in model.state_dict()
    model.load_state_dict(official, strict=True)
    conv = model.head[0]
    expected = conv.weight_g * conv.weight_v / conv.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(conv.weight, expected)


def test_awsrn_float64_and_tiling_with_halo(fixtures_dir: Path) -> None:
    model = models.load(fixtures_dir / "awsrn_s_x4_seed311_perturbed.pt").double()
    x = _input(fixtures_dir, "A").double()
    with torch.no_grad():
        whole = model(x)
        # left tile with a 16-pixel halo beyond column 24; the receptive field of AWSRN-S is 14 LR pixels
        tile = model(x[..., :, :40])[..., :, : 24 * 4]
    assert whole.dtype == torch.float64 and model.rgb_mean.dtype == torch.float64
    ref = np.load(fixtures_dir / "awsrn_s_x4_seed311_perturbed_out_A.npy")
    assert np.abs(whole.numpy() * 255 - ref).max() <= 2e-4  # the official float64-vs-fixture probe is ≤ 1e-4
    torch.testing.assert_close(tile, whole[..., :, : 24 * 4], rtol=0, atol=1e-12)


def test_awsrn_flops_are_two_per_weight_per_lr_pixel() -> None:
    """All AWSRN convolutions run at LR resolution (pixel shuffle comes last): FLOPs = 2·h·w·Σ|v|."""
    model = AWSRN(scale=2, n_feats=8, block_feats=16)
    macs_per_pixel = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight_v"))
    assert model.flops(6, 10) == 2 * 6 * 10 * macs_per_pixel


# --------------------------------------------------------------------------------------------- SwinIR specifics


def _tiny_swinir_state(img_size: int) -> dict[str, torch.Tensor]:
    kwargs = {"depths": [2], "num_heads": [2], "embed_dim": 16, "upsampler": "pixelshuffle", "img_size": img_size}
    return SwinIR(upscale=2, **kwargs).state_dict()


def test_swinir_img_size_is_read_from_attn_mask_and_loads_strictly() -> None:
    s48 = _tiny_swinir_state(48)
    kwargs = detect_swinir(s48)
    assert kwargs is not None and kwargs["img_size"] == 48 and kwargs["upscale"] == 2
    SwinIR(**kwargs).load_state_dict(s48, strict=True)
    with pytest.raises(RuntimeError, match="attn_mask"):
        SwinIR(**{**kwargs, "img_size": 64}).load_state_dict(s48, strict=True)


def test_swinir_raw_output_small_inputs_and_rejects_non_sr_files(fixtures_dir: Path) -> None:
    model = models.load(fixtures_dir / "swinir_light_x4_reduced_seed321_perturbed.pth")
    with torch.no_grad():
        out = model(torch.rand(1, 3, 3, 5))
        big = model(_input(fixtures_dir, "C"))
    assert out.shape == (1, 3, 12, 20) and torch.isfinite(out).all()
    assert big.min() < 0 or big.max() > 1  # raw, not clamped like spandrel's descriptor call
    denoiser = SpandrelSwinIR(upscale=1, depths=[2], num_heads=[2], embed_dim=16, window_size=8).state_dict()
    with pytest.raises(ValueError, match="not a 3-channel super-resolution model"):
        detect_swinir(denoiser)


@pytest.mark.parametrize(
    ("family", "img_size", "params"),
    [("light", 64, (910_152, 918_267, 929_628)), ("classical", 48, (11_752_487, 11_937_127, 11_900_199))],
)
def test_swinir_named_models(family: str, img_size: int, params: tuple[int, int, int]) -> None:
    for scale, expected in zip((2, 3, 4), params, strict=True):
        spec = models.get_spec(f"swinir-{family}-x{scale}")
        assert spec.kwargs["img_size"] == img_size and spec.kwargs["upscale"] == scale == spec.scale
        wf = spec.weights
        assert wf is not None and wf.url == RELEASE_URL + wf.filename and f"s{img_size}w8" in wf.filename
        assert wf.sha256 is not None and len(wf.sha256) == 64 and wf.size and wf.size > 10_000_000
        if family == "light" or scale == 4:  # classical ×2/×3 only differ in the (spandrel) upsampler: skip for time
            assert models.build(spec, device="meta").num_params == expected


def test_user_supplied_weights_say_where_to_get_them() -> None:
    for name in ("san-x2", "awsrn-sd-x4", "awsrn-x3"):
        wf = models.get_spec(name).weights
        assert wf is not None and wf.url is None
        assert "https://" in wf.instructions and wf.filename.split(".")[0] in wf.instructions
    assert models.get_spec("awsrn-sd-x4").weights.filename == "AWSRN_SDx4.pt"
    assert models.get_spec("san-x4").weights.filename == "SAN_BIX4.pt"


@pytest.mark.parametrize("name", ["swinir-light-x2", "san-x3", "awsrn-m-x4"])
def test_contract_attributes(name: str) -> None:
    model = models.build(name, device="meta")
    spec = models.get_spec(name)
    assert model.architecture == spec.architecture and model.scale == spec.scale
    assert model.window_size == (8 if spec.architecture == "swinir" else 1)
    assert model.content_aware is False and model.uses_latitude is False
