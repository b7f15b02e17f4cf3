"""``odisr train CONFIG --out RUN_DIR``: train or fine-tune a network on panoramas (:mod:`odisr.train`).

Distributed: ``torchrun --nproc-per-node N -m odisr train CONFIG --out RUN_DIR`` (DDP; gloo on CPU, NCCL on GPU).

Exit codes: 0 the run finished, 1 it stopped on a NaN/inf loss (the latest checkpoint is the last good one),
2 nothing was trained because of a bad config, run directory, data or init weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from odisr.cli.main import app

if TYPE_CHECKING:
    from odisr.train import TrainConfig

#: Keys that may differ between the run's saved config and a --resume (they do not change what is computed).
RESUMABLE_KEYS = frozenset({"device", "threads", "checkpoint_every", "val_every"})


@app.command("train")
def train_command(
    config: Annotated[
        str | None,
        typer.Argument(help="Training config YAML, or a preset (train_camixersr_light_x2, finetune_camixersr_s_x4_erp, "
                            "…; a wrong name lists them all). Optional with --resume (the run's own config is used)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory: checkpoints/, metrics.csv, config.yaml, run.json.")
    ] = ...,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out exactly from its latest checkpoint.")
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (replaces the config's).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Replace one config key: KEY=VALUE with a dotted key and a YAML value, e.g. "
                                   "--set data.patch=48 --set optim.iterations=100 (repeatable)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train or fine-tune CAMixerSR / CAMixerOSR or a baseline on ERP panoramas (resumable; torchrun for DDP).

    Writes checkpoints in the official {"params", "params_ema"} layout plus .safetensors (usable with
    `odisr run --model RUN_DIR/checkpoints/iter_N.pth`), metrics.csv and run.json; `odisr report RUN_DIR --html
    FILE` draws the training curves.
    """
    from odisr.train import TrainConfigError
    from odisr.train.distributed import Dist
    from odisr.train.loop import RunError, train

    err = Console(stderr=True)
    main_rank = Dist.from_env().is_main
    try:
        cfg = _resume_config(out, config, set_ or [], device) if resume else _new_config(config, set_ or [], device)
        result = train(cfg, out, resume=resume, progress=progress)
    except (TrainConfigError, RunError, ValueError, FileNotFoundError, KeyError) as exc:
        if main_rank:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            err.print(f"[red]error:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if main_rank:
        colour = "green" if result.status == "finished" else "red"
        err.print(f"[{colour}]{escape(result.message)}[/{colour}]", highlight=False, soft_wrap=True)
        if result.latest is not None:
            err.print(f"latest checkpoint: {out / 'checkpoints' / result.latest['weights']}", markup=False,
                      highlight=False, soft_wrap=True)  # fmt: skip
    raise typer.Exit(0 if result.status == "finished" else 1)


def _new_config(config: str | None, overrides: list[str], device: str | None) -> TrainConfig:
    from odisr.train import TrainConfigError, load_train_config

    if config is None:
        raise TrainConfigError("give a training CONFIG (a YAML file or a preset name), or --resume an existing run")
    return load_train_config(config, overrides, device=device)


def _resume_config(out: Path, config: str | None, overrides: list[str], device: str | None) -> TrainConfig:
    """The run's saved config; ``overrides`` and a CONFIG given as well may only change :data:`RESUMABLE_KEYS`."""
    from odisr.train import RunDir, TrainConfigError, load_train_config

    saved = RunDir(out).config_file
    if not saved.is_file():
        raise TrainConfigError(f"{out}: no training run to resume ({saved.name} is missing); "
                               "start one without --resume")  # fmt: skip
    reference = _flat(load_train_config(saved).dump())
    cfg = load_train_config(saved, overrides, device=device)
    candidates = [("--set", cfg)] + ([(config, load_train_config(config, overrides, device=device))] if config else [])
    for what, candidate in candidates:
        mine = _flat(candidate.dump())
        differ = sorted(k for k in reference.keys() | mine.keys()
                        if k.split(".")[0] not in RESUMABLE_KEYS and reference.get(k) != mine.get(k))  # fmt: skip
        if differ:
            raise TrainConfigError(
                f"{what} changes {', '.join(differ)} of the run's {saved}; an exact resume needs the same settings "
                f"(only {', '.join(sorted(RESUMABLE_KEYS))} may change; omit CONFIG to use the run's own)"
            )
    return cfg


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def report_run(
    console: Console, err: Console, path: str, *, html: Path | None, csv: Path | None, json: Path | None,
    markdown: Path | None,
) -> None:
    """``odisr report RUN_DIR``: the run's summary in the terminal; HTML curves, CSV rows, JSON on request."""
    from odisr.report.training import write_training_report

    if markdown is not None:
        err.print("[yellow]--markdown is for stores (the lightweight-SR table); ignored for a training run[/yellow]")
    try:
        report = write_training_report(path, html=html, csv=csv, json_path=json)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write the report: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for label, value in report.summary_items():
        console.print(f"[bold]{escape(label)}:[/bold] {escape(value)}", highlight=False, soft_wrap=True)
    for label, file in (("HTML", html), ("CSV", csv), ("JSON", json)):
        if file is not None:
            console.print(f"{label} written to {file}", markup=False, highlight=False)
