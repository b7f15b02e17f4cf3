"""odisr.download against a real HTTP server on 127.0.0.1 serving the official CAMixerSR-S checkpoint.

Budget: ~3 s (a 3.3 MB file over loopback, a handful of times).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _weights_support import FileServer

from odisr import download
from odisr.download import DownloadError, IntegrityError, Pin, fetch, file_digests

S_SHA256 = "49ffcfbb59583b4512ed7f4290b6f480b4bac50afb3d1db1553687bbdeff3076"
S_GIT_BLOB = "eb470abd9295cb46d54436900d0a34be2bec0192"
S_SIZE = 3_323_709
NAME = "CAMixerSR_S.pth"


@pytest.fixture()
def served(tmp_path: Path, official_s_weights: Path) -> Path:
    """A directory holding a copy of the official checkpoint."""
    root = tmp_path / "srv"
    root.mkdir()
    shutil.copyfile(official_s_weights, root / NAME)
    return root


@pytest.fixture()
def server(served: Path):
    with FileServer(served) as srv:
        yield srv


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_digests_of_official_checkpoint(official_s_weights: Path) -> None:
    d = file_digests(official_s_weights)
    assert (d.size, d.sha256, d.git_blob_sha1) == (S_SIZE, S_SHA256, S_GIT_BLOB)
    assert Pin(sha256=S_SHA256, git_blob_sha1=S_GIT_BLOB, size=S_SIZE).mismatches(d) == []
    problems = Pin(sha256="0" * 64, size=S_SIZE + 1).mismatches(d)
    assert len(problems) == 2 and "expected 3323710" in " ".join(problems)


@pytest.mark.parametrize("pins", [{"sha256": S_SHA256}, {"git_blob_sha1": S_GIT_BLOB, "size": S_SIZE}])
def test_download_verifies_and_caches(server: FileServer, cache: Path, official_s_weights: Path, pins: dict) -> None:
    path = fetch(server.url(NAME), filename=NAME, cache_dir=cache, progress=False, **pins)
    assert path == cache / NAME
    assert path.read_bytes() == official_s_weights.read_bytes()
    assert server.requests == [f"/{NAME}"]
    # Only the file and its verification stamp: no temporary file or directory is left behind.
    assert _leftovers(cache) == [f".{NAME}.verified.json", NAME]


def test_wrong_hash_leaves_no_file(server: FileServer, cache: Path) -> None:
    with pytest.raises(IntegrityError, match="does not match its pin"):
        fetch(server.url(NAME), filename=NAME, sha256="ab" * 32, cache_dir=cache, progress=False)
    with pytest.raises(IntegrityError, match="git_blob_sha1 is eb470abd"):
        fetch(server.url(NAME), filename=NAME, git_blob_sha1="cd" * 20, cache_dir=cache, progress=False)
    assert _leftovers(cache) == []


def test_server_down_gives_one_clear_error(server: FileServer, cache: Path) -> None:
    url = server.url(NAME)
    server.stop()
    with pytest.raises(DownloadError) as info:
        fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    message = str(info.value)
    assert url in message and str(cache / NAME) in message and S_SHA256 in message
    assert not isinstance(info.value, IntegrityError)
    assert _leftovers(cache) == []


def test_http_error_is_a_download_error(server: FileServer, cache: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        fetch(server.url("missing.pth"), filename="missing.pth", cache_dir=cache, progress=False)


def test_cached_file_is_reused_without_network(server: FileServer, cache: Path, monkeypatch) -> None:
    url = server.url(NAME)
    fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    server.stop()
    hashed: list[Path] = []
    real_digests = download.file_digests
    monkeypatch.setattr(download, "file_digests", lambda p: hashed.append(p) or real_digests(p))
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    for _ in range(2):
        assert fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False) == cache / NAME
    assert hashed == []  # verified at download time; the stamp (size + mtime) spares re-hashing


def test_offline_without_cache(cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    with pytest.raises(DownloadError, match=r"ODISR_OFFLINE is set.*put the file by hand at .*CAMixerSR_S\.pth"):
        fetch("http://127.0.0.1:9/x.pth", filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)


def test_corrupt_cache_is_reported_and_refetched(server: FileServer, cache: Path, official_s_weights, caplog) -> None:
    url = server.url(NAME)
    fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    (cache / NAME).write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING", logger="odisr.download"):
        path = fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    assert "is corrupt" in caplog.text and "sha256" in caplog.text
    assert path.read_bytes() == official_s_weights.read_bytes()
    assert server.requests == [f"/{NAME}", f"/{NAME}"]


def test_corrupt_cache_offline_is_an_error(server: FileServer, cache: Path, monkeypatch) -> None:
    url = server.url(NAME)
    fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    with (cache / NAME).open("r+b") as f:  # same size, different bytes: the size check alone cannot see it
        f.write(b"\0" * 16)
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    with pytest.raises(DownloadError, match="ODISR_OFFLINE"):
        fetch(url, filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    assert not (cache / NAME).exists()


@pytest.mark.parametrize("pins", [{"sha256": S_SHA256}, {}])
def test_interrupted_transfer_leaves_no_file(server: FileServer, cache: Path, pins: dict) -> None:
    with pytest.raises(DownloadError, match="IncompleteRead") as info:
        fetch(server.url(f"truncated/{NAME}"), filename=NAME, cache_dir=cache, progress=False, **pins)
    assert not isinstance(info.value, IntegrityError)  # caught by the transfer itself, before any hash check
    assert server.requests == [f"/truncated/{NAME}"]
    assert _leftovers(cache) == []


def test_cache_root_follows_odisr_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ODISR_HOME", str(tmp_path / "home"))
    assert download.cache_root() == tmp_path / "home"
    monkeypatch.delenv("ODISR_HOME")
    assert download.cache_root().name == "odisr"


def test_stale_partial_downloads_are_swept(server: FileServer, cache: Path) -> None:
    stale, fresh = cache / ".partial-killed", cache / ".partial-running"
    for d in (stale, fresh):
        d.mkdir(parents=True)
        (d / NAME).write_bytes(b"half")
    os.utime(stale, (0, 0))  # left by a process killed long ago
    fetch(server.url(NAME), filename=NAME, sha256=S_SHA256, cache_dir=cache, progress=False)
    assert not stale.exists() and fresh.exists()  # a concurrent download in progress is left alone


def test_only_network_urls(cache: Path) -> None:
    with pytest.raises(ValueError, match="only http"):
        fetch("file:///etc/passwd", filename="passwd", cache_dir=cache)
