"""``odisr verify STORE.zarr``: re-read every (image, model) pair of a store and check it against the checksums
recorded when it was written (:mod:`pipelines.verify`).

Exit codes: 0 every complete pair verifies (failed and running/orphaned pairs are listed, they are not damage);
1 some complete pair is corrupt or cannot be verified; 2 not an odisr store.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from odisr.cli.main import app

_STYLE = {"verified": "green", "corrupt": "bold red", "unverifiable": "red", "failed": "yellow", "running": "yellow"}


@app.command("verify")
def verify_command(
    store: Annotated[str, typer.Argument(help="The odisr Zarr store (a folder or a URL such as s3://bucket/x.zarr).")],
    show_all: Annotated[bool, typer.Option("--all", help="List verified pairs too, not only the others.")] = False,
    redo_corrupt: Annotated[
        bool, typer.Option("--redo-corrupt", help="Mark corrupt pairs failed, so that the next run recomputes them.")
    ] = False,
) -> None:
    """Re-read every pair of STORE and list complete (verified), corrupt, unverifiable, failed and running/orphaned
    ones; a chunk changed on disk is named. Exit code 0 only when every complete pair verifies."""
    from pipelines import verify as v
    from pipelines.store import StoreError

    err = Console(stderr=True)
    out = Console(highlight=False, soft_wrap=True)
    columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task("", total=None)
        try:
            checks = v.verify_store(store, on_pair=lambda c: bar.update(task, advance=1, description=c.key))
        except StoreError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
    for c in checks:
        if show_all or c.verdict != v.VERIFIED:
            style = _STYLE[c.verdict]
            out.print(f"[{style}]{c.verdict:>12}[/] {escape(f'{c.key} [{c.model}]: {c.detail}')}")
    if redo_corrupt:
        for c in checks:
            if c.verdict == v.CORRUPT:
                v.mark_for_redo(store, c)
                out.print(f"marked failed: {escape(f'{c.key} [{c.model}]')} (the next run recomputes it)")
    counts = Counter(c.verdict for c in checks)
    line = ", ".join(f"{counts[k]} {k}" for k in (v.VERIFIED, v.CORRUPT, v.UNVERIFIABLE, v.FAILED, v.RUNNING))
    out.print(f"odisr verify: {len(checks)} pairs: {line}")
    raise typer.Exit(1 if any(counts[k] for k in v.BAD) else 0)
