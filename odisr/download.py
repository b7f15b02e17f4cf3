"""Pinned, cached, verified and atomic downloads (weights, sample panoramas).

:func:`fetch` transfers a file once with :mod:`pooch` (HTTP, progress bar, temporary file + rename), checks it
against its pins (size, sha256, git blob SHA-1) and keeps it in a cache directory. Later calls re-verify the cached
copy without the network; the verification is remembered in a small stamp file next to it, keyed by size and
mtime, so that a multi-GB cache is not re-hashed on every run.

Environment:

``$ODISR_HOME``     cache root (default: the platform's user cache directory, e.g. ``~/.cache/odisr``).
``$ODISR_OFFLINE``  ``1`` never touches the network: files must already be in the cache (or be passed by path).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

log = logging.getLogger(__name__)

ENV_HOME = "ODISR_HOME"
ENV_OFFLINE = "ODISR_OFFLINE"
_CHUNK = 1 << 20
_PARTIAL = ".partial-"  # prefix of the private staging directory of one download


class DownloadError(OSError):
    """A file could not be obtained: no network, offline mode, HTTP error or interrupted transfer."""


class IntegrityError(DownloadError):
    """A file does not match its pinned size or hash (corrupt transfer, or the upstream file changed)."""


def cache_root() -> Path:
    """Root of odisr's cache: ``$ODISR_HOME`` if set, else the user cache directory ``odisr``."""
    env = os.environ.get(ENV_HOME, "").strip()
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("odisr"))


def is_offline() -> bool:
    """True when ``$ODISR_OFFLINE`` is set to anything but ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Digests:
    """Size (bytes) and hashes (lower-case hex) of one file."""

    size: int
    sha256: str
    git_blob_sha1: str


def file_digests(path: str | os.PathLike[str]) -> Digests:
    """Size, sha256 and git blob SHA-1 of a file, in one read.

    The git blob SHA-1 is what GitHub stores for a file: ``sha1(b"blob <size>\\0" + bytes)``.
    """
    size = os.path.getsize(path)
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return Digests(size, sha256.hexdigest(), sha1.hexdigest())


@dataclass(frozen=True)
class Pin:
    """Expected size and hashes of a file; ``None`` fields are not checked."""

    sha256: str | None = None
    git_blob_sha1: str | None = None
    size: int | None = None

    def mismatches(self, actual: Digests) -> list[str]:
        """Human-readable differences between the pin and ``actual`` (empty when the file matches)."""
        problems = []
        for field, expected in asdict(self).items():
            got = getattr(actual, field)
            if expected is not None and str(expected).lower() != str(got):
                problems.append(f"{field} is {got}, expected {expected}")
        return problems


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified.json")


def _cached_digests(path: Path) -> Digests:
    """Digests of ``path``, hashed only when its size or mtime changed since the last verification."""
    stat = path.stat()
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        record = json.loads(_stamp_path(path).read_text())
        if (record["size"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return Digests(record["size"], record["sha256"], record["git_blob_sha1"])
    digests = file_digests(path)
    _remember(path, digests)
    return digests


def _remember(path: Path, digests: Digests) -> None:
    """Write the verification stamp of ``path`` (best effort: a read-only cache is simply re-hashed)."""
    record = {**asdict(digests), "mtime_ns": path.stat().st_mtime_ns}
    try:
        with atomic_path(_stamp_path(path)) as tmp:
            tmp.write_text(json.dumps(record))
    except OSError as exc:
        log.debug("cannot write verification stamp for %s: %s", path, exc)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed onto it when the block succeeds and removed otherwise.

    Readers never see a half-written ``target``: the rename is atomic on one filesystem.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not created here (unlike mkstemp's 0600 file): the writer creates it with the user's umask.
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def verify(path: str | os.PathLike[str], pin: Pin) -> list[str]:
    """Problems of the file at ``path`` with respect to ``pin`` (empty list: the file is good).

    Uses the remembered verification when size and mtime are unchanged.
    """
    return pin.mismatches(_cached_digests(Path(path)))


def fetch(
    url: str,
    *,
    filename: str,
    sha256: str | None = None,
    git_blob_sha1: str | None = None,
    size: int | None = None,
    cache_dir: str | os.PathLike[str],
    progress: bool = True,
    hint: str = "or pass a local copy of the file instead",
) -> Path:
    """Path of ``cache_dir/filename``, downloading ``url`` there first when it is absent or corrupt.

    Parameters
    ----------
    url:
        HTTP(S) address of the file.
    filename:
        Name of the file in ``cache_dir`` (may contain sub-directories).
    sha256, git_blob_sha1, size:
        Pins (lower-case hex digests; size in bytes). A download that does not match them is discarded.
    cache_dir:
        Directory of the cached file (created when missing).
    progress:
        Show a tqdm progress bar while downloading.
    hint:
        What else the user may do when the file cannot be downloaded (appended to the error message).

    Raises
    ------
    ValueError
        ``url`` is not an http(s)/ftp URL.
    IntegrityError
        The downloaded file does not match its pins (nothing is left in the cache).
    DownloadError
        No network, ``$ODISR_OFFLINE=1``, HTTP error or interrupted transfer. The message names the URL and the
        exact path where the file can be put by hand.
    """
    if urlsplit(url).scheme not in ("http", "https", "ftp"):
        raise ValueError(f"cannot download {url!r}: only http(s) and ftp URLs are supported")
    dest = Path(cache_dir) / filename
    pin = Pin(sha256=sha256, git_blob_sha1=git_blob_sha1, size=size)
    if dest.is_file():
        problems = verify(dest, pin)
        if not problems:
            return dest
        log.warning("cached file %s is corrupt (%s); downloading it again", dest, "; ".join(problems))
        dest.unlink()
        _stamp_path(dest).unlink(missing_ok=True)
    if is_offline():
        raise DownloadError(_manual_help(f"${ENV_OFFLINE} is set, so {url} was not downloaded", dest, pin, hint))
    _download(url, dest, pin, progress=progress, hint=hint)
    return dest


def _download(url: str, dest: Path, pin: Pin, *, progress: bool, hint: str) -> None:
    """Download ``url`` to ``dest`` atomically: into a private directory beside it, verify, then rename."""
    import pooch
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep_partials(dest.parent)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=_PARTIAL))
    log.info("downloading %s to %s", url, dest)
    try:
        with _quiet_pooch():
            known_hash = f"sha256:{pin.sha256}" if pin.sha256 else None
            staged = Path(pooch.retrieve(url, known_hash, fname=dest.name, path=staging, progressbar=progress))
        digests = file_digests(staged)
        problems = pin.mismatches(digests)
        if problems:
            raise IntegrityError(f"download of {url} does not match its pin: {'; '.join(problems)}; file discarded")
        os.replace(staged, dest)
        _remember(dest, digests)
    except ValueError as exc:  # pooch's sha256 mismatch (the URL was validated by fetch)
        raise IntegrityError(f"download of {url} does not match its pin ({exc}); file discarded") from exc
    except requests.RequestException as exc:
        raise DownloadError(_manual_help(f"could not download {url} ({_reason(exc)})", dest, pin, hint)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sweep_partials(directory: Path, max_age_s: float = 86_400) -> None:
    """Remove staging directories that a killed process left behind (older than ``max_age_s`` seconds)."""
    now = time.time()
    for stale in directory.glob(f"{_PARTIAL}*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    # pooch logs at INFO to stderr and suggests its own API ("use this value as known_hash"); odisr logs itself.
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    """A requests error on one line, e.g. ``ConnectionError: ... Connection refused``."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _manual_help(what: str, dest: Path, pin: Pin, hint: str) -> str:
    pins = ", ".join(f"{k} {v}" for k, v in asdict(pin).items() if v is not None) or "no pin"
    return f"{what}. To do without the download, put the file by hand at {dest} ({pins}), {hint}."
