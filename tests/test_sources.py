"""Input enumeration: files, directories, globs, zip/tar archives (read in place, unsafe members rejected), fsspec URLs.

Budget: < 5 s (no cluster, tiny files).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from odisr.sources import Source, SourceError, find_sources, slugify


def png_bytes(seed: int, size: tuple[int, int] = (8, 4)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def by_key(sources: list[Source]) -> dict[str, Source]:
    return {s.key: s for s in sources}


def listing(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# ---------------------------------------------------------------------------------------------------- keys


def test_slug_keeps_simple_names_and_hashes_lossy_ones():
    assert slugify("pano.png") == "pano"
    assert slugify("indoor/room_1.jpg") == "indoor__room_1"
    lossy = slugify("Trip/Day 1.JPG")
    assert lossy == "trip__day_1-" + hashlib.sha1(b"Trip/Day 1.JPG").hexdigest()[:8]
    assert slugify("a__b.png") != "a__b"  # would read back as a/b
    for text in ("x/ü ö.png", "../evil.png", "A.B.C.tif"):
        key = slugify(text)
        assert set(key) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-"), key


def test_colliding_keys_get_distinct_suffixes(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(0))
    (tmp_path / "a.jpg").write_bytes(png_bytes(1))
    keys = sorted(by_key(find_sources([tmp_path])))
    assert len(keys) == 2 and all(k.startswith("a-") for k in keys) and keys[0] != keys[1]


# ------------------------------------------------------------------------------------------------ files, dirs, globs


def test_directory_is_recursive_and_skips_hidden_and_non_images(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    files = {"one.png": 1, "sub/two.jpg": 2, "sub/deeper/three.png": 3, ".hidden/no.png": 4, "sub/.no.png": 5}
    for rel, seed in files.items():
        (tmp_path / rel).write_bytes(png_bytes(seed))
    (tmp_path / "notes.txt").write_text("not an image")
    sources = find_sources([tmp_path])
    assert sorted(by_key(sources)) == ["one", "sub__deeper__three", "sub__two"]
    assert by_key(sources)["sub__two"].open() == png_bytes(2)
    assert by_key(sources)["sub__two"].name == str(tmp_path / "sub" / "two.jpg")
    assert [s.key for s in sources] == [s.key for s in find_sources([tmp_path])]  # deterministic order


def test_explicit_file_is_taken_whatever_its_suffix_and_only_once(tmp_path):
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    sources = find_sources([text, str(text)])
    assert [(s.key, s.open()) for s in sources] == [("readme", b"hello")]


def test_glob_keys_are_relative_to_the_pattern_base(tmp_path):
    for rel in ("x/p1.png", "y/p2.png", "y/skip.jpg"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes(len(rel)))
    assert sorted(by_key(find_sources([f"{tmp_path}/*/*.png"]))) == ["x__p1", "y__p2"]


def test_missing_path_and_empty_glob_fail_before_any_work(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        find_sources([tmp_path / "absent.png"])
    with pytest.raises(SourceError, match="matches no file"):
        find_sources([f"{tmp_path}/*.png"])


# ---------------------------------------------------------------------------------------------------- archives


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return path


def test_zip_members_are_read_in_place_and_unsafe_ones_rejected(tmp_path):
    archive = make_zip(
        tmp_path / "Pack.zip",
        {"a.png": png_bytes(1), "dir/b.png": png_bytes(2), "../evil.png": png_bytes(3), "/abs.png": png_bytes(4),
         "__MACOSX/._a.png": b"junk", "readme.txt": b"text"},
    )  # fmt: skip
    before = listing(tmp_path)
    sources = find_sources([archive])
    names = {s.name.split("!")[1]: s for s in sources}
    assert set(names) == {"a.png", "dir/b.png", "../evil.png", "/abs.png"}
    assert names["dir/b.png"].open() == png_bytes(2)
    assert names["dir/b.png"].key.startswith("pack__dir__b-")  # 'Pack' → lossy slug, hashed
    with pytest.raises(SourceError, match=r"'\.\.' in the member path"):
        names["../evil.png"].open()
    with pytest.raises(SourceError, match="absolute path"):
        names["/abs.png"].open()
    assert listing(tmp_path) == before  # nothing extracted
    assert not (tmp_path.parent / "evil.png").exists()


def test_tar_gz_members_links_and_traversal(tmp_path):
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for name, data in {"p/x.png": png_bytes(5), "../../up.png": png_bytes(6)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("p/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
    sources = by_key(find_sources([archive]))
    assert sources["set__p__x"].open() == png_bytes(5)
    assert sources["set__p__x"].name == f"{archive}!p/x.png"
    rejected = [s for k, s in sources.items() if k != "set__p__x"]
    assert len(rejected) == 2
    for source in rejected:
        with pytest.raises(SourceError, match="not read"):
            source.open()


def test_corrupt_archive_becomes_one_failed_source(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    (source,) = find_sources([bad])
    with pytest.raises(SourceError, match="cannot read the archive"):
        source.open()


def test_archives_inside_directories_are_opened(tmp_path):
    make_zip(tmp_path / "inner.zip", {"q.png": png_bytes(7)})
    (tmp_path / "r.png").write_bytes(png_bytes(8))
    assert sorted(by_key(find_sources([tmp_path]))) == ["inner__q", "r"]


# ---------------------------------------------------------------------------------------------------- URLs, pickling


def test_fsspec_urls_directories_and_globs():
    fs = fsspec.filesystem("memory")
    for rel, seed in {"panos/a.png": 1, "panos/sub/b.png": 2, "panos/c.txt": 3}.items():
        fs.pipe(f"/odisr-test/{rel}", png_bytes(seed))
    try:
        by_dir = by_key(find_sources(["memory://odisr-test/panos"]))
        assert sorted(by_dir) == ["a", "sub__b"]
        assert by_dir["sub__b"].name == "memory:///odisr-test/panos/sub/b.png"
        assert by_dir["sub__b"].open() == png_bytes(2)
        assert sorted(by_key(find_sources(["memory://odisr-test/panos/*.png"]))) == ["a"]
    finally:
        fs.rm("/odisr-test", recursive=True)


def test_sources_pickle_for_the_workers(tmp_path):
    archive = make_zip(tmp_path / "p.zip", {"a.png": png_bytes(9), "../b.png": b""})
    for source in find_sources([archive, make_zip(tmp_path / "q.zip", {"c.png": png_bytes(10)})]):
        clone = pickle.loads(pickle.dumps(source))
        assert clone.key == source.key and clone.name == source.name
        if "../" not in source.name:
            assert clone.open() == source.open()


def test_paths_that_are_not_regular_files_fail_when_read_and_never_block(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")  # opening a FIFO for reading would wait forever for a writer
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "dir.png").symlink_to(".")
    found = by_key(find_sources([tmp_path]))
    with pytest.raises(SourceError, match=r"fifo\.png: not a regular file"):
        found["fifo"].open()
    with pytest.raises(OSError, match=r"loop\.png"):
        found["loop"].open()
    with pytest.raises(SourceError, match=r"dir\.png: not a regular file"):
        found["dir"].open()
