"""Aspect-ratio-preserving views against squashed ones, scored on the normality part. A probe.

Magnetic tile images are 1.0-2.8 times as long as they are wide; the library squashes every image to a square. The
other policy keeps the aspect ratio and pads the short side (reflected). This probe takes features extracted under
each policy (the same 200 evenly spaced training images, 60 other training images for the normalisation, every test
image: the ``train``/``hold``/``test`` dicts of ``low`` feature lists and ``valid`` masks, with ``labels`` and
``masks``, that the extraction script ``feat.py`` wrote; it is no longer in the tree, see README.md), fits the
library's per-position Gaussians (``GaussianNormality``: 3 x 3 aggregation, ``lite``'s least ridge) on the low-res
features, fuses the three levels under both map scales (``scoring.fuse_levels``) and scores image and pixel AUROC;
under letterbox each map is cropped to the image's own region and resized to the mask's square first. No head is
trained, so the comparison isolates the views::

    python -m benchmarks.probes.aspect /tmp/mt_squash.pt /tmp/mt_letterbox.pt --out FILE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from hlgfa_lite import metrics, preset
from hlgfa_lite.tools.files import write_text
from hlgfa_lite.normality import GaussianNormality
from hlgfa_lite.scoring import fuse_levels, image_scores, map_statistics


def crop_valid(maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Maps (N, s, s) on the padded canvas -> the image's own region of each, resized to (N, 256, 256)."""
    inside = F.interpolate(valid[:, None].float(), size=maps.shape[-2:], mode="nearest")[:, 0] > 0
    out = []
    for m, v in zip(maps, inside):
        rows, cols = v.any(1).nonzero()[:, 0], v.any(0).nonzero()[:, 0]
        crop = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        out.append(F.interpolate(crop[None, None], size=(256, 256), mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(out)


def score(path: str, cfg) -> list[str]:
    d = torch.load(path, weights_only=False)
    train, hold, test = ([t.float() for t in d[split]["low"]] for split in ("train", "hold", "test"))
    gaussians = GaussianNormality([t.shape[1] for t in train], [tuple(t.shape[-2:]) for t in train], "position",
                                  cfg.normality_shrinkage, cfg.normality_pool)
    gaussians.accumulate(train)
    gaussians.finish()
    hold_maps, test_maps = gaussians(hold), gaussians(test)
    lines = []
    for rule in ("std", "max"):
        mean, scale = map_statistics(hold_maps, rule)
        fused = fuse_levels(test_maps, mean, scale, cfg.lr_size, cfg.smooth_sigma)
        if not bool(d["test"]["valid"].all()):
            fused = crop_valid(fused, d["test"]["valid"])
        image = metrics.image_auroc(image_scores(fused, cfg.score_topk).numpy(), d["labels"].numpy())
        pixel = metrics.pixel_auroc(fused.numpy(), d["masks"].numpy())
        lines.append(f"| {Path(path).stem} | {rule} | {image:.3f} | {pixel:.4f} |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.aspect", description=__doc__.splitlines()[0])
    parser.add_argument("features", nargs="+", help="extracted features (.pt), one file per view policy")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    lines = ["normality part alone (per-position Gaussians of F_L, 200 training images), training-free", "",
             "| views | scale | image AUROC | pixel AUROC |", "|---|---|---|---|"]
    for path in args.features:
        lines += score(path, preset("lite"))
    if args.out:
        write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
