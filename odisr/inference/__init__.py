"""Chunked (tiled) inference: :func:`upscale` runs any SR model over an image in window-aligned tiles with
halos, circular in longitude for 360° panoramas, streaming the output to a numpy or Zarr sink."""

from __future__ import annotations

from odisr.inference.engine import auto_tiling, resolve_device, upscale
from odisr.inference.sizing import AUTO
from odisr.inference.tiling import DEFAULT_HALO, MODES, Tile, TileGrid, effective_tile

__all__ = [
    "AUTO", "DEFAULT_HALO", "MODES", "Tile", "TileGrid", "auto_tiling", "effective_tile", "resolve_device", "upscale",
]
