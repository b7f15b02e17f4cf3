"""Export one (image, model) result: its pixels (a Zarr ``sr`` array or any array-like) and its attrs → files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from odisr.export.cube import write_cubemap
from odisr.export.files import clear
from odisr.export.metadata import output_metadata
from odisr.export.plan import ExportError, ExportRequest, Target, check_size
from odisr.export.pyramid import write_pyramid
from odisr.export.writers import write_image


def export_pair(image: Any, attrs: Mapping[str, Any], target: Target, request: ExportRequest, title: str) -> list[Path]:
    """Write ``image`` (``(H, W, 3)`` uint8/uint16, e.g. a store's ``sr`` array) as ``request`` asks at ``target``,
    with the metadata of ``attrs["source_metadata"]`` (:func:`odisr.export.metadata.output_metadata`).

    Whatever an interrupted export left at ``target`` is cleared first; every file is written atomically and the
    marker last. Sizes are checked against the encoder's limits before any pixel is read. Returns the files written.

    Raises:
        ExportError: the format cannot hold the image, or a cube map / pyramid is asked of a non-2:1 image.
    """
    height, width = image.shape[:2]
    meta = output_metadata(attrs.get("source_metadata"), width, height)
    if request.layout == "erp":
        check_size(width, height, request, title)
    elif width != 2 * height:
        raise ExportError(f"{title} is {width}×{height}, not an equirectangular (2:1) panorama: cube maps and tile "
                          f"pyramids need one; export it with --layout erp")  # fmt: skip
    target.path.parent.mkdir(parents=True, exist_ok=True)
    clear(target.path)
    if request.layout == "cubemap":
        return write_cubemap(image, target, request, meta)
    if request.layout == "tiles":
        return write_pyramid(image, target, request, meta, title)
    write_image(target.path, image, request, meta)
    return [target.path]
