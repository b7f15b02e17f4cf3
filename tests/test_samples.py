"""odisr.samples and data/panoramas.json against the shared copies of the 8 sample panoramas.

Budget: ~2 s (hashes ~9 MB of images; one download of a 0.25 MB file over loopback).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from _weights_support import FileServer
from PIL import Image

from odisr.download import DownloadError, IntegrityError
from odisr.samples import MANIFEST, fetch_samples, panoramas


@pytest.fixture(scope="module")
def erp_dir(shared: Path) -> Path:
    return shared / "data" / "erp"


def test_manifest_matches_the_files(erp_dir: Path) -> None:
    samples = panoramas()
    assert sorted(p.file for p in samples.values()) == sorted(f.name for f in erp_dir.iterdir())
    for pano in samples.values():
        data = (erp_dir / pano.file).read_bytes()
        assert (pano.size, pano.sha256) == (len(data), hashlib.sha256(data).hexdigest()), pano.name
        with Image.open(erp_dir / pano.file) as im:
            assert im.size == (pano.width, pano.height) and pano.width == 2 * pano.height, pano.name
        assert pano.url.startswith("https://") and pano.licence and pano.attribution


def test_local_copies_are_verified_in_place(erp_dir: Path, monkeypatch) -> None:
    paths = fetch_samples(["vrview_petra", "horizonnet_demo"], source_dir=erp_dir)
    assert paths == [erp_dir / "vrview_petra.jpg", erp_dir / "horizonnet_demo.png"]
    monkeypatch.setenv("ODISR_DATA_DIR", str(erp_dir))
    assert fetch_samples("vrview_petra") == [erp_dir / "vrview_petra.jpg"]  # a single name, from the env
    assert len(fetch_samples()) == 8


def test_local_copies_into_dest(erp_dir: Path, tmp_path: Path) -> None:
    (path,) = fetch_samples(["hohonet_pano"], source_dir=erp_dir, dest=tmp_path / "out")
    assert path == tmp_path / "out" / "hohonet_pano.png"
    assert path.read_bytes() == (erp_dir / "hohonet_pano.png").read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hohonet_pano.png"]


def test_bad_local_copies(erp_dir: Path, tmp_path: Path) -> None:
    shutil.copyfile(erp_dir / "vrview_machu_picchu.jpg", tmp_path / "vrview_petra.jpg")  # wrong image, right name
    with pytest.raises(IntegrityError, match="is not the sample 'vrview_petra': sha256 is"):
        fetch_samples(["vrview_petra"], source_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"aframe_lake\.jpg not found; download it from https://"):
        fetch_samples(["aframe_lake"], source_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown sample panorama.*'petra'"):
        fetch_samples(["petra"], source_dir=tmp_path)


def test_download_through_a_manifest(erp_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The network path, with the manifest's URL pointed at a local server."""
    monkeypatch.delenv("ODISR_DATA_DIR", raising=False)
    monkeypatch.setenv("ODISR_HOME", str(tmp_path / "home"))
    srv = tmp_path / "srv"
    srv.mkdir()
    shutil.copyfile(erp_dir / "vrview_petra.jpg", srv / "petra.jpg")
    doc = json.loads(MANIFEST.read_text())
    with FileServer(srv) as server:
        entry = next(e for e in doc["panoramas"] if e["name"] == "vrview_petra")
        doc["panoramas"] = [{**entry, "url": server.url("petra.jpg")}]
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps(doc))
        (path,) = fetch_samples(manifest=manifest, progress=False)
        assert path == tmp_path / "home" / "samples" / "vrview_petra.jpg"
        assert path.read_bytes() == (erp_dir / "vrview_petra.jpg").read_bytes()
    monkeypatch.setenv("ODISR_OFFLINE", "1")
    assert fetch_samples(manifest=manifest) == [path]  # cached: no network needed
    with pytest.raises(DownloadError, match=r"ODISR_OFFLINE.*or pass source_dir="):
        fetch_samples(["aframe_lake"])
