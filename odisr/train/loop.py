"""The training loop of ``odisr train``: patches → network → pixel loss (+ CAMixer's ratio loss) → Adam/AdamW
step → EMA, with validation, checkpoints and exact resume.

One iteration (:meth:`Trainer.step`): draw the global batch of patch positions, cut this rank's share (on CUDA
the next iteration's share is cut meanwhile, :mod:`odisr.train.prefetch`), run the network in training mode
(CAMixer draws its hard Gumbel-softmax routing and returns ``TrainOutput(sr, ratio_loss)``), ``loss = pixel(sr, hr)
+ ratio_weight · ratio_loss`` (the official CAMixerSR objective at weight 1, spec ``CAMIXERSR.md`` §4; baselines
have no ratio loss), backward (gradients averaged over ranks by DDP), optional gradient clipping, optimiser and
schedule step, EMA update. Mixed precision (``amp``) autocasts the forward pass on CUDA, with a gradient scaler for
fp16.

A NaN or infinite loss stops the run before the step is applied (:class:`~odisr.train.checkpoints.NonFiniteError`)
and the latest checkpoint stays the last good one; ``run.json`` says why. ``resume=True`` restores the full state
of the latest checkpoint, after which the run continues exactly as if it had never stopped (same thread count).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from odisr.device import resolve_device
from odisr.models import SRModel
from odisr.models.archs.camixer_common import TrainOutput
from odisr.models.execution import batched
from odisr.train.checkpoints import NonFiniteError, load_state, non_finite, save_checkpoint
from odisr.train.config import TrainConfig
from odisr.train.data import Batch, PatchSampler, PatchSpec, load_pairs, make_batch
from odisr.train.distributed import Dist
from odisr.train.ema import EMA
from odisr.train.history import MetricsLog
from odisr.train.losses import PIXEL_LOSSES
from odisr.train.network import build_network, initial_weights
from odisr.train.optim import make_optimizer, make_scheduler
from odisr.train.prefetch import BatchStream
from odisr.train.routing import RoutingProbe
from odisr.train.rundir import RunDir
from odisr.train.validation import Scores, Validator

__all__ = ["RunError", "TrainResult", "Trainer", "train"]

log = logging.getLogger(__name__)

_AMP = {True: torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}


class RunError(RuntimeError):
    """A run that cannot start or resume (existing run without --resume, nothing to resume, world-size change)."""


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: ``status`` ``"finished"`` or ``"stopped"`` (non-finite loss), at ``iteration``."""

    status: str
    iteration: int
    latest: dict[str, Any] | None
    message: str


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``cfg`` into the run directory ``out`` (a plain process, or one rank of a torchrun job).

    Raises:
        RunError: ``out`` holds a run and ``resume`` is False; ``resume`` without a checkpoint; a resume with
            another number of processes.
        odisr.train.data.DataError, odisr.sources.SourceError: unusable training data.
        odisr.models.WeightsError, FileNotFoundError: ``init`` weights that cannot be loaded.
    """
    run = RunDir(out)
    if not resume and run.started():  # before loading anything: say it at once
        raise RunError(f"{run.root} already holds a training run; pass --resume to continue it, "
                       "or choose another --out")  # fmt: skip
    dist = Dist.from_env()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = dist.start(resolve_device(cfg.device))
    try:
        return Trainer(cfg, run, dist, device, progress=progress).run(resume=resume)
    finally:
        dist.stop()


def amp_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device``; None for float32 (and on the CPU, with a warning)."""
    if amp is False:
        return None
    if device.type != "cuda":
        log.warning("amp=%r ignored on %s (autocast is used on CUDA only); training in float32", amp, device)
        return None
    return _AMP[amp]


class Trainer:
    """Everything one rank holds during a run (see :func:`train`)."""

    def __init__(self, cfg: TrainConfig, run: RunDir, dist: Dist, device: torch.device, *, progress: bool) -> None:
        self.cfg, self.run_dir, self.dist, self.device, self.progress = cfg, run, dist, device, progress
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.net = self._network()
        self.ema = EMA(self.net, cfg.ema)
        self.probe = RoutingProbe(self.net)
        self.optimizer = make_optimizer(self.net, cfg.optim)
        self.scheduler = make_scheduler(self.optimizer, cfg.optim)
        self.autocast = amp_dtype(device, cfg.amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast == torch.float16)
        self.pixel_loss = PIXEL_LOSSES[cfg.loss.pixel]
        self._load_data()
        self.seconds = 0.0
        torch.manual_seed(cfg.seed + dist.rank)  # each rank its own routing noise; rank 0 = a single process

    def _network(self) -> SRModel:
        """The network to train, initialised (``init``), with γ set, on the device in training mode."""
        net = build_network(self.cfg.model, self.cfg.model_args)
        self.init_source = initial_weights(net, self.cfg.init)
        if net.content_aware and self.cfg.ratio is not None:
            net.set_ratio(self.cfg.ratio)  # type: ignore[operator]
        return net.to(self.device).train()

    def _load_data(self) -> None:
        """Training pairs and their patch sampler on every rank; validation pairs on rank 0."""
        data, scale = self.cfg.data, self.net.scale
        show = self.progress and self.dist.is_main
        self.pairs = load_pairs(data.train, scale, data.degrade, what="train", progress=show)
        self.sampler = PatchSampler([p.lr.shape[:2] for p in self.pairs], data.patch, sampling=data.sampling,
                                    flip=data.flip, roll=data.roll, seed=self.cfg.seed)  # fmt: skip
        self.shard = self.dist.shard(data.batch)
        ahead = self.device.type == "cuda" if data.prefetch is None else data.prefetch
        self.batches = BatchStream(self.sampler, data.batch, self._make_batch, ahead=ahead)
        wanted = self.dist.is_main and data.val
        val = load_pairs(data.val, scale, data.degrade, what="val", progress=show) if wanted else []
        self.validator = Validator(val, device=self.device, tile=data.val_tile)

    # --------------------------------------------------------------------------------------------- the run
    def run(self, *, resume: bool) -> TrainResult:
        start = self._restore() if resume else self._begin()
        model = self.dist.wrap(self.net, unused=bool(self.dist.enabled and self._unused_parameters()))
        history = None
        if self.dist.is_main:
            history = MetricsLog(self.run_dir.metrics_file, resume_after=start if resume else None)
        total = self.cfg.optim.iterations
        if start == 0:
            self._first_validation(history)
        show = self.progress and self.dist.is_main
        bar = tqdm(total=total, initial=start, desc="train", unit="it", disable=not show)
        iteration = start
        try:
            for iteration in range(start + 1, total + 1):
                row = self.step(model, iteration)
                if self._due(self.cfg.val_every, iteration) and (scores := self._validate()) is not None:
                    row.update(val_ws_psnr=scores.ws_psnr, val_ws_ssim=scores.ws_ssim)
                    bar.write(f"iteration {iteration}: val WS-PSNR {scores.ws_psnr:.3f} dB, "
                              f"WS-SSIM {scores.ws_ssim:.4f}")  # fmt: skip
                if history is not None:
                    history.append(row)
                if self._due(self.cfg.checkpoint_every, iteration):
                    self._checkpoint(iteration)
                bar.set_postfix(_postfix(row), refresh=False)
                bar.update()
        except NonFiniteError as exc:
            return self._stop(iteration, str(exc))
        finally:
            bar.close()
            self.batches.close()
            if history is not None:
                history.close()
        return self._finish(total)

    def _due(self, every: int | None, iteration: int) -> bool:
        return iteration == self.cfg.optim.iterations or (every is not None and iteration % every == 0)

    # --------------------------------------------------------------------------------------------- one step
    def step(self, model: nn.Module, iteration: int) -> dict[str, float | None]:
        """One optimiser step on the next global batch; returns this iteration's ``metrics.csv`` row."""
        t0 = time.perf_counter()
        cfg = self.cfg
        batch = self.batches.next(more=iteration < cfg.optim.iterations)
        loss, stats = self._loss(model, batch)
        if not math.isfinite(stats[0]):
            ratio = f", ratio loss {stats[2]}" if self.probe.mixers else ""
            raise NonFiniteError(f"iteration {iteration}: the loss is {stats[0]} (pixel loss {stats[1]}{ratio})")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.ema.update(self.net)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - t0
        self.seconds += elapsed
        names = ("loss", "pixel_loss", "ratio_loss", "mask_mean", "attention_fraction", "official_fraction")
        row: dict[str, float | None] = {"iteration": iteration, **_present(names, stats)}
        return {**row, "lr": lr, "it_per_s": 1.0 / elapsed, "seconds": self.seconds}

    def _make_batch(self, specs: Sequence[PatchSpec]) -> Batch:
        """This rank's share of the global batch ``specs``, on the device."""
        return make_batch(self.pairs, specs, self.shard, self.cfg.data.patch, self.net.scale, self.device)

    def _loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, list[float]]:
        """The loss to back-propagate and ``[loss, pixel, ratio, mask mean, attention fraction, official fraction]``
        averaged over the ranks (NaN where the network has no routing)."""
        kwargs = {"condition": batch.condition} if self.net.uses_latitude else {}
        autocast = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        with autocast, batched(self.device):
            out = model(batch.lr, **kwargs)
        sr, ratio = (out.output, out.ratio_loss.float()) if isinstance(out, TrainOutput) else (out, None)
        pixel = self.pixel_loss(sr.float(), batch)
        loss = pixel if ratio is None else pixel + self.cfg.loss.ratio_weight * ratio
        nan = torch.tensor(math.nan, device=self.device)
        routing = self.probe.read()
        parts = [loss.detach(), pixel.detach(), nan if ratio is None else ratio.detach()]
        parts += [nan, nan, nan] if routing is None else list(routing)
        return loss, self.dist.mean(torch.stack(parts).float()).tolist()

    def _unused_parameters(self) -> list[str]:
        """Names of parameters that get no gradient (DDP must be told); one forward/backward on a dummy patch."""
        p = self.cfg.data.patch
        x = torch.rand(1, 3, p, p, device=self.device)
        kwargs = {"condition": torch.zeros(1, 1, p, p, device=self.device)} if self.net.uses_latitude else {}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            out = self.net(x, **kwargs)
        (out.output if isinstance(out, TrainOutput) else out).float().mean().backward()
        self.probe.read()
        unused = [name for name, q in self.net.named_parameters() if q.requires_grad and q.grad is None]
        self.net.zero_grad(set_to_none=True)
        if unused:
            log.info("parameters without gradient (DDP told to expect them): %s", ", ".join(unused))
        return unused

    # ----------------------------------------------------------------------------------- start, stop, resume
    def _begin(self) -> int:
        """Start a new run in an empty (or new) run directory (checked by :func:`train`); returns iteration 0."""
        self.dist.barrier()  # every rank has checked the directory before rank 0 writes
        if self.dist.is_main:
            self.run_dir.root.mkdir(parents=True, exist_ok=True)
            self.run_dir.config_file.write_text(yaml.safe_dump(self.cfg.dump(), sort_keys=False), encoding="utf-8")
            self.run_dir.update_status(
                status="running", model=self.cfg.model, architecture=self.net.architecture, scale=self.net.scale,
                parameters=self.net.num_params, ratio=getattr(self.net, "ratio", None), init=self.init_source,
                world_size=self.dist.world, device=str(self.device), started=_now(),
                train=[p.name for p in self.pairs], val=[p.name for p in self.validator.pairs],
            )  # fmt: skip
        return 0

    def _restore(self) -> int:
        """Load the latest checkpoint's full state; returns its iteration."""
        try:
            iteration, state = load_state(self.run_dir)
        except FileNotFoundError as exc:
            raise RunError(str(exc)) from None
        if state["world_size"] != self.dist.world:
            raise RunError(f"{self.run_dir.root}: the checkpoint was written by {state['world_size']} process(es); "
                           f"resume with the same number (now {self.dist.world}) to continue exactly")  # fmt: skip
        self.net.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["sampler"])
        self.seconds = float(state["seconds"])
        rng = state["rng"][self.dist.rank]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.dist.is_main:
            self.run_dir.update_status(status="running", resumed_from=iteration, resumed=_now())
        log.info("resumed %s at iteration %d", self.run_dir.root, iteration)
        return iteration

    def _checkpoint(self, iteration: int) -> None:
        """Write the checkpoint of ``iteration`` (rank 0) with every rank's RNG state."""
        bad = non_finite(self.net.state_dict()) + non_finite(self.ema.module.state_dict())
        if bad:  # every rank holds the same weights, so every rank stops here together
            raise NonFiniteError(f"iteration {iteration}: non-finite weights in {bad[:5]}")
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rng = self.dist.gather({"torch": torch.get_rng_state(), "cuda": cuda})
        if self.dist.is_main:
            state = {
                "iteration": iteration, "world_size": self.dist.world, "seconds": self.seconds,
                "model": self.net.state_dict(), "ema": self.ema.module.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "sampler": self.batches.state_dict(), "rng": rng,
                "config": self.cfg.dump(),
            }  # fmt: skip
            metadata = {"weights": "params_ema" if self.cfg.ema else "params", "model": self.cfg.model,
                        "model_args": self.cfg.model_args, "iteration": iteration,
                        "ratio": getattr(self.net, "ratio", None)}
            latest = save_checkpoint(self.run_dir, iteration, self.net.state_dict(), self.ema.module.state_dict(),
                                     state, metadata)  # fmt: skip
            self.run_dir.update_status(iteration=iteration, latest=latest)
        self.dist.barrier()

    def _stop(self, iteration: int, reason: str) -> TrainResult:
        latest = self.run_dir.latest()
        kept = f"the latest checkpoint is iteration {latest['iteration']}" if latest else "no checkpoint was written"
        message = f"stopped: {reason}; {kept} ({self.run_dir.checkpoints})"
        log.info(message)
        if self.dist.is_main:
            self.run_dir.update_status(status="stopped", stopped_at=iteration, message=message, ended=_now())
        return TrainResult("stopped", iteration, latest, message)

    def _finish(self, iteration: int) -> TrainResult:
        latest = self.run_dir.latest()
        message = f"finished {iteration} iterations in {self.seconds:.0f} s of training"
        if self.dist.is_main:
            self.run_dir.update_status(status="finished", iteration=iteration, training_seconds=self.seconds,
                                       ended=_now(), message=message)  # fmt: skip
        return TrainResult("finished", iteration, latest, message)

    # ------------------------------------------------------------------------------------------ validation
    def _validate(self) -> Scores | None:
        """Scores of the EMA weights (rank 0; None elsewhere and without val panoramas)."""
        scores = self.validator.score(self.ema.module) if self.dist.is_main and self.validator else None
        self.dist.barrier()
        return scores

    def _first_validation(self, history: MetricsLog | None) -> None:
        """Row 0 of ``metrics.csv``: the starting weights; ``run.json`` gets the bicubic reference."""
        scores = self._validate()
        if scores is None or history is None:
            return
        history.append({"iteration": 0, "val_ws_psnr": scores.ws_psnr, "val_ws_ssim": scores.ws_ssim})
        fields: dict[str, Any] = {"start_scores": scores.as_dict()}
        bicubic = f"bicubic-x{self.net.scale}"
        from odisr.models import available, load

        if bicubic in available():
            fields["bicubic_scores"] = self.validator.score(load(bicubic, device=self.device)).as_dict()
        self.run_dir.update_status(**fields)


def _present(names: tuple[str, ...], values: list[float]) -> dict[str, float | None]:
    return {n: (None if math.isnan(v) else v) for n, v in zip(names, values)}


def _postfix(row: dict[str, float | None]) -> dict[str, str]:
    shown = {"loss": row.get("loss"), "attn": row.get("attention_fraction"), "val": row.get("val_ws_psnr")}
    return {k: f"{v:.4g}" for k, v in shown.items() if v is not None}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
