"""odisr.models.load: by name (cache / download / weights=), by path (architecture detection), strict errors.

Budget: ~4 s (tiny networks; one CAMixerSR-S forward on 64×64 against the official output).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest
import torch
from _weights_support import FileServer, TinyMixer, TinySR, register_downloadable, register_tiny, tiny_state_dict

from odisr.models import (
    WeightsError,
    available,
    load,
    parse_weights_args,
    resolve_weights_arg,
    save_state_dict,
    weight_cache_path,
)

register_tiny()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ODISR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _save(path: Path, sd: dict, wrapper: str | None = "params_ema") -> Path:
    torch.save({wrapper: sd} if wrapper else sd, path)
    return path


def _reference(sd: dict, cls: type = TinySR, **kwargs) -> TinySR:
    net = cls(**kwargs)
    net.load_state_dict(sd)
    return net.eval()


def _same_output(a: torch.nn.Module, b: torch.nn.Module, h: int = 5, w: int = 7) -> bool:
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    return ya.shape == yb.shape and torch.equal(ya, yb)


def test_load_by_path_detects_architecture(tmp_path: Path) -> None:
    sd = tiny_state_dict(scale=3, n_feats=5, seed=1)
    net = load(_save(tmp_path / "mine.pth", sd))
    assert type(net) is TinySR and net.scale == 3 and net.head.out_channels == 5
    assert not net.training
    assert _same_output(net, _reference(sd, scale=3, n_feats=5))
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 5, 7)).shape == (1, 3, 15, 21)


def test_detection_tells_architectures_apart(tmp_path: Path) -> None:
    sd = {**tiny_state_dict(scale=2, n_feats=4), "gate": torch.tensor([0.5])}
    net = load(save_state_dict(tmp_path / "mixer.safetensors", sd), ratio=0.25)
    assert type(net) is TinyMixer and net.ratio == 0.25 and net.gate.item() == 0.5


def test_unknown_file_lists_architectures_tried(tmp_path: Path) -> None:
    path = _save(tmp_path / "alien.pth", {"encoder.weight": torch.ones(2, 2)})
    with pytest.raises(WeightsError) as info:
        load(path)
    message = str(info.value)
    assert "alien.pth" in message and "tinysr-test" in message and "tinymixer-test" in message
    assert "encoder.weight" in message and "load(NAME, weights=PATH)" in message


def test_load_by_name_with_weights(tmp_path: Path) -> None:
    sd = tiny_state_dict(scale=2, n_feats=4, seed=2)
    net = load("tinysr-test-user", weights=_save(tmp_path / "w.pth", sd, wrapper="params"))
    assert _same_output(net, _reference(sd, scale=2, n_feats=4))


def test_load_by_name_downloads_once(tmp_path: Path, home: Path, monkeypatch) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    sd = tiny_state_dict(scale=2, n_feats=4, seed=4)
    data = _save(srv / "tiny.pth", sd).read_bytes()
    with FileServer(srv) as server:
        spec = register_downloadable(
            "tinysr-test-loading-dl", 2, server.url("tiny.pth"), hashlib.sha256(data).hexdigest(), "tiny.pth"
        )
        net = load("tinysr-test-loading-dl")
        assert server.requests == ["/tiny.pth"]
    assert weight_cache_path(spec.weights).read_bytes() == data
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    again = load("tinysr-test-loading-dl")
    assert _same_output(net, again) and _same_output(net, _reference(sd, scale=2, n_feats=4))


def test_mismatch_is_one_readable_error(tmp_path: Path) -> None:
    path = _save(tmp_path / "x3.pth", tiny_state_dict(scale=3, n_feats=4))
    with pytest.raises(WeightsError) as info:
        load("tinysr-test-user", weights=path)
    message = str(info.value)
    assert "x3.pth" in message and "'tinysr-test-user'" in message
    assert "2 shapes differ (body.weight: file (27, 4, 3, 3) vs model (12, 4, 3, 3), body.bias: file (27,)" in message
    assert "Wrong model name or scale?" in message

    sd = tiny_state_dict(scale=2, n_feats=4)
    sd["extra.weight"] = sd.pop("head.bias")
    with pytest.raises(WeightsError, match=r"1 missing keys \(head\.bias\); 1 unexpected keys \(extra\.weight\)"):
        load("tinysr-test-user", weights=_save(tmp_path / "renamed.pth", sd))


def test_missing_weight_file_is_reported_first(tmp_path: Path, home: Path) -> None:
    spec = register_downloadable("tinysr-test-loading-dead", 2, "http://127.0.0.1:9/dead.pth", "0" * 64, "dead.pth")
    with pytest.raises(FileNotFoundError, match=r"weight file not found: .*absent\.pth"):
        load(spec.name, weights=tmp_path / "absent.pth")  # not a DownloadError: nothing else was tried


def test_name_and_path_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="did you mean tinysr-test-user"):
        load("tinysr-tset-user")
    with pytest.raises(FileNotFoundError, match="nowhere/model.pth"):
        load("nowhere/model.pth")
    path = _save(tmp_path / "w.pth", tiny_state_dict())
    with pytest.raises(ValueError, match="weights= goes with a model name"):
        load(path, weights=path)


def test_model_without_weight_file_needs_weights() -> None:
    with pytest.raises(WeightsError, match="has no official weights; pass weights=PATH"):
        load("tinymixer-test-x2")


def test_ratio_on_plain_model_warns(tmp_path: Path) -> None:
    path = _save(tmp_path / "w.pth", tiny_state_dict())
    with pytest.warns(UserWarning, match="ratio=0.5 ignored: tinysr-test is not content-aware"):
        load(path, ratio=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(path)


def test_resolve_weights_arg(tmp_path: Path) -> None:
    path = _save(tmp_path / "w.pth", tiny_state_dict())
    odd = _save(tmp_path / "lr=1e-4.pth", tiny_state_dict())
    assert resolve_weights_arg(str(path)) == (None, path)
    assert resolve_weights_arg(str(odd)) == (None, odd)
    assert resolve_weights_arg(f"tinysr-test-user={path}") == ("tinysr-test-user", path)
    with pytest.raises(KeyError, match="unknown model 'tinysr-test-usr'; did you mean tinysr-test-user"):
        resolve_weights_arg(f"tinysr-test-usr={path}")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resolve_weights_arg(f"tinysr-test-user={tmp_path / 'nope.pth'}")
    assert parse_weights_args([f"tinysr-test-user={path}", str(odd)]) == {"tinysr-test-user": path, None: odd}
    with pytest.raises(ValueError, match="given twice for tinysr-test-user"):
        parse_weights_args([f"tinysr-test-user={path}", f"tinysr-test-user={odd}"])


@pytest.mark.skipif("camixersr-s-x4" not in available(), reason="CAMixerSR not registered yet")
def test_official_camixersr_s_by_path_and_name(official_s_weights: Path) -> None:
    """The official checkpoint through load(): detected as CAMixerSR n_feats=36 ×4 holding the EMA weights.

    (Its outputs against the official code are the CAMixer tests' business: a forward costs seconds here.)
    """
    ema = torch.load(official_s_weights, map_location="cpu", weights_only=True)["params_ema"]
    by_path = load(official_s_weights, ratio=1.0)
    assert by_path.architecture == "camixersr" and by_path.scale == 4 and by_path.num_params == 351_238
    assert by_path.head.out_channels == 36 and not by_path.training
    loaded = by_path.state_dict()
    assert loaded.keys() == ema.keys() and all(torch.equal(loaded[k], ema[k]) for k in ema)
    by_name = load("camixersr-s-x4", weights=official_s_weights)
    assert all(torch.equal(a, b) for a, b in zip(by_name.state_dict().values(), loaded.values()))
    with pytest.raises(WeightsError, match="shapes differ .*head.weight: file \\(36, 3, 3, 3\\) vs model \\(60"):
        load("camixersr-b-x4", weights=official_s_weights)
