"""Image-score rules and part weights, scored from one checkpoint's maps of a test set (the "image score definition"
and "how the maps are weighted" levers).

The anomaly map of the ``lite`` preset is the mean of two parts, each on its calibrated scale (``HLGFA.part_maps``):
alignment (the abstract's method) and normality (beyond it), so map = (1 - w) * alignment + w * normality with
w = 0.5. The image score is the mean of its top ``score_topk`` share of pixels (0: the maximum). This probe
computes both parts once per test image, then the image AUROC (sklearn) of every (w, topk) pair, overall and per
defect type, and the pixel AUROC of every w. A choice made here is made on test data: say so when quoting it.

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.score_rules CHECKPOINT DATA [--out FILE]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from hlgfa_lite import load, load_image, load_test_split
from hlgfa_lite.data import load_mask
from hlgfa_lite.tools.files import write_text
from hlgfa_lite.scoring import image_scores

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
TOPKS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.score_rules",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    parser.add_argument("--pixel-size", type=int, default=128, help="maps and masks resized to this for pixel AUROC")
    args = parser.parse_args(argv)
    model = load(args.checkpoint)
    samples = load_test_split(args.data)
    alignment, normality, masks = [], [], []
    with torch.no_grad():
        for sample in samples:
            image = load_image(sample.path)
            parts = model.part_maps(model.inspect(image[None]))
            alignment.append(parts["alignment"][0])
            normality.append(parts["normality"][0])
            mask = load_mask(sample.mask_path, tuple(image.shape[-2:])) if sample.mask_path else None
            masks.append(None if mask is None else
                         F.interpolate(mask[None, None].float(), size=(args.pixel_size,) * 2, mode="nearest")[0, 0] > 0.5)
    alignment, normality = torch.stack(alignment), torch.stack(normality)
    labels = np.array([s.label for s in samples])
    kinds = np.array([s.defect_type for s in samples])
    lines = [f"{args.checkpoint} on {args.data}: {len(samples)} test images, {labels.sum()} defective", "",
             "image AUROC: rows w (normality share of the map), columns score_topk (0 = max)", "",
             "| w | " + " | ".join(str(k) for k in TOPKS) + " |", "|---" * (len(TOPKS) + 1) + "|"]
    per_type = {}
    for w in WEIGHTS:
        maps = (1 - w) * alignment + w * normality
        row = []
        for topk in TOPKS:
            scores = image_scores(maps, topk).numpy()
            row.append(f"{roc_auc_score(labels, scores):.3f}")
            per_type[(w, topk)] = {kind: roc_auc_score(labels[(kinds == kind) | (labels == 0)],
                                                       scores[(kinds == kind) | (labels == 0)])
                                   for kind in sorted(set(kinds[labels == 1]))}
        lines.append(f"| {w} | " + " | ".join(row) + " |")
    good_or_masked = [i for i, m in enumerate(masks) if m is not None or labels[i] == 0]
    truth = torch.stack([masks[i] if masks[i] is not None else torch.zeros(args.pixel_size, args.pixel_size, dtype=torch.bool)
                         for i in good_or_masked]).flatten().numpy()
    lines += ["", "pixel AUROC by w (maps and masks at %d px)" % args.pixel_size, ""]
    for w in WEIGHTS:
        maps = ((1 - w) * alignment + w * normality)[good_or_masked]
        small = F.interpolate(maps[:, None], size=(args.pixel_size,) * 2, mode="bilinear", align_corners=False)
        lines.append(f"- w {w}: {roc_auc_score(truth, small.flatten().numpy()):.3f}")
    lines += ["", "image AUROC per defect type (each type against all good images)", ""]
    kinds_sorted = sorted(per_type[(0.5, 0.01)])
    lines += ["| w, topk | " + " | ".join(kinds_sorted) + " |", "|---" * (len(kinds_sorted) + 1) + "|"]
    for (w, topk), values in per_type.items():
        lines.append(f"| {w}, {topk} | " + " | ".join(f"{values[k]:.3f}" for k in kinds_sorted) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
