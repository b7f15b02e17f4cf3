"""``odisr metrics``: score SR panoramas against their HR references (WS-PSNR, WS-SSIM, PSNR, SSIM).

Pairs come either from the command line (``HR SR [HR SR ...]``) or from two folders (``--hr DIR --sr DIR``),
matched by file name: an SR file with the HR file's exact stem, else one whose stem is the HR stem followed by
``_SR`` and/or ``_x{s}`` tokens (any order and case, ``-`` also accepted: ``room_x4_SR.png`` ↔ ``room.png``).
A pair that cannot be read, has mismatched shapes or has no partner is reported by name; the other pairs are
still scored, and the exit code is 1.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from odisr.cli.main import app
from odisr.io import SUFFIXES, ImageReadError, read_image

METRICS = ("ws_psnr", "ws_ssim", "psnr", "ssim")
_HEADERS = {"ws_psnr": "WS-PSNR (dB)", "ws_ssim": "WS-SSIM", "psnr": "PSNR (dB)", "ssim": "SSIM"}
_HELP = (
    "Score super-resolved panoramas against their references: WS-PSNR, WS-SSIM, PSNR, SSIM.\n\n"
    "Images are RGB, 8- or 16-bit, scored on the 0-255 scale. WS-PSNR and WS-SSIM weight each row by the cosine "
    "of its latitude (ERP panoramas, never cropped); PSNR and SSIM follow BasicSR (the lightweight-SR tables use "
    "--crop-border SCALE --y-channel).\n\n"
    "Folder mode matches an HR file to the SR file with the same stem, or with the stem followed by _SR and/or "
    "_x<s> (room.png <- room_x4_SR.png). Pairs that fail are reported by name, the others still scored; the exit "
    "code is then 1.\n\n"
    "Examples:  odisr metrics hr/room.png sr/room_x4.png  |  "
    "odisr metrics --hr data/HR --sr results/x4 --bands 6 --out scores.json"
)
_SR_SUFFIX = re.compile(r"(?:[_-](?:sr|x\d+))+$", re.IGNORECASE)


@dataclass
class PairScore:
    """The scores of one HR/SR pair (dB for the PSNR family), or why it could not be scored."""

    hr: str
    sr: str
    values: dict[str, float] = field(default_factory=dict)
    bands: list[tuple[float, float, float]] = field(default_factory=list)
    note: str = ""
    error: str = ""


@app.command("metrics", help=_HELP)
def metrics_command(
    images: Optional[list[Path]] = typer.Argument(
        None, help="HR SR [HR SR ...]: reference and super-resolved images, in pairs.", show_default=False
    ),
    hr: Optional[Path] = typer.Option(None, "--hr", help="Folder of HR (reference) images.", file_okay=False),
    sr: Optional[Path] = typer.Option(None, "--sr", help="Folder of SR images, matched to --hr by name.",
                                      file_okay=False),
    y_channel: bool = typer.Option(False, "--y-channel/--rgb", help="Score BT.601 luma Y instead of RGB."),
    crop_border: int = typer.Option(
        0, "--crop-border", min=0, help="Pixels dropped on each side for PSNR/SSIM (WS metrics use the whole sphere)."
    ),
    bands: int = typer.Option(0, "--bands", min=0, help="Also report WS-PSNR in N latitude bands, pole to pole."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the results to FILE.csv or FILE.json.",
                                       dir_okay=False),
) -> None:
    """Score HR/SR pairs and print, and optionally write, the table (see ``_HELP``)."""
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise typer.BadParameter(f"{out}: use a .csv or .json file name", param_hint="--out")
    pairs, failures, unused = _collect_pairs(images or [], hr, sr)
    console = Console(highlight=False)
    scores = [_score_pair(h, s, y_channel, crop_border, bands) for h, s in pairs]
    results = scores + failures
    _print_scores(console, scores, bands)
    _print_problems(console, results, unused)
    if out is not None:
        _write_results(out, results, unused, {"y_channel": y_channel, "crop_border": crop_border, "bands": bands})
        console.print(f"wrote {out}")
    if any(r.error for r in results):
        raise typer.Exit(1)


# -------------------------------------------------------------------------------------------------------- pairing
def _collect_pairs(
    images: list[Path], hr: Path | None, sr: Path | None
) -> tuple[list[tuple[Path, Path]], list[PairScore], list[Path]]:
    """(pairs to score, pairs already failed, SR files no HR claimed)."""
    if images and (hr or sr):
        raise typer.BadParameter("give either HR SR image pairs or --hr DIR --sr DIR, not both")
    if images:
        if len(images) % 2:
            raise typer.BadParameter(f"images come in HR SR pairs; got {len(images)} paths", param_hint="IMAGES")
        return list(zip(images[::2], images[1::2])), [], []
    if hr is None or sr is None:
        raise typer.BadParameter("give HR SR image pairs, or both --hr DIR and --sr DIR")
    return _match_folders(hr, sr)


def _match_folders(hr_dir: Path, sr_dir: Path) -> tuple[list[tuple[Path, Path]], list[PairScore], list[Path]]:
    hr_files, sr_files = _image_files(hr_dir, "--hr"), _image_files(sr_dir, "--sr")
    pairs, failures, used = [], [], set()
    for hr in hr_files:
        candidates = [s for s in sr_files if s.stem == hr.stem] or [
            s for s in sr_files if _SR_SUFFIX.sub("", s.stem) == hr.stem
        ]
        if len(candidates) == 1:
            pairs.append((hr, candidates[0]))
            used.add(candidates[0])
        elif candidates:
            names = ", ".join(c.name for c in candidates)
            failures.append(PairScore(str(hr), "", error=f"several SR images match {hr.name}: {names}"))
        else:
            failures.append(PairScore(
                str(hr), "", error=f"no SR image {hr.stem}.* or {hr.stem}_SR/_x<s>.* in {sr_dir}"
            ))
    return pairs, failures, [s for s in sr_files if s not in used]


def _image_files(folder: Path, option: str) -> list[Path]:
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint=option)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


# -------------------------------------------------------------------------------------------------------- scoring
def _score_pair(hr: Path, sr: Path, y_channel: bool, crop_border: int, n_bands: int) -> PairScore:
    # Imported here: odisr.erp loads torch (0.5 GB, seconds), which every `odisr` command — and every Dask worker
    # process, which re-imports the `odisr` script — would otherwise pay for.
    from odisr import metrics as M
    from odisr.erp import NotERPError, check_erp

    result = PairScore(str(hr), str(sr))
    try:
        ref, img = read_image(hr), read_image(sr)
        result.values = {
            "ws_psnr": M.ws_psnr(ref, img, y_channel=y_channel),
            "ws_ssim": M.ws_ssim(ref, img, y_channel=y_channel),
            "psnr": M.psnr(ref, img, crop_border=crop_border, y_channel=y_channel),
            "ssim": M.ssim(ref, img, crop_border=crop_border, y_channel=y_channel),
        }
        if n_bands:
            result.bands = [tuple(row) for row in M.ws_psnr_bands(ref, img, n_bands, y_channel=y_channel).tolist()]
    except (ImageReadError, ValueError) as err:  # ImageReadError names the file; the table names the pair
        result.values, result.error = {}, str(err)
        return result
    try:
        check_erp(ref, name=hr.name)
    except NotERPError as err:
        result.note = f"{err} WS metrics assume a full ERP panorama."
    return result


def _means(scores: list[PairScore]) -> dict[str, float]:
    return {m: float(np.mean([s.values[m] for s in scores])) for m in METRICS} if scores else {}


# --------------------------------------------------------------------------------------------------------- output
def _print_scores(console: Console, scores: list[PairScore], n_bands: int) -> None:
    ok = [s for s in scores if not s.error]
    if not ok:
        return
    table = Table(title="odisr metrics", show_footer=len(ok) > 1)
    table.add_column("HR", overflow="fold", footer="mean")
    table.add_column("SR", overflow="fold", footer=f"{len(ok)} pairs")
    means = _means(ok)
    for m in METRICS:
        table.add_column(_HEADERS[m], justify="right", no_wrap=True, footer=_fmt(means[m]))
    for s in ok:
        table.add_row(Path(s.hr).name, Path(s.sr).name, *(_fmt(s.values[m]) for m in METRICS))
    console.print(table)
    if n_bands:
        _print_bands(console, ok)


def _print_bands(console: Console, scores: list[PairScore]) -> None:
    table = Table(title=f"WS-PSNR (dB) by latitude band, mean of {len(scores)} pair(s)")
    table.add_column("latitude band", no_wrap=True)
    table.add_column("WS-PSNR (dB)", justify="right", no_wrap=True)
    band_db = np.mean([[b[2] for b in s.bands] for s in scores], axis=0)
    for (lat_min, lat_max, _), db in zip(scores[0].bands, band_db):
        table.add_row(f"{_lat(lat_max)} … {_lat(lat_min)}", _fmt(db))
    console.print(table)


def _print_problems(console: Console, results: list[PairScore], unused: list[Path]) -> None:
    for r in results:
        if r.error:
            console.print(f"[red]FAILED[/red] {r.hr} ↔ {r.sr or '?'}: {r.error}", soft_wrap=True)
        elif r.note:
            console.print(f"[yellow]note[/yellow] {r.note}", soft_wrap=True)
    for s in unused:
        console.print(f"[yellow]note[/yellow] {s}: no HR image of that name; not scored", soft_wrap=True)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def _lat(deg: float) -> str:
    return f"{abs(deg):.1f}°{'N' if deg > 0 else 'S' if deg < 0 else ''}"


def _write_results(out: Path, results: list[PairScore], unused: list[Path], settings: dict[str, Any]) -> None:
    if out.suffix.lower() == ".json":
        _write_json(out, results, unused, settings)
    else:
        _write_csv(out, results)


def _write_json(out: Path, results: list[PairScore], unused: list[Path], settings: dict[str, Any]) -> None:
    """Strict JSON: non-finite numbers (a perfect match's PSNR) are written as the strings "inf"/"nan"."""
    ok = [r for r in results if not r.error]
    doc = {
        "settings": settings,
        "pairs": [_pair_json(r) for r in ok],
        "mean": _json_numbers(_means(ok)),
        "failed": [{"hr": r.hr, "sr": r.sr, "error": r.error} for r in results if r.error],
        "unmatched_sr": [str(s) for s in unused],
    }
    out.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _pair_json(r: PairScore) -> dict[str, Any]:
    doc: dict[str, Any] = {"hr": r.hr, "sr": r.sr, **_json_numbers(r.values)}
    if r.bands:
        doc["bands"] = [_json_numbers(dict(zip(("lat_min_deg", "lat_max_deg", "ws_psnr"), b))) for b in r.bands]
    if r.note:
        doc["note"] = r.note
    return doc


def _write_csv(out: Path, results: list[PairScore]) -> None:
    """One row per pair (failed ones with an ``error`` and empty scores).

    Band columns ``ws_psnr_band{i}`` run from the north pole (0) to the south pole; the JSON output has their
    latitudes.
    """
    n_bands = max((len(r.bands) for r in results), default=0)
    band_cols = [f"ws_psnr_band{i}" for i in range(n_bands)]
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["hr", "sr", *METRICS, *band_cols, "error"])
        for r in results:
            scores = [repr(r.values[m]) if r.values else "" for m in METRICS]
            band_scores = [repr(b[2]) for b in r.bands] + [""] * (n_bands - len(r.bands))
            writer.writerow([r.hr, r.sr, *scores, *band_scores, r.error])


def _json_numbers(values: dict[str, float]) -> dict[str, float | str]:
    return {k: v if math.isfinite(v) else str(v) for k, v in values.items()}
