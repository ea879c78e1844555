"""How the fusion's per-map scale was chosen: "std" against "max" (scoring.py) on one fitted checkpoint's raw maps.

Training does not depend on the scale, so one checkpoint's raw maps (``Inspection.all_maps``) of its held-out good
images and of the test set are enough to compare the two rules, for the whole map and for each part alone, and to
check that the "max" scale holds when only 1-8 held-out images are there to estimate it::

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.map_scale CHECKPOINT DATA --maps /tmp/maps.pt

The raw maps are computed once and kept in ``--maps`` (a later run with the same file only scores). Outputs of the
runs quoted in RESULTS.md: ``results/probes/map_scale_<data>.txt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import save_tensors
from benchmarks.probes.map_cache import load_maps
from hlgfa_lite import load, load_image, load_test_split, metrics
from hlgfa_lite.data import load_mask, train_image_paths
from hlgfa_lite.scoring import fuse_levels, image_scores, map_statistics, resize_map
from hlgfa_lite.training import split_holdout


def raw_maps(model, paths) -> list[torch.Tensor]:
    per_image = [[m[0] for m in model.inspect(load_image(p)[None]).all_maps] for p in paths]
    return [torch.stack(level) for level in zip(*per_image)]  # [(N, h_l, w_l)]


def compute(checkpoint: str, data: str) -> dict:
    model = load(checkpoint)
    cfg = model.cfg
    _, held_out = split_holdout(train_image_paths(data), cfg.holdout_fraction, cfg.seed)
    samples = load_test_split(data)
    masks = []
    for s in samples:
        if s.mask_path is None:
            masks.append(torch.zeros(cfg.eval_size, cfg.eval_size, dtype=torch.bool))
            continue
        mask = load_mask(s.mask_path, tuple(load_image(s.path).shape[-2:])).float()
        masks.append(resize_map(mask, cfg.eval_size, cfg.eval_size) > 0.5)
    return {"hold": raw_maps(model, held_out), "test": raw_maps(model, [s.path for s in samples]),
            "labels": torch.tensor([s.label for s in samples]), "masks": torch.stack(masks),
            "n_alignment": len(model.head.levels),
            "lr_size": cfg.lr_size, "sigma": cfg.smooth_sigma, "topk": cfg.score_topk, "eval_size": cfg.eval_size}


def score(d: dict, maps: list[int], rule: str, held: torch.Tensor | None = None) -> tuple[float, float]:
    hold = [d["hold"][i] if held is None else d["hold"][i][held] for i in maps]
    mean, scale = map_statistics(hold, rule)
    fused = fuse_levels([d["test"][i] for i in maps], mean, scale, d["lr_size"], d["sigma"])
    scores = image_scores(fused, d["topk"]).numpy()
    at_eval = torch.stack([resize_map(m, d["eval_size"], d["eval_size"]) for m in fused]).numpy()
    return (metrics.image_auroc(scores, d["labels"].numpy()), metrics.pixel_auroc(at_eval, d["masks"].numpy()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.map_scale", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--maps", required=True, help="raw maps cache (.pt): read if present, else written")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not Path(args.maps).exists():
        save_tensors(compute(args.checkpoint, args.data), args.maps)
    d = load_maps(args.maps)
    n_maps, n_align = len(d["hold"]), d["n_alignment"]
    parts = {"both parts (the anomaly map)": list(range(n_maps)), "alignment part": list(range(n_align)),
             "normality part": list(range(n_align, n_maps))}
    print(f"{len(d['hold'][0])} held-out good images, {len(d['labels'])} test images")
    for name, maps in parts.items():
        if not maps:
            continue
        for rule in ("std", "max"):
            image, pixel = score(d, maps, rule)
            print(f"{name:30s} {rule}: image AUROC {image:.3f}  pixel AUROC {pixel:.3f}")
    generator = torch.Generator().manual_seed(0)
    for n in (1, 3, 8):
        for rule in ("std", "max"):
            runs = np.array([score(d, parts["both parts (the anomaly map)"], rule,
                                   torch.randperm(len(d["hold"][0]), generator=generator)[:n]) for _ in range(4)])
            print(f"statistics from {n} held-out image(s), 4 draws, {rule}: image AUROC {runs[:, 0].mean():.3f} "
                  f"(min {runs[:, 0].min():.3f})  pixel AUROC {runs[:, 1].mean():.3f} (min {runs[:, 1].min():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
