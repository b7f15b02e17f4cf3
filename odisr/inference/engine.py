"""``upscale``: run any registered SR model over an image in window-aligned tiles, streaming the output to a sink.

Peak memory depends on the tile size, not on the image: the LR image is read tile by tile (boundaries resolved
by index, never padded as a whole, see :mod:`odisr.inference.tiling`), at most a few batches of tiles are in
flight, and each finished tile's SR core is converted to the output dtype and written to the sink at once —
a numpy array, or a Zarr array whose chunks are ``tile · scale`` output pixels (each chunk written exactly once).

Out of memory (CUDA, or a failed CPU allocation): a batch is retried one tile at a time; a single tile is split
into sub-tiles of half the core size (window-aligned, same halo) whose outputs are stitched into a fresh block,
and later tiles are split the same way. Every step is logged; a tile's output is only ever written after its
own forward pass succeeded, so a stale tile cannot be reused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from odisr.device import resolve_device
from odisr.inference.sizing import AUTO, CPU_TILE, choose_tiling
from odisr.inference.tiling import (
    DEFAULT_HALO,
    MODES,
    Mode,
    Tile,
    TileGrid,
    align_up,
    condition_for,
    gather,
)
from odisr.models.base import SRModel
from odisr.models.compiled import compile_model, is_compiled
from odisr.models.compiled import eager as eager_calls
from odisr.models.execution import prepare
from odisr.models.global_stats import GlobalStats, has_global_pooling
from odisr.resize import imresize
from odisr.routing import RoutingMaps

__all__ = ["Amp", "auto_tiling", "context_size", "forward_bytes_per_pixel", "resolve_device", "upscale"]

log = logging.getLogger(__name__)

Amp = bool | Literal["fp16", "bf16"]
_AMP_DTYPES = {True: torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}
_INT_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TORCH_INT = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}
CONTEXT_FACTOR = 4
"""Minimum LR downscaling of the global-context pass: it costs at most 1/16 of the image's pixels."""


def _effective_amp(device: torch.device, amp: Amp) -> Amp:
    """``amp`` validated; False on the CPU (logged), where fp16/bf16 autocast is slow and not what users expect."""
    if amp is None:
        return False
    if amp is not False and amp not in _AMP_DTYPES:
        raise ValueError(f"amp must be False, True, 'fp16' or 'bf16', got {amp!r}")
    if amp is not False and device.type == "cpu":
        log.warning("amp=%r ignored on the CPU (autocast is used on CUDA/MPS only); running in float32", amp)
        return False
    return amp


def _autocast(device: torch.device, amp: Amp) -> contextlib.AbstractContextManager[Any]:
    if amp is False:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AMP_DTYPES[amp])


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


@dataclass(frozen=True)
class _Pixels:
    """The input image in a canonical layout: ``data`` (H, W) or (H, W, 3); ``maxval`` maps it to [0, 1]."""

    data: np.ndarray
    maxval: float

    @property
    def gray(self) -> bool:
        return self.data.ndim == 2

    @classmethod
    def of(cls, image: np.ndarray) -> _Pixels:
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise ValueError(
                f"image must be (H, W, 3) RGB or (H, W) grayscale, got shape {a.shape}"
                + ("; drop the alpha channel first" if a.ndim == 3 and a.shape[2] == 4 else "")
            )
        if a.dtype in _INT_MAX:
            return cls(a, _INT_MAX[a.dtype])
        if a.dtype.kind == "f":
            return cls(a, 1.0)
        raise ValueError(f"image dtype must be uint8, uint16 or float in [0, 1], got {a.dtype}")

    def to_tensor(self, tiles: list[Tile], device: torch.device) -> torch.Tensor:
        """The tiles' network inputs as ``(B, 3, h, w)`` float32 in [0, 1] on ``device``.

        uint8 pixels travel as they are and become float on ``device``, in the pass that also makes them planar:
        a quarter of the bytes to a GPU, and on the CPU one pass instead of two (2048×1024: 2 ms instead of 8).
        """
        batch = np.stack([gather(self.data, t) for t in tiles])
        raw = batch if batch.dtype == np.uint8 else batch.astype(np.float32, copy=False)
        x = torch.from_numpy(raw).to(device)
        x = x[:, None].expand(-1, 3, -1, -1) if self.gray else x.permute(0, 3, 1, 2)
        return x.to(torch.float32, memory_format=torch.contiguous_format).mul_(1.0 / self.maxval)

    def from_tensor(self, y: torch.Tensor) -> np.ndarray:
        """SR output ``(3, H, W)`` float → C-contiguous ``(H, W[, 3])`` in the input dtype (clamped, scaled,
        rounded half to even). Grayscale output is the mean of the three channels.

        Integer outputs are converted on ``y``'s device, channel-planar first and transposed by the final cast (2.3×
        faster on the CPU than working on the transposed view), so only output-dtype bytes reach the host.
        """
        y = (y.mean(0, keepdim=True) if self.gray else y).clamp(0, 1)
        if self.maxval != 1.0:
            y = y.mul_(self.maxval).round_()
        y = y.permute(1, 2, 0).squeeze(-1)
        integer = _TORCH_INT.get(self.data.dtype)
        if integer is None:
            return y.contiguous().cpu().numpy().astype(self.data.dtype, copy=False)
        return y.to(integer, memory_format=torch.contiguous_format).cpu().numpy()


@dataclass
class _Result:
    block: np.ndarray  # SR core (s·h, s·w[, 3]) in the output dtype
    routing: np.ndarray | None  # (2, n_blocks, h, w) per core LR window: each block's decision and score


class _Runner:
    """Runs tiles through the network in batches of equal input shape, backing off on out-of-memory."""

    def __init__(
        self,
        net: SRModel,
        pixels: _Pixels,
        grid: TileGrid,
        device: torch.device,
        amp: Amp,
        batch_size: int,
        want_attention: bool,
        relative_condition: bool = False,
        eager: bool = False,
    ) -> None:
        self.net, self.pixels, self.grid, self.device, self.amp = net, pixels, grid, device, amp
        # eager: a compiled network runs its uncompiled code (for one-off shapes that are not worth a compilation)
        self.eager = eager
        self.batch_size = batch_size
        self.want_attention = want_attention
        self.relative_condition = relative_condition
        self.max_core: int | None = None  # set after an OOM: cores larger than this are split
        # a compiled network (static shapes) gets full batches only: a short last batch is filled up with
        # copies of its last tile (their outputs are dropped), so that no batch size is compiled twice
        self.full_batches = is_compiled(net) and not eager

    def results(self, tiles: Iterable[Tile]) -> Iterator[tuple[Tile, _Result]]:
        """(tile, result) for every tile, batching tiles of equal input shape; streams in input order per shape."""
        buckets: dict[tuple[int, int], list[Tile]] = {}
        for t in tiles:
            bucket = buckets.setdefault(t.input_shape, [])
            bucket.append(t)
            if len(bucket) >= self.batch_size:
                yield from zip(bucket, self._run(buckets.pop(t.input_shape)), strict=True)
        for bucket in buckets.values():
            yield from zip(bucket, self._run(bucket), strict=True)

    def _core(self, tile: Tile) -> int:
        return max(tile.input_shape) - 2 * tile.halo

    def _run(self, tiles: list[Tile]) -> list[_Result]:
        if self.max_core is not None and self._core(tiles[0]) > self.max_core:
            return [self._run_split(t) for t in tiles]
        try:
            return self._forward(tiles)
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            error = exc
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(tiles) > 1:
            log.warning("out of memory on a batch of %d tiles; retrying one tile at a time", len(tiles))
            self.batch_size = 1
            return [r for t in tiles for r in self._run([t])]
        core, window = self._core(tiles[0]), self.grid.window
        smaller = max(window, align_up(core // 2, window))
        if smaller >= core:
            raise RuntimeError(
                f"out of memory even on one {core} px tile (+{tiles[0].halo} px halo) on {self.device}: "
                "use a smaller halo, amp='bf16'/'fp16', or the CPU"
            ) from error
        log.warning(
            "out of memory on a %d px tile (+%d px halo); retrying with %d px tiles", core, tiles[0].halo, smaller
        )
        self.max_core = smaller
        return [self._run_split(tiles[0])]

    def _run_split(self, tile: Tile) -> _Result:
        """Run ``tile`` as sub-tiles of at most ``max_core`` px and stitch their cores into a fresh block."""
        s, ws = self.net.scale, self.grid.window
        shape = ((tile.y1 - tile.y0) * s, (tile.x1 - tile.x0) * s) + self.pixels.data.shape[2:]
        block = np.empty(shape, self.pixels.data.dtype)
        filled = np.zeros(shape[:2], dtype=bool)
        routing = RoutingMaps(_windows(tile, ws))
        for sub, r in self.results(self.grid.split(tile, self.max_core or self._core(tile))):
            ys = slice((sub.y0 - tile.y0) * s, (sub.y1 - tile.y0) * s)
            xs = slice((sub.x0 - tile.x0) * s, (sub.x1 - tile.x0) * s)
            block[ys, xs], filled[ys, xs] = r.block, True
            if r.routing is not None:
                routing.put((sub.y0 - tile.y0) // ws, (sub.x0 - tile.x0) // ws, r.routing)
        if not filled.all():  # cannot happen unless split() is wrong; never hand out uninitialised pixels
            raise RuntimeError(f"internal error: sub-tiles did not cover tile {tile.y0, tile.y1, tile.x0, tile.x1}")
        stitched = None if routing.decisions is None else np.stack((routing.decisions, routing.scores))
        return _Result(block, stitched)

    def _forward(self, tiles: list[Tile]) -> list[_Result]:
        if self.full_batches and len(tiles) < self.batch_size:
            return self._forward(tiles + [tiles[-1]] * (self.batch_size - len(tiles)))[: len(tiles)]
        net, s = self.net, self.net.scale
        x = self.pixels.to_tensor(tiles, self.device)
        kwargs = {}
        if net.uses_latitude:
            cond = [
                condition_for(t, self.grid.height, relative=self.relative_condition, device=self.device)
                for t in tiles
            ]
            kwargs["condition"] = torch.cat(cond)
        uncompiled = eager_calls() if self.eager else contextlib.nullcontext()
        with torch.inference_mode(), _autocast(self.device, self.amp), uncompiled:
            y = net(x, **kwargs)
        h, w = tiles[0].input_shape
        if tuple(y.shape) != (len(tiles), 3, h * s, w * s):
            raise RuntimeError(
                f"{type(net).__name__} returned {tuple(y.shape)} for input {tuple(x.shape)}; "
                f"expected (B, 3, {h * s}, {w * s}) for scale {s}"
            )
        y = y.float()
        maps = self._routing_maps()
        out = []
        for i, t in enumerate(tiles):
            ys, xs = t.output_slices(s)
            routing = None if maps is None else _core_windows(maps[i], t, self.grid.window)
            out.append(_Result(self.pixels.from_tensor(y[i, :, ys, xs]), routing))
        return out

    def _routing_maps(self) -> np.ndarray | None:
        """``(B, 2, n_blocks, nH, nW)``: per block, the decision (1 = attention, from ``net.routing()``) and the
        predictor's attention probability (``net.window_scores()``) of every window, on the unshifted grid."""
        if not self.want_attention:
            return None
        window = self.grid.window
        decisions = [_unshifted(r.selected, r.shift, window) for r in self.net.routing()]  # type: ignore[operator]
        scores = [_unshifted(p, shift, window) for p, shift in self.net.window_scores()]  # type: ignore[operator]
        return torch.stack((torch.stack(decisions, 1), torch.stack(scores, 1)), 1).cpu().numpy()


def _unshifted(values: torch.Tensor, shift: int, window: int) -> torch.Tensor:
    """One block's ``(B, nH, nW)`` per-window values (decisions or scores) as floats on the unshifted window grid.

    A block with a cyclic shift (CAMixerOSR's odd blocks) decides for windows offset by ``shift`` pixels; each
    image window gets the area-weighted mean of the shifted windows that overlap it.
    """
    selected = values.float()
    if shift == 0:
        return selected
    pixels = selected.repeat_interleave(window, -2).repeat_interleave(window, -1)
    pixels = torch.roll(pixels, (shift, shift), (-2, -1))  # shifted-frame pixel q is image pixel q + shift
    return torch.nn.functional.avg_pool2d(pixels[:, None], window)[:, 0]


def _windows(tile: Tile, window: int) -> tuple[int, int]:
    return -(-(tile.y1 - tile.y0) // window), -(-(tile.x1 - tile.x0) // window)


def _core_windows(maps: np.ndarray, tile: Tile, window: int) -> np.ndarray:
    """The tile's core windows of per-window ``maps`` ``(..., nH, nW)`` (its halo windows cut off)."""
    k = tile.halo // window
    nh, nw = _windows(tile, window)
    return maps[..., k : k + nh, k : k + nw]


def context_size(grid: TileGrid, batch_size: int) -> tuple[int, int]:
    """``(height, width)`` in LR pixels of the global-context copy of the image tiled by ``grid``.

    Shrunk by at least :data:`CONTEXT_FACTOR`, and further until it has no more pixels than ``batch_size`` tile
    inputs (core + halo), so that its memory is bounded by the tile settings whatever the image size.
    """
    budget = batch_size * (grid.tile_h + 2 * grid.halo) * (grid.tile_w + 2 * grid.halo)
    factor = max(CONTEXT_FACTOR, math.sqrt(grid.height * grid.width / budget))
    return max(1, round(grid.height / factor)), max(1, round(grid.width / factor))


def _global_context(runner: _Runner, mode: Mode) -> GlobalStats:
    """Image-wide statistics for the tiles: the network's global pooling layers recorded on a small copy.

    The copy (:func:`context_size`) is made with the MATLAB bicubic kernel the LR images themselves come from
    (circular in longitude in odi mode): measured, box-filtered copies give statistics that are further from the
    whole image's than no context at all. It runs as one whole image padded only up to the window (no halo), so
    that the pooled statistics are those of the image itself and do not change when a panorama is rolled in
    longitude by whole windows (a halo would bring in other columns). A compiled network runs it uncompiled: its
    shape differs from the tiles', and one small pass is not worth a compilation.
    """
    grid, pixels = runner.grid, runner.pixels
    size = context_size(grid, runner.batch_size)
    chw = torch.from_numpy(pixels.data[..., None] if pixels.gray else pixels.data).permute(2, 0, 1)
    # float32 and not rounded back to the input dtype: rounding would make the statistics (and every tile) jump
    # when the panorama is merely rolled in longitude
    small = imresize(chw.float(), size=size, wrap=mode == "odi").permute(1, 2, 0).numpy()
    small = small[..., 0] if pixels.gray else small
    small_grid = TileGrid.build(*size, window=grid.window, mode=mode, tile=None, halo=0)
    context = _Runner(
        runner.net, _Pixels(small, pixels.maxval), small_grid, runner.device, runner.amp, 1, False, eager=True
    )
    stats = GlobalStats()
    with stats.recording():
        for _ in context.results(small_grid):
            pass
    log.info("global context: %d pooling layers recorded on a %dx%d LR copy", len(stats), *size[::-1])
    return stats


PROBE_SIZE = (128, 256)
"""LR ``(height, width)`` of the image on which :func:`forward_bytes_per_pixel` measures a forward pass."""
_BYTES_PER_PIXEL: weakref.WeakKeyDictionary[SRModel, dict[tuple[str, Any], float]] = weakref.WeakKeyDictionary()


def forward_bytes_per_pixel(model: SRModel, device: torch.device, amp: Amp = False) -> float:
    """Peak CUDA memory of one forward pass of ``model`` (on ``device``, eval mode) per network-input LR pixel,
    in bytes: measured once on a :data:`PROBE_SIZE` zero image (output conversion included) and cached per
    (model, device, amp)."""
    cache = _BYTES_PER_PIXEL.setdefault(model, {})
    key = (str(device), amp)
    if key not in cache:
        h, w = (align_up(n, model.window_size) for n in PROBE_SIZE)
        grid = TileGrid.build(h, w, window=model.window_size, mode="large", tile=None, halo=0)
        probe = _Runner(model, _Pixels(np.zeros((h, w, 3), np.float32), 1.0), grid, device, amp, 1, False)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in probe.results(grid):
            pass
        cache[key] = max(1.0, (torch.cuda.max_memory_allocated(device) - base) / (h * w))
        log.info("%s on %s: %.0f bytes per LR pixel in a forward pass", type(model).__name__, device, cache[key])
    return cache[key]


def auto_tiling(
    model: SRModel,
    height: int,
    width: int,
    *,
    device: str | torch.device = "auto",
    amp: Amp = False,
    halo: int | None = None,
    batch_size: int = 4,
) -> tuple[int | None, int]:
    """``tile="auto"`` resolved for an ``height × width`` LR image: ``(tile, batch)`` in LR pixels (tile None =
    whole image) from the free memory of a CUDA ``device`` (:func:`odisr.inference.sizing.choose_tiling` with
    :func:`forward_bytes_per_pixel`; memory cached by torch counts as free), ``(CPU_TILE, batch_size)`` elsewhere.
    ``model`` is moved to ``device``."""
    dev = resolve_device(device)
    if dev.type != "cuda":
        return CPU_TILE, batch_size
    net = _resolve_model(model, dev, None, compile=False)
    window = net.window_size
    per_pixel = forward_bytes_per_pixel(net, dev, _effective_amp(dev, amp))
    free, _ = torch.cuda.mem_get_info(dev)
    free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    halo = align_up(DEFAULT_HALO if halo is None else halo, window)
    tile, batch = choose_tiling(free, per_pixel, height, width, window=window, halo=halo, max_batch=batch_size)
    log.info("tile auto on %s (%.1f GiB free): %s, batch %d", dev, free / 2**30, tile or "whole image", batch)
    return tile, batch


def _resolve_model(model: SRModel | str, device: torch.device, ratio: float | None, compile: bool) -> SRModel:
    if isinstance(model, str):
        from odisr.models import load

        return load(model, device=str(device), ratio=ratio, compile=compile)
    if not isinstance(model, SRModel):
        raise TypeError(f"model must be an odisr SRModel or a model name/path, got {type(model).__name__}")
    if ratio is not None:
        if model.content_aware:
            model.set_ratio(ratio)  # type: ignore[attr-defined]
        else:
            log.info("ratio=%s ignored: %s is not content-aware", ratio, type(model).__name__)
    model = model.to(device).eval()
    return compile_model(model) if compile and not is_compiled(model) else model


def _check_sink(sink: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    got_shape, got_dtype = tuple(getattr(sink, "shape", ())), np.dtype(getattr(sink, "dtype", None))
    if got_shape != shape or got_dtype != dtype:
        raise ValueError(f"sink must have shape {shape} and dtype {dtype} (the SR image), got {got_shape} {got_dtype}")


def upscale(
    image: np.ndarray,
    model: SRModel | str,
    *,
    mode: Mode = "odi",
    tile: int | Literal["auto"] | None = None,
    halo: int | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 4,
    amp: Amp = False,
    ratio: float | None = None,
    sink: Any = None,
    progress: bool = False,
    attention: np.ndarray | None = None,
    routing: RoutingMaps | None = None,
    global_context: bool = True,
    compile: bool = False,
    _relative_condition: bool = False,
) -> np.ndarray | None:
    """Super-resolve one image with ``model``, tile by tile.

    Args:
        image: LR image ``(H, W, 3)`` RGB or ``(H, W)`` grayscale; uint8, uint16 or float in [0, 1].
        model: a loaded :class:`~odisr.models.base.SRModel` (moved to ``device`` and put in eval mode) or a
            registry name / weights path for :func:`odisr.models.load` (loaded on every call: pass a model
            object when upscaling many images).
        mode: ``"odi"`` (ERP panorama: circular in longitude, reflect at the poles, latitude condition from
            absolute rows), ``"large"`` (reflect at all borders) or ``"lightweight"`` (same padding; meant for
            whole-image inference on small benchmark images, as in the paper's lightweight tables).
        tile: core tile size in LR pixels, rounded up to the model's window (logged); ``None`` = whole image;
            ``"auto"`` = from the free memory of a CUDA device (whole image when it fits; the batch size then is
            at most ``batch_size``), 256 elsewhere (:mod:`odisr.inference.sizing`, :func:`auto_tiling`).
        halo: context added around each tile in LR pixels, rounded up to the window; its SR output is cropped.
            Default :data:`~odisr.inference.tiling.DEFAULT_HALO` (16), also for whole-image inference (the image
            is padded by the halo: circular in longitude in odi mode, reflect elsewhere, so whole-image and tiled
            outputs agree); 0 for whole-image lightweight mode, which pads only up to the window like the
            official evaluation of the paper's lightweight tables.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        batch_size: tiles per forward pass (tiles of equal input shape are batched).
        amp: autocast on CUDA/MPS: ``True``/``"fp16"`` or ``"bf16"``; ignored (logged) on the CPU.
        ratio: CAMixer attention ratio γ in [0, 1] (set on the model; ignored for other models).
        sink: where to write the SR image instead of returning it: anything with ``shape``, ``dtype`` and
            ``sink[y0:y1, x0:x1, :] = block`` (a numpy array, a Zarr array), of shape ``(s·H, s·W[, 3])`` and the
            input's dtype. Regions are aligned to ``tile · s`` output pixels and each is written exactly once.
        progress: show a tqdm progress bar over tiles.
        attention: optional float32 array ``(ceil(H/ws), ceil(W/ws))`` (ws = the model's window, 16 for CAMixer),
            filled with the fraction of blocks that routed each LR window to attention (content-aware models that
            expose ``routing()``; left untouched otherwise).
        routing: optional :class:`~odisr.routing.RoutingMaps` for the image's LR windows, filled with every block's
            decisions and the predictor's attention scores (content-aware models; left empty otherwise).
        global_context: when tiling a network that pools over the whole image (CAMixer's channel attention, see
            :mod:`odisr.models.global_stats`), first record its pooled features on a copy of the image shrunk ≥ 4×
            and give them to every tile, so tiles see image-wide statistics as whole-image inference does (costs
            ≤ 1/16 of the image's pixels). False: each tile pools over itself.
        compile: compile the model's forward pass with TorchInductor (:func:`odisr.models.compiled.compile_model`,
            in place for a model object; ``odisr.models.load(..., compile=True)`` does the same). A compiled model
            gets every tile in one input shape (a smaller last row/column of tiles reads more context instead),
            so a run compiles once per tile shape; the first call pays the compilation (README "Performance").
        _relative_condition: test-only: give latitude-conditioned models the WRONG, tile-relative condition.

    Returns:
        The SR image ``(s·H, s·W[, 3])`` in the input's dtype, or None when ``sink`` is given.

    Raises:
        ValueError: bad image shape/dtype, mode, tile, halo, batch size, amp, sink shape/dtype, attention shape.
        TypeError: ``model`` is neither an SRModel nor a name.
        RuntimeError: out of memory even for a single window-sized tile.
    """
    pixels = _Pixels.of(image)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = resolve_device(device)
    prepare(dev)  # process-wide settings for heavy inference on this device (glibc heap retention on the CPU)
    amp = _effective_amp(dev, amp)
    net = _resolve_model(model, dev, ratio, compile)
    height, width = pixels.data.shape[:2]
    if tile == AUTO:
        tile, batch_size = auto_tiling(net, height, width, device=dev, amp=amp, halo=halo, batch_size=batch_size)
    if halo is None:
        halo = 0 if (mode == "lightweight" and tile is None) else DEFAULT_HALO
    # a compiled network (static shapes) gets every tile in one input shape, so a run compiles once
    uniform = is_compiled(net)
    grid = TileGrid.build(height, width, window=net.window_size, mode=mode, tile=tile, halo=halo, uniform=uniform)

    s = net.scale
    out_shape = (s * height, s * width) + pixels.data.shape[2:]
    if sink is not None:
        _check_sink(sink, out_shape, pixels.data.dtype)
    # a whole-image result is returned as the engine made it (out stays None until then): a fresh array and a copy
    # into it would cost another output's worth of memory and ~15 ms per 8K result (8192×4096 uint8)
    out = np.empty(out_shape, pixels.data.dtype) if sink is None and len(grid) > 1 else sink
    wanted = attention is not None or routing is not None
    want_attention = wanted and net.content_aware and callable(getattr(net, "routing", None))
    expected = (-(-height // net.window_size), -(-width // net.window_size))
    if attention is not None and attention.shape != expected:
        raise ValueError(f"attention must have shape {expected} (LR windows), got {attention.shape}")
    if routing is not None and tuple(routing.windows) != expected:
        raise ValueError(f"routing must cover {expected} LR windows, got {tuple(routing.windows)}")
    if wanted and not want_attention:
        log.warning("attention map not filled: %s does not expose its routing", type(net).__name__)

    runner = _Runner(net, pixels, grid, dev, amp, batch_size, want_attention, _relative_condition)
    log.info(
        "upscale %dx%d ×%d with %s on %s: mode %s, %d tile(s) of %dx%d LR px, halo %d",
        width, height, s, type(net).__name__, dev, mode, len(grid), grid.tile_w, grid.tile_h, grid.halo,
    )  # fmt: skip
    from tqdm.auto import tqdm

    use_context = global_context and len(grid) > 1 and has_global_pooling(net)
    stats = _global_context(runner, mode).replaying() if use_context else contextlib.nullcontext()
    with stats, tqdm(total=len(grid), disable=not progress, unit="tile", desc="upscale") as bar:
        for t, r in runner.results(grid):
            ys, xs = t.region(s)
            if out is None:
                out = r.block  # the single tile's core covers the whole output
            else:
                out[(ys, xs) + (slice(None),) * (len(out_shape) - 2)] = r.block
            if r.routing is not None:
                wy, wx = t.y0 // grid.window, t.x0 // grid.window
                h, w = r.routing.shape[-2:]
                if attention is not None:
                    attention[wy : wy + h, wx : wx + w] = r.routing[0].mean(0)
                if routing is not None:
                    routing.put(wy, wx, r.routing)
            bar.update()
    return out if sink is None else None
