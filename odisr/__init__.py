"""odisr: super-resolution of 360° equirectangular (ERP) panoramas at scale.

Public entry points: :func:`odisr.upscale` (one image), :mod:`odisr.metrics` (WS-PSNR, WS-SSIM, PSNR, SSIM),
:mod:`odisr.models` (CAMixerSR and baselines), :mod:`odisr.erp` (sphere geometry) and the ``odisr`` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("odisr")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from odisr.inference.engine import upscale

__all__ = ["__version__", "upscale"]


def __getattr__(name: str) -> Any:
    # Lazy so that ``import odisr`` stays light (no torch) for the CLI and the Dask driver.
    if name == "upscale":
        from odisr.inference.engine import upscale

        return upscale
    raise AttributeError(f"module 'odisr' has no attribute {name!r}")
