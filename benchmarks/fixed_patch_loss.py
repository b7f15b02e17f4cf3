"""The training loss of a run's starting weights and of its checkpoints on one fixed set of training patches.

Per-iteration losses in ``metrics.csv`` move with the random patches of each batch; to see whether training lowered
the loss, this evaluates the run's pixel loss (``loss.pixel`` of its config: L1 or WS-L1) of the starting weights
(``init``, or the seeded random initialisation) and of the EMA weights of the latest checkpoint on the same
``--patches`` patches, drawn from the run's training panoramas with the run's sampling and a fixed seed. The
networks run in eval mode (odisr's deterministic routing, as at inference).

    python benchmarks/fixed_patch_loss.py RUN_DIR [--patches 64] [--seed 1234] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from odisr.models import load_state_dict_file
from odisr.train.config import validate
from odisr.train.data import PatchSampler, load_pairs, make_batch
from odisr.train.losses import PIXEL_LOSSES
from odisr.train.network import build_network, initial_weights
from odisr.train.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--patches", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="patches per forward pass")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = RunDir(args.run)
    import yaml

    cfg = validate(yaml.safe_load(run.config_file.read_text()), source=run.config_file)
    torch.manual_seed(cfg.seed)
    start = build_network(cfg.model, cfg.model_args)
    initial_weights(start, cfg.init)
    final = build_network(cfg.model, cfg.model_args)
    latest = run.latest()
    final.load_state_dict(load_state_dict_file(run.checkpoints / latest["weights"]))
    for net in (start, final):
        if net.content_aware and cfg.ratio is not None:
            net.set_ratio(cfg.ratio)
        net.eval()
    pairs = load_pairs(cfg.data.train, start.scale, cfg.data.degrade, what="train")
    sampler = PatchSampler([p.lr.shape[:2] for p in pairs], cfg.data.patch, sampling=cfg.data.sampling,
                           flip=cfg.data.flip, roll=cfg.data.roll, seed=args.seed)  # fmt: skip
    specs = sampler.draw(args.patches)
    loss = PIXEL_LOSSES[cfg.loss.pixel]
    totals = {"start": 0.0, "final": 0.0}
    with torch.inference_mode():
        for i in range(0, len(specs), args.batch):
            chunk = specs[i : i + args.batch]
            batch = make_batch(pairs, chunk, slice(0, len(chunk)), cfg.data.patch, start.scale, torch.device("cpu"))
            kwargs = {"condition": batch.condition} if start.uses_latitude else {}
            for name, net in (("start", start), ("final", final)):
                totals[name] += float(loss(net(batch.lr, **kwargs).clamp(0, 1), batch)) * len(chunk) / len(specs)
    record = {"run": str(args.run), "pixel_loss": cfg.loss.pixel, "patches": len(specs), "seed": args.seed,
              "checkpoint": latest["weights"], "start": totals["start"], "final": totals["final"],
              "relative_change": totals["final"] / totals["start"] - 1}  # fmt: skip
    print(f"{cfg.loss.pixel} on {len(specs)} fixed training patches: start {totals['start']:.6f}, "
          f"{latest['weights']} {totals['final']:.6f} ({record['relative_change']:+.2%})")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
