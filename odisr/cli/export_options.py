"""Options of ``odisr export`` that ``odisr run --export-dir`` shares (one definition for both commands)."""

from __future__ import annotations

from typing import Annotated

import typer

Format = Annotated[str, typer.Option("--format", "-f", help="Image format: jpg, png, webp or tiff.")]
Quality = Annotated[int, typer.Option("--quality", "-q", help="JPEG/WebP quality 1–100 (WebP 100: lossless).")]
Layout = Annotated[
    str, typer.Option("--layout", help="erp (one 360° image), cubemap (six faces) or tiles (a viewer's pyramid).")
]
