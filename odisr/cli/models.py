"""``odisr models``: list the registered models, download their weights, inspect a model or a checkpoint.

Exit codes: 0 success; 1 unknown model, unreadable checkpoint, or weights that could not be obtained
(``download``: any requested model left without weights — with ``--all``, user-supplied weights are only reported).
"""

from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from odisr.cli.main import app

if TYPE_CHECKING:
    from odisr.download import Digests
    from odisr.models import ModelSpec, SRModel, WeightFile

models_app = typer.Typer(
    name="models", help="List, download and inspect the models and their weights.", no_args_is_help=True
)
app.add_typer(models_app)

_STATUS = {"none": "not needed", "cached": "cached", "downloadable": "downloadable", "user-supplied": "user-supplied"}
_FAILURES = (KeyError, ValueError, OSError)  # unknown name, WeightsError, FileNotFoundError / DownloadError


def _print_error(exc: BaseException, label: str = "[red]error:[/red]") -> None:
    """Print ``exc`` on stderr as one message after ``label`` (rich markup), without a traceback."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    Console(stderr=True).print(f"{label} {escape(message)}", highlight=False, soft_wrap=True)


def _skeleton(spec: ModelSpec) -> SRModel | None:
    """The untrained network, built on the meta device (no memory, no initialisation cost) when it allows."""
    from odisr.models import build

    for device in ("meta", "cpu"):
        try:
            with warnings.catch_warnings():  # constructors' deprecation chatter would garble the table
                warnings.simplefilter("ignore")
                return build(spec, device=device)
        except Exception:  # noqa: BLE001, PERF203 - a constructor needing real tensors; else the row shows "–"
            continue
    return None


def _content_aware(spec: ModelSpec, model: SRModel | None) -> bool:
    from odisr.models import get_architecture

    source = model if model is not None else get_architecture(spec.architecture).build
    return bool(getattr(source, "content_aware", False))


@models_app.command("list")
def list_models(
    pattern: str = typer.Argument("*", help="Only names matching this glob, e.g. 'camixersr-*'."),
    params: bool = typer.Option(True, "--params/--no-params", help="Count parameters (builds each network)."),
) -> None:
    """Registered models: architecture, scale, parameters, content-aware, and the status of their weights."""
    from odisr.models import available, get_spec, weight_status

    table = Table(header_style="bold", box=None, padding=(0, 1, 0, 0))  # fits 80 columns
    for header in ("name", "architecture", "scale", "params", "content-aware", "weights"):
        table.add_column(header, justify="right" if header in ("scale", "params") else "left", no_wrap=header == "name")
    for name in fnmatch.filter(available(), pattern):
        spec = get_spec(name)
        model = _skeleton(spec) if params else None
        table.add_row(
            name,
            spec.architecture,
            f"×{spec.scale}",
            f"{model.num_params:,}" if model is not None else "–",
            "yes" if _content_aware(spec, model) else "no",
            _STATUS[weight_status(spec)],
        )
    console = Console()
    if not console.is_terminal:  # piped: never truncate cells to the default 80 columns
        console.width = max(console.width, console.measure(table, options=console.options.update_width(10_000)).maximum)
    console.print(table)


@models_app.command("download")
def download(
    names: list[str] = typer.Argument(None, help="Model names (see `odisr models list`)."),
    all_models: bool = typer.Option(False, "--all", help="Every registered model with downloadable weights."),
) -> None:
    """Download and verify the official weights of models into the cache ($ODISR_HOME/weights)."""
    from odisr.models import available, ensure_weights, find_spec, weight_status

    if not names and not all_models:
        _print_error(ValueError("name at least one model, or pass --all"))
        raise typer.Exit(1)
    console, failed = Console(), []
    for name in available() if all_models else names:
        user_supplied = False
        try:
            spec = find_spec(name)
            user_supplied = weight_status(spec) == "user-supplied"
            path = ensure_weights(spec)
        except _FAILURES as exc:
            kind = "[yellow]user-supplied weights[/yellow]" if user_supplied else "[red]error[/red]"
            _print_error(exc, f"{kind} {escape(name)}:")
            if not (all_models and user_supplied):
                failed.append(name)
            continue
        where = "no weights needed" if path is None else str(path)
        console.print(f"[green]ok[/green] {escape(name)}: {escape(where)}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@models_app.command("info")
def info(
    name_or_path: str = typer.Argument(..., help="A model name or a checkpoint file (.pth/.safetensors)."),
    flops: bool = typer.Option(True, "--flops/--no-flops", help="Count FLOPs of one forward pass."),
    size: int = typer.Option(64, "--size", min=8, help="LR input side (pixels) for the FLOP count."),
) -> None:
    """Architecture, constructor arguments, parameters, FLOPs and weights of a model or a checkpoint file."""
    from odisr.models import available, build, get_spec, load

    try:
        if name_or_path in available():
            spec = get_spec(name_or_path)
            model, items = build(spec), _spec_items(spec)
        else:
            model = load(name_or_path)
            items = _file_items(Path(name_or_path), model)
    except _FAILURES as exc:
        _print_error(exc)
        raise typer.Exit(1) from None
    items += _model_items(model, flops=flops, size=size)
    console = Console()
    for label, value in items:
        console.print(Text.assemble((f"{label}: ", "bold"), str(value)), soft_wrap=True)


def _spec_items(spec: ModelSpec) -> list[tuple[str, object]]:
    from odisr.models import weight_cache_path, weight_status

    items: list[tuple[str, object]] = [
        ("model", spec.name),
        ("description", spec.description),
        ("paper", spec.paper),
        ("architecture", spec.architecture),
        ("arguments", _kwargs(spec.kwargs)),
    ]
    wf = spec.weights
    if wf is None:
        return [*items, ("weights", "not needed")]
    pins = ", ".join(f"{k} {v}" for k, v in (("sha256", wf.sha256), ("git blob", wf.git_blob_sha1)) if v)
    items += [
        ("weights", _STATUS[weight_status(spec)]),
        ("weight file", weight_cache_path(wf, model=spec.name)),
        ("url", wf.url or "none (user-supplied)"),
        ("pins", pins or "none"),
    ]
    return [*items, ("instructions", wf.instructions)] if wf.instructions else items


def _file_items(path: Path, model: SRModel) -> list[tuple[str, object]]:
    from odisr.download import file_digests
    from odisr.models import available, detect_architecture, get_spec, load_state_dict_file

    digests = file_digests(path)
    _, kwargs = detect_architecture(load_state_dict_file(path), source=path)
    official = [name for name in available() if _same_file(get_spec(name).weights, digests)]
    return [
        ("file", path),
        ("sha256", digests.sha256),
        ("architecture", model.architecture),
        ("detected arguments", _kwargs(kwargs)),
        ("official weights of", ", ".join(official) or "no registered model"),
    ]


def _same_file(wf: WeightFile | None, digests: Digests) -> bool:
    return wf is not None and (wf.sha256 == digests.sha256 or wf.git_blob_sha1 == digests.git_blob_sha1)


def _model_items(model: SRModel, *, flops: bool, size: int) -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = [
        ("scale", f"×{model.scale}"),
        ("window size", f"{model.window_size} px (LR)"),
        ("content-aware", "yes (ratio γ)" if model.content_aware else "no"),
        ("uses latitude", "yes" if model.uses_latitude else "no"),
        ("parameters", f"{model.num_params:,}"),
    ]
    if flops:
        items.append((f"FLOPs at {size}×{size} LR", _si(model.flops(size, size))))
    return items


def _si(value: float) -> str:
    """``4423680`` → ``"4.424 M"`` (4 significant digits, SI prefix)."""
    for prefix, factor in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= factor:
            return f"{value / factor:.4g} {prefix}"
    return f"{value:g}"


def _kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "(defaults)"
