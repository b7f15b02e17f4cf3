"""Fuzz campaign: 200+ hostile inputs (tests/hostile_inputs.py, fixed seed) in one ``odisr run`` (odi mode, bicubic,
its own local cluster of 2 workers, a subprocess). Every input is processed correctly (the store's SR equals
``odisr.upscale`` of the same file) or recorded ``failed`` with a reason naming the file; the batch finishes with exit
code 1 within its timeout (no hang); peak RSS of the run and its workers stays bounded (bombs are refused from their
headers, before any pixel is allocated).

Budget: ≤ 3 min on 2 cores (~1 min measured: cluster start-up, then ~400 small Dask tasks).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

import odisr
from hostile_inputs import Case, generate
from odisr.erp import check_erp
from odisr.io import read_image

PEAK_RSS_LIMIT = 2 * 2**30  # bytes; a 100000×50000 RGB decode alone would be 15 GB
#: Runs a command and prints the peak RSS (KiB) of it and every descendant it waited for (Linux: RUSAGE_CHILDREN).
RSS_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def expected_outcome(case: Case) -> tuple[str, np.ndarray | None]:
    """What the single-image API makes of the file: ("complete", the SR) or ("failed", None)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = read_image(case.path)
        check_erp(image, name=str(case.path))
    except (ValueError, OSError):
        return "failed", None
    return "complete", odisr.upscale(image, "bicubic-x4", tile=64, device="cpu")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fuzz_campaign(tmp_path):
    cases = generate(tmp_path / "in", seed=13)
    inputs = [c for c in cases if c.expect != "absent"]
    assert len(cases) >= 200
    store = tmp_path / "fuzz.zarr"
    odisr_run = [str(Path(sys.executable).with_name("odisr")), "run", str(tmp_path / "in"), "--out", str(store)]
    command = [sys.executable, "-c", RSS_WRAPPER, *odisr_run, "--model", "bicubic-x4", "--tile", "64", "--workers", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=200, cwd=tmp_path)  # a hang fails here
    log = done.stderr
    assert done.returncode == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    peak = int(log.rsplit("peak_rss_kib", 1)[1].split()[0]) * 1024
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"

    root = zarr.open_group(str(store), mode="r")
    recorded = {}
    for _, image in root["images"].groups():
        for _, group in image.groups():
            attrs = dict(group.attrs)
            assert attrs["source"] not in recorded, attrs["source"]  # one pair per input
            recorded[attrs["source"]] = (attrs, group)
    assert sorted(recorded) == sorted(str(c.path) for c in inputs)  # directories are not inputs; all else is

    table = collections.Counter()
    for case in inputs:
        attrs, group = recorded[str(case.path)]
        status = attrs["status"]
        table[case.kind, status] += 1
        if case.expect != "either":
            assert status == case.expect, (case, attrs.get("error"))
        if status == "failed":
            error = attrs["error"]
            assert case.path.name in error and "\n" not in error, (case, error)  # names the file, one line
            assert case.reason in error, (case, error)
        else:
            assert status == "complete", (case, attrs)
        if case.kind in ("FIFO", "symlink loop", "dangling symlink", "symlink to its own folder"):
            continue  # the single-image API cannot read those either; checked above
        outcome, sr = expected_outcome(case)
        assert status == outcome, (case, attrs.get("error"))  # the batch agrees with the single-image API
        if sr is not None:
            np.testing.assert_array_equal(group["sr"][...], sr, err_msg=str(case.path))

    done_count = sum(n for (_, s), n in table.items() if s == "complete")
    assert f"{done_count} done, {len(inputs) - done_count} failed, 0 skipped" in log
    print(f"\nfuzz campaign: {len(cases)} hostile paths, {len(inputs)} inputs, {done_count} complete, "
          f"{len(inputs) - done_count} failed (all named), peak RSS {peak / 2**20:.0f} MiB, "
          f"euid {os.geteuid()}")  # fmt: skip
    for (kind, status), n in sorted(table.items()):
        print(f"  {kind:<40} {status:<9} {n}")
