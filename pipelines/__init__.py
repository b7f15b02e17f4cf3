"""Batch super-resolution on Dask, writing Zarr stores.

* :mod:`pipelines.cluster`  — a local cluster or an existing scheduler; GPU resources; one model per worker process.
* :mod:`pipelines.store`    — the store layout, per-(image, model) groups, completion markers, resume.
* :mod:`pipelines.batch_sr` — the graph (decode → degrade → tiled inference → region writes → metrics) and its driver.
* :mod:`pipelines.checksum` — per-chunk digests of ``sr`` from the blocks as written; checking them by re-reading.
* :mod:`pipelines.verify`   — the verdict on every pair of a store (verified, corrupt, failed, running/orphaned).

The command line is ``odisr run`` / ``odisr evaluate`` (:mod:`odisr.cli.run`) and ``odisr verify``.
"""
