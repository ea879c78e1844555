"""Fuse the two parts' image scores instead of their maps: each part's own score (mean of its top ``score_topk``
pixels), standardised on the checkpoint's held-out good images (z) or left raw, then mixed with the normality share w,
or the larger z of the two; beside the default, the score of the map fused at ``normality_weight``. Image AUROC with
scikit-learn. Shares chosen here are chosen on test data.

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.score_fusion ../shared/data/mvtec3d_tire/tire runs/tire_s0 runs/tire_s1 runs/tire_s2 \\
        --out benchmarks/results/probes/score_fusion_tire.json
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from hlgfa_lite import load, load_image, load_test_split
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.scoring import image_scores
from hlgfa_lite.tools.files import write_json
from hlgfa_lite.training import split_holdout

SHARES = (0.5, 0.6, 0.75)


def part_scores(model, path) -> tuple[float, float, float]:
    """(alignment part's score, normality part's score, the default score of the fused map) of one image."""
    out = model.inspect(load_image(path)[None])
    parts = model.part_maps(out)
    return (image_scores(parts["alignment"], model.cfg.score_topk).item(),
            image_scores(parts["normality"], model.cfg.score_topk).item(), out.scores.item())


def probe(data: str, checkpoint: str) -> dict[str, float]:
    model = load(checkpoint)
    samples = load_test_split(data)
    labels = np.array([s.label for s in samples])
    _, holdout = split_holdout(train_image_paths(data), model.cfg.holdout_fraction, model.cfg.seed)
    good = np.array([part_scores(model, p) for p in holdout])  # (held out, 3)
    test = np.array([part_scores(model, s.path) for s in samples])  # (test, 3)
    z = (test - good.mean(0)) / (good.std(0) + 1e-8)
    auroc = {"fused map (the default)": roc_auc_score(labels, test[:, 2]),
             "alignment part's score": roc_auc_score(labels, test[:, 0]),
             "normality part's score": roc_auc_score(labels, test[:, 1])}
    for w in SHARES:
        auroc[f"z mix, w = {w}"] = roc_auc_score(labels, w * z[:, 1] + (1 - w) * z[:, 0])
        auroc[f"raw mix, w = {w}"] = roc_auc_score(labels, w * test[:, 1] + (1 - w) * test[:, 0])
    auroc["larger z"] = roc_auc_score(labels, np.maximum(z[:, 0], z[:, 1]))
    return auroc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.score_fusion", description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = {}
    for checkpoint in args.checkpoints:
        results[checkpoint] = probe(args.data, checkpoint)
        print(checkpoint, {k: round(v, 4) for k, v in results[checkpoint].items()}, flush=True)
    rules = next(iter(results.values()))
    for rule in rules:
        print(f"{rule:26s} mean {np.mean([r[rule] for r in results.values()]):.4f}")
    if args.out:
        write_json(args.out, {"data": args.data, "image_auroc": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
