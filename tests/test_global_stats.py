"""Global pooling layers whose image-wide statistics tiled inference can supply (odisr.models.global_stats).

Budget: < 2 s (tiny tensors and a two-layer network).
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from odisr.models.global_stats import GlobalAvgPool2d, GlobalStats, has_global_pooling


class _ChannelGate(nn.Module):
    """x · sigmoid(conv(mean(x))): the shape of CAMixer's channel attention."""

    def __init__(self) -> None:
        super().__init__()
        self.pool, self.conv = GlobalAvgPool2d(), nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(self.pool(x)))


def test_outside_a_session_it_is_adaptive_average_pooling_bit_for_bit() -> None:
    x = torch.rand(3, 5, 17, 23, generator=torch.Generator().manual_seed(0))
    assert torch.equal(GlobalAvgPool2d()(x), nn.AdaptiveAvgPool2d(1)(x))
    assert has_global_pooling(_ChannelGate()) and not has_global_pooling(nn.Conv2d(3, 3, 1))


def test_replay_gives_every_tile_the_recorded_image_statistics() -> None:
    torch.manual_seed(0)
    net = _ChannelGate()
    image = torch.rand(1, 4, 32, 32)
    stats = GlobalStats()
    with torch.no_grad(), stats.recording():
        whole = net(image)
    assert len(stats) == 1
    tiles = torch.cat([image[..., :16, :16], image[..., 16:, 16:]])  # a batch of two tiles
    with torch.no_grad():
        alone = net(tiles)
        with stats.replaying():
            replayed = net(tiles)
    torch.testing.assert_close(replayed[0], whole[0, :, :16, :16], rtol=0, atol=1e-6)
    torch.testing.assert_close(replayed[1], whole[0, :, 16:, 16:], rtol=0, atol=1e-6)
    assert (alone - replayed).abs().max() > 1e-3  # without the statistics each tile pools over itself
    assert torch.equal(net(tiles), alone)  # the session ended with its context


def test_sessions_are_per_thread_and_checked() -> None:
    net = _ChannelGate()
    stats = GlobalStats()
    with torch.no_grad(), stats.recording():
        net(torch.zeros(1, 4, 8, 8))
    x = torch.rand(1, 4, 8, 8)
    seen: dict[str, torch.Tensor] = {}

    def other_thread() -> None:  # runs while the main thread replays: must pool over its own input
        with torch.no_grad():
            seen["other"] = net(x)

    with torch.no_grad(), stats.replaying():
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        seen["main"] = net(x)
    with torch.no_grad():
        assert torch.equal(seen["other"], net(x))
    assert not torch.equal(seen["main"], seen["other"])
    with pytest.raises(ValueError, match="one image at a time"), stats.recording():
        net(torch.zeros(2, 4, 8, 8))
    with pytest.raises(KeyError, match="same network"), GlobalStats().replaying():
        net(x)
