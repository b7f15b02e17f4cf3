"""A real multi-process cluster started with the Dask CLI: ``dask scheduler`` and two ``dask worker`` processes
(subprocesses on 127.0.0.1, each in its own process group), and ``odisr run --scheduler tcp://127.0.0.1:PORT``.

* SIGKILL one worker (its nanny and worker process) mid-task: the task is retried on the other worker and the store
  ends complete, verified and bit-identical to a clean run.
* SIGKILL the scheduler mid-run: the driver exits with code 3 and a message saying to restart and re-run; after a
  restart on the same port the same command resumes (finished pairs skipped) to the same store as a clean run.
* Two ``odisr run`` drivers on one store at once: every pair complete exactly once, bit-identical.

Budget: ~2 min on 2 cores (each cluster's workers import torch once; 4 LR panoramas of 256×128, bicubic ×4 in
tiles of 16 LR px so that a pair takes long enough to be killed mid-write).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from odisr.degrade import bicubic_erp
from odisr.io import read_image, write_image
from cli_support import odisr_cli
from servers import dask_scheduler, dask_worker, free_port, wait_for

PANOS = ("hohonet_pano.png", "horizonnet_demo.png", "vrview_petra.jpg", "vrview_machu_picchu.jpg")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def lr_dir(shared, tmp_path_factory) -> Path:
    """Four real LR panoramas of 256×128 (ERP-bicubic downsampling of the shared ones)."""
    out = tmp_path_factory.mktemp("lr")
    for name in PANOS:
        hr = read_image(shared / "data" / "erp" / name)
        write_image(out / f"{Path(name).stem}.png", bicubic_erp(hr, hr.shape[1] // 256))
    return out


class Cluster:
    """``dask scheduler`` on a fixed free port and two one-thread ``dask worker`` processes."""

    def __init__(self, logs: Path, port: int | None = None):
        self.logs, self.port = logs, port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = dask_scheduler(self.port, logs / "scheduler.log")
        self.workers = {name: dask_worker(self.address, logs / f"{name}.log", name) for name in ("w0", "w1")}
        with Client(self.address) as client:
            client.wait_for_workers(2, timeout=120)

    def close(self) -> None:
        for server in (*self.workers.values(), self.scheduler):
            server.stop()


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def steady(tmp_path_factory):
    """A cluster that nothing kills, shared by the tests that do not kill."""
    cluster = Cluster(tmp_path_factory.mktemp("steady"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def clean(lr_dir, steady) -> Path:
    """The store of an uninterrupted run."""
    store = steady.logs / "clean.zarr"
    code, output = odisr_cli(*run_args(lr_dir, store, steady.address))
    assert code == 0, output
    return store


def run_args(lr_dir: Path, store: Path, address: str) -> list[str]:
    return ["run", str(lr_dir), "--out", str(store), "--model", "bicubic-x4", "--tile", "16", "--scheduler", address]


def start_driver(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as err:
        return subprocess.Popen([Path(sys.executable).with_name("odisr"), *args], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip


def pairs(store: Path) -> dict[str, dict]:
    root = zarr.open_group(str(store), mode="r")
    return {f"{key}/{model}": dict(g.attrs) for key, image in root["images"].groups() for model, g in image.groups()}


def assert_same_store(store: Path, clean: Path) -> None:
    """Every pair complete, verified, and bit-identical to the clean run's."""
    got, want = pairs(store), pairs(clean)
    assert sorted(got) == sorted(want) and all(a["status"] == "complete" for a in got.values())
    for pair in want:
        assert got[pair]["sr_checksum"] == want[pair]["sr_checksum"], pair
        a = zarr.open_group(str(store), mode="r")[f"images/{pair}/sr"][...]
        np.testing.assert_array_equal(a, zarr.open_group(str(clean), mode="r")[f"images/{pair}/sr"][...])
    code, output = odisr_cli("verify", str(store))
    assert code == 0 and f"{len(want)} verified" in output, output


def first_chunk(store: Path) -> bool:
    return bool(list(store.glob("images/*/*/sr/c/*/*/*")))


def test_sigkill_one_worker_mid_task(cluster, lr_dir, clean, tmp_path):
    store, log = tmp_path / "out.zarr", tmp_path / "driver.log"
    driver = start_driver(run_args(lr_dir, store, cluster.address), log)
    with Client(cluster.address) as client:
        wait_for(lambda: first_chunk(store), "first sr chunk", timeout=240, proc=driver)
        busy = {w: keys for w, keys in client.processing().items() if any(str(k).startswith("sr-") for k in keys)}
        assert busy, "no pair task running"
        victim_address = next(iter(busy))
        victim = client.scheduler_info(n_workers=-1)["workers"][victim_address]["name"]
        cluster.workers[victim].kill()  # the nanny and its worker: this worker does not come back
        driver.wait(timeout=300)
        assert list(client.scheduler_info(n_workers=-1)["workers"]) != [victim_address]
    assert driver.returncode == 0, log.read_text()
    assert f"{len(PANOS)} done, 0 failed" in log.read_text()
    assert_same_store(store, clean)


def test_sigkill_the_scheduler_then_restart_and_resume(cluster, lr_dir, clean, tmp_path):
    store, log = tmp_path / "out.zarr", tmp_path / "driver.log"
    args = run_args(lr_dir, store, cluster.address)
    driver = start_driver(args, log)
    wait_for(lambda: first_chunk(store), "first sr chunk", timeout=240, proc=driver)
    cluster.scheduler.kill()
    assert driver.wait(timeout=120) == 3, log.read_text()
    message = log.read_text()
    assert f"the Dask scheduler {cluster.address} stopped the run" in message and "re-run the same command" in message
    statuses = [a["status"] for a in pairs(store).values()]
    assert statuses and all(s in ("complete", "running") for s in statuses), statuses
    for worker in cluster.workers.values():  # workers close when their scheduler is gone; start afresh
        worker.kill()

    restarted = Cluster(tmp_path, port=cluster.port)  # the same address: the same command
    try:
        code, output = odisr_cli(*args)
    finally:
        restarted.close()
    assert code == 0, output
    complete_before = statuses.count("complete")
    assert f"{len(PANOS) - complete_before} done, 0 failed, {complete_before} skipped" in output
    assert_same_store(store, clean)


def test_two_drivers_on_one_store_complete_every_pair_exactly_once(steady, lr_dir, clean, tmp_path):
    """Two `odisr run` processes started together on the same store and cluster: each pair is computed by one of
    them (the other's task finds it complete, or is superseded mid-write and stops), and the store is valid."""
    store = tmp_path / "out.zarr"
    args = run_args(lr_dir, store, steady.address)
    drivers = [start_driver(args, tmp_path / f"driver{i}.log") for i in range(2)]
    for driver in drivers:
        driver.wait(timeout=300)
    logs = [(tmp_path / f"driver{i}.log").read_text() for i in range(2)]
    assert [d.returncode for d in drivers] == [0, 0], logs
    done = [int(log.split("odisr: ")[1].split(" done")[0]) for log in logs]
    assert sum(done) == len(PANOS), logs  # exactly once: no pair was computed by both
    assert_same_store(store, clean)
