"""The ``odisr`` command: one entry point, one sub-command per task.

Each sub-command lives in its own module of :mod:`odisr.cli` and is added here.
"""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="odisr",
    help="Super-resolve 360° equirectangular panoramas (CAMixerSR and baselines) and score them with WS-PSNR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
) -> None:
    """Super-resolve 360° equirectangular panoramas and score them with WS-PSNR."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register_subcommands() -> None:
    # Imported here so that ``odisr --help`` stays fast and each module owns its command.
    from odisr.cli import metrics as _metrics  # noqa: F401  (registers `odisr metrics`)
    from odisr.cli import run as _run  # noqa: F401  (registers `odisr run` and `odisr evaluate`)
    from odisr.cli import report as _report  # noqa: F401  (registers `odisr report`)
    from odisr.cli import models as _models  # noqa: F401  (registers `odisr models list|download|info`)
    from odisr.cli import verify as _verify  # noqa: F401  (registers `odisr verify`)
    from odisr.cli import export as _export  # noqa: F401  (registers `odisr export`)
    from odisr.cli import train as _train  # noqa: F401  (registers `odisr train`)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    app()
