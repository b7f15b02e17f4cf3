"""Test support for the download / weights / loading / ``odisr models`` tests.

* :class:`FileServer`: a real HTTP server on 127.0.0.1 (random port, own thread) serving one directory, counting
  requests, with a ``/truncated/<file>`` route that announces the full length and closes the connection halfway.
* :class:`TinySR`: a real (tiny) super-resolution network — conv + PixelShuffle — registered as architecture
  ``tinysr-test`` with named models, so loading can be tested without the real architectures.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odisr.models.base import SRModel
from odisr.models.registry import (
    Architecture,
    ModelSpec,
    StateDict,
    WeightFile,
    architectures,
    available,
    get_spec,
    register_architecture,
    register_model,
)


class _Handler(SimpleHTTPRequestHandler):
    server: FileServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server.requests.append(self.path)
        if self.path.startswith("/truncated/"):
            self._send_truncated(Path(self.directory) / self.path.removeprefix("/truncated/"))
        else:
            super().do_GET()

    def _send_truncated(self, path: Path) -> None:
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


class FileServer(ThreadingHTTPServer):
    """Serve ``directory`` over HTTP on 127.0.0.1; use as a context manager; ``stop()`` takes it down."""

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def stop(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
        self.server_close()

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TinySR(SRModel):
    """A 3×3 conv to ``3·s²`` channels followed by PixelShuffle(s): ``(B, 3, h, w) → (B, 3, s·h, s·w)``."""

    window_size = 1
    architecture = "tinysr-test"

    def __init__(self, scale: int = 2, n_feats: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Conv2d(n_feats, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(self.head(x)))


class TinyMixer(TinySR):
    """TinySR plus a ``gate`` parameter and a content-aware ratio γ (stored only: enough to test ``ratio=``)."""

    content_aware = True
    architecture = "tinymixer-test"

    def __init__(self, scale: int = 2, n_feats: int = 3) -> None:
        super().__init__(scale, n_feats)
        self.gate = nn.Parameter(torch.zeros(1))
        self.ratio = 1.0

    def set_ratio(self, ratio: float) -> None:
        self.ratio = ratio


_TINY_KEYS = {"head.weight", "head.bias", "body.weight", "body.bias"}


def _detect(keys: set[str], sd: StateDict) -> dict[str, Any] | None:
    if set(sd) != keys:
        return None
    scale = round((sd["body.weight"].shape[0] / 3) ** 0.5)
    return {"scale": scale, "n_feats": sd["head.weight"].shape[0]}


def register_tiny() -> None:
    """Register the test architectures and models once per session (the registry is global).

    Models: ``tinysr-test-user`` (user-supplied weights) and ``tinymixer-test-x2`` (content-aware, no weight file).
    """
    if "tinysr-test" in architectures():
        return
    register_architecture(Architecture("tinysr-test", build=TinySR, detect=functools.partial(_detect, _TINY_KEYS)))
    register_architecture(
        Architecture("tinymixer-test", build=TinyMixer, detect=functools.partial(_detect, _TINY_KEYS | {"gate"}))
    )
    register_model(
        ModelSpec(
            "tinysr-test-user",
            "tinysr-test",
            {"scale": 2, "n_feats": 4},
            scale=2,
            weights=WeightFile(filename="tiny_user.pth", instructions="Ask the tiny lab for tiny_user.pth."),
        )
    )
    register_model(ModelSpec("tinymixer-test-x2", "tinymixer-test", {"scale": 2, "n_feats": 4}, scale=2))


def register_downloadable(name: str, scale: int, url: str, sha256: str, filename: str) -> ModelSpec:
    """Register (once per name: use one name per test module) a tinysr model whose weights are pinned at ``url``."""
    register_tiny()
    if name in available():
        return get_spec(name)
    weights = WeightFile(filename=filename, url=url, sha256=sha256)
    return register_model(ModelSpec(name, "tinysr-test", {"scale": scale, "n_feats": 4}, scale=scale, weights=weights))


def tiny_state_dict(scale: int = 2, n_feats: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return TinySR(scale=scale, n_feats=n_feats).state_dict()
