"""Files that are either whole or absent: written to a temporary name in the same folder, then renamed
(:func:`odisr.download.atomic_path`, shared with the weights cache).

``os.replace`` is atomic on POSIX filesystems (and on Windows for files of one volume), so a reader — or the next
``odisr export`` deciding what is done — sees the old state or the complete new file, never a truncated one. A kill
leaves at most a ``.<name>.<hex>.tmp`` file behind, which :func:`clear` removes before the output is redone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from odisr.download import atomic_path as atomic

__all__ = ["atomic", "clear", "write_bytes"]


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic`."""
    with atomic(path) as tmp:
        tmp.write_bytes(data)


def clear(path: Path) -> None:
    """Make way for a new output at ``path``: remove it when it is a folder (a partial or outdated tile set), and the
    temporary files a killed writer left next to it. A file stays until its replacement is renamed over it."""
    if path.is_dir():
        shutil.rmtree(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
