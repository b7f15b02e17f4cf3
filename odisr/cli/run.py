"""``odisr run`` (super-resolve every image found into a Zarr store) and ``odisr evaluate`` (benchmark models on HR
panoramas: degrade, super-resolve, score) — both run as one Dask graph (:mod:`pipelines.batch_sr`).

Exit codes: 0 all done, 1 some images failed (recorded in the store and listed), 2 nothing was done because of a
bad command line, config, model, weights file, input path, store or cluster, 3 the cluster was lost mid-run (what
completed is in the store; re-run the same command to resume).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from odisr.cli.export_options import Format, Layout, Quality
from odisr.cli.main import app

if TYPE_CHECKING:
    from odisr.report.tables import Table

log = logging.getLogger(__name__)

DEFAULT_PRESET = "odi_x4"

Inputs = Annotated[
    list[str] | None,
    typer.Argument(help="Image files, directories (recursive), globs, .zip/.tar(.gz) archives or fsspec URLs."),
]
Out = Annotated[str, typer.Option("--out", "-o", help="The Zarr store to write (created if absent; resumed if not).")]
Config = Annotated[
    str | None,
    typer.Option("--config", "-c", help=f"Preset YAML file or name (odi_x4, large_x4, …); default {DEFAULT_PRESET}."),
]
Weights = Annotated[
    list[str] | None, typer.Option("--weights", help="Weights file: PATH, or NAME=PATH per model (repeatable).")
]
Scale = Annotated[int | None, typer.Option("--scale", "-s", help="Upscaling factor; must match the model(s).")]
Ratio = Annotated[float | None, typer.Option("--ratio", help="CAMixer attention ratio γ in [0, 1].")]


def _tile_value(value: str | None) -> int | str | None:
    """``--tile``: a positive size in LR pixels or ``auto``."""
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give a size in LR pixels (e.g. 256) or 'auto'") from None


Tile = Annotated[
    str | None,
    typer.Option("--tile", callback=_tile_value,
                 help="Tile size in LR pixels (rounded up to the window), or 'auto': from a GPU's free memory "
                      "(whole image when it fits), 256 on the CPU."),
]
Halo = Annotated[int | None, typer.Option("--halo", help="Tile halo in LR pixels.")]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda (cuda needs GPU workers).")]
Compile = Annotated[
    bool,
    typer.Option("--compile", help="Compile the model with TorchInductor (each worker's first tile compiles; "
                                   "faster after). Same as `compile: true` in the config."),
]
Scheduler = Annotated[
    str | None, typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786).")
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", "-w", help="Local worker processes (default: one per GPU on CUDA, else fill the CPU)."),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads-per-worker", help="Threads (and torch threads) per local worker (default: 1 on the CPU; "
                                              "the CPU cores shared out among GPU workers)."),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Recompute pairs that are already complete.")]
FetchSamples = Annotated[
    bool, typer.Option("--fetch-samples", help="Add the sample panoramas (downloaded once, verified).")
]
Report = Annotated[
    Path | None,
    typer.Option("--report", help="When the run ends, write the store's HTML report here (previews next to it)."),
]
ExportDir = Annotated[
    str | None, typer.Option("--export-dir", help="Also export each pair as it completes (as `odisr export`).")
]


@app.command("run")
def run_command(
    inputs: Inputs = None,
    out: Out = ...,
    config: Config = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name or checkpoint path.")] = None,
    weights: Weights = None,
    scale: Scale = None,
    ratio: Ratio = None,
    tile: Tile = None,
    halo: Halo = None,
    device: Device = None,
    compile: Compile = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: Threads = None,
    overwrite: Overwrite = False,
    fetch_samples: FetchSamples = False,
    report: Report = None,
    export_dir: ExportDir = None,
    format: Format = "jpg",  # noqa: A002  (the option's name)
    quality: Quality = 95,
    layout: Layout = "erp",
) -> None:
    """Super-resolve every image found into STORE.zarr (resumable: complete images are skipped).

    With --export-dir, each pair is also exported (--format, --quality, --layout) as soon as it completes.
    """
    from pipelines.batch_sr import canonical_model_name

    console = Console(stderr=True)
    with _setup_errors(console):
        model = canonical_model_name(model, scale) if model else None
        cfg = _config(config, model=model, scale=scale, ratio=ratio, tile=tile, halo=halo, device=device,
                      compile=compile or None)  # fmt: skip
        weight_files = _weights_for([cfg.model], weights)
        sources = _sources(inputs, fetch_samples)
        export = _export_plan(export_dir, format=format, quality=quality, layout=layout)
    summary, dashboard = _execute(console, sources, out, cfg, [cfg.model], weight_files, overwrite=overwrite,
                                  cluster=(scheduler, workers, threads_per_worker), export=export)  # fmt: skip
    _finish(console, out, report, dashboard, local=scheduler is None)
    failed = summary.failed or (summary.exports is not None and summary.exports.failed)
    raise typer.Exit(1 if failed else 0)


@app.command("evaluate")
def evaluate_command(
    inputs: Inputs = None,
    out: Out = ...,
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model to compare (repeatable; bicubic too).")
    ] = ...,
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor of every model.")] = ...,
    degrade: Annotated[
        str, typer.Option("--degrade", help="How LR panoramas are made from the HR: bicubic (ERP) or fisheye.")
    ] = "bicubic",
    lr_dir: Annotated[
        str | None, typer.Option("--lr-dir", help="Take the LR images from here, matched by name (<name>x<s>.png).")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Benchmark name of the images (a table column); default: their folder, "
                                       "e.g. Set5 for Set5/HR/."),
    ] = None,
    config: Config = None,
    weights: Weights = None,
    ratio: Ratio = None,
    tile: Tile = None,
    halo: Halo = None,
    device: Device = None,
    compile: Compile = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: Threads = None,
    overwrite: Overwrite = False,
    fetch_samples: FetchSamples = False,
    report: Report = None,
) -> None:
    """Benchmark models on HR images: make LR, super-resolve, score (WS-PSNR, WS-SSIM, PSNR, SSIM), compare.

    Prints the per-image scores and the model comparison (params, FLOPs, means, seconds per image); lightweight
    runs also print the papers' lightweight-SR table (PSNR/SSIM on Y per dataset of the whole store).
    """
    from odisr.degrade import DEGRADATIONS
    from pipelines.batch_sr import canonical_model_name, match_lr_dir

    console = Console(stderr=True)
    with _setup_errors(console):
        if degrade not in DEGRADATIONS:
            raise ValueError(f"--degrade {degrade!r}: use one of {', '.join(DEGRADATIONS)}")
        if dataset is not None and not dataset.strip():
            raise ValueError("--dataset: give a non-empty name (e.g. Set5)")
        model = [canonical_model_name(m, scale) for m in model]
        cfg = _config(config, model=model[0], scale=scale, ratio=ratio, tile=tile, halo=halo, device=device,
                      compile=compile or None)  # fmt: skip
        weight_files = _weights_for(model, weights)
        sources = _sources(inputs, fetch_samples)
        lr_sources = match_lr_dir(sources, lr_dir, scale) if lr_dir else None
    summary, dashboard = _execute(
        console, sources, out, cfg, model, weight_files, overwrite=overwrite,
        cluster=(scheduler, workers, threads_per_worker), degrade="lr-dir" if lr_dir else degrade,
        lr_sources=lr_sources, dataset=dataset,
    )  # fmt: skip
    from odisr.cli.report import print_tables, table_console

    print_tables(table_console(), evaluate_tables(out, sources, lightweight=cfg.mode == "lightweight"))
    _finish(console, out, report, dashboard, local=scheduler is None)
    raise typer.Exit(1 if summary.failed else 0)


# ---------------------------------------------------------------------------------------------------- steps


@contextlib.contextmanager
def _setup_errors(console: Console) -> Iterator[None]:
    """Turn the errors of preparing a run into one message and exit code 2 (nothing has been done yet)."""
    from odisr.config import ConfigError
    from odisr.download import DownloadError
    from odisr.sources import SourceError
    from pipelines.cluster import ClusterError
    from pipelines.store import StoreError

    try:
        yield
    except (ConfigError, SourceError, StoreError, ClusterError, DownloadError, FileNotFoundError, ValueError) as exc:
        _fail(console, str(exc))
    except KeyError as exc:  # unknown model: KeyError's str() adds quotes
        _fail(console, str(exc.args[0]) if exc.args else repr(exc))


def _fail(console: Console, message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _config(path: str | None, **overrides: Any) -> Any:
    """The run's :class:`odisr.config.UpscaleConfig`: the file (or the default preset) with the CLI's values on top.

    Without ``--config``, a ``--model`` given alone brings its own scale (the preset's ×4 does not apply).
    """
    from pydantic import ValidationError

    from odisr.config import ConfigError, UpscaleConfig, load_config

    if path is not None:
        return load_config(path, **overrides)
    base = load_config(DEFAULT_PRESET).model_dump()
    if overrides.get("model") is not None:
        base["scale"] = None
    try:
        return UpscaleConfig(**(base | {k: v for k, v in overrides.items() if v is not None}))
    except ValidationError as exc:
        raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def _weights_for(models: list[str], weights: list[str] | None) -> dict[str, str | None]:
    """``{model: weights path or None}`` from the ``--weights`` values (a bare PATH only with a single model)."""
    from odisr.models import parse_weights_args

    parsed = parse_weights_args(weights or [])
    if None in parsed and len(models) > 1:
        raise ValueError("several models: give weights as --weights NAME=PATH")
    unknown = set(parsed) - {None, *models}
    if unknown:
        raise ValueError(f"--weights for {', '.join(sorted(map(str, unknown)))}, which is not among --model {models}")
    return {m: str(p) if (p := parsed.get(m, parsed.get(None))) else None for m in models}


def _sources(inputs: list[str] | None, fetch_samples: bool) -> list[Any]:
    """The images named on the command line, plus the sample panoramas with ``--fetch-samples``."""
    from odisr.sources import SourceError, find_sources

    inputs = [*(inputs or []), *(_samples() if fetch_samples else [])]
    if not inputs:
        raise SourceError("no input given: name image files, directories, globs, archives or URLs")
    sources = find_sources(inputs)
    if not sources:
        raise SourceError(f"no image found in {', '.join(inputs)}")
    return sources


def _export_plan(export_dir: str | None, **options: Any) -> tuple[str, Any] | None:
    """``(folder, ExportRequest)`` for ``--export-dir`` (None without it); bad options fail before any work."""
    if export_dir is None:
        return None
    from odisr.export import ExportRequest

    return export_dir, ExportRequest(**options)


def _samples() -> list[str]:
    from odisr.samples import fetch_samples

    return [str(p) for p in fetch_samples()]


def _execute(
    console: Console,
    sources: list[Any],
    out: str,
    cfg: Any,
    models: list[str],
    weight_files: dict[str, str | None],
    *,
    overwrite: bool,
    cluster: tuple[str | None, int | None, int | None],
    degrade: str | None = None,
    lr_sources: dict[str, Any] | None = None,
    dataset: str | None = None,
    export: tuple[str, Any] | None = None,
) -> tuple[Any, str]:
    """Validate the models and the store, start the cluster, run the job, print the summary; returns it and the
    Dask dashboard's URL."""
    from odisr.inference.sizing import AUTO, CPU_TILE
    from pipelines import cluster as cl
    from pipelines.batch_sr import Job, Settings, resolve_model, run_job
    from pipelines.store import open_store

    scheduler, n_workers, threads = cluster
    with _setup_errors(console):
        madds = cfg.mode == "lightweight"  # the lightweight-SR table's #MAdds (a 1280×720 count)
        choices = [resolve_model(m, weights=weight_files[m], scale=cfg.scale, ratio=cfg.ratio, madds=madds)
                   for m in models]  # fmt: skip
        open_store(out)
        gpus = [] if scheduler else cl.local_gpus(cfg.device)
    with cl.connect(scheduler, n_workers=n_workers, threads_per_worker=threads, gpus=gpus) as client:
        dashboard = str(client.dashboard_link)
        console.print(f"Dask dashboard: {dashboard}", highlight=False)
        with _setup_errors(console):
            # a local GPU worker sees only its own device, as cuda:0
            device = cl.resolve_device(client, "cuda" if gpus and cfg.device.startswith("cuda") else cfg.device)
        # tile "auto" is chosen per image from a GPU's free memory; elsewhere it is one fixed tile, recorded as such
        tile = CPU_TILE if cfg.tile == AUTO and not device.startswith("cuda") else cfg.tile
        settings = Settings(
            scale=choices[0].scale, mode=cfg.mode, tile=tile, halo=cfg.halo, ratio=cfg.ratio, device=device,
            batch_size=cfg.batch_size, amp=cfg.amp, degrade=degrade, dataset=dataset, compile=cfg.compile,
        )  # fmt: skip
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        job = Job(sources, out, choices, settings, command, overwrite, lr_sources, export)
        try:
            summary = run_job(job, client, progress=console.is_terminal)
        except cl.ClusterError as exc:  # the scheduler went away mid-run
            logging.getLogger("distributed").setLevel(logging.CRITICAL)  # not its reconnect tracebacks on close
            _fail(console, str(exc), code=3)
    exports = summary.exports.failures if summary.exports is not None else []
    for source, model, error in [*summary.failures, *((s, m, f"export: {e}") for s, m, e in exports)]:
        console.print(f"[red]failed[/] {escape(f'{source} [{model}]: {error}')}", highlight=False)
    console.print(f"odisr: {summary.line()}", highlight=False)
    if summary.exports is not None:
        console.print(f"odisr: {summary.exports.line()} → {escape(export[0])}", highlight=False)
    return summary, dashboard


def _finish(console: Console, out: str, report: Path | None, dashboard: str, *, local: bool) -> None:
    """The last lines of a run: the Dask dashboard's URL and the report (written now with ``--report``, else the
    command that writes it)."""
    console.print(f"Dask dashboard: {dashboard}" + (" (local cluster, closed with the run)" if local else ""),
                  highlight=False, soft_wrap=True)  # fmt: skip
    if report is None:
        console.print(f"report: odisr report {shlex.quote(out)} --html report.html", highlight=False, soft_wrap=True)
        return
    from odisr.report import NotAStoreError, files_dir, write_report

    try:
        write_report(out, html=report)
    except (NotAStoreError, OSError) as exc:  # the run itself is recorded; only the report is missing
        console.print(f"[red]report not written:[/] {escape(str(exc))}", highlight=False)
        return
    console.print(f"report: {report} (previews in {files_dir(report)})", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------- evaluate tables


def evaluate_tables(store: str, sources: list[Any], *, lightweight: bool) -> list[Table]:
    """The tables ``odisr evaluate`` prints, read back from the store (:mod:`odisr.report.tables`).

    For the images of ``sources`` (every model found under them, complete results): their scores side by side
    (WS-PSNR; PSNR on Y for ``lightweight`` runs) and the model comparison (params, FLOPs per LR pixel, mean
    metrics, Δ WS-PSNR vs bicubic, seconds per image). ``lightweight`` adds the papers' lightweight-SR table over the
    whole store, one column per dataset evaluated into it.
    """
    from odisr.report import tables as t

    report = t.collect(store)
    keys = {source.key for source in sources}
    rows = [r for r in report.rows if r.image in keys]
    side_by_side = t.per_image_table(rows, "psnr_y" if lightweight else "ws_psnr")
    papers = t.lightweight_tables(report.rows) if lightweight else []
    return [side_by_side, t.comparison_table(t.summarize(rows)), *papers]
