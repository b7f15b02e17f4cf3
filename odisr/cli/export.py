"""``odisr export STORE OUT_DIR``: viewer-ready files from a store — 360° ERP images, cube maps, tile pyramids —
with the source's ICC profile, EXIF and Photo Sphere (GPano) XMP (:mod:`odisr.export`), on a Dask cluster
(:mod:`pipelines.batch_export`).

Exit codes: 0 all exported (or already), 1 some pairs failed (named; the others exported), 2 nothing was done
(bad option, store or filter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from odisr.cli.export_options import Format, Layout, Quality
from odisr.cli.main import app
from odisr.cli.run import Scheduler, Threads, Workers, _setup_errors


@app.command("export")
def export_command(
    store: Annotated[str, typer.Argument(help="The odisr store (Zarr) to export from; only read.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the outputs (created).")],
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only this model's results (repeatable).")
    ] = None,
    format: Format = "jpg",  # noqa: A002  (the option's name)
    quality: Quality = 95,
    layout: Layout = "erp",
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Only these image keys (repeatable or comma-separated).")
    ] = None,
    cube_format: Annotated[
        str, typer.Option("--cube-format", help="cubemap layout: faces (six files), dice (3×4 cross) or horizon.")
    ] = "faces",
    tile_size: Annotated[int, typer.Option("--tile-size", help="Largest pyramid tile edge in px (even).")] = 512,
    face_size: Annotated[
        int | None, typer.Option("--face-size", help="Cube face edge in px (default ≈ ERP width / π).")
    ] = None,
    viewer_js: Annotated[
        Path | None, typer.Option("--viewer-js", help="Local pannellum.js for index.html (default: the CDN).")
    ] = None,
    viewer_css: Annotated[
        Path | None, typer.Option("--viewer-css", help="Its pannellum.css (default: next to --viewer-js).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite outputs that are already complete.")] = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: Threads = 1,
) -> None:
    """Write viewer-ready files of the complete results in STORE: ERP images, cube maps or tile pyramids.

    Names: OUT_DIR/<key>__<model>.<ext>, OUT_DIR/<key>__<model>.cubemap/, OUT_DIR/<key>__<model>.tiles/index.html.

    Complete outputs are skipped (--overwrite rewrites them); run again to finish an interrupted export.
    """
    from odisr.export import ExportRequest
    from pipelines.batch_export import plan_exports, run_exports, viewer_for
    from pipelines.cluster import connect

    console = Console(stderr=True)
    with _setup_errors(console):
        request = ExportRequest(format=format, quality=quality, layout=layout, cube_format=cube_format,
                                tile_size=tile_size, face_size=face_size)  # fmt: skip
        request = viewer_for(str(out_dir), request, viewer_js and str(viewer_js), viewer_css and str(viewer_css))
        keys = [k.strip() for value in only or [] for k in value.split(",") if k.strip()]
        tasks, skipped, unmatched = plan_exports(store, str(out_dir), request, models=model or [], only=keys,
                                                 overwrite=overwrite)  # fmt: skip
        if unmatched:
            raise ValueError(f"no pair of {store} matches {', '.join(unmatched)}; `odisr report {store}` lists them")
    if not tasks:
        console.print(f"odisr: nothing to export ({skipped} skipped: already exported or not complete)")
        raise typer.Exit(0)
    with connect(scheduler, n_workers=workers, threads_per_worker=threads_per_worker, inference=False) as client:
        console.print(f"Dask dashboard: {client.dashboard_link}", highlight=False)
        summary = run_exports(client, tasks, progress=console.is_terminal)
    summary.skipped += skipped
    for source, name, error in summary.failures:
        console.print(f"[red]failed[/] {escape(f'{source} [{name}]: {error}')}", highlight=False)
    console.print(f"odisr: {summary.line()} → {escape(str(out_dir))}", highlight=False)
    raise typer.Exit(1 if summary.failed else 0)
