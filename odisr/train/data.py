"""Training data: HR/LR panorama pairs held in memory, random ERP patches cut from them, batches per rank.

Pairs
    Every panorama is read once (the same sources as ``odisr run``, plus ``samples:<split>`` for the named splits
    of the sample panoramas in ``data/erp_split.json``), checked to be 2:1, and degraded once as a whole —
    ERP-aware bicubic or OSRT's fisheye (:mod:`odisr.degrade`) — so that patches are cut from exactly the LR images
    ``odisr evaluate`` scores. The pairs stay decoded in memory (``1.25 × 3`` bytes per HR pixel at ×2, in every
    process of a distributed run): the training set must fit in memory.

Patches (:class:`PatchSampler`)
    A patch is ``patch × patch`` LR pixels at LR row ``y0`` and column ``x0`` and the aligned ``s·patch`` HR square.
    ``sampling: erp`` draws every patch position with the same probability (uniform over pixels);
    ``sampling: sphere`` weights a position by the patch's area on the sphere, ``Σ cos θ(j)`` over its rows
    (:func:`odisr.erp.latitude_weights`), so that polar rows, over-represented by the projection, are drawn as
    often as their share of the sphere. Panoramas are drawn in proportion to their total weight (bigger ones more
    often). Only augmentations that keep ERP geometry valid are used: a horizontal flip (a mirrored panorama is
    still a panorama) and a longitude roll (``x0`` anywhere in ``[0, w)``; columns wrap around the 180° meridian).
    No vertical flip or 90° rotation: they would move the poles.

Determinism and sharding
    Draws come from one :class:`numpy.random.Generator` (PCG64) whose state is saved with the checkpoints, so a
    resumed run draws the same patches. Every rank draws the whole global batch and cuts only its own slice
    (:meth:`odisr.train.distributed.Dist.shard`), so ``N`` ranks see together exactly the batch one process sees.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from odisr.degrade import degrade
from odisr.erp import NotERPError, check_erp, condition_map, latitude_weights
from odisr.io import ImageReadError, read_image
from odisr.sources import Source, SourceError, find_sources

__all__ = ["SPLITS", "Batch", "DataError", "PanoramaPair", "PatchSampler", "PatchSpec", "load_pairs", "make_batch"]

log = logging.getLogger(__name__)

#: The named train/val split of the sample panoramas (sources ``samples:train``, ``samples:val``).
SPLITS = Path(__file__).resolve().parents[2] / "data" / "erp_split.json"
_SAMPLES_PREFIX = "samples:"


class DataError(ValueError):
    """Training data that cannot be used (no readable panorama, a panorama smaller than the patch)."""


@dataclass(frozen=True)
class PanoramaPair:
    """One panorama: ``hr`` ``(H, W, 3)`` cropped to a multiple of the scale and its ``lr`` ``(H/s, W/s, 3)``,
    both uint8 or uint16 (``maxval`` maps them to [0, 1])."""

    name: str
    hr: np.ndarray
    lr: np.ndarray

    @property
    def maxval(self) -> float:
        return float(np.iinfo(self.hr.dtype).max)


def split_names(split: str, manifest: Path = SPLITS) -> list[str]:
    """Sample names of ``split`` in the split manifest; ``DataError`` naming the known splits otherwise."""
    splits = json.loads(manifest.read_text(encoding="utf-8"))["splits"]
    if split not in splits:
        known = ", ".join(_SAMPLES_PREFIX + s for s in splits)
        raise DataError(f"{_SAMPLES_PREFIX}{split}: unknown split; known: {known}")
    return list(splits[split])


def find_inputs(items: Sequence[str]) -> list[Source]:
    """The images of ``items``: ``samples:<split>`` (fetched or taken from ``$ODISR_DATA_DIR``, verified) or
    anything :func:`odisr.sources.find_sources` accepts.

    Raises:
        odisr.sources.SourceError: a path that does not exist, a glob matching nothing.
        DataError: an unknown split.
    """
    from odisr.samples import fetch_samples

    expanded: list[str] = []
    for item in items:
        if item.startswith(_SAMPLES_PREFIX):
            expanded += [str(p) for p in fetch_samples(split_names(item.removeprefix(_SAMPLES_PREFIX)))]
        else:
            expanded.append(item)
    return find_sources(expanded)


def load_pairs(
    items: Sequence[str], scale: int, method: str, *, what: str, progress: bool = True
) -> list[PanoramaPair]:
    """Read and degrade every panorama of ``items`` (``what`` names the set in messages: "train", "val").

    Unreadable or non-2:1 files are skipped with a warning naming each; the rest are used.

    Raises:
        DataError: no usable panorama at all (every problem listed).
        odisr.sources.SourceError: a path that does not exist.
    """
    pairs, problems = [], []
    for src in tqdm(find_inputs(items), desc=f"{what} panoramas", unit="image", disable=not progress):
        try:
            image = read_image(src.open(), name=src.name)
            check_erp(image, name=src.name)
        except (ImageReadError, NotERPError, SourceError, OSError) as exc:
            problems.append(str(exc))
            log.warning("%s panorama skipped: %s", what, exc)
            continue
        hr, lr = degrade(image, scale, method)
        pairs.append(PanoramaPair(src.name, np.ascontiguousarray(hr), lr))
    if not pairs:
        raise DataError(f"no usable {what} panorama in {list(items)}" + "".join(f"\n  {p}" for p in problems))
    return pairs


# ---------------------------------------------------------------------------------------------------- sampling
@dataclass(frozen=True)
class PatchSpec:
    """Where one patch is cut: panorama index, LR top row ``y0`` and left column ``x0`` (wraps), mirrored or not."""

    image: int
    y0: int
    x0: int
    flip: bool


class PatchSampler:
    """Random patch positions over panoramas of LR sizes ``shapes`` ``[(h, w), ...]`` (module docstring).

    Raises:
        DataError: a panorama smaller than the patch.
    """

    def __init__(
        self, shapes: Sequence[tuple[int, int]], patch: int, *, sampling: str, flip: bool, roll: bool, seed: int
    ) -> None:
        small = [i for i, (h, w) in enumerate(shapes) if h < patch or w < patch]
        if small:
            raise DataError(f"LR panoramas {small} (sizes {[shapes[i] for i in small]}) are smaller than the "
                            f"{patch} px patch; lower data.patch")  # fmt: skip
        self.patch, self.flip, self.roll = patch, flip, roll
        self.widths = np.array([w if roll else w - patch + 1 for _, w in shapes])
        self.row_cdfs, totals = [], []
        for (h, _), width in zip(shapes, self.widths):
            area = _patch_areas(h, patch) if sampling == "sphere" else np.full(h - patch + 1, float(patch))
            totals.append(area.sum() * width)
            self.row_cdfs.append(np.cumsum(area) / area.sum())
        self.image_probs = np.asarray(totals) / np.sum(totals)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def draw(self, n: int) -> list[PatchSpec]:
        """``n`` patch positions (the whole global batch: the same on every rank)."""
        images = self.rng.choice(len(self.image_probs), size=n, p=self.image_probs)
        u = self.rng.random(n)
        rows = [min(int(np.searchsorted(self.row_cdfs[i], v, side="right")), len(self.row_cdfs[i]) - 1)
                for i, v in zip(images, u)]  # fmt: skip
        cols = self.rng.integers(self.widths[images])
        flips = self.rng.integers(2, size=n) if self.flip else np.zeros(n, dtype=int)
        return [PatchSpec(int(i), y, int(x), bool(f)) for i, y, x, f in zip(images, rows, cols, flips)]

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (plain ints and strings: loads with ``torch.load(weights_only=True)``)."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def _patch_areas(height: int, patch: int) -> np.ndarray:
    """``Σ cos θ(j)`` over the rows of a patch starting at each row ``0 … height − patch``."""
    cumulative = np.concatenate([[0.0], np.cumsum(latitude_weights(height))])
    return cumulative[patch:] - cumulative[: height - patch + 1]


# ---------------------------------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class Batch:
    """One rank's share of a global batch, on the training device.

    ``lr`` ``(b, 3, p, p)`` and ``hr`` ``(b, 3, s·p, s·p)`` float32 in [0, 1]; ``condition`` ``(b, 1, p, p)`` the
    cos-latitude of each LR pixel's absolute row (CAMixerOSR's input); ``row_weights`` ``(b, 1, s·p, 1)`` the
    WS-PSNR weight of each HR patch row's absolute row in its panorama; ``weight_mean`` the mean of those weights
    over the **global** batch (normalises the latitude-weighted loss identically on every rank).
    """

    lr: torch.Tensor
    hr: torch.Tensor
    condition: torch.Tensor
    row_weights: torch.Tensor
    weight_mean: float


def cut(pair: PanoramaPair, spec: PatchSpec, patch: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(lr, hr)`` patches of ``spec`` (``(p, p, 3)``, ``(s·p, s·p, 3)``): columns wrap around in longitude;
    mirrored when ``spec.flip``. Views of the panorama where the patch does not cross the 180° meridian."""
    hp = patch * scale
    lr = _wrapped_columns(pair.lr[spec.y0 : spec.y0 + patch], spec.x0, patch)
    hr = _wrapped_columns(pair.hr[spec.y0 * scale : spec.y0 * scale + hp], spec.x0 * scale, hp)
    return (lr[:, ::-1], hr[:, ::-1]) if spec.flip else (lr, hr)


def _wrapped_columns(rows: np.ndarray, x0: int, width: int) -> np.ndarray:
    """Columns ``x0 … x0 + width − 1`` of ``rows`` ``(h, W, …)``, modulo W (a view unless they wrap)."""
    w = rows.shape[1]
    if x0 + width <= w:
        return rows[:, x0 : x0 + width]
    return np.concatenate([rows[:, x0:], rows[:, : x0 + width - w]], axis=1)


def _hr_rows(pair: PanoramaPair, spec: PatchSpec, hp: int, scale: int) -> np.ndarray:
    return latitude_weights(pair.hr.shape[0], spec.y0 * scale, spec.y0 * scale + hp)


def make_batch(
    pairs: Sequence[PanoramaPair], specs: Sequence[PatchSpec], shard: slice, patch: int, scale: int,
    device: torch.device,
) -> Batch:
    """The :class:`Batch` of ``specs[shard]`` (``specs`` is the whole global batch).

    For a CUDA ``device`` the tensors are assembled in pinned memory and copied asynchronously (on the current
    stream), so a batch made on another thread while the GPU trains (:class:`~odisr.train.prefetch.BatchStream`)
    does not wait for the work queued on that stream.
    """
    hp = patch * scale
    weight_mean = float(np.mean([_hr_rows(pairs[s.image], s, hp, scale) for s in specs]))
    mine = specs[shard]
    lrs, hrs = zip(*(cut(pairs[s.image], s, patch, scale) for s in mine))
    maxval = np.array([pairs[s.image].maxval for s in mine], dtype=np.float32)[:, None, None, None]
    pin = device.type == "cuda"
    # on the batch's own device: a worker thread's current CUDA device is cuda:0, where pinning would otherwise
    # create a context (another rank's GPU memory) in every process of a distributed run
    with torch.cuda.device(device) if pin else contextlib.nullcontext():
        lr, hr = _planar(lrs, maxval, pin), _planar(hrs, maxval, pin)
        condition = torch.cat([condition_map(pairs[s.image].lr.shape[0], patch, s.y0, s.y0 + patch) for s in mine])
        rows = np.stack([_hr_rows(pairs[s.image], s, hp, scale) for s in mine]).astype(np.float32)
        row_weights = torch.from_numpy(rows)[:, None, :, None]
        lr, hr, condition, row_weights = (_to(t, device) for t in (lr, hr, condition, row_weights))
    return Batch(lr, hr, condition, row_weights, weight_mean)


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; to CUDA from pinned memory without waiting for the stream."""
    if device.type != "cuda":
        return tensor.to(device)
    return (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)


def _planar(patches: Sequence[np.ndarray], maxval: np.ndarray, pin: bool) -> torch.Tensor:
    """``(b, 3, h, w)`` float32 ``patch / maxval`` of ``b`` integer ``(h, w, 3)`` patches, in pinned memory with
    ``pin``.

    Each patch is converted to float and to planar layout in one strided pass into the batch (measured: a batch of
    16 patches of 64² LR at ×4 is made in 6 ms instead of 32 ms by stacking, converting and permuting it in three
    passes; ×2: 3 instead of 10 ms; one core); the values are those of ``patch.astype(float32) / maxval``, bit for bit.
    """
    b, (h, w, c) = len(patches), patches[0].shape
    out = torch.empty((b, c, h, w), dtype=torch.float32, pin_memory=pin)
    planes = out.numpy()
    for plane, patch in zip(planes, patches):
        plane[...] = patch.transpose(2, 0, 1)
    np.divide(planes, maxval, out=planes)
    return out
