"""Before/after maps of the normality lever on a texture: the defects the abstract's method alone misses most.

The head is trained the same way with or without the normality term (the term is fitted after training and needs no
gradient), so the *alignment part* of a full lite checkpoint (``model.part_maps``) is the map of the abstract's
method with that head (its levels scaled by the checkpoint's ``map_scale``: with "max", as in ``lite``, it ranks tiles
better than ``lite_paper``'s "std" fusion of the same maps, see benchmarks/probes/map_scale.py). For each defect type, the defective test image whose alignment-part score ranks lowest
(the abstract's method's worst miss); each row shows the image with the true defect outlined, the alignment part, the
normality part and the full map, all on the checkpoint's calibrated colour scale::

    HF_HUB_OFFLINE=1 python -m benchmarks.run ../shared/data/magnetic_tile --seeds 0 --variants full \
        --robustness-variants --threads 1 --keep-checkpoints /tmp/ckpt --out benchmarks/results/magnetic_tile.json
    HF_HUB_OFFLINE=1 python -m benchmarks.texture_figure ../shared/data/magnetic_tile \
        --checkpoint /tmp/ckpt/magnetic_tile_full_seed0 --out benchmarks/results/magnetic_tile_maps.png

It also prints the image and pixel AUROC of each part alone (the abstract's method = the alignment part).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from benchmarks.harness import exit_code, save_figure
from hlgfa_lite import load, load_image, load_test_split, metrics
from hlgfa_lite.data import load_mask
from hlgfa_lite.tools.files import write_json
from hlgfa_lite.scoring import image_scores, resize_map
from hlgfa_lite.tools.visualize import colorize, outline, to_uint8_image


def score_parts(model, samples) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Image scores (N,) and maps at eval size (N, S, S) of each part and of the full map."""
    scores, maps = {}, {}
    for sample in samples:
        out = model.inspect(load_image(sample.path)[None])
        for name, values in {**model.part_maps(out), "full": out.anomaly_map}.items():
            scores.setdefault(name, []).append(image_scores(values, model.cfg.score_topk).item())
            maps.setdefault(name, []).append(resize_map(values[0], model.cfg.eval_size, model.cfg.eval_size).numpy())
    return {k: np.array(v) for k, v in scores.items()}, {k: np.stack(v) for k, v in maps.items()}


def masks_at(samples, size: int) -> np.ndarray:
    masks = []
    for sample in samples:
        if sample.mask_path is None:
            masks.append(np.zeros((size, size), dtype=bool))
            continue
        mask = load_mask(sample.mask_path, tuple(load_image(sample.path).shape[-2:])).float()
        masks.append(resize_map(mask, size, size).numpy() > 0.5)
    return np.stack(masks)


def worst_misses(samples, scores: np.ndarray) -> list[int]:
    """Per defect type, the defective image with the lowest score (the one the model ranks most like good)."""
    chosen = []
    for defect in sorted({s.defect_type for s in samples} - {"good"}):
        members = [i for i, s in enumerate(samples) if s.defect_type == defect]
        chosen.append(min(members, key=lambda i: scores[i]))
    return chosen


def score_and_draw(args) -> int:
    """Each part's AUROC (printed and written beside the figure), then the figure of the worst misses."""
    torch.set_num_threads(1)
    samples = load_test_split(args.data)
    model = load(args.checkpoint)
    scores, maps = score_parts(model, samples)
    labels = np.array([s.label for s in samples])
    masks = masks_at(samples, model.cfg.eval_size)
    types = np.array([s.defect_type for s in samples])
    summary = {}
    for name in ("alignment", "normality", "full"):
        summary[name] = {"image_auroc": metrics.image_auroc(scores[name], labels),
                         "pixel_auroc": metrics.pixel_auroc(maps[name], masks),
                         "per_type": {t: metrics.image_auroc(scores[name][(types == t) | (labels == 0)],
                                                             labels[(types == t) | (labels == 0)])
                                      for t in sorted(set(types) - {"good"})}}
        print(f"{name:10s} image AUROC {summary[name]['image_auroc']:.3f}  "
              f"pixel AUROC {summary[name]['pixel_auroc']:.3f}  {summary[name]['per_type']}")
    write_json(Path(args.out).with_suffix(".json"), {
        "command": "python -m benchmarks.texture_figure " + " ".join(sys.argv[1:]), "parts": summary})
    rows = worst_misses(samples, scores["alignment"])
    good = scores["alignment"][labels == 0]
    cal = model.calibration
    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 2.7 * len(rows)))
    for row, index in zip(axes, rows):
        sample = samples[index]
        image = load_image(sample.path)
        size = tuple(image.shape[-2:])
        picture = outline(to_uint8_image(image), load_mask(sample.mask_path, size).numpy(), (255, 0, 0))
        share = (good >= scores["alignment"][index]).mean()
        panels = [(picture, f"{sample.defect_type} {sample.path.stem}\n(defect outlined)")]
        out = model.inspect(image[None])
        parts = model.part_maps(out)
        for name, values in ((f"alignment part (the abstract's method)\n{share:.0%} of good tiles score higher",
                              parts["alignment"]), ("normality part", parts["normality"]),
                             ("full lite map", out.anomaly_map)):
            panels.append((colorize(resize_map(values[0], *size), cal.map_vmin, cal.map_vmax), name))
        for ax, (panel, title) in zip(row, panels):
            ax.imshow(panel)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, args.out, dpi=80)
    print(f"wrote {args.out}: rows {[samples[i].path.name for i in rows]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.texture_figure", description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--checkpoint", required=True, help="a full lite checkpoint (normality term on)")
    parser.add_argument("--out", required=True)
    return exit_code(score_and_draw, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
