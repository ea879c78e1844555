"""The normality term's ridge (``normality_shrinkage``) scored on one checkpoint: does a stronger pull towards the
distance to the mean feature localise better? A probe.

Small bottle fits (10 or 20 images, where the ridge grows to C/n mean variances) localised slightly *better* than the
full fit (RESULTS.md, "Small training sets"). This probe refits the checkpoint's per-position Gaussians on the same
cached draws as ``fit`` (``cache_features``, every draw) with several least ridges, replaces the checkpoint's
normality maps (maps 3-5 of ``map_scale.py``'s raw-maps cache) and fuses as the checkpoint's config does (both
scales shown). Nothing else changes; a choice made here would be made on test data::

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.shrinkage CHECKPOINT DATA --maps MAPS.pt --out FILE
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from benchmarks.probes.map_cache import evaluate, load_maps, scale_of, upsample
from hlgfa_lite import load, load_image, load_test_split
from hlgfa_lite.backbone import resize
from hlgfa_lite.tools.cache import cache_features, load_images
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.tools.files import write_text
from hlgfa_lite.priors import low_pass
from hlgfa_lite.training import split_holdout

SHRINKAGES = (0.01, 0.03, 0.1, 0.3, 1.0)


def low_features(model, paths) -> list[list[torch.Tensor]]:
    out = []
    for path in paths:
        _, low = model.views(resize(load_image(path)[None], model.cfg.hr_size))
        out.append([f.float().contiguous() for f in model.backbone(low)])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.shrinkage", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--maps", required=True, help="map_scale.py's raw-maps cache (maps 0-2 are reused)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--pixel-size", type=int, default=128)
    parser.add_argument("--weight", type=float, default=0.75, help="normality share of the map (the lite default)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load(args.checkpoint)
    cfg = model.cfg
    d = load_maps(args.maps)
    train, held_out = split_holdout(train_image_paths(args.data), cfg.holdout_fraction, cfg.seed)
    with torch.no_grad():
        cache = cache_features(model, load_images(train, cfg.hr_size), progress=False)
        fitted = model.normality
        for start in range(0, len(train), 32):
            fitted.accumulate(cache.low_draws(slice(start, start + 32), cfg.normality_draws == "all", model.device))
        cache.close()
        hold, test = low_features(model, held_out), low_features(model, [s.path for s in load_test_split(args.data)])
        lines = [f"{args.checkpoint} on {args.data}: image / pixel AUROC ({args.pixel_size} px), "
                 f"w = {args.weight}", "", "| least ridge | scale | image AUROC | pixel AUROC |",
                 "|---|---|---|---|"]
        for shrinkage in SHRINKAGES:
            gaussians = copy.deepcopy(fitted)  # the running sums too: finish() consumes them
            gaussians.shrinkage = shrinkage
            gaussians.finish()
            maps = {"hold": [torch.cat(m) for m in zip(*[gaussians(f) for f in hold])],
                    "test": [torch.cat(m) for m in zip(*[gaussians(f) for f in test])]}
            for rule in ("std", "max"):
                fused = 0
                for i in range(6):
                    share = (1 - args.weight) / 3 if i < 3 else args.weight / 3
                    h = d["hold"][i] if i < 3 else maps["hold"][i - 3]
                    t = d["test"][i] if i < 3 else maps["test"][i - 3]
                    fused = fused + share * upsample((t - h.mean()) / scale_of(h, rule, d, h.mean()), d["lr_size"])
                image, pixel = evaluate(d, low_pass(fused[:, None], d["sigma"])[:, 0], args.pixel_size)
                lines.append(f"| {shrinkage} | {rule} | {image:.3f} | {pixel:.4f} |")
                print(lines[-1], flush=True)
    if args.out:
        write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
