"""Object storage for real: inputs, archives and the store in an S3 bucket served by moto's S3 server (a subprocess on
127.0.0.1), reached through fsspec/s3fs with the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``) — nothing odisr-specific. ``odisr run``/``evaluate``/``report``/
``verify`` on ``s3://`` URLs, zip/tar archives read from the bucket, resume after a SIGKILL, and the secret never
lands in the store or the logs.

Budget: ~1 min on 2 cores (a LocalCluster of 2 workers started after the environment is set, so the workers inherit
it; LR panoramas of 256×128).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import zarr

import odisr
from odisr.degrade import bicubic_erp
from odisr.io import encode_image, read_image
import cli_support
from servers import moto_s3, wait_for

s3fs = pytest.importorskip("s3fs", reason="the object-store tests need the cloud extra (s3fs)")
pytest.importorskip("moto.server", reason="the object-store tests need moto[server] (the dev extra)")

PANOS = ("hohonet_pano.png", "horizonnet_demo.png")
SECRET = "odisr-test-secret-3f9c1a7e5b"  # grep-able: must never appear in the store or the logs
KEY_ID = "ODISRTESTKEYID0001"
BUCKET = "odisr-test"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with moto_s3(log) as url:
        env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": url,
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        with mock.patch.dict(os.environ, env):
            s3fs.S3FileSystem.clear_instance_cache()
            yield url
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def scheduler(endpoint):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def fs(endpoint):
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    return fs


@pytest.fixture(scope="module")
def lr(shared) -> dict[str, np.ndarray]:
    """Two real LR panoramas (256×128): ERP-bicubic ×4 of the shared 1024×512 ones."""
    return {Path(n).stem: bicubic_erp(read_image(shared / "data" / "erp" / n), 4) for n in PANOS}


@pytest.fixture(scope="module")
def bucket(fs, lr):
    """s3://BUCKET/in/<pano>.png, an archive of each kind holding one panorama, and an HR panorama for evaluate."""
    (a, a_img), (b, b_img) = lr.items()
    fs.pipe(f"{BUCKET}/in/{a}.png", encode_image(a_img, ".png"))
    fs.pipe(f"{BUCKET}/in/{b}.png", encode_image(b_img, ".png"))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr(f"panos/{a}.png", encode_image(a_img, ".png"))
    fs.pipe(f"{BUCKET}/archives/set.zip", zipped.getvalue())
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w:gz") as t:
        data = encode_image(b_img, ".png")
        info = tarfile.TarInfo(f"panos/{b}.png")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    fs.pipe(f"{BUCKET}/archives/set.tar.gz", tarred.getvalue())
    return f"s3://{BUCKET}"


def odisr_cli(*args: object) -> tuple[int, str]:
    return cli_support.odisr_cli(*args, verbose=True)  # DEBUG logs: the secret must not appear in them either


def pairs(store: str) -> dict[str, dict]:
    root = zarr.open_group(store, mode="r")
    return {f"{key}/{model}": dict(g.attrs) for key, image in root["images"].groups() for model, g in image.groups()}


def sr(store: str, pair: str) -> np.ndarray:
    return zarr.open_group(store, mode="r")[f"images/{pair}/sr"][...]


def no_secret_in_bucket(fs) -> None:
    fs.invalidate_cache()
    for path in fs.find(BUCKET):
        if not path.endswith((".png", ".zip", ".gz")):  # the inputs, uploaded by the test
            data = fs.cat(path)
            assert SECRET.encode() not in data and KEY_ID.encode() not in data, path


# ---------------------------------------------------------------------------------------------------- tests


def test_run_archives_report_and_verify_on_s3(bucket, fs, lr, scheduler, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    store = f"{bucket}/out.zarr"
    code, output = odisr_cli("run", f"{bucket}/in/", f"{bucket}/archives/", "--out", store, "--model", "bicubic-x4",
                             "--tile", 64, "--scheduler", scheduler)  # fmt: skip
    assert code == 0, output
    assert "4 done, 0 failed" in output
    recorded = pairs(store)
    a, b = lr
    expected = {
        f"{a}/bicubic-x4": (f"{bucket}/in/{a}.png", a),
        f"{b}/bicubic-x4": (f"{bucket}/in/{b}.png", b),
        f"set__panos__{a}/bicubic-x4": (f"{bucket}/archives/set.zip!panos/{a}.png", a),
        f"set__panos__{b}/bicubic-x4": (f"{bucket}/archives/set.tar.gz!panos/{b}.png", b),
    }
    assert sorted(recorded) == sorted(expected)
    for pair, (source, pano) in expected.items():
        assert recorded[pair]["status"] == "complete" and recorded[pair]["source"] == source
        np.testing.assert_array_equal(sr(store, pair), odisr.upscale(lr[pano], "bicubic-x4", tile=64))

    code, output = odisr_cli("verify", store)
    assert code == 0 and "4 verified, 0 corrupt" in output, output
    html = tmp_path / "report.html"
    code, output = odisr_cli("report", store, "--html", html)
    assert code == 0 and "4 complete, 0 failed" in output, output
    assert all(source in output for source, _ in expected.values()), output
    assert all(source in html.read_text() for source, _ in expected.values())

    code, output = odisr_cli("run", f"{bucket}/in/", "--out", store, "--model", "bicubic-x4", "--tile", 64,
                             "--scheduler", scheduler)  # fmt: skip
    assert code == 0 and "0 done, 0 failed, 2 skipped" in output, output

    no_secret_in_bucket(fs)
    assert SECRET not in caplog.text and SECRET not in output
    assert "s3" in caplog.text  # the debug log did see the object-store traffic it was checked against


def test_evaluate_on_s3(bucket, fs, shared, scheduler):
    fs.put(str(shared / "data" / "erp" / PANOS[0]), f"{BUCKET}/hr/{PANOS[0]}")
    store = f"{bucket}/eval.zarr"
    code, output = odisr_cli("evaluate", f"{bucket}/hr/", "--out", store, "--scale", 4, "--model", "bicubic",
                             "--tile", 64, "--scheduler", scheduler)  # fmt: skip
    assert code == 0, output
    (attrs,) = pairs(store).values()
    assert attrs["status"] == "complete" and attrs["degrade"] == "bicubic" and attrs["sr_shape"] == [512, 1024]
    assert 20 < attrs["metrics"]["ws_psnr"] < 40 and "WS-PSNR" in output
    no_secret_in_bucket(fs)


def test_sigkill_then_resume_on_s3(bucket, fs, lr, scheduler, tmp_path):
    """`odisr run` (a subprocess on the shared cluster, credentials from the environment) is killed once its first
    tiles are in the bucket; the same command then finishes the store, equal to a clean run."""
    store = f"{bucket}/killed.zarr"
    args = ["run", f"{bucket}/in/", "--model", "bicubic-x4", "--tile", 32, "--scheduler", scheduler, "--out", store]
    log = tmp_path / "killed.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([Path(sys.executable).with_name("odisr"), *map(str, args)], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip

    def chunks_written() -> bool:
        fs.invalidate_cache()
        return any("/sr/c/" in p for p in fs.find(f"{BUCKET}/killed.zarr"))

    wait_for(chunks_written, "first sr chunk in the bucket", timeout=240, proc=proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let the orphaned tasks of the killed driver write a little more
    statuses = [a["status"] for a in pairs(store).values()]
    assert "running" in statuses, f"not interrupted while writing: {statuses}\n{log.read_text()}"

    code, output = odisr_cli(*args)
    assert code == 0, output
    recorded = pairs(store)
    assert len(recorded) == 2 and all(a["status"] == "complete" for a in recorded.values())
    for pair in recorded:
        np.testing.assert_array_equal(sr(store, pair), odisr.upscale(lr[pair.split("/")[0]], "bicubic-x4", tile=32))
    code, output = odisr_cli("verify", store)
    assert code == 0 and "2 verified" in output, output
    assert SECRET not in log.read_text()
