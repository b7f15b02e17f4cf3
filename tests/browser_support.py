"""Headless Chromium for tests that render a page (HTML reports, the 360° viewer of an exported tile pyramid).

The browser is Debian's ``chromium`` package (``.ci/run`` installs it; ``apt-get install chromium`` on a developer
machine). Tests that need it take the :func:`chromium` fixture, which skips with the reason when no browser is
installed. Pages are served over HTTP on 127.0.0.1 (:func:`serve`), because a page opened from ``file://`` cannot
fetch its own images into WebGL (cross-origin) and so renders differently from what a user sees.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: The flags this machine's headless Chromium needs: no sandbox (tests run as root), no GPU, and no background
#: connections (the network is closed: without these flags Chromium retries refused connections all the time).
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
#: Software WebGL (SwiftShader), for pages that draw with WebGL such as the Pannellum viewer.
WEBGL_FLAGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (``$ODISR_CHROMIUM`` first), or None."""
    candidates = (os.environ.get("ODISR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
    return next((path for name in candidates if name and (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; skips the test when none is installed."""
    path = find_chromium()
    if path is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium, or set $ODISR_CHROMIUM)")
    return path


def screenshot(
    browser: str,
    url: str,
    out: Path,
    *,
    size: tuple[int, int] = (1280, 800),
    wait_ms: int = 5000,
    flags: Sequence[str] = (),
    timeout: float = 120.0,
) -> np.ndarray:
    """Render ``url`` in headless ``browser`` and save a ``size`` (width, height) PNG screenshot to ``out``.

    ``wait_ms`` of virtual time lets the page's scripts run (and load images) before the capture.
    Returns the screenshot as an ``(height, width, 3)`` uint8 RGB array.

    Raises:
        subprocess.CalledProcessError / subprocess.TimeoutExpired: the browser failed or hung.
    """
    with tempfile.TemporaryDirectory(prefix="odisr-chromium-") as profile:
        cmd = [
            browser,
            *BASE_FLAGS,
            *flags,
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={out}",
            url,
        ]
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    return np.asarray(Image.open(out).convert("RGB"))


def blank_fraction(image: np.ndarray) -> float:
    """Share of the pixels that have the image's most common colour (1.0: a blank page)."""
    flat = image.reshape(-1, image.shape[-1])
    _, counts = np.unique(flat, axis=0, return_counts=True)
    return float(counts.max() / len(flat))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL ``http://…/``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
