"""``odisr report STORE.zarr``: tables of an odisr store in the terminal, and optionally HTML/CSV/JSON/Markdown files.

The terminal shows the summary, the runs, the model tables, CAMixer routing, the failures and the first
:data:`TERMINAL_ROWS` rows of the per-image table (every row is in the CSV/JSON/HTML files).

Exit codes: 0 report produced (also for an empty store or one with only failures), 1 not an odisr store or an
output file could not be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from odisr.cli.main import app

if TYPE_CHECKING:
    from collections.abc import Iterable

    from odisr.report import StoreReport
    from odisr.report.tables import Table

#: Width of printed tables when the output is not a terminal (a pipe or a file): wide enough not to wrap numbers.
PIPE_WIDTH = 160
#: Rows of the per-image table printed in the terminal.
TERMINAL_ROWS = 50


def rich_table(table: Table) -> RichTable:
    """A :class:`~odisr.report.tables.Table` for the terminal: bold cells in bold, footnotes as the caption.

    Store text is never read as rich markup (file names may contain brackets).
    """
    caption = "\n".join(table.notes) or None
    out = RichTable(title=table.title, title_justify="left", header_style="bold", caption=caption,
                    caption_justify="left")  # fmt: skip
    for header, numeric in zip(table.headers, table.numeric):
        out.add_column(header, justify="right" if numeric else "left", overflow="fold", no_wrap=header == "model")
    for i, row in enumerate(table.cells):
        out.add_row(*(Text(c, style="bold" if (i, j) in table.bold else "") for j, c in enumerate(row)))
    return out


def table_console() -> Console:
    """A stdout console for tables: the terminal's width, or :data:`PIPE_WIDTH` when stdout is a pipe or a file."""
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def print_tables(console: Console, tables: Iterable[Table]) -> None:
    """Print the tables that have rows, each after a blank line."""
    for table in tables:
        if table.cells:
            console.print()
            console.print(rich_table(table))


def _head(table: Table, n: int) -> Table:
    """The first ``n`` rows of ``table``, with a note saying how many more there are."""
    from dataclasses import replace

    if len(table.cells) <= n:
        return table
    more = f"… and {len(table.cells) - n} more rows (every row: --csv, --json or --html)"
    return replace(table, cells=table.cells[:n], notes=(*table.notes, more))


def _print(console: Console, report: StoreReport) -> None:
    from odisr.report import tables as t

    for label, value in t.summary_items(report):
        console.print(f"[bold]{escape(label)}:[/bold] {escape(value)}", highlight=False, soft_wrap=True)
    if (message := t.status_message(report)) is not None:
        console.print(f"\n[yellow]{escape(message)}[/yellow]")
    summaries = t.summarize(report.rows)
    print_tables(console, (t.run_table(report.run_records), _head(t.image_table(report.rows), TERMINAL_ROWS),
                           t.aggregate_table(summaries), t.comparison_table(summaries),
                           *t.lightweight_tables(report.rows), t.routing_table(report.rows),
                           _head(t.failure_table(report.rows), TERMINAL_ROWS)))  # fmt: skip
    for model, verdict in t.routing_verdicts(report.rows).items():
        console.print(f"{escape(model)}: {escape(verdict.sentence())}", highlight=False, soft_wrap=True)


@app.command("report")
def report(
    store: Annotated[
        str, typer.Argument(help="The odisr Zarr store (STORE.zarr) of `odisr run`/`evaluate`, or a training run "
                                 "directory of `odisr train` (summary and training curves).")
    ],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report here (previews in <name>_files/ next to it).")
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the per-image rows as CSV here.")] = None,
    json: Annotated[
        Path | None,
        typer.Option("--json", help="Write runs, rows, per-model aggregates, routing, lightweight table as JSON."),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write the lightweight-SR table and the model comparison here.")
    ] = None,
    previews: Annotated[
        bool, typer.Option("--previews/--no-previews", help="With --html: the gallery's preview files next to it.")
    ] = True,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes making preview files (default: one per core).")
    ] = None,
) -> None:
    """The runs of a store (times, device, workers, counts, throughput), per-image and per-model tables (sizes,
    seconds, WS-PSNR/WS-SSIM/PSNR/SSIM where recorded), the papers' lightweight-SR table of lightweight evaluations,
    CAMixer routing (per window or per block), failures; HTML with a gallery of the SR previews, CSV/JSON/Markdown.
    Missing output folders are created."""
    from odisr.report import (  # here: matplotlib and zarr would slow `odisr --help`
        NotAStoreError,
        write_report,
    )
    from odisr.train.rundir import is_run_dir

    err = Console(stderr=True)
    if is_run_dir(store):  # a training run directory of `odisr train`: its summary and curves
        from odisr.cli.train import report_run

        report_run(table_console(), err, store, html=html, csv=csv, json=json, markdown=markdown)
        return
    try:
        result = write_report(store, html=html, csv=csv, json=json, markdown=markdown, previews=previews,
                              workers=workers)
    except NotAStoreError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write the report: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console = table_console()
    _print(console, result)
    for label, path in (("HTML", html), ("CSV", csv), ("JSON", json), ("Markdown", markdown)):
        if path is not None:
            console.print(f"{label} written to {path}", markup=False, highlight=False)
    if html is not None and previews:
        from odisr.report import files_dir

        console.print(f"previews written to {files_dir(html)}", markup=False, highlight=False)
