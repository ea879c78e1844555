"""Would the normality term localise better on the high-res view's features (a grid twice as fine)? A probe.

``lite`` fits its per-position Gaussians (normality.py) on the low-res features F_L, every draw. This probe fits the
same Gaussians, on the clean draw of every training image, to the high-res features F_H (grids 128/64/32 at 512 px)
and, as the like-for-like control, to F_L (64/32/16), then fuses each set with the checkpoint's three misalignment
maps under both map scales (scoring.py). It extends the raw-maps cache of ``map_scale.py --maps`` (maps 0-5: the
checkpoint's own; 6-8: F_H Gaussians; 9-11: clean F_L Gaussians). Nothing is trained; a choice made here would be made
on test data::

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.high_res_normality CHECKPOINT DATA --maps MAPS.pt --out FILE

Memory note: F_H Gaussians store four times the numbers of F_L ones (about 115 MB of Gaussians instead of 29 MB for Lite0).
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.harness import save_tensors
from benchmarks.probes.map_cache import evaluate, load_maps, scale_of, upsample
from hlgfa_lite import load, load_image, load_test_split
from hlgfa_lite.backbone import resize
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.tools.files import write_text
from hlgfa_lite.normality import GaussianNormality
from hlgfa_lite.priors import low_pass
from hlgfa_lite.training import split_holdout

SETS = {"checkpoint (F_L, every draw)": (3, 4, 5), "F_L, clean draw": (9, 10, 11), "F_H, clean draw": (6, 7, 8)}


def features(model, paths, batch: int = 8):
    """(high, low) feature lists of each batch of images, views as the model makes them."""
    for start in range(0, len(paths), batch):
        images = torch.stack([resize(load_image(p)[None], model.cfg.hr_size)[0] for p in paths[start:start + batch]])
        high, low = model.views(images)
        yield [f.float().contiguous() for f in model.backbone(high)], [f.float().contiguous() for f in model.backbone(low)]


def extend(checkpoint: str, data: str, d: dict) -> dict:
    model = load(checkpoint)
    cfg = model.cfg
    train, held_out = split_holdout(train_image_paths(data), cfg.holdout_fraction, cfg.seed)
    gaussians = None
    with torch.no_grad():
        for high, low in features(model, train):
            if gaussians is None:
                gaussians = [GaussianNormality(model.backbone.channels, [f.shape[-2:] for f in view], "position",
                                               cfg.normality_shrinkage, cfg.normality_pool) for view in (high, low)]
            for gaussian, view in zip(gaussians, (high, low)):
                gaussian.accumulate(view)
        for gaussian in gaussians:
            gaussian.finish()

        def maps(paths):
            per_batch = [gaussians[0](high) + gaussians[1](low) for high, low in features(model, paths)]
            return [torch.cat(level) for level in zip(*per_batch)]

        d["hold"] = list(d["hold"][:6]) + maps(held_out)
        d["test"] = list(d["test"][:6]) + maps([s.path for s in load_test_split(data)])
    return d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.high_res_normality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--maps", required=True, help="map_scale.py's raw-maps cache; extended in place once")
    parser.add_argument("--out", default=None)
    parser.add_argument("--pixel-size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    d = torch.load(args.maps)
    if len(d["hold"]) < 12:
        d = extend(args.checkpoint, args.data, d)
        save_tensors(d, args.maps)
    d = load_maps(args.maps)
    lines = [f"{args.checkpoint} on {args.data}: image / pixel AUROC ({args.pixel_size} px)", "",
             "each map alone (std scale): " + ", ".join(
                 f"{i} {tuple(d['hold'][i].shape[1:])} {'/'.join(f'{v:.3f}' for v in one_map(d, i, args.pixel_size))}"
                 for i in range(len(d["hold"]))), "",
             "| normality maps | scale | w | image AUROC | pixel AUROC |", "|---|---|---|---|---|"]
    for rule in ("std", "max"):
        for name, normality in SETS.items():
            for weight in (0.5, 0.75):
                fused = 0
                for i in (0, 1, 2) + normality:
                    share = (1 - weight) / 3 if i < 3 else weight / len(normality)
                    hold, test = d["hold"][i], d["test"][i]
                    mean = hold.mean()
                    fused = fused + share * upsample((test - mean) / scale_of(hold, rule, d, mean), d["lr_size"])
                image, pixel = evaluate(d, low_pass(fused[:, None], d["sigma"])[:, 0], args.pixel_size)
                lines.append(f"| {name} | {rule} | {weight} | {image:.3f} | {pixel:.4f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")
    return 0


def one_map(d: dict, i: int, pixel_size: int) -> tuple[float, float]:
    hold, test = d["hold"][i], d["test"][i]
    fused = upsample((test - hold.mean()) / hold.std(), d["lr_size"])
    return evaluate(d, low_pass(fused[:, None], d["sigma"])[:, 0], pixel_size)


if __name__ == "__main__":
    sys.exit(main())
