"""Exports of super-resolved panoramas: viewer-ready ERP images, cube maps and tile pyramids, metadata kept.

``odisr export STORE OUT_DIR`` (:mod:`odisr.cli.export`) runs :func:`export_pair` for each complete (image, model)
pair of a store on a Dask cluster (:mod:`pipelines.batch_export`). The modules, one concept each:

* :mod:`~odisr.export.plan` — the request (format, quality, layout), output names, markers, encoder limits;
* :mod:`~odisr.export.metadata` — ICC profile, EXIF and Photo Sphere (GPano) XMP for each container;
* :mod:`~odisr.export.writers` — JPEG/PNG/WebP through Pillow/OpenCV, TIFF streamed band by band (tifffile);
* :mod:`~odisr.export.cube` — cube faces sampled from the ERP band by band; conventions; cube-map layouts;
* :mod:`~odisr.export.pyramid` — multi-resolution cube tile pyramids (Pannellum multires, Marzipano);
* :mod:`~odisr.export.viewer` — the pyramid's ``index.html`` (Pannellum);
* :mod:`~odisr.export.files` — whole-or-absent files (temporary name, then rename);
* :mod:`~odisr.export.pair` — one pair: checks, dispatch to the layout.
"""

from odisr.export.pair import export_pair
from odisr.export.plan import FORMATS, LAYOUTS, ExportError, ExportRequest, Target, output_name, target

__all__ = ["FORMATS", "LAYOUTS", "ExportError", "ExportRequest", "Target", "export_pair", "output_name", "target"]
