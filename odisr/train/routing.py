"""What CAMixer's routing did in a training step: the training mask mean and two inference attention fractions.

In training mode every CAMixer draws a hard Gumbel-softmax mask per window (1 = attention) with straight-through
gradients, and the ratio loss ``2γ·(mean mask − 0.5)²`` (spec ``CAMIXERSR.md`` §4) drives the **mask mean**
towards 0.5. At inference the same network keeps ``keep = min(int(N·r·2γ), N)`` windows per block and image
(``N`` at γ = 1), ``r`` being the fraction of windows whose attention probability exceeds 0.5
(:func:`odisr.models.archs.camixer_common.keep_counts`); ``keep / N`` is the **attention fraction** the trained
network will spend under odisr's deterministic rule. Both are read here from what each mixer records in a forward
pass: the mask from its ``selection``, the probabilities from its ``scores``.

The two need not agree. The Gumbel sample takes the probabilities as logits, so a window goes to attention with
probability ``σ(2p − 1)`` ∈ [0.27, 0.73], and the loss pins the mean of that to 0.5. The official (noisy) inference
sets ``r`` to the mean of such a sample, so it keeps ``2γ·(mask mean)·N ≈ γN`` windows on average. odisr's
noise-free rule counts the windows with ``p > 0.5`` instead, which the loss does not control: a block whose windows
all have ``p ≈ 1`` (decision probability 0.73) balances three blocks with ``p ≈ 0.35`` (0.43 each), so the mask mean
is 0.5 while keep/N is 0.25 — observed for 700 iterations in the README's CPU run.

So the probe also records the **official fraction**: the share of windows the official inference keeps *in
expectation*, ``min(2γ·r̄, 1)`` with ``r̄ = mean σ(2p − 1)`` over a block's windows (the expected Gumbel decision
mean; 1 at γ = 1), averaged over blocks and images. As the ratio loss pulls the mask mean to 0.5 it tends to γ: this
is the quantity the paper's loss controls, and the one ``metrics.csv`` shows moving towards γ.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odisr.models.archs.camixer_common import CAMixer, keep_counts

__all__ = ["RoutingProbe", "official_fraction"]


def official_fraction(p_attn: Tensor, ratio: float) -> Tensor:
    """Expected share of windows the official inference keeps, for attention probabilities ``p_attn`` ``(B, N)``.

    The official code draws a hard Gumbel-softmax sample with the probabilities ``(p, 1 − p)`` as logits, so a window
    is chosen with probability ``σ(2p − 1)``, sets ``r`` to the chosen share and keeps ``min(int(N·r·2γ), N)``
    windows (spec ``CAMIXERSR.md`` §3.3). Returns ``mean_b min(2γ·E[r_b], 1)`` (scalar tensor; 1 at γ = 1),
    ignoring only the integer rounding.
    """
    if ratio == 1:
        return torch.ones((), device=p_attn.device)
    expected_r = torch.sigmoid(2 * p_attn.float() - 1).mean(1)
    return (2 * ratio * expected_r).clamp(max=1).mean()


class RoutingProbe:
    """Reads the routing of every :class:`CAMixer` in ``net`` after a forward pass (a no-op for networks without).

    :meth:`read` gives ``(mask_mean, attention_fraction, official_fraction)`` as a float tensor ``(3,)``, each
    averaged over blocks and images (every block has the same number of windows), or None without CAMixers. It
    reads what each mixer records in a forward pass — its mask (``selection``) and its predictor's attention
    probabilities (``scores``) — so it changes nothing in the network (no hooks: an EMA copy stays plain).
    """

    def __init__(self, net: nn.Module) -> None:
        self.mixers = [m for m in net.modules() if isinstance(m, CAMixer)]
        self._read: list[Tensor] = []  # the scores read last: each forward pass can be read once

    def read(self) -> Tensor | None:
        """``(mask_mean, attention_fraction, official_fraction)`` of the last forward pass, or None without
        CAMixers; raises ``RuntimeError`` when no forward pass ran since the last read."""
        if not self.mixers:
            return None
        scores = [m.scores for m in self.mixers]
        fresh = all(s is not None for s in scores) and not any(s is r for s, r in zip(scores, self._read))
        if not fresh or any(m.selection is None for m in self.mixers):
            raise RuntimeError("no routing recorded: run a forward pass of the network first")
        self._read = scores
        masks = torch.stack([m.selection.detach().float().mean() for m in self.mixers])
        fractions = [self._fractions(s.flatten(1), m.ratio) for s, m in zip(scores, self.mixers, strict=True)]
        return torch.cat([masks.mean()[None], torch.stack(fractions).mean(0)])

    @staticmethod
    def _fractions(p_attn: Tensor, ratio: float) -> Tensor:
        """``(odisr keep/N, official expected keep/N)`` for one block's probabilities ``(B, N)``."""
        odisr = keep_counts(p_attn, ratio).float().mean() / p_attn.shape[1]
        return torch.stack([odisr, official_fraction(p_attn, ratio)])
