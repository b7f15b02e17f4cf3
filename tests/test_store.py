"""The Zarr store layout: root/run records, per-pair groups, completion marker, takeover, resume, preview, xarray.

Budget: < 10 s (real Zarr stores on disk, small arrays).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

from pipelines import store as st

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


def test_pair_lifecycle_region_writes_and_xarray(tmp_path, root):
    path = str(tmp_path / "s.zarr")
    group = st.begin_pair(path, "pano", "bicubic-x4", WANTED)
    assert group.attrs["status"] == st.RUNNING and len(group.attrs["attempt"]) == 32
    sr = st.create_sr(group, (300, 520), 128)
    assert sr.chunks == (128, 128, 3) and sr.metadata.dimension_names == ("y", "x", "band")
    assert type(sr.compressors[0]).__name__ == "ZstdCodec"
    image = np.random.default_rng(0).integers(0, 256, (300, 520, 3), dtype=np.uint8)
    written = []
    sink = st.RegionSink(group, sr, written.append)
    for y in range(0, 300, 128):
        for x in range(0, 520, 128):
            sink[y : y + 128, x : x + 128, :] = image[y : y + 128, x : x + 128]
    assert sum(written) == 300 * 520
    st.write_preview(group, sr)
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
    new = st.begin_pair(path, "pano", "m", WANTED)  # a re-run takes over
    assert "sr" not in new and new.attrs["attempt"] != old.attrs["attempt"]
    new_sr = st.create_sr(new, (64, 128), 64)
    with pytest.raises(st.Superseded):
        old_sink[0:64, 64:128, :] = np.full((64, 64, 3), 7, np.uint8)
    with pytest.raises(st.Superseded):
        st.complete_pair(old_sink, {})
    assert new_sr[...].max() == 0 and st.pair_attrs(root, "pano", "m")["status"] == st.RUNNING


def test_a_writer_whose_group_is_being_deleted_stops(tmp_path, root):
    path = str(tmp_path / "s.zarr")
    old = st.begin_pair(path, "pano", "m", WANTED)
    old_sink = st.RegionSink(old, st.create_sr(old, (64, 128), 64))
    shutil.rmtree(tmp_path / "s.zarr" / "images" / "pano" / "m")  # a newer attempt is deleting the group right now
    with pytest.raises(st.Superseded):
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


@pytest.mark.parametrize(("shape", "dtype"), [((500, 2600), np.uint8), ((130, 260), np.uint16)])
def test_preview_is_an_exact_box_average_at_most_1024_wide(tmp_path, root, shape, dtype):
    group = st.begin_pair(str(tmp_path / "s.zarr"), "p", "m", WANTED)
    sr = st.create_sr(group, shape, 96, dtype)
    image = np.random.default_rng(1).integers(0, np.iinfo(dtype).max + 1, (*shape, 3), dtype=dtype)
    sr[...] = image
    preview = st.write_preview(group, sr)[...]
    f = -(-shape[1] // st.PREVIEW_MAX_WIDTH)
    h, w = shape[0] // f, shape[1] // f
    assert preview.shape == (h, w, 3) and preview.dtype == np.uint8 and w <= st.PREVIEW_MAX_WIDTH
    ref = image[: h * f, : w * f].astype(np.float64).reshape(h, f, w, f, 3).mean(axis=(1, 3))
    ref = np.floor(ref * 255.0 / np.iinfo(dtype).max + 0.5)
    assert np.abs(preview.astype(np.int32) - ref).max() <= 1  # float32 accumulation vs float64
