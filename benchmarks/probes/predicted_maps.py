"""A user's own check: ``hlgfa-lite predict --save-maps`` outputs scored with scikit-learn at each image's own size.

``evaluate`` (and every benchmark) resizes maps and masks to ``eval_size`` squares before pooling pixels; a user who
scores the saved maps as they come, at the size of each image, weighs a large image's pixels more and never squashes
a non-square one. This probe reads the files ``predict`` wrote (``scores.csv`` and ``maps/*.npy``), pairs each with
its mask (``data.load_test_split``), and computes image AUROC from the scores and pixel AUROC over every pixel of
every test image pooled, both with ``sklearn.metrics.roc_auc_score``:

    for s in 0 1 2; do hlgfa-lite predict runs/tire_s$s ../shared/data/mvtec3d_tire/tire/test --out preds/tire_s$s --save-maps; done
    python -m benchmarks.probes.predicted_maps preds/tire_s0 preds/tire_s1 preds/tire_s2 \\
        --data ../shared/data/mvtec3d_tire/tire --out benchmarks/results/probes/predicted_maps_tire.json

With ``--map-shares``, the arguments are checkpoints instead: each test image is inspected once and its map fused at
every share of the normality part (``map_normality_weight``), then brought to the image's own size as ``predict``
brings it (``HLGFA.predict``: the same fusion, ``scoring.resize_map``). The map's share changes nothing a fit
computes, so each column is what a fit with that share would give; the shares are chosen here on test data:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.predicted_maps runs/tire_s0 runs/tire_s1 runs/tire_s2 \\
        --data ../shared/data/mvtec3d_tire/tire --map-shares 0.25 0.3 0.35 0.4 --out benchmarks/results/probes/map_share_own_size_tire.json
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from hlgfa_lite.data import load_mask, load_test_split
from hlgfa_lite.tools.files import write_json


def score_predictions(folder: Path, data: Path) -> dict:
    test = data / "test"
    with open(folder / "scores.csv", newline="") as handle:
        # scores.csv names each image as predict was given it; the test set's images are <defect type>/<name>
        scores = {"/".join(Path(row["path"]).parts[-2:]): float(row["score"]) for row in csv.DictReader(handle)}
    labels, image_scores, pixel_labels, pixel_values = [], [], [], []
    for sample in load_test_split(data):
        relative = sample.path.relative_to(test).as_posix()
        values = np.load(folder / "maps" / f"{relative}.npy")  # (H, W) at the image's own size
        # the library's mask rule (its background value, brought to the map's size as evaluate brings it)
        mask = (np.zeros(values.shape, dtype=bool) if sample.mask_path is None
                else load_mask(sample.mask_path, values.shape).numpy())
        labels.append(sample.label)
        image_scores.append(scores[relative])
        pixel_labels.append(mask.ravel())
        pixel_values.append(values.ravel())
    return {"folder": str(folder), "n_images": len(labels),
            "image_auroc": float(roc_auc_score(labels, image_scores)),
            "pixel_auroc": float(roc_auc_score(np.concatenate(pixel_labels), np.concatenate(pixel_values)))}


def score_map_shares(checkpoint: str, data: Path, shares: list[float]) -> dict:
    """Pixel AUROC at each image's own size of ``checkpoint``'s maps under each map share (one inspection each)."""
    import torch

    from hlgfa_lite import load, load_image
    from hlgfa_lite.data import MAX_SIDE
    from hlgfa_lite.scoring import resize_map

    model = load(checkpoint)
    pixel_labels, pixel_values = [], {share: [] for share in shares}
    for sample in load_test_split(data):
        image = load_image(sample.path, MAX_SIDE)
        height, width = image.shape[-2:]
        raw = model.inspect(image[None]).all_maps
        mask = (torch.zeros(height, width, dtype=torch.bool) if sample.mask_path is None
                else load_mask(sample.mask_path, (height, width)))
        pixel_labels.append(mask.flatten().numpy())
        for share in shares:
            fused = model.fuse(raw, normality_weight=share)[0]
            pixel_values[share].append(resize_map(fused, height, width).flatten().cpu().numpy())
    labels = np.concatenate(pixel_labels)
    return {"checkpoint": checkpoint, "seed": model.cfg.seed, "map_scale": model.cfg.map_scale,
            "pixel_auroc": {str(share): float(roc_auc_score(labels, np.concatenate(pixel_values[share])))
                            for share in shares}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.predicted_maps",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("predictions", nargs="+", help="folders written by hlgfa-lite predict --save-maps")
    parser.add_argument("--data", required=True, help="the MVTec-layout folder whose test/ was predicted")
    parser.add_argument("--map-shares", type=float, nargs="+", default=None,
                        help="score checkpoints (not predictions) at these shares of the normality part in the map")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.map_shares:
        rows = [score_map_shares(c, Path(args.data), args.map_shares) for c in args.predictions]
        for row in rows:
            print(f"{row['checkpoint']} (seed {row['seed']}, scale {row['map_scale']}): pixel AUROC at own size "
                  + ", ".join(f"w_map {k} {v:.4f}" for k, v in row["pixel_auroc"].items()), flush=True)
        means = {k: float(np.mean([r["pixel_auroc"][k] for r in rows])) for k in rows[0]["pixel_auroc"]}
        print(f"mean of {len(rows)}: " + ", ".join(f"w_map {k} {v:.4f}" for k, v in means.items()))
        if args.out:
            write_json(args.out, {"data": args.data, "rows": rows, "mean": means})
        return
    rows = []
    for folder in args.predictions:
        rows.append(score_predictions(Path(folder), Path(args.data)))
        print(f"{folder}: image AUROC {rows[-1]['image_auroc']:.4f}, pixel AUROC {rows[-1]['pixel_auroc']:.4f} "
              f"({rows[-1]['n_images']} images, each at its own size)", flush=True)
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("image_auroc", "pixel_auroc")}
    print(f"mean of {len(rows)}: image AUROC {means['image_auroc']:.4f}, pixel AUROC {means['pixel_auroc']:.4f}")
    if args.out:
        write_json(args.out, {"data": args.data, "rows": rows, "mean": means})


if __name__ == "__main__":
    main()
