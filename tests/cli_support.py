"""Helpers for tests that drive the real ``odisr`` command line and the pipeline on real panoramas."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from typer.testing import CliRunner

from odisr.cli.main import app
from odisr.degrade import bicubic_erp
from odisr.io import read_image, write_image


def odisr_cli(*args: object, verbose: bool = False) -> tuple[int, str]:
    """Run ``odisr ARGS…`` in this process (``-v`` first with ``verbose``); returns (exit code, output).

    Exceptions that the command does not turn into an exit code propagate (a crash is a test failure).
    """
    argv = (["-v"] if verbose else []) + [str(a) for a in args]
    result = CliRunner().invoke(app, argv, catch_exceptions=False)
    return result.exit_code, result.output


def write_lr_panoramas(shared: Path, out: Path, names: Iterable[str], factor: int = 4) -> Path:
    """The shared panoramas ``names`` (``data/erp``) made LR by ERP-bicubic downsampling by ``factor``, written
    into ``out`` under their names; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_image(out / name, bicubic_erp(read_image(shared / "data" / "erp" / name), factor))
    return out
