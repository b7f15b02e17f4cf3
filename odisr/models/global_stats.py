"""Image-global statistics inside a network, and how tiled inference supplies them.

Some SR networks pool over the whole image: CAMixer's channel attention (``out_CA``) multiplies every pixel's
features by a sigmoid of their image-wide mean. Run on a tile, that mean is the tile's, so a tiled output differs from
the whole-image one everywhere, not only at tile borders (measured on a 512×256 panorama with CAMixerSR-S ×4, tile 128:
−0.024 dB WS-PSNR and 58.7 dB between tiled and whole outputs; with the whole image's means given to every tile,
−0.001 dB and 76.4 dB).

Networks build such layers as :class:`GlobalAvgPool2d`. Outside a session it is ``adaptive_avg_pool2d(x, 1)``,
bit-identical to ``nn.AdaptiveAvgPool2d(1)`` (no parameters, so checkpoints are unaffected). Inside
:meth:`GlobalStats.recording` every layer stores its result for one image; inside :meth:`GlobalStats.replaying`
every layer returns the stored value, broadcast over the batch, instead of pooling its input. Sessions live in a
:class:`contextvars.ContextVar`, so concurrent threads sharing one model never see each other's statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GlobalAvgPool2d", "GlobalStats", "has_global_pooling"]


class GlobalStats:
    """The outputs of a network's :class:`GlobalAvgPool2d` layers for one image: layer → ``(1, C, 1, 1)`` tensor."""

    def __init__(self) -> None:
        self.values: dict[GlobalAvgPool2d, Tensor] = {}
        self._replay = False

    def __len__(self) -> int:
        return len(self.values)

    @contextmanager
    def recording(self) -> Iterator[GlobalStats]:
        """Within the context, forward passes (batch size 1) store each layer's pooled features here."""
        with _session(self, replay=False):
            yield self

    @contextmanager
    def replaying(self) -> Iterator[GlobalStats]:
        """Within the context, each recorded layer returns its stored features for every image of a batch.

        A layer that was not recorded raises ``KeyError`` (a replay must come from the same network).
        """
        with _session(self, replay=True):
            yield self

    @torch.compiler.disable  # eager inside a compiled network: the stored values are read when it runs
    def _pool(self, layer: GlobalAvgPool2d, x: Tensor) -> Tensor:
        if self._replay:
            if layer not in self.values:
                raise KeyError("no global statistics were recorded for this layer: record with the same network")
            value = self.values[layer]
            return value.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1)
        pooled = F.adaptive_avg_pool2d(x, 1)
        if x.shape[0] != 1:
            raise ValueError(f"global statistics are recorded from one image at a time, got a batch of {x.shape[0]}")
        self.values[layer] = pooled.detach()
        return pooled


_SESSION: ContextVar[GlobalStats | None] = ContextVar("odisr_global_stats", default=None)


@contextmanager
def _session(stats: GlobalStats, replay: bool) -> Iterator[None]:
    stats._replay = replay
    token = _SESSION.set(stats)
    try:
        yield
    finally:
        _SESSION.reset(token)


class GlobalAvgPool2d(nn.Module):
    """Mean over the spatial dims, ``(B, C, H, W) → (B, C, 1, 1)``, that a :class:`GlobalStats` session can supply."""

    def forward(self, x: Tensor) -> Tensor:
        stats = _SESSION.get()
        return F.adaptive_avg_pool2d(x, 1) if stats is None else stats._pool(self, x)


def has_global_pooling(net: nn.Module) -> bool:
    """True when ``net`` contains a :class:`GlobalAvgPool2d` (its tiled output depends on image-wide statistics)."""
    return any(isinstance(m, GlobalAvgPool2d) for m in net.modules())
