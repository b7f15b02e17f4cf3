"""Sample 360° panoramas: the equirectangular images listed in ``data/panoramas.json``.

The images are not shipped (licences): :func:`fetch_samples` downloads them once from their source repositories
into ``$ODISR_HOME/samples``, pinned by sha256 and size, or takes local copies from ``source_dir`` /
``$ODISR_DATA_DIR`` (offline use), verified against the same pins.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from odisr.download import IntegrityError, Pin, atomic_path, cache_root, fetch, file_digests
from odisr.resources import shipped_folder

ENV_DATA_DIR = "ODISR_DATA_DIR"
MANIFEST = shipped_folder("data") / "panoramas.json"


@dataclass(frozen=True)
class Panorama:
    """One sample panorama of the manifest (``width × height`` pixels, 2:1 ERP; ``size`` in bytes)."""

    name: str
    file: str
    url: str
    sha256: str
    size: int
    width: int
    height: int
    licence: str
    attribution: str
    repository: str = ""
    path: str = ""
    path_confirmed: bool = False
    scene: str = ""

    @property
    def pin(self) -> Pin:
        return Pin(sha256=self.sha256, size=self.size)


@cache
def panoramas(manifest: Path = MANIFEST) -> dict[str, Panorama]:
    """The manifest's panoramas by name, in manifest order."""
    entries = json.loads(Path(manifest).read_text(encoding="utf-8"))["panoramas"]
    return {e["name"]: Panorama(**e) for e in entries}


def fetch_samples(
    names: str | Iterable[str] | None = None,
    *,
    dest: str | os.PathLike[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    manifest: str | os.PathLike[str] = MANIFEST,
) -> list[Path]:
    """Paths of verified sample panoramas (all of them when ``names`` is None), in the order asked.

    Parameters
    ----------
    names:
        Sample names (see :func:`panoramas`), e.g. ``["horizonnet_demo", "aframe_lake"]``.
    dest:
        Directory for the files (default ``$ODISR_HOME/samples``). With ``source_dir`` and no ``dest`` the
        verified local files are returned where they are.
    source_dir:
        Folder holding local copies named as in the manifest's ``file`` field (default ``$ODISR_DATA_DIR``);
        then the network is never used.
    progress:
        Progress bars while downloading.
    manifest:
        Another manifest of the same format (default: odisr's ``data/panoramas.json``).

    Raises
    ------
    KeyError
        Unknown sample name.
    FileNotFoundError
        A sample missing from ``source_dir``.
    odisr.download.IntegrityError
        A file that does not match its sha256/size pin.
    odisr.download.DownloadError
        No network (the message says where to put the file by hand).
    """
    chosen = _select(panoramas(Path(manifest)), [names] if isinstance(names, str) else names)
    source_dir = source_dir or os.environ.get(ENV_DATA_DIR) or None
    if source_dir is not None:
        return [_local(p, Path(source_dir), dest) for p in chosen]
    cache_dir = Path(dest) if dest is not None else cache_root() / "samples"
    hint = f"or pass source_dir= (or set ${ENV_DATA_DIR}) to a folder holding the sample files"
    return [
        fetch(p.url, filename=p.file, sha256=p.sha256, size=p.size, cache_dir=cache_dir, progress=progress, hint=hint)
        for p in chosen
    ]


def _select(known: dict[str, Panorama], names: Iterable[str] | None) -> list[Panorama]:
    if names is None:
        return list(known.values())
    names = list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown sample panorama(s) {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names]


def _local(pano: Panorama, source_dir: Path, dest: str | os.PathLike[str] | None) -> Path:
    """The verified local copy of ``pano``, copied atomically into ``dest`` when given."""
    src = source_dir / pano.file
    if not src.is_file():
        raise FileNotFoundError(
            f"sample {pano.name!r}: {src} not found; download it from {pano.url} into {source_dir}, "
            f"or drop source_dir / ${ENV_DATA_DIR} to download into the cache"
        )
    problems = pano.pin.mismatches(file_digests(src))
    if problems:
        raise IntegrityError(f"{src} is not the sample {pano.name!r}: {'; '.join(problems)}")
    if dest is None:
        return src
    target = Path(dest) / pano.file
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return target
