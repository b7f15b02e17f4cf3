"""Where a batch runs: a local Dask cluster by default, or an existing scheduler; GPU resources; one model per
worker process.

Local (default, :func:`local_cluster`): on the CPU, ``LocalCluster(n_workers=N, threads_per_worker=K,
processes=True)`` filling the cores (N = cores // K, K = 1); each worker process runs up to K tasks at once and
torch uses K intra-op threads in it (:class:`WorkerSetup`). On a machine with CUDA (device ``cuda``/``auto``): one
inference worker per visible GPU, pinned to it with ``CUDA_VISIBLE_DEVICES`` and advertising ``GPU=1``, with the
CPU cores shared out as its threads (:func:`gpu_worker_specs`): two pair tasks take turns in the network (one
computes while the other stores its result) and the other threads decode the next images;
``dask_cuda.LocalCUDACluster`` builds these workers when dask-cuda is installed (the ``gpu`` extra).
``--workers``/``--threads-per-worker`` override the counts; only ``--workers`` larger than the number of GPUs puts
two workers on one device.

Each worker loads and warms the run's models when it joins (:class:`WarmUp`), so no image pays for that.

An existing cluster (``odisr run ... --scheduler tcp://HOST:8786``): start a scheduler and workers anywhere::

    dask scheduler                                          # prints tcp://HOST:8786 and the dashboard address
    dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1   # CPU workers
    CUDA_VISIBLE_DEVICES=0 dask worker tcp://HOST:8786 --nthreads 4 --resources GPU=1   # one per GPU

Inference tasks of a ``cuda`` run ask for ``resources={"GPU": 0.5}``, so they only go to workers started with
``--resources GPU=1``, two per GPU at a time (:data:`TASKS_PER_GPU`: one in the network, under
:func:`device_lock`, while the other stores its result); decoding and degradation go anywhere: give a GPU worker
a few threads. A run on ``cuda`` against a cluster without GPU workers stops with an error instead of waiting
forever.

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

import asyncio
import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dask
from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster
from distributed.diagnostics.plugin import WorkerPlugin

if TYPE_CHECKING:
    from odisr.models.base import SRModel

log = logging.getLogger(__name__)

GPU = "GPU"
LOCALHOST = "127.0.0.1"


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


class WarmUp(WorkerPlugin):
    """Runs ``warm(*args)`` (e.g. :func:`pipelines.batch_sr.warm_up`: load and warm the models) in each worker: in
    those present when it is registered (``client.register_plugin`` returns when they are done) and in every worker
    that joins later, before its first task if possible. It runs in a thread, so the worker keeps answering the
    scheduler meanwhile (a compilation can take a minute); a failure is logged, not fatal: the tasks then load the
    model themselves and report any error per image."""

    name = "odisr-warm-up"

    def __init__(self, warm: Callable[..., None], *args: object) -> None:
        self.warm, self.args = warm, args

    async def setup(self, worker) -> None:  # noqa: ANN001  (distributed's signature)
        start = time.perf_counter()
        try:
            await asyncio.to_thread(self.warm, *self.args)
        except Exception:  # noqa: BLE001
            log.warning("model warm-up failed on %s; its tasks load the model themselves", worker.address,
                        exc_info=True)
        else:
            log.info("models warmed up on %s in %.1f s", worker.address, time.perf_counter() - start)


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

    glibc reads its arena limit only when the process starts, so :func:`connect` gives local workers
    ``MALLOC_ARENA_MAX`` (:data:`MALLOC_ARENAS`) in their environment; for workers started by hand, set it too.
    """

    name = "odisr-worker-setup"

    def setup(self, worker) -> None:  # noqa: ANN001  (distributed's signature)
        import torch

        torch.set_num_threads(max(1, worker.state.nthreads))
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


MMAP_THRESHOLD = 64 * 2**20  # bytes
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MALLOC_ARENAS = 2
"""glibc malloc arenas of a local worker (``MALLOC_ARENA_MAX``). Why: the sink's writer threads and zarr's codec
threads each got an arena of their own, and every arena keeps its high-water mark: 1.77–1.96 GB of RSS instead of
1.45 GB for a worker writing a 16384×8192 panorama (bicubic ×4, 256-px tiles); with two arenas, 1.45 GB, as without
writer threads (``mallopt`` in a running worker comes too late: its threads already have their arenas)."""


def _mallopt(param: int, value: int) -> None:
    """``mallopt(param, value)`` where the C library is glibc; nothing elsewhere (macOS, musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(param, value)
    except (OSError, AttributeError):
        log.debug("not glibc: malloc option %d left as it is", param)


def default_workers(threads_per_worker: int) -> int:
    """Local CPU workers that fill the machine: ``cpu_count // threads_per_worker`` (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))


def visible_gpus() -> list[str]:
    """This machine's CUDA devices as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs), in torch's order: the
    entries of this process's ``CUDA_VISIBLE_DEVICES`` when set, else ``0 … n−1``; empty without CUDA."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in visible.split(",") if e.strip()] if visible is not None else []
    return (entries if visible is not None else [str(i) for i in range(count)])[:count]


def local_gpus(device: str) -> list[str]:
    """The devices of :func:`visible_gpus` that a local run on ``device`` uses: none for ``cpu``/``mps``, all for
    ``cuda``/``auto``, the N-th for ``cuda:N``.

    Raises:
        ClusterError: ``cuda:N`` names a device this machine does not have.
    """
    if not (device == "auto" or device.startswith("cuda")):
        return []
    gpus = visible_gpus()
    if ":" not in device:
        return gpus
    index = int(device.split(":", 1)[1])
    if index >= len(gpus):
        raise ClusterError(f"--device {device}: this machine has {len(gpus)} visible CUDA device(s)")
    return [gpus[index]]


def gpu_worker_specs(
    gpus: Sequence[str], n_workers: int | None = None, threads_per_worker: int | None = None, cpus: int | None = None
) -> dict[str, dict]:
    """Worker specs (:class:`distributed.SpecCluster`'s ``workers``) of a local GPU cluster: by default one worker
    per device of ``gpus`` (``CUDA_VISIBLE_DEVICES`` entries), each pinned to its device (its process sees only that
    one, as ``cuda:0``) and advertising ``GPU=1``, with ``cpus // workers`` threads (at least 3): two run pair
    tasks (:data:`TASKS_PER_GPU`), the others decode the next images.

    ``n_workers`` (``--workers``) overrides the count: fewer use the first devices; more than the devices (only when
    asked) share them round-robin. ``threads_per_worker`` (``--threads-per-worker``) overrides the threads.

    Raises:
        ValueError: ``gpus`` is empty.
    """
    if not gpus:
        raise ValueError("gpu_worker_specs needs at least one CUDA device")
    n = n_workers or len(gpus)
    threads = threads_per_worker or max(TASKS_PER_GPU + 1, (cpus or os.cpu_count() or 1) // n)
    return {
        f"gpu-{i}": {
            "cls": Nanny,
            "options": {
                "nthreads": threads,
                "resources": {GPU: 1},
                "env": {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]},
                "host": LOCALHOST,
            },
        }
        for i in range(n)
    }


def local_cluster(
    n_workers: int | None = None, threads_per_worker: int | None = None, gpus: Sequence[str] = ()
) -> SpecCluster:
    """A local cluster of worker processes (dashboard on a free port).

    Without ``gpus``: ``LocalCluster(n_workers, threads_per_worker)``, CPU workers filling the machine by default
    (:func:`default_workers` × 1 thread). With ``gpus``: one inference worker per GPU (:func:`gpu_worker_specs`) —
    ``dask_cuda.LocalCUDACluster`` when dask-cuda is installed (``pip install "odisr[gpu]"``: it also pins each
    worker to the CPU cores near its GPU), else a :class:`distributed.SpecCluster` of the same workers.
    """
    if not gpus:
        threads = threads_per_worker or 1
        return LocalCluster(
            n_workers=n_workers or default_workers(threads), threads_per_worker=threads, processes=True,
            dashboard_address=":0",
        )  # fmt: skip
    specs = gpu_worker_specs(gpus, n_workers, threads_per_worker)
    first = next(iter(specs.values()))["options"]
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None  # noqa: N806
    if LocalCUDACluster is not None and len(specs) <= len(gpus):  # it cannot place two workers on one device
        return LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=list(gpus), n_workers=len(specs), threads_per_worker=first["nthreads"],
            resources={GPU: 1}, dashboard_address=":0",
        )  # fmt: skip
    scheduler = {"cls": Scheduler, "options": {"host": LOCALHOST, "dashboard_address": ":0"}}
    return SpecCluster(workers=specs, scheduler=scheduler)


@contextmanager
def connect(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    gpus: Sequence[str] = (),
    inference: bool = True,
) -> Iterator[Client]:
    """A Dask client: on the scheduler at ``scheduler`` (``tcp://host:8786``) or on a new :func:`local_cluster`
    that is closed on exit.

    Args:
        scheduler: address of a running scheduler; None starts a local cluster.
        n_workers: local worker processes (default: one per GPU of ``gpus``, else :func:`default_workers`).
        threads_per_worker: Dask threads (= torch threads) per local worker (default: 1 on the CPU; on GPUs the
            CPU cores shared out, at least 2).
        gpus: the ``CUDA_VISIBLE_DEVICES`` entries to run local GPU workers on (:func:`visible_gpus`); empty: CPU.
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
        profile_off = {"distributed.worker.profile.enabled": False}
        arenas = {"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": MALLOC_ARENAS}  # read at process start
        with dask.config.set(profile_off | arenas):
            cluster = local_cluster(n_workers, threads_per_worker, gpus)
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


TASKS_PER_GPU = 2
"""Pair tasks a GPU runs at once. Only one of them is in the network at any moment (:func:`device_lock`); the other
prepares its group, or stores, previews and scores its result on the CPU, which for a whole-image 8K result takes
about as long as the forward pass on an H200 (``benchmarks/bench_pipeline.py --mode gpu``). With one task per GPU
the device idles through every write."""


def inference_slots(client: Client, device: str) -> int:
    """Inference tasks the cluster runs at once: :data:`TASKS_PER_GPU` per ``GPU`` resource on CUDA, its threads on
    the CPU."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if device.startswith("cuda"):
        return int(sum(w.get("resources", {}).get(GPU, 0) for w in workers) * TASKS_PER_GPU)
    return sum(w.get("nthreads", 1) for w in workers)


def in_flight(client: Client, device: str) -> int:
    """Images a run keeps on the cluster at once: two per inference slot (one computing, one decoded and waiting)
    plus one being decoded."""
    return 2 * max(1, inference_slots(client, device)) + 1


def inference_resources(device: str) -> dict[str, float] | None:
    """Dask resources an inference task on ``device`` asks for: a :data:`TASKS_PER_GPU`-th of a GPU on CUDA (Dask
    resources are divisible: a worker with ``GPU=1`` runs that many such tasks at once), none on the CPU."""
    return {GPU: 1 / TASKS_PER_GPU} if device.startswith("cuda") else None


_DEVICE_LOCK = threading.Lock()


@contextmanager
def device_lock(device: str) -> Iterator[None]:
    """Held by a pair task while it runs the network on ``device``: on CUDA, one task of this worker process at a
    time (its GPU's memory and compute go to one forward pass; the routing statistics a CAMixer model keeps on its
    modules belong to that pass); on the CPU, no lock (each task thread of a CPU worker runs its own pass).

    A worker process drives one GPU (:func:`gpu_worker_specs`), so one lock serves every CUDA device name.
    """
    if not device.startswith("cuda"):
        yield
        return
    with _DEVICE_LOCK:
        yield
