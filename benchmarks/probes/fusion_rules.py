"""Fusion rules scored on cached raw maps: the scale of each map, per-position centring, smoothing and part weight.

Reads the raw-maps cache that ``map_scale.py --maps`` writes (held-out good images and the whole test set of one
checkpoint) and scores every rule below with this repository's metrics, nothing refitted (training does not depend on
how the maps are fused). A choice made here is made on test data: say so when quoting it.

    python benchmarks/probes/fusion_rules.py /tmp/maps_bottle.pt /tmp/maps_tile.pt [--out FILE]

Scale rules (s_l in scoring.py; mu_l the mean over the held-out good pixels):
    std     pixel std
    max     mean over images of the worst pixel, minus mu_l
    q999    the 99.9th percentile of the held-out pixels, minus mu_l
    score   mean over images of the image score of the map alone (top ``score_topk`` of the smoothed, upsampled map)
            minus mu_l: the tail the image score sees
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hlgfa_lite import metrics  # noqa: E402
from hlgfa_lite.priors import low_pass  # noqa: E402
from hlgfa_lite.scoring import image_scores, resize_map  # noqa: E402

import torch.nn.functional as F  # noqa: E402


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def scale_of(hold: torch.Tensor, rule: str, d: dict, center: torch.Tensor) -> torch.Tensor:
    centred = hold - center
    if rule == "std":
        return centred.std()
    if rule == "max":
        return centred.flatten(1).max(1).values.mean()
    if rule == "q999":
        flat = centred.flatten()
        return torch.quantile(flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))[:2_000_000]],
                              0.999)
    if rule == "score":
        smooth = low_pass(upsample(centred, d["lr_size"])[:, None], d["sigma"])[:, 0]
        return image_scores(smooth, d["topk"]).mean()
    raise ValueError(rule)


def fuse(d: dict, rule: str, positional: bool, weight: float, sigma: float) -> torch.Tensor:
    n_maps, n_align = len(d["hold"]), d["n_alignment"]
    weights = [(1 - weight) / n_align] * n_align + [weight / (n_maps - n_align)] * (n_maps - n_align)
    if n_maps == n_align:
        weights = [1 / n_maps] * n_maps
    fused = 0
    for i in range(n_maps):
        hold, test = d["hold"][i], d["test"][i]
        center = hold.mean(0, keepdim=True) if positional else hold.mean()
        scale = scale_of(hold, rule, d, center).clamp_min(1e-6)
        fused = fused + weights[i] * upsample((test - center) / scale, d["lr_size"])
    return low_pass(fused[:, None], sigma)[:, 0] if sigma > 0 else fused


def evaluate(d: dict, fused: torch.Tensor, pixel_size: int) -> tuple[float, float]:
    scores = image_scores(fused, d["topk"]).numpy()
    image = metrics.image_auroc(scores, d["labels"].numpy())
    maps = upsample(fused, pixel_size).numpy()
    masks = (F.interpolate(d["masks"][:, None].float(), size=(pixel_size,) * 2, mode="nearest")[:, 0] > 0.5).numpy()
    return image, metrics.pixel_auroc(maps, masks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+")
    parser.add_argument("--rules", nargs="+", default=["std", "max", "q999", "score"])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--sigmas", nargs="+", type=float, default=[4.0])
    parser.add_argument("--positional", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--pixel-size", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = {}
    for path in args.caches:
        d = torch.load(path)
        d["hold"] = [m.float() for m in d["hold"]]
        d["test"] = [m.float() for m in d["test"]]
        data[Path(path).stem] = d
    names = list(data)
    lines = ["| rule | per-position centre | w | sigma | " + " | ".join(f"{n} image | {n} pixel" for n in names) + " |",
             "|---" * (4 + 2 * len(names)) + "|"]
    print(lines[0], flush=True)
    for rule, positional, weight, sigma in itertools.product(args.rules, args.positional, args.weights, args.sigmas):
        cells = []
        for name in names:
            image, pixel = evaluate(data[name], fuse(data[name], rule, bool(positional), weight, sigma), args.pixel_size)
            cells += [f"{image:.3f}", f"{pixel:.4f}"]
        lines.append(f"| {rule} | {bool(positional)} | {weight} | {sigma} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
