"""Before/after maps of the normality lever on a texture: the defects the abstract's method alone misses most.

For each defect type, the defective test image that the ``paper_only`` checkpoint ranks lowest among all test images
(its worst miss); each row shows the image with the true defect outlined, the map of the abstract's method alone, and
the full lite model's map with its two parts (alignment, normality), every map on its own model's calibrated colour
scale. The checkpoints come from ``benchmarks/run.py --keep-checkpoints DIR``::

    HF_HUB_OFFLINE=1 python benchmarks/run.py ../shared/data/magnetic_tile --seeds 0 --variants full paper_only \\
        --robustness-variants --threads 1 --keep-checkpoints /tmp/ckpt --out benchmarks/results/magnetic_tile.json
    HF_HUB_OFFLINE=1 python benchmarks/texture_figure.py ../shared/data/magnetic_tile \\
        --before /tmp/ckpt/magnetic_tile_paper_only_seed0 --after /tmp/ckpt/magnetic_tile_full_seed0 \\
        --out benchmarks/results/magnetic_tile_maps.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hlgfa_lite import load, load_image, load_test_split  # noqa: E402
from hlgfa_lite.data import load_mask  # noqa: E402
from hlgfa_lite.scoring import resize_map  # noqa: E402
from hlgfa_lite.visualize import colorize, outline, to_uint8_image  # noqa: E402


def score_all(model, samples) -> np.ndarray:
    return np.array([model.inspect(load_image(s.path)[None]).scores.item() for s in samples])


def worst_misses(samples, scores: np.ndarray) -> list[int]:
    """Per defect type, the defective image with the lowest score (the one the model ranks most like good)."""
    chosen = []
    for defect in sorted({s.defect_type for s in samples} - {"good"}):
        members = [i for i, s in enumerate(samples) if s.defect_type == defect]
        chosen.append(min(members, key=lambda i: scores[i]))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--before", required=True, help="checkpoint of the abstract's method alone (paper_only)")
    parser.add_argument("--after", required=True, help="checkpoint of the full lite model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    samples = load_test_split(args.data)
    before, after = load(args.before), load(args.after)
    before_scores = score_all(before, samples)
    rows = worst_misses(samples, before_scores)
    good = before_scores[[s.label == 0 for s in samples]]
    fig, axes = plt.subplots(len(rows), 5, figsize=(13, 2.7 * len(rows)))
    for row, index in zip(axes, rows):
        sample = samples[index]
        image = load_image(sample.path)
        size = tuple(image.shape[-2:])
        picture = outline(to_uint8_image(image), load_mask(sample.mask_path, size).numpy(), (255, 0, 0))
        rank = (good >= before_scores[index]).mean()
        panels = [(picture, f"{sample.defect_type} {sample.path.stem}\n(defect outlined)")]
        old = before.inspect(image[None])
        cal = before.calibration
        panels.append((colorize(resize_map(old.anomaly_map[0], *size), cal["map_vmin"], cal["map_vmax"]),
                       f"abstract's method alone\n{rank:.0%} of good test images score higher"))
        new = after.inspect(image[None])
        cal = after.calibration
        parts = after.part_maps(new)
        for name, values in (("full lite map", new.anomaly_map), ("its alignment part", parts["alignment"]),
                             ("its normality part", parts["normality"])):
            panels.append((colorize(resize_map(values[0], *size), cal["map_vmin"], cal["map_vmax"]), name))
        for ax, (panel, title) in zip(row, panels):
            ax.imshow(panel)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}: rows {[samples[i].path.name for i in rows]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
