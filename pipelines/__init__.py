"""Batch super-resolution on Dask, writing Zarr stores.

* :mod:`pipelines.cluster`  — a local cluster or an existing scheduler; GPU resources; one model per worker process.
* :mod:`pipelines.store`    — the store layout, per-(image, model) groups, completion markers, resume.
* :mod:`pipelines.batch_sr` — the graph (decode → degrade → tiled inference → region writes → metrics) and its driver.

The command line is ``odisr run`` / ``odisr evaluate`` (:mod:`odisr.cli.run`).
"""
