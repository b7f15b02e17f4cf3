"""Install like a user: a wheel built from a clean copy of the checkout, installed (not editable) into a fresh venv,
runs ``odisr evaluate --fetch-samples`` offline on the 8 sample panoramas with the presets and the manifest it
ships (configs/ and data/ inside the package, not the checkout's).

The fresh venv reuses the test environment's dependencies (a ``.pth`` line naming its site-packages: no second
torch download) and gets odisr with ``pip install --no-deps --no-index``; the wheel is built offline with the test
environment's setuptools. Budget: ~1 min on 2 cores (most of it the evaluation of 8 panoramas with bicubic).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import zarr

from odisr.samples import panoramas

REPO = Path(__file__).resolve().parents[1]


def clean_copy(dest: Path) -> Path:
    """The checkout's files as a fresh clone would have them (tracked and new files, nothing ignored or built)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("the wheel test copies the checkout with git; not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():  # a file deleted in the working tree is still listed as cached
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", out,
         src],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = out.glob("odisr-*.whl")
    return wheel


def fresh_venv(path: Path) -> Path:
    """A venv without odisr whose imports fall back to this environment's site-packages (the dependencies)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "_odisr_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    return python


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installs_and_evaluates_the_samples_offline(shared, tmp_path):
    erp = shared / "data" / "erp"
    wheel = build_wheel(clean_copy(tmp_path / "src"), tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"odisr/configs/{p.name}" for p in (REPO / "configs").iterdir() if p.is_file()}
    assert configs and configs <= names, sorted(configs - names)  # every file of configs/, train presets included
    assert "odisr/data/panoramas.json" in names and "pipelines/batch_sr.py" in names

    python = fresh_venv(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ODISR_SHARED")}
    env |= {"ODISR_OFFLINE": "1", "ODISR_DATA_DIR": str(erp), "ODISR_HOME": str(tmp_path / "home")}
    where = subprocess.run(
        [python, "-c", "import odisr, odisr.config as c, odisr.samples as s; print(odisr.__file__, c.PRESETS_DIR, "
                       "s.MANIFEST, sep='\\n')"],
        cwd=tmp_path, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    installed = Path(tmp_path / "venv").resolve()
    assert all(Path(p).resolve().is_relative_to(installed) for p in where), where  # not the checkout's files

    store = tmp_path / "samples.zarr"
    done = subprocess.run(
        [python.with_name("odisr"), "evaluate", "--fetch-samples", "--model", "bicubic", "--scale", "4",
         "--out", store, "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "8 done, 0 failed" in done.stderr
    root = zarr.open_group(str(store), mode="r")
    pairs = {key: dict(image["bicubic-x4"].attrs) for key, image in root["images"].groups()}
    assert sorted(pairs) == sorted(panoramas())
    for attrs in pairs.values():
        assert attrs["status"] == "complete" and attrs["metrics"]["ws_psnr"] > 20
