"""The Zarr store layout: root/run records, per-pair groups, completion marker, takeover, resume, preview, xarray.

Budget: < 20 s (real Zarr stores on disk, small arrays; four driver processes racing to create one store; the
overlapped writer streams a real bicubic upscale into a store slowed down like an object store).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from odisr.inference import upscale
from odisr.io import read_image
from odisr.resize import imresize
from pipelines import store as st
from pipelines.preview import box_preview

WANTED = {"source": "/data/a.png", "model": "bicubic-x4", "weights_sha256": None, "scale": 4, "ratio": None,
          "mode": "odi", "tile": 64, "halo": None, "degrade": None}  # fmt: skip


@pytest.fixture
def root(tmp_path):
    return st.open_store(str(tmp_path / "s.zarr"))


def test_open_store_creates_the_layout_and_keeps_it(tmp_path, root):
    assert set(root.attrs) >= {"odisr_version", "created", "runs"} and root.attrs["runs"] == []
    assert "images" in root
    index = st.record_run(root, "odisr run x", {"tile": 64})
    st.finish_run(root, index, {"done": 1})
    again = st.open_store(str(tmp_path / "s.zarr"))
    (run,) = again.attrs["runs"]
    assert run["command"] == "odisr run x" and run["config"] == {"tile": 64} and run["summary"] == {"done": 1}
    assert run["started"] <= run["finished"]


def test_a_foreign_zarr_group_is_refused(tmp_path):
    other = zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    other.create_array("data", shape=(2,), dtype="int8")
    with pytest.raises(st.StoreError, match="not an odisr store"):
        st.open_store(str(tmp_path / "other.zarr"))


def _driver(path: str, barrier: Any, ids: Any) -> None:
    """One driver's root traffic: open (maybe create) the store, record a run, finish it."""
    barrier.wait(timeout=120)  # every process imported and ready: all hit the new store at the same moment
    root = st.open_store(path)
    st.require_group(root, "images/pano")
    run_id = st.record_run(root, "odisr run", {})
    st.finish_run(root, run_id, {"done": 0})
    ids.put(run_id)


def test_drivers_creating_one_store_at_once_all_succeed_and_keep_their_run_records(tmp_path):
    """The CI race: a second `odisr run` saw the first's root group between its creation and its attrs."""
    path, drivers, ctx = str(tmp_path / "s.zarr"), 4, multiprocessing.get_context("spawn")
    barrier, ids = ctx.Barrier(drivers), ctx.Queue()
    procs = [ctx.Process(target=_driver, args=(path, barrier, ids), daemon=True) for _ in range(drivers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=180)
    assert [proc.exitcode for proc in procs] == [0] * drivers
    runs = zarr.open_group(path, mode="r").attrs["runs"]
    assert sorted(run["id"] for run in runs) == sorted(ids.get(timeout=5) for _ in range(drivers))
    assert all(run["finished"] and run["summary"] == {"done": 0} for run in runs)


def test_a_run_record_lost_to_a_writer_that_never_stops_is_given_up_with_a_warning(tmp_path, root, caplog):
    """Another writer rewrites the root without this run's record in a tight loop: every read-back misses the
    record, and after its attempts the driver warns and goes on (the record is bookkeeping, not a result)."""
    stop = threading.Event()

    def clobber() -> None:
        other = zarr.open_group(root.store, mode="r+")
        while not stop.is_set():
            other.attrs["runs"] = []

    thread = threading.Thread(target=clobber)
    thread.start()
    try:
        st.record_run(root, "odisr run lost", {})
    finally:
        stop.set()
        thread.join()
    assert "the run record could not be written (8 writes lost" in caplog.text
    assert zarr.open_group(root.store, mode="r").attrs["runs"] == []


def test_pair_lifecycle_region_writes_and_xarray(tmp_path, root):
    path = str(tmp_path / "s.zarr")
    group = st.begin_pair(path, "pano", "bicubic-x4", WANTED)
    assert group.attrs["status"] == st.RUNNING and len(group.attrs["attempt"]) == 32
    sr = st.create_sr(group, (300, 520), 128)
    assert sr.chunks == (128, 128, 3) and sr.metadata.dimension_names == ("y", "x", "band")
    assert type(sr.compressors[0]).__name__ == "ZstdCodec"
    image = np.random.default_rng(0).integers(0, 256, (300, 520, 3), dtype=np.uint8)
    image[256:, 512:] = 0  # a chunk equal to the fill value
    written = []
    sink = st.RegionSink(group, sr, written.append)
    for y in range(0, 300, 128):
        for x in range(0, 520, 128):
            sink[y : y + 128, x : x + 128, :] = image[y : y + 128, x : x + 128]
    sink.close()
    assert sum(written) == 300 * 520
    chunks = [p for p in (tmp_path / "s.zarr/images/pano/bicubic-x4/sr/c").rglob("*") if p.is_file()]
    assert len(chunks) == 3 * 5  # every chunk written, also the one equal to the fill value (write_empty_chunks)
    st.write_preview(group, sink.preview.result())
    st.write_attention(group, np.full((19, 33), 0.25, np.float32))
    assert st.pair_attrs(root, "pano", "bicubic-x4")["status"] == st.RUNNING  # not complete before the marker
    st.complete_pair(sink, {"seconds": 1.5})
    attrs = st.pair_attrs(root, "pano", "bicubic-x4")
    assert attrs["status"] == st.COMPLETE and attrs["seconds"] == 1.5 and attrs["tile"] == 64
    ds = xr.open_zarr(path, group="images/pano/bicubic-x4", consolidated=False)
    np.testing.assert_array_equal(ds["sr"].values, image)
    assert ds["preview"].dims == ("preview_y", "preview_x", "band") and ds["attention"].dims == ("window_y", "window_x")


def test_recreating_a_pair_deletes_old_chunks_and_stops_the_old_writer(tmp_path, root):
    path = str(tmp_path / "s.zarr")
    old = st.begin_pair(path, "pano", "m", WANTED)
    old_sink = st.RegionSink(old, st.create_sr(old, (64, 128), 64))
    old_sink[0:64, 0:64, :] = np.full((64, 64, 3), 9, np.uint8)
    old_sink.flush()
    new = st.begin_pair(path, "pano", "m", WANTED)  # a re-run takes over
    assert "sr" not in new and new.attrs["attempt"] != old.attrs["attempt"]
    new_sr = st.create_sr(new, (64, 128), 64)
    old_sink[0:64, 64:128, :] = np.full((64, 64, 3), 7, np.uint8)  # queued; its writer thread finds it superseded
    with pytest.raises(st.Superseded):
        old_sink.flush()
    with pytest.raises(st.Superseded):
        old_sink[0:64, 0:64, :] = np.full((64, 64, 3), 5, np.uint8)  # the engine is stopped at its next block
    with pytest.raises(st.Superseded):
        st.complete_pair(old_sink, {})
    assert new_sr[...].max() == 0 and st.pair_attrs(root, "pano", "m")["status"] == st.RUNNING


def test_a_writer_whose_group_is_being_deleted_stops(tmp_path, root):
    path = str(tmp_path / "s.zarr")
    old = st.begin_pair(path, "pano", "m", WANTED)
    old_sink = st.RegionSink(old, st.create_sr(old, (64, 128), 64))
    shutil.rmtree(tmp_path / "s.zarr" / "images" / "pano" / "m")  # a newer attempt is deleting the group right now
    with pytest.raises(st.Superseded), old_sink:  # raised by the writer thread, re-raised when the sink closes
        old_sink[0:64, 0:64, :] = np.full((64, 64, 3), 7, np.uint8)
    new = st.begin_pair(path, "pano", "m", WANTED)  # a group holding an old attempt: its writer is stopped first
    assert new.attrs["status"] == st.RUNNING and new.attrs["attempt"] != old.attrs["attempt"]


def test_fail_pair_records_the_reason(tmp_path, root):
    st.fail_pair(str(tmp_path / "s.zarr"), "bad", "m", WANTED, "ImageReadError: cannot decode bad.png")
    attrs = st.pair_attrs(root, "bad", "m")
    assert attrs["status"] == st.FAILED and attrs["error"].startswith("ImageReadError")
    assert attrs["source"] == "/data/a.png"
    assert "sr" not in root["images/bad/m"]


@pytest.mark.parametrize(
    ("recorded", "run", "reason"),
    [
        (None, True, "new"),
        ({**WANTED, "status": "running"}, True, "incomplete"),
        ({**WANTED, "status": "failed"}, True, "failed before"),
        ({**WANTED, "status": "complete", "seconds": 3.0}, False, "complete"),
        ({**WANTED, "status": "complete", "tile": 128}, True, "tile: 128 → 64"),
        ({**WANTED, "status": "complete", "weights_sha256": "ab"}, True, "weights_sha256"),
        ({**WANTED, "status": "complete", "ratio": 0.5}, True, "ratio: 0.5 → None"),
    ],
)
def test_resume_action(recorded, run, reason):
    decision, why = st.resume_action(recorded, WANTED)
    assert decision is run and reason in why


# ---------------------------------------------------------------------------------------------------- overlapped writer


class SlowStore(LocalStore):
    """A real local Zarr store whose chunk writes each take ``delay`` seconds longer (an object store's latency)."""

    delay = 0.0

    async def set(self, key: str, value: Buffer) -> None:
        if "/c/" in key:
            await asyncio.sleep(self.delay)
        await super().set(key, value)


def _slow_store(path: Path, delay: float) -> SlowStore:
    store = SlowStore(path)
    store.delay = delay
    return store


def test_overlapped_writes_into_a_slow_store_are_bit_exact(shared, tmp_path):
    """The engine streams 32 tiles into a sink whose writes lag behind (2 writer threads, at most 3 queued pieces):
    the stored SR equals the numpy output bit for bit, and the streamed preview equals the definition."""
    lr = imresize(read_image(shared / "data" / "erp" / "hohonet_pano.png"), 0.25, wrap=True)  # 256×128
    expected = upscale(lr, "bicubic-x4", tile=32, device="cpu")
    group = st.begin_pair(_slow_store(tmp_path / "s.zarr", 0.01), "pano", "bicubic-x4", WANTED)
    sr = st.create_sr(group, expected.shape[:2], 128)
    written = []
    sink = st.RegionSink(group, sr, written.append, writers=2, max_pending=3)
    with sink:
        upscale(lr, "bicubic-x4", tile=32, device="cpu", sink=sink)
    assert sum(written) == expected.shape[0] * expected.shape[1]
    np.testing.assert_array_equal(sr[...], expected)
    np.testing.assert_array_equal(sink.preview.result(), box_preview(expected))
    st.write_preview(group, sink.preview.result())
    st.complete_pair(sink, {})
    stored = zarr.open_group(str(tmp_path / "s.zarr"), path="images/pano/bicubic-x4", mode="r")
    assert stored.attrs["status"] == st.COMPLETE
    np.testing.assert_array_equal(stored["sr"][...], expected)


def test_a_superseded_writer_drops_its_queue(tmp_path):
    """Eight pieces queued behind one slow writer when a newer attempt takes the group over: only the piece already
    past its ownership check may still land; the seven others are checked afterwards and dropped. The newer
    attempt, writing every chunk itself, ends bit-exact."""
    path = tmp_path / "s.zarr"
    old = st.begin_pair(_slow_store(path, 0.05), "pano", "m", WANTED)
    old_sink = st.RegionSink(old, st.create_sr(old, (64, 512), 64), writers=1, max_pending=8)
    for x in range(0, 512, 64):
        old_sink[0:64, x : x + 64, :] = np.full((64, 64, 3), 9, np.uint8)
    new = st.begin_pair(str(path), "pano", "m", WANTED)  # while the first piece sleeps in the store
    with pytest.raises(st.Superseded):
        old_sink.close()
    assert len([p for p in path.rglob("images/pano/m/sr/c/**/*") if p.is_file()]) <= 1  # the in-flight piece

    image = np.random.default_rng(3).integers(0, 256, (64, 512, 3), dtype=np.uint8)
    new_sink = st.RegionSink(new, st.create_sr(new, (64, 512), 64))
    with new_sink:
        for x in range(0, 512, 64):
            new_sink[0:64, x : x + 64, :] = image[:, x : x + 64]
    st.complete_pair(new_sink, {})
    np.testing.assert_array_equal(zarr.open_group(str(path), path="images/pano/m", mode="r")["sr"][...], image)


class RacingStore(LocalStore):
    """A real local Zarr store on which a newer attempt begins right after the next read of ``watched`` (the group
    document that a writer's ownership check reads): the ~1 ms window between the check and the write after it."""

    watched: str | None = None
    newer_attempt: Any = None

    async def get(self, key: str, *args: Any, **kwargs: Any) -> Buffer | None:
        value = await super().get(key, *args, **kwargs)
        if key == self.watched:
            self.watched = None
            await asyncio.to_thread(self.newer_attempt)  # zarr's own event loop keeps serving it meanwhile
        return value


@pytest.mark.parametrize("newer_has_array", [False, True])
def test_a_newer_attempt_beginning_between_the_check_and_the_marker_is_not_marked_complete(tmp_path, newer_has_array):
    """The completion marker lands on a group that a newer attempt has just recreated (empty, or with its own
    ``sr`` array): the older writer takes the marker back and is superseded, the newer writer stops at the foreign
    token, and the pair is left incomplete — the next run redoes it — never "complete" over the wrong pixels."""
    path = tmp_path / "s.zarr"
    store = RacingStore(path)
    group = st.begin_pair(store, "pano", "m", WANTED)
    sink = st.RegionSink(group, st.create_sr(group, (64, 128), 64))
    with sink:
        sink[0:64, 0:128] = np.full((64, 128, 3), 7, np.uint8)
    newer = {}

    def begin_newer() -> None:
        newer["group"] = st.begin_pair(str(path), "pano", "m", WANTED)
        if newer_has_array:
            newer["sink"] = st.RegionSink(newer["group"], st.create_sr(newer["group"], (64, 128), 64))

    store.watched, store.newer_attempt = "images/pano/m/zarr.json", begin_newer
    with pytest.raises(st.Superseded, match="while completing"):
        st.complete_pair(sink, {"seconds": 1.0})
    recorded = st.pair_attrs(zarr.open_group(str(path), mode="r"), "pano", "m")
    assert recorded["status"] == st.RUNNING and st.resume_action(recorded, WANTED) == (
        True, "incomplete (interrupted), redone from scratch")  # fmt: skip
    if newer_has_array:
        with pytest.raises(st.Superseded):
            newer["sink"].write(0, 0, np.zeros((64, 64, 3), np.uint8))


def test_regions_must_be_chunk_aligned(tmp_path, root):
    group = st.begin_pair(str(tmp_path / "s.zarr"), "pano", "m", WANTED)
    sink = st.RegionSink(group, st.create_sr(group, (64, 200), 64))
    with pytest.raises(ValueError, match="not aligned to the 64×64 chunks"):
        sink[0:64, 32:96, :] = np.zeros((64, 64, 3), np.uint8)
    sink[0:64, 192:200, :] = np.zeros((64, 8, 3), np.uint8)  # the ragged last chunk is aligned
    sink.close()
