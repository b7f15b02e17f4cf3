"""`odisr run` / `odisr evaluate` end to end: a real LocalCluster (2 single-threaded worker processes, shared by the
module), real Zarr stores on disk, real panoramas made small (LR 256×128 from /work/shared/data/erp).

Budget: < 5 min on 2 cores (cluster start-up once; the kill test starts `odisr run` as a subprocess on the same
cluster; CAMixerSR-S runs on one 256×128 LR only). Most of the time is the workers' first import of torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from distributed import Client

import odisr
from odisr.io import read_image, write_image
from pipelines import store as st
from pipelines.preview import box_preview
from cli_support import odisr_cli, write_lr_panoramas

PANOS = ("hohonet_pano.png", "horizonnet_demo.png")  # 1024×512 → LR 256×128
VOLATILE = {"seconds", "attempt", "source", "weights"}  # attrs that legitimately differ between two stores


@pytest.fixture(scope="module")
def lr_dir(shared, tmp_path_factory) -> Path:
    """Two real LR panoramas (256×128), made by ERP-bicubic ×4 downsampling of the shared 1024×512 ones."""
    return write_lr_panoramas(shared, tmp_path_factory.mktemp("lr"), PANOS)


def run(inputs: list[object], store: Path, scheduler: str, *extra: object) -> tuple[int, str]:
    return odisr_cli("run", *inputs, "--out", store, "--model", "bicubic-x4", "--tile", 64, "--scheduler", scheduler,
                     *extra)  # fmt: skip


def pairs(store: Path) -> dict[str, dict]:
    root = zarr.open_group(str(store), mode="r")
    return {f"{key}/{model}": dict(g.attrs) for key, image in root["images"].groups() for model, g in image.groups()}


def sr(store: Path, pair: str) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")[f"images/{pair}/sr"][...]


# ---------------------------------------------------------------------------------------------------- run


def test_run_writes_the_store_equal_to_single_image_upscale(lr_dir, scheduler, tmp_path):
    store = tmp_path / "out.zarr"
    code, output = run([lr_dir], store, scheduler)
    assert code == 0, output
    assert "2 done, 0 failed, 0 skipped" in output
    recorded = pairs(store)
    assert sorted(recorded) == ["hohonet_pano/bicubic-x4", "horizonnet_demo/bicubic-x4"]
    for name in PANOS:
        key = Path(name).stem
        attrs = recorded[f"{key}/bicubic-x4"]
        assert attrs["status"] == "complete" and attrs["lr_shape"] == [128, 256] and attrs["sr_shape"] == [512, 1024]
        assert attrs["source"] == str(lr_dir / name) and attrs["tile"] == 64 and attrs["mode"] == "odi"
        lr = read_image(lr_dir / name)
        expected = odisr.upscale(lr, "bicubic-x4", tile=64, device="cpu")
        np.testing.assert_array_equal(sr(store, f"{key}/bicubic-x4"), expected)
        group = zarr.open_group(str(store), mode="r")[f"images/{key}/bicubic-x4"]
        assert group["sr"].chunks == (256, 256, 3) and group["preview"].shape == (512, 1024, 3)
        np.testing.assert_array_equal(group["preview"][...], box_preview(expected))  # streamed = the definition
        assert attrs["tile_used"] == 64 and attrs["batch_size_used"] == 4
    ds = xr.open_zarr(str(store), group="images/hohonet_pano/bicubic-x4", consolidated=False)
    assert ds["sr"].dims == ("y", "x", "band") and ds["sr"].shape == (512, 1024, 3)
    (run_record,) = zarr.open_group(str(store), mode="r").attrs["runs"]
    assert run_record["summary"]["done"] == 2 and run_record["config"]["tile"] == 64
    summary = run_record["summary"]
    assert summary["output_megapixels"] == pytest.approx(2 * 512 * 1024 / 1e6)
    assert 0 < summary["warmup_seconds"] < summary["seconds"]
    assert summary["megapixels_per_s"] == pytest.approx(
        summary["output_megapixels"] / (summary["seconds"] - summary["warmup_seconds"])
    )


def test_whole_image_run_stores_the_single_image_upscale(lr_dir, scheduler, tmp_path):
    """Whole-image inference (``tile: null``, a GPU's ``tile: auto`` when the image fits): the engine returns the
    image, which the task hands to the sink after the network (on a GPU, outside the device lock)."""
    store = tmp_path / "whole.zarr"
    code, output = odisr_cli("run", lr_dir, "--out", store, "--config", "lightweight_x4", "--model", "bicubic-x4",
                             "--scheduler", scheduler)  # fmt: skip
    assert code == 0 and "2 done, 0 failed" in output, output
    for name in PANOS:
        pair = f"{Path(name).stem}/bicubic-x4"
        expected = odisr.upscale(read_image(lr_dir / name), "bicubic-x4", mode="lightweight", tile=None, device="cpu")
        np.testing.assert_array_equal(sr(store, pair), expected)
        group = zarr.open_group(str(store), mode="r")[f"images/{pair}"]
        assert group["sr"].chunks == (512, 512, 3) and group.attrs["tile_used"] is None
        np.testing.assert_array_equal(group["preview"][...], box_preview(expected))


def test_second_run_skips_complete_pairs_and_redoes_changed_config(lr_dir, scheduler, tmp_path):
    store = tmp_path / "out.zarr"
    assert run([lr_dir], store, scheduler)[0] == 0
    first = pairs(store)
    code, output = run([lr_dir], store, scheduler)
    assert code == 0 and "0 done, 0 failed, 2 skipped" in output
    assert pairs(store) == first  # untouched: same attempt tokens
    code, output = run([lr_dir], store, scheduler, "--tile", 32)  # a different tile is a different result
    assert code == 0 and "2 done, 0 failed, 0 skipped" in output
    redone = pairs(store)
    assert all(redone[p]["tile"] == 32 and redone[p]["attempt"] != first[p]["attempt"] for p in first)
    assert zarr.open_group(str(store), mode="r")["images/hohonet_pano/bicubic-x4/sr"].chunks == (128, 128, 3)
    assert run([lr_dir], store, scheduler, "--tile", 32, "--overwrite")[1].count("2 done") == 1
    assert len(zarr.open_group(str(store), mode="r").attrs["runs"]) == 4


def test_bad_files_are_recorded_and_the_others_finish(lr_dir, scheduler, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = (lr_dir / PANOS[0]).read_bytes()
    (inputs / "good.png").write_bytes(good)
    (inputs / "truncated.png").write_bytes(good[: len(good) // 3])
    (inputs / "noise.jpg").write_bytes(os.urandom(5000))
    write_image(inputs / "wide.png", read_image(lr_dir / PANOS[0])[:, :200])  # 200×128: not 2:1
    store = tmp_path / "out.zarr"
    code, output = run([inputs], store, scheduler)
    assert code == 1, output
    assert "1 done, 3 failed, 0 skipped" in output
    recorded = pairs(store)
    assert recorded["good/bicubic-x4"]["status"] == "complete"
    for key in ("truncated", "noise", "wide"):
        attrs = recorded[f"{key}/bicubic-x4"]
        assert attrs["status"] == "failed" and key in attrs["error"], attrs
        assert "\n" not in attrs["error"]
    assert "NotERPError" in recorded["wide/bicubic-x4"]["error"]


def test_zip_archive_with_a_traversal_member(lr_dir, scheduler, tmp_path):
    archive = tmp_path / "panos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(lr_dir / PANOS[0], "inside/ok.png")
        z.writestr("../escape.png", (lr_dir / PANOS[1]).read_bytes())
    store = tmp_path / "out.zarr"
    code, output = run([archive], store, scheduler)
    assert code == 1 and "1 done, 1 failed" in output
    recorded = pairs(store)
    assert recorded["panos__inside__ok/bicubic-x4"]["source"] == f"{archive}!inside/ok.png"
    np.testing.assert_array_equal(
        sr(store, "panos__inside__ok/bicubic-x4"), odisr.upscale(read_image(lr_dir / PANOS[0]), "bicubic-x4", tile=64)
    )
    (failed,) = [a for a in recorded.values() if a["status"] == "failed"]
    assert "path traversal" in failed["error"] and failed["source"].endswith("!../escape.png")
    assert not (tmp_path.parent / "escape.png").exists()


# ------------------------------------------------------------------------------------------------ errors before work


def test_missing_weights_file_fails_before_any_work(lr_dir, tmp_path):
    store = tmp_path / "out.zarr"
    code, output = odisr_cli("run", lr_dir, "--out", store, "--model", "camixersr-s-x4",
                             "--weights", tmp_path / "nope.pth", "--scheduler", "tcp://127.0.0.1:9")  # fmt: skip
    assert code == 2 and "nope.pth" in output and "not found" in output
    assert not store.exists()  # neither the store nor a cluster connection was made


def test_unknown_config_key_fails_before_any_work(lr_dir, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: bicubic-x4\nscale: 4\ntile_size: 64\n")
    store = tmp_path / "out.zarr"
    code, output = odisr_cli("run", lr_dir, "--out", store, "--config", config, "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "tile_size" in output and "unknown key" in output
    assert not store.exists()


def test_tile_is_a_size_or_auto(lr_dir, scheduler, tmp_path):
    code, output = run([lr_dir], tmp_path / "bad.zarr", scheduler, "--tile", "big")
    assert code == 2 and "'big'" in output and "auto" in output
    store = tmp_path / "auto.zarr"
    code, output = run([lr_dir / PANOS[0]], store, scheduler, "--tile", "auto", "--device", "cpu")
    assert code == 0, output
    attrs = pairs(store)["hohonet_pano/bicubic-x4"]
    assert attrs["tile"] == attrs["tile_used"] == 256  # off CUDA, auto is the fixed CPU tile, recorded as such


def test_cuda_without_gpu_workers_is_a_clear_error(lr_dir, scheduler, tmp_path):
    code, output = run([lr_dir], tmp_path / "out.zarr", scheduler, "--device", "cuda")
    assert code == 2 and "GPU=1" in output


# ---------------------------------------------------------------------------------------------------- kill and resume


def test_sigkill_mid_write_then_rerun_equals_a_clean_run(lr_dir, scheduler, tmp_path):
    """`odisr run` (a subprocess on the shared cluster) is killed once its first tiles are in the store; its orphaned
    tasks may still be running on the workers when the re-run starts, the harder case for the store."""
    args = [lr_dir, "--model", "bicubic-x4", "--tile", 16, "--scheduler", scheduler]  # 128 tiles per image
    killed, log = tmp_path / "killed.zarr", tmp_path / "killed.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [Path(sys.executable).with_name("odisr"), "run", *map(str, args), "--out", killed],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(killed.glob("images/*/*/sr/c/*/*/*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, f"odisr run ended before it could be killed:\n{log.read_text()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    statuses = [a["status"] for a in pairs(killed).values()]
    assert st.RUNNING in statuses, f"the run was not interrupted while writing: {statuses}"

    code, output = odisr_cli("run", *args, "--out", killed)
    assert code == 0, output
    clean = tmp_path / "clean.zarr"
    assert odisr_cli("run", *args, "--out", clean)[0] == 0
    resumed, reference = pairs(killed), pairs(clean)
    assert sorted(resumed) == sorted(reference) and all(a["status"] == "complete" for a in resumed.values())
    for pair in reference:
        np.testing.assert_array_equal(sr(killed, pair), sr(clean, pair))
        strip = {k: v for k, v in reference[pair].items() if k not in VOLATILE}
        assert {k: v for k, v in resumed[pair].items() if k not in VOLATILE} == strip
    killed_run, rerun = zarr.open_group(str(killed), mode="r").attrs["runs"]
    assert killed_run["finished"] is None and rerun["summary"]["failed"] == 0
    assert rerun["summary"]["done"] + rerun["summary"]["skipped"] == 2


def test_a_worker_killed_mid_task_is_retried(lr_dir, scheduler, tmp_path):
    store, outcome = tmp_path / "out.zarr", {}
    thread = threading.Thread(target=lambda: outcome.update(result=run([lr_dir], store, scheduler, "--tile", 16)))
    with Client(scheduler) as client:
        pids = client.run(os.getpid)
        thread.start()
        deadline = time.monotonic() + 240
        while not list(store.glob("images/*/*/sr/c/*/*/*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        worker, task = next((w, k) for w, keys in client.processing().items() for k in keys if str(k).startswith("sr-"))
        group = next(f"images/{Path(n).stem}/bicubic-x4" for n in PANOS if f"sr-{Path(n).stem}-" in str(task))
        attempt = zarr.open_group(str(store), path=group, mode="r").attrs["attempt"]
        os.kill(pids[worker], signal.SIGKILL)
        thread.join(timeout=300)
        assert set(client.run(os.getpid).values()) != set(pids.values())  # the nanny restarted the worker
    code, output = outcome["result"]
    assert code == 0 and "2 done, 0 failed" in output, output
    for name in PANOS:
        expected = odisr.upscale(read_image(lr_dir / name), "bicubic-x4", tile=16)
        np.testing.assert_array_equal(sr(store, f"{Path(name).stem}/bicubic-x4"), expected)
        preview = zarr.open_group(str(store), mode="r")[f"images/{Path(name).stem}/bicubic-x4/preview"][...]
        np.testing.assert_array_equal(preview, box_preview(expected))
    assert zarr.open_group(str(store), path=group, mode="r").attrs["attempt"] != attempt  # redone from scratch


# ---------------------------------------------------------------------------------------------------- evaluate


def test_evaluate_camixer_beats_bicubic_on_a_real_panorama(shared, official_s_weights, scheduler, tmp_path):
    store = tmp_path / "eval.zarr"
    code, output = odisr_cli(
        "evaluate", shared / "data" / "erp" / PANOS[0], "--out", store, "--scale", 4,
        "--model", "camixersr-s-x4", "--model", "bicubic", "--weights", f"camixersr-s-x4={official_s_weights}",
        "--tile", 64, "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 0, output
    recorded = pairs(store)
    camixer, bicubic = recorded["hohonet_pano/camixersr-s-x4"], recorded["hohonet_pano/bicubic-x4"]
    assert camixer["metrics"]["ws_psnr"] > bicubic["metrics"]["ws_psnr"] + 0.3
    assert camixer["degrade"] == "bicubic" and camixer["lr_shape"] == [128, 256] and camixer["sr_shape"] == [512, 1024]
    latitudes = sorted(v for band in camixer["bands"] for v in band[:2])
    assert len(camixer["bands"]) == 8 and latitudes[0] == pytest.approx(-90) and latitudes[-1] == pytest.approx(90)
    assert camixer["weights_sha256"].startswith("49ffcfbb") and camixer["ratio"] == 0.5
    attention = zarr.open_group(str(store), mode="r")["images/hohonet_pano/camixersr-s-x4/attention"][...]
    assert attention.shape == (8, 16) and 0.0 <= attention.min() and attention.max() <= 1.0 and attention.max() > 0
    assert "camixersr-s-x4" in output and "bicubic-x4" in output and "WS-PSNR" in output


def test_evaluate_with_lr_dir_reproduces_set5_bicubic(shared, scheduler, tmp_path):
    set5 = shared / "data" / "sr" / "Set5"
    store = tmp_path / "set5.zarr"
    code, output = odisr_cli(
        "evaluate", set5 / "HR", "--lr-dir", set5 / "LR_bicubic" / "X4", "--out", store, "--scale", 4,
        "--model", "bicubic", "--config", "lightweight_x4", "--scheduler", scheduler,
    )  # fmt: skip
    assert code == 0, output
    recorded = pairs(store)
    assert len(recorded) == 5 and all(a["degrade"] == "lr-dir" for a in recorded.values())
    mean_psnr_y = np.mean([a["metrics"]["psnr_y"] for a in recorded.values()])
    assert mean_psnr_y == pytest.approx(28.42, abs=0.1)  # the field's Set5 ×4 bicubic figure
