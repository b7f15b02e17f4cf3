"""Local clusters: one inference worker per GPU (the specs for N devices, and a real cluster started from them on this
CPU-only machine: each worker process sees its own ``CUDA_VISIBLE_DEVICES`` and advertises ``GPU=1``), never more
workers than GPUs unless asked, and the number of images a run keeps in flight.

Budget: < 30 s on 2 cores (one real two-worker cluster; the rest is arithmetic).
"""

from __future__ import annotations

import os

import pytest
import torch
from distributed import Client, Nanny

from pipelines import cluster as cl


def test_one_pinned_gpu_worker_per_device_by_default():
    specs = cl.gpu_worker_specs(["0", "1", "2", "3"], cpus=16)
    assert len(specs) == 4
    options = [spec["options"] for spec in specs.values()]
    assert [o["env"]["CUDA_VISIBLE_DEVICES"] for o in options] == ["0", "1", "2", "3"]  # one device each
    assert all(o["resources"] == {cl.GPU: 1} and o["nthreads"] == 4 for o in options)  # the 16 cores shared out
    assert all(spec["cls"] is Nanny for spec in specs.values())


def test_gpu_workers_follow_the_visible_devices_and_the_overrides():
    uuids = ["GPU-8f1c", "GPU-27ab"]  # CUDA_VISIBLE_DEVICES may hold UUIDs: passed on as they are
    specs = cl.gpu_worker_specs(uuids, cpus=2)
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()] == uuids
    assert all(s["options"]["nthreads"] == 2 for s in specs.values())  # at least 2: inference + decode
    one = cl.gpu_worker_specs(["0", "1", "2"], n_workers=1, threads_per_worker=3)
    assert [(s["options"]["env"]["CUDA_VISIBLE_DEVICES"], s["options"]["nthreads"]) for s in one.values()] == [("0", 3)]
    asked = cl.gpu_worker_specs(["0", "1"], n_workers=3)  # more workers than GPUs only when asked: round-robin
    assert [s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in asked.values()] == ["0", "1", "0"]
    with pytest.raises(ValueError, match="at least one CUDA device"):
        cl.gpu_worker_specs([])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_a_machine_without_cuda_gets_cpu_workers(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert cl.visible_gpus() == [] and cl.local_gpus("cuda") == [] and cl.local_gpus("cpu") == []
    with pytest.raises(cl.ClusterError, match="0 visible CUDA device"):
        cl.local_gpus("cuda:1")


def test_a_local_gpu_cluster_starts_one_worker_per_device():
    """A real cluster from the specs for two devices (no GPU needed to start it): two worker processes, each pinned to
    its own device and offering one GPU slot; the run keeps 2 images per slot + 1 in flight."""
    with cl.local_cluster(gpus=["0", "1"]) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 2
        assert sorted(client.run(os.getenv, "CUDA_VISIBLE_DEVICES").values()) == ["0", "1"]  # in each worker
        assert all(w["resources"] == {cl.GPU: 1} and w["nthreads"] >= 2 for w in workers.values())
        assert cl.inference_slots(client, "cuda") == 2 and cl.in_flight(client, "cuda") == 5
        assert cl.inference_slots(client, "cpu") == sum(w["nthreads"] for w in workers.values())
