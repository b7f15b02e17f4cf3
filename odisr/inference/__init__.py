"""Chunked (tiled) inference: :func:`upscale` runs any SR model over an image in window-aligned tiles with
halos, circular in longitude for 360° panoramas, streaming the output to a numpy or Zarr sink."""

from __future__ import annotations

from odisr.inference.engine import resolve_device, upscale
from odisr.inference.tiling import DEFAULT_HALO, MODES, Tile, TileGrid, effective_tile

__all__ = ["DEFAULT_HALO", "MODES", "Tile", "TileGrid", "effective_tile", "resolve_device", "upscale"]
