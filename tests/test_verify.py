"""Store checksums and ``odisr verify``: chunk digests computed from the blocks as written, recorded at completion;
a chunk changed on disk (other pixels, or bytes that no longer decode) is found and named; failed and orphaned
``running`` pairs are listed; exit code 0 only when every complete pair verifies.

Budget: < 5 s (real Zarr stores on disk, small arrays, no cluster).
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipelines import store as st
from pipelines.checksum import ChunkDigests, check, chunk_digest
from pipelines.verify import verify_store
from cli_support import odisr_cli

WANTED = {"source": "/data/a.png", "model": "bicubic-x4", "weights_sha256": None, "scale": 4, "ratio": None,
          "mode": "odi", "tile": 64, "halo": None, "degrade": None}  # fmt: skip
SHAPE, CHUNK = (300, 520), 128  # 3 × 5 chunks, the last row and column partial


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)


def write_pair(path: str, key: str, pixels: np.ndarray, *, complete: bool = True) -> st.RegionSink:
    group = st.begin_pair(path, key, "bicubic-x4", {**WANTED, "sr_shape": list(SHAPE)})
    sink = st.RegionSink(group, st.create_sr(group, SHAPE, CHUNK))
    for y in range(0, SHAPE[0], CHUNK):
        for x in range(0, SHAPE[1], CHUNK):
            sink[y : y + CHUNK, x : x + CHUNK, :] = pixels[y : y + CHUNK, x : x + CHUNK]
    sink.close()  # every queued chunk written
    if complete:
        st.write_preview(group, sink.preview.result())
        st.complete_pair(sink, {"seconds": 0.1})
    return sink


def verify(path: str, *args: str) -> tuple[int, str]:
    return odisr_cli("verify", path, *args)


# ---------------------------------------------------------------------------------------------------- digests


def test_digests_of_written_blocks_equal_digests_of_the_chunks_read_back(tmp_path):
    path = str(tmp_path / "s.zarr")
    st.open_store(path)
    pixels = image(0)
    write_pair(path, "a", pixels)
    recorded = zarr.open_group(path, mode="r")["images/a/bicubic-x4"].attrs["sr_checksum"]
    assert recorded["algorithm"] == "blake2b-128" and len(recorded["chunks"]) == 3 * 5
    assert recorded["chunks"]["2.4.0"] == chunk_digest(pixels[256:300, 512:520])  # the partial corner chunk
    sr = zarr.open_group(path, mode="r")["images/a/bicubic-x4/sr"]
    assert list(check(sr, recorded)) == []
    other = dict(recorded["chunks"], **{"1.1.0": chunk_digest(pixels[:1])})
    problems = list(check(sr, {**recorded, "chunks": other}))
    assert [k for k, _ in problems] == ["*", "1.1.0"]  # the combined digest and the chunk itself


def test_one_region_spanning_several_chunks_and_misaligned_regions():
    digests = ChunkDigests((300, 520, 3), (128, 128, 3), np.uint8)
    pixels = image(1)
    digests.add((slice(0, 300), slice(0, 520)), pixels)  # whole-image inference: one block, every chunk
    whole = digests.record()
    tiled = ChunkDigests((300, 520, 3), (128, 128, 3), np.uint8)
    for y in range(0, 300, 128):
        for x in range(0, 520, 128):
            tiled.add((slice(y, y + 128), slice(x, x + 128), slice(None)), pixels[y : y + 128, x : x + 128])
    assert tiled.record() == whole
    with pytest.raises(ValueError, match="does not cover whole chunks"):
        digests.add((slice(64, 192), slice(0, 128)), pixels[64:192, :128])
    partial = ChunkDigests((300, 520, 3), (128, 128, 3), np.uint8)
    partial.add((slice(0, 128), slice(0, 128)), pixels[:128, :128])
    with pytest.raises(ValueError, match="14 chunk"):
        partial.record()


# ---------------------------------------------------------------------------------------------------- odisr verify


def test_verify_finds_a_changed_chunk_an_undecodable_one_and_an_orphaned_pair(tmp_path):
    path = str(tmp_path / "s.zarr")
    root = st.open_store(path)
    st.finish_run(root, st.record_run(root, "odisr run", {}), {"done": 2})  # every run finished: orphans are sure
    for key, seed in (("good", 0), ("changed", 1), ("garbled", 2)):
        write_pair(path, key, image(seed))
    write_pair(path, "orphan", image(3), complete=False)  # its writer was killed before the marker
    st.fail_pair(path, "bad", "bicubic-x4", WANTED, "ImageReadError: bad.png: the file is empty (0 bytes)")
    code, output = verify(path)
    assert code == 0, output  # failed and orphaned pairs are listed, but no complete pair is damaged
    assert "3 verified, 0 corrupt, 0 unverifiable, 1 failed, 1 running" in output
    assert "orphan [bicubic-x4]: orphaned" in output and "bad.png: the file is empty" in output

    # A chunk rewritten with other pixels (a valid chunk file: only the checksum can tell).
    sr = zarr.open_group(path, mode="r+")["images/changed/bicubic-x4/sr"]
    sr[128:256, 256:384] = image(9)[:128, :128]
    # A chunk file cut short (a torn copy): its bytes no longer decode.
    chunk = tmp_path / "s.zarr" / "images" / "garbled" / "bicubic-x4" / "sr" / "c" / "0" / "3" / "0"
    chunk.write_bytes(chunk.read_bytes()[:1000])

    code, output = verify(path)
    assert code == 1, output
    assert "1 verified, 2 corrupt" in output
    assert "changed [bicubic-x4]: 1 chunk(s) do not match their checksum: chunk sr/c/1/2/0: pixels differ" in output
    assert "garbled [bicubic-x4]: 1 chunk(s)" in output and "chunk sr/c/0/3/0: cannot be decoded" in output
    verdicts = {c.key: c.verdict for c in verify_store(path)}
    assert verdicts == {"bad": "failed", "changed": "corrupt", "garbled": "corrupt", "good": "verified",
                        "orphan": "running"}  # fmt: skip

    code, output = verify(path, "--redo-corrupt")
    assert code == 1 and "marked failed: changed [bicubic-x4]" in output
    code, output = verify(path)
    assert code == 0 and "1 verified, 0 corrupt, 0 unverifiable, 3 failed, 1 running" in output, output
    redo = st.pair_attrs(zarr.open_group(path, mode="r"), "changed", "bicubic-x4")
    assert st.resume_action(redo, WANTED) == (True, "failed before, retried")
    assert redo["error"].startswith("odisr verify: 1 chunk(s) do not match")


def test_verify_flags_pairs_without_checksum_and_refuses_non_stores(tmp_path):
    path = str(tmp_path / "s.zarr")
    st.open_store(path)
    write_pair(path, "old", image(0))
    group = zarr.open_group(path, path="images/old/bicubic-x4", mode="r+")
    attrs = dict(group.attrs)
    del attrs["sr_checksum"]  # as written before checksums existed
    group.attrs.put(attrs)
    code, output = verify(path)
    assert code == 1 and "unverifiable" in output and "--overwrite" in output
    code, output = verify(str(tmp_path / "nothing.zarr"))
    assert code == 2 and "nothing.zarr" in output
