"""Local clusters: one inference worker per GPU (the specs for N devices, and a real cluster started from them on this
CPU-only machine: each worker process sees its own ``CUDA_VISIBLE_DEVICES`` and advertises ``GPU=1``), never more
workers than GPUs unless asked, and the number of images a run keeps in flight.

Budget: < 40 s on 2 cores (a real two-worker cluster and a one-worker one; the rest is arithmetic).
"""

from __future__ import annotations

import os
import time

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
    assert all(s["options"]["nthreads"] == 3 for s in specs.values())  # at least 3: two pair tasks + decode
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
    its own device and offering one GPU, which takes two pair tasks at once; the run keeps 2 images per task slot + 1
    in flight."""
    with cl.local_cluster(gpus=["0", "1"]) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 2
        assert sorted(client.run(os.getenv, "CUDA_VISIBLE_DEVICES").values()) == ["0", "1"]  # in each worker
        assert all(w["resources"] == {cl.GPU: 1} and w["nthreads"] >= 3 for w in workers.values())
        assert cl.inference_slots(client, "cuda") == 4 and cl.in_flight(client, "cuda") == 9
        assert cl.inference_slots(client, "cpu") == sum(w["nthreads"] for w in workers.values())


def test_two_pair_tasks_share_a_gpu_worker_and_take_turns_in_the_network():
    """One GPU worker (a real process, no GPU needed): tasks asking for :func:`inference_resources` run two at a time
    (never three), and only one at a time holds :func:`device_lock` — one stores while the other computes."""

    def pair_task(i: int) -> tuple[float, float, float, float]:
        start = time.time()
        with cl.device_lock("cuda"):
            entered = time.time()
            time.sleep(0.3)  # the forward pass
            left = time.time()
        time.sleep(0.3)  # storing the result
        return start, entered, left, time.time()

    with cl.local_cluster(gpus=["0"], threads_per_worker=4) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=120)
        futures = [client.submit(pair_task, i, resources=cl.inference_resources("cuda")) for i in range(6)]
        spans = client.gather(futures)
    assert max(_overlap([(s[0], s[3]) for s in spans])) == cl.TASKS_PER_GPU == 2  # two tasks at once, not four
    assert max(_overlap([(s[1], s[2]) for s in spans])) == 1  # one in the network at a time


def _overlap(spans: list[tuple[float, float]]) -> list[int]:
    """For each span's start, how many spans are open at that moment (itself included)."""
    return [sum(a <= start < b for a, b in spans) for start, _ in spans]
