"""Kill campaign: SIGKILL the ``odisr run`` driver (and its local Dask cluster: the whole process group) at random
moments, K times, re-running the same command after each kill, and compare the final store with a clean run.

Inputs: the real panoramas of ``../shared/data/erp`` (all 8 by default, ≥ 6 required) resized to ``--lr-width`` ×
``--lr-width/2`` LR. A clean run into its own store gives the reference and its timings. Then, on the campaign store,
each attempt starts the command, waits until it has begun writing pairs (a new ``running`` group), waits a random
time within the clean run's writing phase (its first pair started → its last pair complete; scaled by the share of
pairs left) and kills the process group — unless the run finishes first, which ends a
*round*: the store is compared with the clean one and the next kill starts a fresh store. After the K-th kill the
command is run once more to completion.

Reported per kill: seconds after start, pairs complete in the store before the run (the pairs it skips on resume,
by :func:`pipelines.store.resume_action`) and after the kill (the difference: pairs this run finished before being
killed), pairs left ``running`` (orphaned, redone by the next run). At the end of each round: pairs whose ``sr``
differs from the clean run (must be 0; compared pixel by pixel and by ``sr_checksum``) and ``odisr verify``'s exit
code (0: every complete pair verifies).

    python benchmarks/bench_kill.py                          # K = 10 kills, 8 panoramas, bicubic ×4, tile 16
    python benchmarks/bench_kill.py --kills 20 --model camixersr-s-x4 --weights ../shared/weights/official/CAMixerSR_S.pth --tile 64

JSON with every figure goes to ``$OUT/bench_kill.json`` when ``$OUT`` is set (else only printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import zarr

from odisr.io import read_image, write_image
from odisr.resize import imresize

SHARED = Path(os.environ.get("ODISR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ODISR = str(Path(sys.executable).with_name("odisr"))


def make_inputs(folder: Path, count: int, lr_width: int) -> list[Path]:
    """The first ``count`` shared panoramas resized to ``lr_width`` × ``lr_width/2`` (bicubic, circular)."""
    names = sorted(p.name for p in (SHARED / "data" / "erp").iterdir())[:count]
    if len(names) < count:
        raise SystemExit(f"only {len(names)} panoramas in {SHARED / 'data' / 'erp'}; need {count}")
    folder.mkdir(parents=True)
    for name in names:
        hr = read_image(SHARED / "data" / "erp" / name)
        write_image(folder / f"{Path(name).stem}.png", imresize(hr, size=(lr_width // 2, lr_width), wrap=True))
    return sorted(folder.iterdir())


def statuses(store: Path) -> dict[str, tuple[str, str]]:
    """``{pair: (status, attempt)}`` of every (image, model) group in the store."""
    if not (store / "zarr.json").exists():
        return {}
    root = zarr.open_group(str(store), mode="r")
    if "images" not in root:
        return {}
    with warnings.catch_warnings():  # a listing during a run sees zarr's temporary "*.partial" files: harmless
        warnings.simplefilter("ignore", UserWarning)
        return {f"{k}/{m}": (g.attrs.get("status"), g.attrs.get("attempt")) for k, i in root["images"].groups()
                for m, g in i.groups()}  # fmt: skip


def complete(store: Path) -> set[str]:
    return {p for p, (status, _) in statuses(store).items() if status == "complete"}


def differing_pairs(store: Path, clean: Path) -> list[str]:
    """Pairs whose ``sr`` (pixels or recorded checksum) differs from the clean run's, or that are missing."""
    a, b = zarr.open_group(str(store), mode="r"), zarr.open_group(str(clean), mode="r")
    differ = []
    for pair in sorted(statuses(clean)):
        try:
            same = a[f"images/{pair}"].attrs.get("sr_checksum") == b[f"images/{pair}"].attrs.get("sr_checksum")
            same = same and np.array_equal(a[f"images/{pair}/sr"][...], b[f"images/{pair}/sr"][...])
        except KeyError:
            same = False
        if not same:
            differ.append(pair)
    return differ


def verify(store: Path) -> int:
    return subprocess.run([ODISR, "verify", str(store)], capture_output=True).returncode


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def run_to_end(command: list[str], store: Path, log: Path, pairs: int) -> tuple[float, float, str]:
    """Run to completion: (seconds in all, seconds from the first pair started to the last of ``pairs`` complete,
    summary line)."""
    t0 = time.perf_counter()
    proc = start([*command, "--out", str(store)], log)
    wait_until_writing(proc, store, statuses(store))
    t_writing = time.perf_counter()
    while proc.poll() is None and len(complete(store)) < pairs:
        time.sleep(0.02)
    t_written = time.perf_counter()
    if proc.wait() not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0, t_written - t_writing, log.read_text().strip().splitlines()[-1]


def wait_until_writing(proc: subprocess.Popen, store: Path, before: dict[str, tuple[str, str]]) -> bool:
    """Wait until the run has started a pair (a ``running`` group with a new attempt); False if it ended first."""
    while proc.poll() is None:
        now = statuses(store)
        if any(s == "running" and now[p] != before.get(p) for p, (s, _) in now.items()):
            return True
        time.sleep(0.02)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="K: SIGKILLs of the driver (default 10)")
    parser.add_argument("--panoramas", type=int, default=8, help="shared panoramas used (≥ 6; default 8)")
    parser.add_argument("--lr-width", type=int, default=512, help="LR width in pixels (height = width / 2)")
    parser.add_argument("--model", default="bicubic-x4")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--tile", type=int, default=16, help="tile in LR px (small: many region writes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if args.panoramas < 6:
        parser.error("--panoramas must be ≥ 6")
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench_kill-"))
    inputs = make_inputs(work / "in", args.panoramas, args.lr_width)
    base = [ODISR, "run", str(work / "in"), "--model", args.model, "--tile", str(args.tile), "--workers",
            str(args.workers), *(["--weights", args.weights] if args.weights else [])]  # fmt: skip

    clean = work / "clean.zarr"
    t_clean, t_writing, line = run_to_end(base, clean, work / "clean.log", len(inputs))
    n_pairs = len(complete(clean))
    print(f"clean run: {n_pairs} pairs in {t_clean:.1f} s, {t_writing:.1f} s of them writing ({line})", flush=True)
    print(f"{'kill':>4} {'round':>5} {'t (s)':>6} {'skipped':>7} {'finished':>8} {'orphaned':>8}", flush=True)

    kills, rounds, round_no = [], [], 0
    store = work / f"round{round_no}.zarr"
    while len(kills) < args.kills:
        before = statuses(store)
        done_before = {p for p, (s, _) in before.items() if s == "complete"}
        t0 = time.perf_counter()
        proc = start([*base, "--out", str(store)], work / "campaign.log")
        if wait_until_writing(proc, store, before):  # a random moment of this run's share of the writing phase
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=rng.uniform(0, t_writing * (n_pairs - len(done_before)) / n_pairs))
        if proc.poll() is not None:  # the run finished before the kill: the round is over
            rounds.append(round_summary(round_no, store, clean, len(kills), skipped=len(done_before)))
            round_no += 1
            store = work / f"round{round_no}.zarr"
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        after = statuses(store)
        record = {
            "kill": len(kills) + 1, "round": round_no, "seconds": round(time.perf_counter() - t0, 2),
            "skipped": len(done_before),
            "finished_before_kill": len({p for p, (s, _) in after.items() if s == "complete"} - done_before),
            "orphaned_running": sum(1 for s, _ in after.values() if s == "running"),
        }  # fmt: skip
        kills.append(record)
        print(f"{record['kill']:>4} {round_no:>5} {record['seconds']:>6.1f} {record['skipped']:>7} "
              f"{record['finished_before_kill']:>8} {record['orphaned_running']:>8}", flush=True)  # fmt: skip
    skipped_final = len(complete(store))
    _, _, line = run_to_end(base, store, work / "campaign.log", n_pairs)
    print(f"final run after kill {len(kills)}: {line}")
    rounds.append(round_summary(round_no, store, clean, len(kills), skipped=skipped_final))

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "args": vars(args), "inputs": [p.name for p in inputs],
        "pairs": n_pairs, "clean_seconds": round(t_clean, 2), "clean_writing_seconds": round(t_writing, 2),
        "kills": kills, "rounds": rounds,
        "total_kills": len(kills), "differing_pairs": sum(len(r["differing"]) for r in rounds),
        "resumed_runs_that_skipped": sum(1 for r in [*kills, *rounds] if r["skipped"] > 0),
        "pairs_skipped_on_resume": sum(r["skipped"] for r in [*kills, *rounds]),
        "pairs_finished_before_kills": sum(k["finished_before_kill"] for k in kills),
    }  # fmt: skip
    print(f"\n{result['total_kills']} kills over {len(rounds)} round(s) of {n_pairs} pairs; "
          f"{result['pairs_finished_before_kills']} pairs finished by runs that were then killed; "
          f"{result['resumed_runs_that_skipped']} resumed runs skipped {result['pairs_skipped_on_resume']} finished "
          f"pairs in all; "
          f"differing pairs vs the clean run: {result['differing_pairs']}; "
          f"odisr verify exit codes: {[r['verify_exit_code'] for r in rounds]}")  # fmt: skip
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_kill.json").write_text(json.dumps(result, indent=1))
    print(f"work folder: {work}")


def round_summary(round_no: int, store: Path, clean: Path, kills_so_far: int, skipped: int) -> dict:
    """The end of a round: the run that completed the store (it skipped ``skipped`` pairs) and the comparison."""
    differ = differing_pairs(store, clean)
    code = verify(store)
    print(f"round {round_no} completed after kill {kills_so_far} by a run that skipped {skipped} pairs: "
          f"{len(differ)} pairs differ from the clean run, odisr verify exit {code}", flush=True)  # fmt: skip
    return {"round": round_no, "after_kills": kills_so_far, "skipped": skipped, "differing": differ,
            "verify_exit_code": code}  # fmt: skip


if __name__ == "__main__":
    main()
