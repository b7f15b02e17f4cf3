"""Enumerate the input images of a batch job: files, directories (recursive), globs, ``.zip`` / ``.tar(.gz|.bz2|.xz)``
archives and fsspec URLs (``s3://bucket/panos/*.jpg`` with the ``cloud`` extra).

Each image becomes a :class:`Source` ``(key, name, open)``:

``key``   the store key: a stable slug of the image's path relative to the input it was found under (see
          :func:`slugify`), unique within one enumeration;
``name``  what a person recognises: the path, the URL or ``"archive.zip!member"``;
``open``  a picklable callable returning the file's bytes, so a Dask worker (not the driver) reads the data.

Archives are read member by member and never extracted to disk. Members with an absolute path or a ``..``
component, and tar links, are not read at all: they become sources whose ``open`` raises :class:`SourceError`
with the reason, so the batch records them as failed like any other bad input.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import fsspec
from fsspec.core import url_to_fs

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_MAGIC = re.compile(r"[*?\[]")
_NOT_SLUG = re.compile(r"[^a-z0-9_-]")


class SourceError(ValueError):
    """An input that cannot be enumerated or read (missing path, unsafe archive member, unreadable archive)."""


class Source(NamedTuple):
    """One input image: store ``key``, display ``name`` and ``open() -> bytes``."""

    key: str
    name: str
    open: Callable[[], bytes]


# ---------------------------------------------------------------------------------------------------- openers
# Plain dataclasses (not closures) so that Dask can pickle them to the workers.


@dataclass(frozen=True)
class FileOpener:
    """Reads a whole file, local or remote (any fsspec URL)."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __call__(self) -> bytes:
        fs, path = url_to_fs(self.url, **self.storage_options)
        if _is_local(fs) and not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the reader forever
            raise SourceError(f"{self.url}: not a regular file (a directory, FIFO, socket or device); not read")
        with fs.open(path, "rb") as f:
            return f.read()


@dataclass(frozen=True)
class ZipMemberOpener:
    """Reads one member of a zip archive (the archive itself may be remote)."""

    archive: str
    member: str
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __call__(self) -> bytes:
        with fsspec.open(self.archive, "rb", **self.storage_options) as f, zipfile.ZipFile(f) as z:
            return z.read(self.member)


@dataclass(frozen=True)
class TarMemberOpener:
    """Reads one regular-file member of a tar archive, compressed or not (``r:*``).

    Compressed tars have no index: each read decompresses up to the member, so a ``.tar.gz`` of N images costs
    O(N²) decompression in total; prefer ``.zip`` or plain ``.tar`` for large batches.
    """

    archive: str
    member: str
    storage_options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __call__(self) -> bytes:
        with fsspec.open(self.archive, "rb", **self.storage_options) as f, tarfile.open(fileobj=f, mode="r:*") as t:
            data = t.extractfile(t.getmember(self.member))
            if data is None:
                raise SourceError(f"{self.archive}!{self.member}: not a regular file")
            return data.read()


@dataclass(frozen=True)
class Rejected:
    """Stands in for an input that must not be read; raises the recorded reason."""

    reason: str

    def __call__(self) -> bytes:
        raise SourceError(self.reason)


# ---------------------------------------------------------------------------------------------------- keys


def slugify(relpath: str) -> str:
    """Store key of an image's relative path (POSIX separators).

    The suffix of the file is dropped, the rest lowercased, ``/`` becomes ``__`` and any character outside
    ``[a-z0-9_-]`` becomes ``_``. When that changed anything beyond dropping the suffix (case, dots, spaces,
    non-ASCII…), ``-`` and the first 8 hex digits of ``sha1(relpath)`` are appended so that distinct paths keep
    distinct keys. Examples: ``"pano.png"`` → ``"pano"``; ``"Trip/Day 1.JPG"`` → ``"trip__day_1-<sha1[:8]>"``.
    """
    stem = _strip_suffix(relpath)
    slug = "__".join(_NOT_SLUG.sub("_", part.lower()) for part in stem.split("/"))
    return slug if slug.replace("__", "/") == stem else f"{slug}-{_short_hash(relpath)}"


#: Folder names that say what the images are (high-resolution, ground truth) rather than which benchmark they form.
ROLE_FOLDERS = frozenset({"hr", "gt", "ground_truth", "original", "originals", "images", "image", "img", "imgs"})


def dataset_name(name: str) -> str:
    """The benchmark an image belongs to, from its path or URL: the nearest enclosing folder (or archive, suffix
    dropped) that is not a :data:`ROLE_FOLDERS` name. ``".../Set5/HR/baby.png"`` → ``"Set5"``,
    ``"data/erp/pano.png"`` → ``"erp"``, ``"Set14.zip!HR/lenna.png"`` → ``"Set14"``; ``""`` when there is none.
    """
    for folder in reversed(re.split(r"[/\\!]", name)[:-1]):
        stem = next((folder[: -len(s)] for s in (*TAR_SUFFIXES, *ZIP_SUFFIXES) if folder.lower().endswith(s)), folder)
        if stem and not stem.endswith(":") and stem.lower() not in ROLE_FOLDERS:  # "s3:", "https:" are no folders
            return stem
    return ""


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _strip_suffix(path: str) -> str:
    for suffix in (*TAR_SUFFIXES, *ZIP_SUFFIXES):
        if path.lower().endswith(suffix):
            return path[: -len(suffix)]
    return posixpath.splitext(path)[0]


# ---------------------------------------------------------------------------------------------------- enumeration


class _Entry(NamedTuple):
    relpath: str
    name: str
    open: Callable[[], bytes]


def find_sources(inputs: Iterable[str | Path], *, storage_options: dict[str, Any] | None = None) -> list[Source]:
    """Every image under ``inputs``, in a deterministic order, with unique keys.

    An explicitly named file is always taken (a non-image file is then reported when it fails to decode);
    inside directories, globs and archives only files with an image suffix (:data:`IMAGE_SUFFIXES`) are taken
    and hidden files are skipped. Archives found in directories are opened too. The same file named twice is
    taken once; two different files whose keys collide both get ``-<sha1(name)[:8]>`` appended.

    Raises:
        SourceError: an input path does not exist or a glob matches nothing (before any work starts).
    """
    opts = dict(storage_options or {})
    entries: dict[str, _Entry] = {}
    for item in inputs:
        for entry in _expand(str(item), opts):
            entries.setdefault(entry.name, entry)
    return _assign_keys(list(entries.values()))


def _assign_keys(entries: list[_Entry]) -> list[Source]:
    by_key: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_key.setdefault(slugify(entry.relpath), []).append(entry)
    sources = []
    for key, group in by_key.items():
        for entry in group:
            unique = key if len(group) == 1 else f"{key}-{_short_hash(entry.name)}"
            sources.append(Source(unique, entry.name, entry.open))
    return sources


def _expand(item: str, opts: dict[str, Any]) -> Iterator[_Entry]:
    fs, path = url_to_fs(item, **opts)
    if _MAGIC.search(path):
        matches = sorted(p for p in fs.glob(path) if fs.isfile(p))
        if not matches:
            raise SourceError(f"{item}: the pattern matches no file")
        base = _glob_base(path)
        for p in matches:
            yield from _file_entries(fs, p, posixpath.relpath(p, base), opts, explicit=False)
    elif fs.isdir(path):
        for p in sorted(fs.find(path)):
            rel = posixpath.relpath(p, path)
            if not any(part.startswith(".") for part in rel.split("/")):
                yield from _file_entries(fs, p, rel, opts, explicit=False)
    elif fs.isfile(path):
        yield from _file_entries(fs, path, posixpath.basename(path), opts, explicit=True)
    else:
        raise SourceError(f"{item}: no such file or directory")


def _glob_base(pattern: str) -> str:
    parts = pattern.split("/")
    first_magic = next(i for i, part in enumerate(parts) if _MAGIC.search(part))
    return "/".join(parts[:first_magic]) or "/"


def _file_entries(fs: Any, path: str, rel: str, opts: dict[str, Any], *, explicit: bool) -> Iterator[_Entry]:
    url = path if _is_local(fs) else fs.unstrip_protocol(path)
    lower = path.lower()
    if lower.endswith(ZIP_SUFFIXES):
        yield from _archive_entries(url, rel, opts, _zip_members, ZipMemberOpener)
    elif lower.endswith(TAR_SUFFIXES):
        yield from _archive_entries(url, rel, opts, _tar_members, TarMemberOpener)
    elif explicit or _is_image_name(path):
        yield _Entry(rel, url, FileOpener(url, opts))


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _is_image_name(path: str) -> bool:
    name = posixpath.basename(path)
    return not name.startswith(".") and posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


# ---------------------------------------------------------------------------------------------------- archives

_MemberLister = Callable[[str, dict[str, Any]], list[tuple[str, bool]]]  # (member path, is a regular file)


def _archive_entries(
    url: str, rel: str, opts: dict[str, Any], list_members: _MemberLister, opener: type
) -> Iterator[_Entry]:
    """Entries of one archive; ``rel`` (the archive's relative path) minus its suffix prefixes the members' paths."""
    prefix = _strip_suffix(rel)
    try:
        members = list_members(url, opts)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        yield _Entry(prefix, url, Rejected(f"{url}: cannot read the archive ({exc})"))
        return
    for member, regular in members:
        name = f"{url}!{member}"
        wanted = _is_image_name(member) and not member.startswith("__MACOSX/")
        problem = _unsafe_member(member) or (None if regular or not wanted else "a link or special file")
        if problem:  # unsafe paths are reported even when not image-named: the archive deserves a look
            reason = f"{name}: {problem} in the archive; not read"
            yield _Entry(f"{prefix}/{member.lstrip('/')}", name, Rejected(reason))
        elif wanted:
            yield _Entry(f"{prefix}/{member}", name, opener(url, member, opts))


def _unsafe_member(member: str) -> str | None:
    """Why an archive member path is unsafe (absolute, drive letter or ``..``), or None."""
    if member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member):
        return "absolute path"
    if ".." in re.split(r"[/\\]", member):
        return "'..' in the member path (path traversal)"
    return None


def _zip_members(url: str, opts: dict[str, Any]) -> list[tuple[str, bool]]:
    with fsspec.open(url, "rb", **opts) as f, zipfile.ZipFile(f) as z:
        return [(info.filename, True) for info in z.infolist() if not info.is_dir()]


def _tar_members(url: str, opts: dict[str, Any]) -> list[tuple[str, bool]]:
    with fsspec.open(url, "rb", **opts) as f, tarfile.open(fileobj=f, mode="r:*") as t:
        return [(m.name, m.isfile()) for m in t.getmembers() if not m.isdir()]
