"""odisr.models.weights: cache paths, ensure_weights, safe checkpoint reading, saving.

Budget: ~2 s (one read of the 3.3 MB official checkpoint, tiny tensors otherwise).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from _weights_support import FileServer, register_downloadable, register_tiny, tiny_state_dict

from odisr.download import DownloadError, IntegrityError
from odisr.models.registry import ModelSpec, WeightFile, get_spec
from odisr.models.weights import (
    WeightsError,
    ensure_weights,
    load_state_dict_file,
    save_state_dict,
    weight_cache_path,
    weight_status,
)

S_SHA256 = "49ffcfbb59583b4512ed7f4290b6f480b4bac50afb3d1db1553687bbdeff3076"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ODISR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_cache_paths_are_unique_per_pin(home: Path) -> None:
    light = WeightFile("CAMixerSRx2.pth", url="https://x/LightSR/CAMixerSRx2.pth", git_blob_sha1="8a6d6d19" + "0" * 32)
    odi = WeightFile("CAMixerSRx2.pth", url="https://x/ODISR/CAMixerSRx2.pth", git_blob_sha1="b88949a0" + "0" * 32)
    s = WeightFile("sub/dir/CAMixerSR_S.pth", sha256=S_SHA256, git_blob_sha1="eb470abd" + "0" * 32)
    assert weight_cache_path(light) != weight_cache_path(odi)
    assert weight_cache_path(light).name == weight_cache_path(odi).name == "CAMixerSRx2.pth"
    assert weight_cache_path(s) == home / "weights" / S_SHA256[:16] / "CAMixerSR_S.pth"  # sha256 wins
    user = WeightFile("model_latest.pt")
    assert weight_cache_path(user, model="awsrn-x2") == home / "weights" / "awsrn-x2" / "model_latest.pt"
    assert weight_cache_path(user, model="awsrn-x2") != weight_cache_path(user, model="awsrn-x3")


def test_official_checkpoint_prefers_params_ema(official_s_weights: Path) -> None:
    raw = torch.load(official_s_weights, map_location="cpu", weights_only=True)
    assert set(raw) == {"params", "params_ema"}
    sd = load_state_dict_file(official_s_weights)
    assert len(sd) == 718 and sum(v.numel() for v in sd.values()) == 351_238
    assert all(torch.equal(sd[k], raw["params_ema"][k]) for k in sd)
    assert any(not torch.equal(sd[k], raw["params"][k]) for k in sd)  # EMA and raw weights really differ


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"params": sd},
        lambda sd: {"params": {k: v + 1 for k, v in sd.items()}, "params_ema": sd},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 7},
        lambda sd: {"model": sd, "optimizer": {"lr": 1e-3}},
    ],
    ids=["raw", "params", "ema-preferred", "state_dict+module", "model"],
)
def test_unwrap(tmp_path: Path, wrap) -> None:
    sd = tiny_state_dict()
    torch.save(wrap(sd), tmp_path / "ckpt.pth")
    got = load_state_dict_file(tmp_path / "ckpt.pth")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)


class _Payload:
    """Unpickling this object would create a directory: proof that the file was (not) executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_unsafe_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    torch.save({"params": tiny_state_dict(), "hook": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match=r"evil\.pth.*mkdir.*never unpickles arbitrary objects") as info:
        load_state_dict_file(tmp_path / "evil.pth")
    assert "weights_only=False" not in str(info.value)
    assert not marker.exists()


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    torch.save(tiny_state_dict(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"definitely not a checkpoint")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    for name in ("truncated.pth", "garbage.pt", "bad.safetensors"):
        with pytest.raises(WeightsError, match=name.replace(".", r"\.")):
            load_state_dict_file(tmp_path / name)
    torch.save({"epoch": 3, "lr": torch.tensor(0.1), "names": ["a"]}, tmp_path / "nostate.pth")
    with pytest.raises(WeightsError, match=r"holds no state dict .*'epoch'"):
        load_state_dict_file(tmp_path / "nostate.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_state_dict_file(tmp_path / "absent.pth")


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth", "nested/dir/w.pt"])
def test_save_round_trip(tmp_path: Path, name: str) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"a": base, "a_view": base[:, :3], "b": torch.ones(2, dtype=torch.float16)}  # views share storage
    path = save_state_dict(tmp_path / name, sd, metadata={"model": "test"})
    got = load_state_dict_file(path)
    assert got.keys() == sd.keys()
    assert all(torch.equal(got[k], sd[k]) and got[k].dtype == sd[k].dtype for k in sd)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_safetensors_recognised_by_content(tmp_path: Path) -> None:
    path = save_state_dict(tmp_path / "w.safetensors", tiny_state_dict())
    renamed = path.rename(tmp_path / "w.pth")
    assert load_state_dict_file(renamed).keys() == tiny_state_dict().keys()


def test_ensure_weights_downloads_once_then_works_offline(tmp_path: Path, home: Path, monkeypatch) -> None:
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    torch.save({"params": tiny_state_dict(scale=2)}, srv_dir / "tiny_x2.pth")
    sha = hashlib.sha256((srv_dir / "tiny_x2.pth").read_bytes()).hexdigest()
    with FileServer(srv_dir) as server:
        spec = ModelSpec(
            "unregistered-tiny", "tinysr-test", {}, scale=2,
            weights=WeightFile("tiny_x2.pth", url=server.url("tiny_x2.pth"), sha256=sha),
        )
        assert weight_status(spec) == "downloadable"
        path = ensure_weights(spec, progress=False)
        assert path == weight_cache_path(spec.weights) and path.read_bytes() == (srv_dir / "tiny_x2.pth").read_bytes()
        assert weight_status(spec) == "cached"
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    assert ensure_weights(spec, progress=False) == path


def test_ensure_weights_user_supplied(home: Path, official_s_weights: Path) -> None:
    register_tiny()
    spec = get_spec("tinysr-test-user")
    assert weight_status(spec) == "user-supplied"
    with pytest.raises(FileNotFoundError) as info:
        ensure_weights(spec)
    message = str(info.value)
    assert "Ask the tiny lab" in message and str(weight_cache_path(spec.weights, model=spec.name)) in message
    assert "--weights tinysr-test-user=PATH" in message
    target = weight_cache_path(spec.weights, model=spec.name)
    target.parent.mkdir(parents=True)
    shutil.copyfile(official_s_weights, target)
    assert weight_status(spec) == "cached"
    assert ensure_weights(spec) == target
    assert ensure_weights(ModelSpec("no-weights", "tinysr-test", {}, scale=2)) is None
    pinned = ModelSpec("pinned-user", "tinysr-test", {}, scale=2, weights=WeightFile("x.pth", sha256="ab" * 32))
    wrong = weight_cache_path(pinned.weights)
    wrong.parent.mkdir(parents=True)
    shutil.copyfile(official_s_weights, wrong)
    with pytest.raises(IntegrityError, match=f"sha256 is {S_SHA256}, expected abab"):
        ensure_weights(pinned)


def test_ensure_weights_offline_error_names_cache_path(home: Path, monkeypatch) -> None:
    spec = register_downloadable("tinysr-test-weights-offline", 2, "http://127.0.0.1:9/t.pth", "0" * 64, "t.pth")
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        ensure_weights(spec)
    message = str(info.value)
    assert "http://127.0.0.1:9/t.pth" in message and str(weight_cache_path(spec.weights)) in message
    assert "--weights tinysr-test-weights-offline=PATH" in message
