"""odisr: super-resolution of 360° equirectangular (ERP) panoramas at scale.

Public entry points: :func:`odisr.upscale` (one image), :mod:`odisr.metrics` (WS-PSNR, WS-SSIM, PSNR, SSIM),
:mod:`odisr.models` (CAMixerSR and baselines), :mod:`odisr.erp` (sphere geometry) and the ``odisr`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("odisr")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
