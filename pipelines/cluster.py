"""Where a batch runs: a local Dask cluster by default, or an existing scheduler; GPU resources; one model per
worker process.

Local (default): ``LocalCluster(n_workers=N, threads_per_worker=K, processes=True)``; each worker process runs up
to K tasks at once and torch uses K intra-op threads in it (:class:`WorkerSetup`). On a machine with CUDA the
local workers advertise ``GPU=1`` when the device is ``cuda``/``auto``.

An existing cluster (``odisr run ... --scheduler tcp://HOST:8786``): start a scheduler and workers anywhere::

    dask scheduler                                          # prints tcp://HOST:8786 and the dashboard address
    dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1   # CPU workers
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1   # one per GPU

Inference tasks of a ``cuda`` run ask for ``resources={"GPU": 1}``, so they only go to workers started with
``--resources GPU=1`` (one such task per GPU at a time); decoding and degradation go anywhere. A run on ``cuda``
against a cluster without GPU workers stops with an error instead of waiting forever.

Scaling out on HPC or Kubernetes: create the cluster object in Python and pass its ``scheduler_address``, e.g.
``dask_jobqueue.SLURMCluster(cores=8, processes=1, memory="32GB", job_extra_directives=["--gres=gpu:1"],
worker_extra_args=["--resources", "GPU=1"]).scale(jobs=4)``, or dask-kubernetes with worker pods whose spec
requests ``nvidia.com/gpu: 1`` and whose ``dask worker`` command has ``--resources GPU=1``; every worker needs
odisr installed (same version) and read access to the inputs and write access to the store (a shared filesystem
or an object store URL such as ``s3://bucket/out.zarr``). ``dask_cuda.LocalCUDACluster`` gives one worker per GPU
of one machine (add ``resources={"GPU": 1}``).

Models are loaded once per worker process and kept (:func:`get_model`), keyed by (name, weights, device, ratio).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dask
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

if TYPE_CHECKING:
    from odisr.models.base import SRModel

log = logging.getLogger(__name__)

GPU = "GPU"


class ClusterError(RuntimeError):
    """The cluster cannot run the job as asked (e.g. ``cuda`` without GPU workers)."""


@dataclass(frozen=True)
class ModelRef:
    """What a worker loads: a registry name or a weights path, the weights file, the device, CAMixer's ratio γ and
    whether the forward pass is compiled (TorchInductor, :func:`odisr.models.load` ``compile=True``)."""

    name: str
    weights: str | None = None
    device: str = "cpu"
    ratio: float | None = None
    compile: bool = False


_MODELS: dict[ModelRef, SRModel] = {}
_MODELS_LOCK = threading.Lock()


def get_model(ref: ModelRef) -> SRModel:
    """The model of ``ref``, loaded on first use in this process and shared by its tasks afterwards.

    Inference only reads the model (eval mode, no grad); a different ratio is a different cache entry, so no task
    changes a model another task is using.
    """
    with _MODELS_LOCK:
        model = _MODELS.get(ref)
        if model is None:
            from odisr.models import load

            model = _MODELS[ref] = load(
                ref.name, weights=ref.weights, device=ref.device, ratio=ref.ratio, compile=ref.compile
            )
        return model


def preload(client: Client, ref: ModelRef) -> None:
    """Load ``ref`` in every worker process now (otherwise each loads it in its first task)."""
    client.run(_load, ref)


def _load(ref: ModelRef) -> None:
    get_model(ref)  # returns nothing: the model stays in the worker


class WorkerSetup(WorkerPlugin):
    """Prepares each worker process for inference: torch gets as many intra-op threads as the worker has Dask
    threads, and glibc's malloc serves blocks below :data:`MMAP_THRESHOLD` from its heap.

    Why the malloc setting: the nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and setting any malloc
    threshold switches off glibc's dynamic mmap threshold, so every tensor above 128 KiB is mmap-ed, page-faulted
    in and unmapped again. Measured with CAMixerSR-S on 4 panoramas (1 worker): 27 s of system time for 19 s of user
    time, 2.2× the wall time of the same work outside Dask; with this setting 1 s of system time. (The nanny's
    ``OMP_NUM_THREADS=1`` would likewise leave a multi-threaded worker's torch on one core.)
    """

    name = "odisr-worker-setup"

    def setup(self, worker) -> None:  # noqa: ANN001  (distributed's signature)
        import torch

        torch.set_num_threads(max(1, worker.state.nthreads))
        _set_mmap_threshold(MMAP_THRESHOLD)


MMAP_THRESHOLD = 64 * 2**20  # bytes
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def _set_mmap_threshold(nbytes: int) -> None:
    """``mallopt(M_MMAP_THRESHOLD, nbytes)`` where the C library is glibc; nothing elsewhere (macOS, musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, nbytes)
    except (OSError, AttributeError):
        log.debug("not glibc: malloc's mmap threshold left as it is")


def default_workers(threads_per_worker: int) -> int:
    """Local workers that fill the machine: ``cpu_count // threads_per_worker`` (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))


@contextmanager
def connect(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    gpu: bool = False,
    inference: bool = True,
) -> Iterator[Client]:
    """A Dask client: on the scheduler at ``scheduler`` (``tcp://host:8786``) or on a new local cluster.

    Args:
        scheduler: address of a running scheduler; None starts ``LocalCluster(n_workers, threads_per_worker,
            processes=True)`` that is closed on exit.
        n_workers: local worker processes (default :func:`default_workers`).
        threads_per_worker: Dask threads (= torch threads) per local worker.
        gpu: give each local worker ``GPU=1`` (only when this machine has CUDA).
        inference: prepare the workers for inference (:class:`WorkerSetup`: imports torch, ~470 MB a process);
            False for work without models (``odisr export``).
    """
    _quiet_distributed()
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        # Dask's sampling profiler (a thread walking every stack each 10 ms) took 5-15 % of a worker's CPU in
        # bench_pipeline; the dashboard's Profile tab stays empty. Use --scheduler with your own cluster to keep it.
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(
                n_workers=n_workers or default_workers(threads_per_worker),
                threads_per_worker=threads_per_worker,
                processes=True,
                resources={GPU: 1} if gpu else None,
                dashboard_address=":0",
            )
        client = Client(cluster)
    try:
        if inference:
            client.register_plugin(WorkerSetup())
        log.info("Dask dashboard: %s", client.dashboard_link)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _quiet_distributed() -> None:
    """Keep distributed's INFO chatter (scheduler/nanny start-up and shutdown) out of the log unless debugging."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("distributed").setLevel(logging.WARNING)


def gpu_workers(client: Client) -> int:
    """Number of workers that advertise a ``GPU`` resource."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(1 for w in workers if w.get("resources", {}).get(GPU, 0) >= 1)


def resolve_device(client: Client, device: str) -> str:
    """``"cpu"`` or ``"cuda"`` for the inference tasks on this cluster.

    ``auto`` → ``cuda`` when some worker has a GPU resource, else ``cpu``.

    Raises:
        ClusterError: ``cuda`` was asked for and no worker advertises ``GPU``.
    """
    if device == "cpu":
        return "cpu"
    has_gpu = gpu_workers(client) > 0
    if device == "auto":
        return "cuda" if has_gpu else "cpu"
    if not has_gpu:
        raise ClusterError(
            "--device cuda but no worker of the cluster has a GPU resource; start GPU workers with "
            "`dask worker ADDRESS --resources GPU=1` (or use --device cpu)"
        )
    return device


def describe(client: Client) -> dict[str, int | str]:
    """What a run record says about the cluster: ``workers`` (processes), ``threads`` (in all), ``scheduler`` (its
    address, or ``local`` for a cluster this process started) and ``dashboard`` (the Dask dashboard's URL)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return {
        "workers": len(workers),
        "threads": sum(int(w.get("nthreads", 0)) for w in workers),
        "scheduler": "local" if client.cluster is not None else str(client.scheduler.address),
        "dashboard": str(client.dashboard_link),
    }


def inference_resources(device: str) -> dict[str, int] | None:
    """Dask resources an inference task on ``device`` asks for (one GPU on CUDA)."""
    return {GPU: 1} if device.startswith("cuda") else None
