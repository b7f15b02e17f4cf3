"""``odisr report STORE.zarr``: tables of an odisr store in the terminal, and optionally HTML/CSV/JSON files.

Exit codes: 0 report produced (also for an empty store or one with only failures), 1 not an odisr store or an
output file could not be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from odisr.cli.main import app

if TYPE_CHECKING:
    from odisr.report import StoreReport
    from odisr.report.tables import Table


def _rich(table: Table) -> RichTable:
    """Store text is never read as rich markup (file names may contain brackets)."""
    out = RichTable(title=table.title, title_justify="left", header_style="bold")
    for header, numeric in zip(table.headers, table.numeric):
        out.add_column(header, justify="right" if numeric else "left", overflow="fold", no_wrap=header == "model")
    for row in table.cells:
        out.add_row(*map(Text, row))
    return out


def _print(console: Console, report: StoreReport) -> None:
    from odisr.report import tables as t

    for label, value in t.summary_items(report):
        console.print(f"[bold]{escape(label)}:[/bold] {escape(value)}", highlight=False, soft_wrap=True)
    if (message := t.status_message(report)) is not None:
        console.print(f"\n[yellow]{escape(message)}[/yellow]")
    summaries = t.summarize(report.rows)
    tables = (t.image_table(report.rows), t.aggregate_table(summaries), t.comparison_table(summaries),
              t.failure_table(report.rows))
    for table in tables:
        if table.cells:
            console.print()
            console.print(_rich(table))


@app.command("report")
def report(
    store: str = typer.Argument(..., help="The odisr Zarr store (STORE.zarr) written by `odisr run`/`evaluate`."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    csv: Path | None = typer.Option(None, "--csv", help="Write the per-image rows as CSV here."),
    json: Path | None = typer.Option(None, "--json", help="Write rows and per-model aggregates as JSON here."),
) -> None:
    """Per-image and per-model WS-PSNR/WS-SSIM/PSNR/SSIM tables of a store, its failures, and HTML/CSV/JSON."""
    from odisr.report import NotAStoreError, write_report  # here: matplotlib and zarr would slow `odisr --help`

    err = Console(stderr=True)
    try:
        result = write_report(store, html=html, csv=csv, json=json)
    except NotAStoreError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write the report: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console = Console()
    _print(console, result)
    for label, path in (("HTML", html), ("CSV", csv), ("JSON", json)):
        if path is not None:
            console.print(f"{label} written to {path}", markup=False, highlight=False)
