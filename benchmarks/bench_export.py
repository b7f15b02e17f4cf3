"""Peak memory and time of exporting a 16384×8192 panorama from a store: TIFF is streamed (target: peak RSS < 1 GB).

    python benchmarks/bench_export.py                       # make the store once, then every case
    python benchmarks/bench_export.py --case tiff --store S.zarr --out DIR   # one case in this process

The store is what a user gets from ``odisr run pannellum_examplepano.jpg --model bicubic-x4`` (the 4096×2048
panorama of ../shared/data/erp ×4 → 16384×8192, 402 MB as uint8; made once, kept in ``--work``). Cases:

* ``baseline``: the case process importing everything and exporting nothing (Python, numpy, zarr, Pillow, tifffile);
* ``tiff``: ERP TIFF, tiled 256², deflate, streamed from the store band by band;
* ``jpg``, ``png``: ERP JPEG (quality 95) / 8-bit PNG through Pillow, which needs the whole image;
* ``webp``: refused before any pixel is read (16384 px > libwebp's 16383), the message is the figure;
* ``tiles``: the Pannellum/Marzipano pyramid (jpg, tiles ≤ 512), faces W/π = 5216 px, sampled band by band;
* ``cli-tiff``: ``odisr export STORE OUT --format tiff --workers 1`` as a user runs it: the peak RSS of the driver
  (the CLI, with the scheduler and the nanny) and of the Dask worker that exports, sampled with psutil every 50 ms
  (lower bounds of the true peaks).

Peak RSS of a case is the ``ru_maxrss`` of its own fresh process (``os.wait4``), imports included. Each case also
checks its output (TIFF band equal to the store; JPEG size; every tile of the pyramid listed). One JSON line per
case; ``--json FILE`` (default ``$OUT/bench_export.json`` when ``$OUT`` is set) writes them all with the conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODISR_SHARED", REPO.parent / "shared"))
SOURCE = SHARED / "data" / "erp" / "pannellum_examplepano.jpg"
MODEL = "bicubic-x4"
CASES = ("baseline", "tiff", "jpg", "png", "webp", "tiles", "cli-tiff")
TARGET_RSS = 1e9  # bytes, the TIFF export's budget


def run_case(case: str, store: str, out: Path) -> dict:
    """Export the store's pair as ``case`` says, in this process; returns the case's own figures."""
    import numpy as np
    import tifffile
    import zarr
    from PIL import Image

    from odisr.export import ExportRequest
    from pipelines.batch_export import ExportTask, export_task

    if case == "baseline":
        return {}
    key = "pannellum_examplepano"
    layout = "tiles" if case == "tiles" else "erp"
    request = ExportRequest(format="jpg" if case == "tiles" else case, layout=layout)
    start = time.perf_counter()
    result = export_task(ExportTask(store, key, MODEL, key, str(out), request))
    seconds = time.perf_counter() - start
    figures = {"status": result.status, "error": result.error, "files": result.files, "seconds": round(seconds, 1)}
    sr = zarr.open_group(store, mode="r")[f"images/{key}/{MODEL}/sr"]
    name = f"{key}__{MODEL}"
    if case == "tiff":  # one band read back through tifffile's Zarr view: only the tiles it crosses are decoded
        band = zarr.open(tifffile.imread(out / f"{name}.tif", aszarr=True), mode="r")[4096:4352]
        figures["band_equal"] = bool(np.array_equal(band, sr[4096:4352]))
        figures["file_mb"] = round((out / f"{name}.tif").stat().st_size / 1e6, 1)
    elif case in ("jpg", "png") and result.status == "exported":
        Image.MAX_IMAGE_PIXELS = None  # our own 16K file: only its header is read
        with Image.open(out / f"{name}.{case}") as im:
            figures["size"] = list(im.size)
        figures["file_mb"] = round((out / f"{name}.{case}").stat().st_size / 1e6, 1)
    elif case == "tiles":
        folder = out / f"{name}.tiles"
        config = json.loads((folder / "config.json").read_text())
        on_disk = {p.relative_to(folder).as_posix() for p in (folder / "tiles").rglob("*.jpg")}
        figures |= {"tiles": len(on_disk), "listed": set(config["odisr"]["tiles"]) == on_disk,
                    "cube_size": config["odisr"]["cube_size"], "tile_size": config["odisr"]["tile_size"],
                    "levels": config["odisr"]["levels"]}  # fmt: skip
    return figures


def measure(case: str, store: Path, out: Path) -> dict:
    """Run ``case`` in a fresh process (or the CLI), return its figures with the peak RSS."""
    if case == "cli-tiff":
        return _measure_cli(store, out)
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen([sys.executable, __file__, "--case", case, "--store", str(store), "--out", str(out)],
                                stdout=stdout, env=_env())  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        lines = stdout.read().strip().splitlines()
    if proc.returncode:
        raise RuntimeError(f"case {case} failed (exit {proc.returncode})")
    return {"case": case, **json.loads(lines[-1]), "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3)}


def _measure_cli(store: Path, out: Path) -> dict:
    import psutil

    cmd = [str(Path(sys.executable).with_name("odisr")), "export", str(store), str(out), "--format", "tiff",
           "--workers", "1", "--overwrite"]  # fmt: skip
    peaks: dict[int, int] = {}  # pid → peak RSS; the root is the driver, its children the Dask worker(s) and helpers
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                for p in [root, *root.children(recursive=True)]:
                    peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"odisr export failed:\n{stderr.decode()[-2000:]}")
    children = [rss for pid, rss in peaks.items() if pid != proc.pid]
    return {"case": "cli-tiff", "seconds": round(time.perf_counter() - start, 1),
            "driver_peak_rss_gb": round(peaks.get(proc.pid, 0) / 1e9, 3),
            "worker_peak_rss_gb": round(max(children, default=0) / 1e9, 3), "processes": len(peaks)}  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def ensure_store(work: Path) -> tuple[Path, float | None]:
    """The bicubic ×4 store of the 4096×2048 panorama (made with ``odisr run`` unless already complete)."""
    import zarr

    store = work / "store16k.zarr"
    try:
        group = zarr.open_group(str(store), mode="r")["images/pannellum_examplepano/" + MODEL]
        if group.attrs.get("status") == "complete":
            return store, None
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        pass
    start = time.perf_counter()
    cmd = [str(Path(sys.executable).with_name("odisr")), "run", str(SOURCE), "--out", str(store), "--model", MODEL,
           "--workers", "1", "--threads-per-worker", str(os.cpu_count() or 1)]  # fmt: skip
    subprocess.run(cmd, check=True, env=_env())
    return store, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=CASES, help="run one case in this process (needs --store and --out)")
    p.add_argument("--store", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "odisr-bench-export",
                   help="where the store and the exports go (kept: the store is made once)")  # fmt: skip
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated cases to measure")
    p.add_argument("--json", type=Path, default=Path(os.environ["OUT"]) / "bench_export.json" if "OUT" in os.environ
                   else None)  # fmt: skip
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, str(args.store), args.out)), flush=True)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    store, run_seconds = ensure_store(args.work)
    conditions = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                  "load_average": [round(v, 2) for v in os.getloadavg()], "store": str(store),
                  "odisr_run_seconds": None if run_seconds is None else round(run_seconds, 1)}  # fmt: skip
    print(json.dumps(conditions), flush=True)
    results = []
    for case in args.cases.split(","):
        out = args.work / f"out-{case}"
        out.mkdir(exist_ok=True)
        results.append(measure(case, store, out))
        print(json.dumps(results[-1]), flush=True)
    tiff = next((r for r in results if r["case"] == "tiff"), None)
    if tiff is not None:
        verdict = "met" if tiff["peak_rss_gb"] * 1e9 < TARGET_RSS and tiff.get("band_equal") else "NOT met"
        print(f"TIFF export of 16384×8192: peak RSS {tiff['peak_rss_gb']} GB (target < 1 GB: {verdict})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"conditions": conditions, "results": results}, indent=2))


if __name__ == "__main__":
    main()
