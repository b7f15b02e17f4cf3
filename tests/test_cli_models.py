"""``odisr models list|download|info`` through the real typer app, with tiny registered models.

Budget: ~4 s (no real network: a local HTTP server, and ``$ODISR_OFFLINE`` for ``--all``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from _weights_support import FileServer, TinySR, register_downloadable, register_tiny, tiny_state_dict
from typer.testing import CliRunner

from odisr.cli.main import app
from odisr.models import weight_cache_path

register_tiny()
runner = CliRunner()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("ODISR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ODISR_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def _served_model(tmp_path_factory):
    """A tinysr model whose weights a local HTTP server offers (registered once: the registry is global)."""
    srv = tmp_path_factory.mktemp("srv")
    torch.save({"params": tiny_state_dict(scale=2, n_feats=4, seed=5)}, srv / "tiny_cli.pth")
    sha256 = hashlib.sha256((srv / "tiny_cli.pth").read_bytes()).hexdigest()
    with FileServer(srv) as server:
        yield register_downloadable("tinysr-test-cli-dl", 2, server.url("tiny_cli.pth"), sha256, "tiny_cli.pth"), server


@pytest.fixture()
def downloadable(_served_model, home: Path):
    """The served model and its server, with an empty cache and a fresh request log."""
    _served_model[1].requests.clear()
    return _served_model


def _row(output: str, name: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [name])


def test_list_shows_params_and_weight_status(downloadable) -> None:
    spec, server = downloadable
    result = runner.invoke(app, ["models", "list", "tinysr-test*"])
    assert result.exit_code == 0, result.output
    expected_params = f"{TinySR(scale=2, n_feats=4).num_params:,}"
    assert _row(result.output, "tinysr-test-user") == [
        "tinysr-test-user", "tinysr-test", "×2", expected_params, "no", "user-supplied"
    ]
    assert _row(result.output, spec.name)[-1] == "downloadable"
    assert "tinymixer-test-x2" not in result.output  # the glob filters
    mixer = runner.invoke(app, ["models", "list", "tinymixer-*", "--no-params"])
    assert _row(mixer.output, "tinymixer-test-x2") == [
        "tinymixer-test-x2", "tinymixer-test", "×2", "–", "yes", "not", "needed"
    ]
    assert server.requests == []  # listing never downloads


def test_download_then_listed_as_cached(downloadable) -> None:
    spec, server = downloadable
    result = runner.invoke(app, ["models", "download", spec.name])
    assert result.exit_code == 0, result.output
    path = weight_cache_path(spec.weights)
    assert f"ok {spec.name}: {path}" in result.output and path.is_file()
    assert server.requests == ["/tiny_cli.pth"]
    listed = runner.invoke(app, ["models", "list", spec.name, "--no-params"])
    assert _row(listed.output, spec.name)[-1] == "cached"


def test_download_user_supplied_prints_instructions(home: Path) -> None:
    result = runner.invoke(app, ["models", "download", "tinysr-test-user"])
    assert result.exit_code == 1
    assert "user-supplied weights tinysr-test-user: model" in result.output
    assert "Ask the tiny lab for tiny_user.pth." in result.output
    assert str(home / "weights" / "tinysr-test-user" / "tiny_user.pth") in result.output


def test_download_argument_errors(home: Path) -> None:
    none = runner.invoke(app, ["models", "download"])
    assert none.exit_code == 1 and "name at least one model, or pass --all" in none.output
    unknown = runner.invoke(app, ["models", "download", "tinysr-test-usr"])
    assert unknown.exit_code == 1 and "did you mean tinysr-test-user" in unknown.output


def test_download_all_offline_reports_each_model(downloadable, monkeypatch) -> None:
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    result = runner.invoke(app, ["models", "download", "--all"])
    assert result.exit_code == 1  # some downloadable model could not be fetched
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output  # clean exit, no crash
    assert "ok tinymixer-test-x2: no weights needed" in result.output
    assert "user-supplied weights tinysr-test-user: model 'tinysr-test-user'" in result.output
    assert "error tinysr-test-cli-dl: $ODISR_OFFLINE is set" in result.output


def test_info_by_name_counts_flops(home: Path) -> None:
    result = runner.invoke(app, ["models", "info", "tinysr-test-user", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert "architecture: tinysr-test" in result.output and "arguments: scale=2, n_feats=4" in result.output
    # 2 FLOPs per multiply-add: 64·64 pixels × (3·4·9 + 4·12·9) MACs = 4,423,680 FLOPs
    assert "FLOPs at 64×64 LR: 4.424 M" in result.output
    assert f"weight file: {home / 'weights' / 'tinysr-test-user' / 'tiny_user.pth'}" in result.output
    assert "instructions: Ask the tiny lab" in result.output


def test_info_by_path_detects_and_recognises_official_file(downloadable, tmp_path: Path) -> None:
    spec, _ = downloadable
    mine = tmp_path / "mine.pth"
    torch.save(tiny_state_dict(scale=3, n_feats=5), mine)
    result = runner.invoke(app, ["models", "info", str(mine), "--no-flops"])
    assert result.exit_code == 0, result.output
    assert "detected arguments: scale=3, n_feats=5" in result.output
    assert "official weights of: no registered model" in result.output and "FLOPs" not in result.output
    assert runner.invoke(app, ["models", "download", spec.name]).exit_code == 0
    cached = runner.invoke(app, ["models", "info", str(weight_cache_path(spec.weights)), "--no-flops"])
    assert f"official weights of: {spec.name}" in cached.output


def test_info_errors_are_one_line(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["models", "info", str(tmp_path / "missing.pth")])
    assert missing.exit_code == 1 and "error: weight file not found" in missing.output
    alien = tmp_path / "alien.pth"
    torch.save({"encoder.weight": torch.ones(1)}, alien)
    result = runner.invoke(app, ["models", "info", str(alien)])
    assert result.exit_code == 1 and "not a checkpoint of any registered architecture" in result.output
