"""The raw-maps cache the probes share: ``map_scale.py --maps`` writes it (one checkpoint's raw maps of its held-out
good images and of the whole test set, with the labels, masks and the fusion settings); the other probes read it,
fuse its maps under a rule and score the result with this repository's metrics.

Scale rules (s_l in scoring.py; mu_l the mean over the held-out good pixels):
    std     pixel std
    max     mean over images of the worst pixel, minus mu_l
    q999    the 99.9th percentile of the held-out pixels, minus mu_l
    score   mean over images of the image score of the map alone (top ``score_topk`` of the smoothed, upsampled map)
            minus mu_l: the tail the image score sees
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from hlgfa_lite import metrics
from hlgfa_lite.priors import low_pass
from hlgfa_lite.scoring import image_scores

SCALE_RULES = ("std", "max", "q999", "score")


def load_maps(path: str | Path, first: int | None = None) -> dict:
    """The cache at ``path`` with its maps as float32 (stored as float16); only the first ``first`` maps if given."""
    cache = torch.load(path)
    for split in ("hold", "test"):
        cache[split] = [m.float() for m in cache[split][:first]]
    return cache


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(N, h, w) -> (N, size, size), bilinear."""
    return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def scale_of(hold: torch.Tensor, rule: str, d: dict, center: torch.Tensor) -> torch.Tensor:
    """s_l of one map's held-out good values under ``rule`` (one of SCALE_RULES), after subtracting ``center``."""
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
    raise ValueError(f"scale rule must be one of {SCALE_RULES}, got {rule!r}")


def fuse(d: dict, rule: str, positional: bool, weight: float, sigma: float) -> torch.Tensor:
    """The test maps fused as the library does, the normality maps' share ``weight``; each map centred on its
    held-out mean (per position if ``positional``) and divided by its ``rule`` scale; then smoothed by ``sigma``."""
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
    """(image AUROC, pixel AUROC) of fused test maps, maps and masks at ``pixel_size``."""
    scores = image_scores(fused, d["topk"]).numpy()
    image = metrics.image_auroc(scores, d["labels"].numpy())
    maps = upsample(fused, pixel_size).numpy()
    masks = (F.interpolate(d["masks"][:, None].float(), size=(pixel_size,) * 2, mode="nearest")[:, 0] > 0.5).numpy()
    return image, metrics.pixel_auroc(maps, masks)
