"""From per-level misalignment to one anomaly map and one score per image, on a fixed, calibrated scale.

For raw maps e_l, l = 1..L (the misalignment of each level, and with ``normality`` on, each level's normality map
too; on grids of different sizes):

    z_l   = (e_l - mu_l) / s_l                 mu_l: mean of e_l over the pixels of N held-out good images
    A     = G_s * sum_l w_l up(z_l)            upsampled to the low-res image size, fused, Gaussian-smoothed
    score = mean of the top-k fraction of A'   (k = 0: the max)

with weights w_l summing to 1: each family of maps (misalignment, normality) shares its part of the weight equally
among its levels, the normality family ``normality_weight`` of it (0.5: every map alike), and the scale s_l
(``map_scale``) either

    "std":  s_l = std of e_l over the same pixels
    "max":  s_l = (1/N) sum_n max_p e_l(n, p) - mu_l   how far a typical good image's worst pixel lies above the mean

Normalising each map by good-image statistics before fusing keeps a map with a large natural spread from drowning
the others. "std" equalises the bulk of each map; but an image is flagged by its *worst* pixels, and a map with heavy
tails on good images (the fine misalignment level of a texture reaches 21 std above its mean on a typical good
magnetic tile, against 3-5 for the normality maps) then raises false alarms that no other map can outvote. "max"
equalises that tail instead: on every map, 1 means "as bad as the worst spot of a typical good image". Which one
fuses best depends on the data (bottle: "std", magnetic tile: "max"), so ``"auto"`` lets each fit choose on
synthetic defects made on its held-out good images (``synthetic.py``, ``training.choose_map_scale``). The same good
images give the image threshold and a fixed colour scale (``calibration.py``), so a map means the same thing on
every image (no per-image min-max, which makes every good image look anomalous).

Two fusions. A' is A itself unless ``map_normality_weight`` gives the map a share of its own: then A weighs the
normality family by that share and A' (what the score reads) by ``normality_weight``. Whether an image is defective
and where its defect lies are two questions: the normality maps rank images well, but on an object their coarse
per-position Gaussians light normal pixels around the part too, and every such pixel costs the map (RESULTS.md, "Two
fusions"). Both come from the same raw maps and the same statistics, so the second fusion costs one weighted sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .priors import low_pass


SCALES = ("std", "max")  # a fit with map_scale="auto" picks one of these (training.choose_map_scale)
LEVEL_SETS = ("all", "fine")  # normality maps fused: every level, or all but the coarsest ("auto" picks one)


def map_statistics(good_maps: list[torch.Tensor], map_scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps of N good images [(N, h_l, w_l)] -> mean (L,) and scale (L,) of each map, as in the equations above
    ("auto", before a fit has chosen: "max")."""
    mean = torch.stack([e.mean() for e in good_maps])
    if map_scale == "std":
        scale = torch.stack([e.std() if e.numel() > 1 else e.new_tensor(0.0) for e in good_maps])
    else:
        scale = torch.stack([e.flatten(1).max(dim=1).values.mean() for e in good_maps]) - mean
    return mean, scale.clamp_min(1e-6)  # a constant map (a single pixel, an untrained head) must not divide by 0


def map_weights(n_levels: int, with_normality: bool, normality_weight: float,
                normality_levels: str = "all") -> torch.Tensor:
    """w_l of every raw map (misalignment levels, then normality levels), summing to 1. ``normality_levels``
    "fine" gives the coarsest normality map no weight (its share goes to the finer ones); "auto", before a fit has
    chosen, counts as "all"."""
    if not with_normality:
        return torch.full((n_levels,), 1 / n_levels)
    normality = torch.ones(n_levels)
    if normality_levels == "fine" and n_levels > 1:
        normality[-1] = 0  # the coarsest level comes last (out_indices in order)
    return torch.cat([torch.full((n_levels,), (1 - normality_weight) / n_levels),
                      normality_weight * normality / normality.sum()])


def fuse_levels(level_maps: list[torch.Tensor], level_mean: torch.Tensor, level_scale: torch.Tensor,
                size: int, smooth_sigma: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """[(B, h_l, w_l)] -> (B, size, size): normalise, upsample, take the weighted mean (default: the plain mean),
    smooth."""
    if weights is None:
        weights = torch.full((len(level_maps),), 1 / len(level_maps))
    weights = weights / weights.sum()  # a subset of the maps (one family) is fused on its own scale
    normalised = [
        F.interpolate(((e - level_mean[i]) / level_scale[i]).unsqueeze(1), size=(size, size), mode="bilinear",
                      align_corners=False)
        for i, e in enumerate(level_maps)
    ]
    fused = sum(w.item() * z for w, z in zip(weights, normalised))  # (B, 1, size, size)
    return low_pass(fused, smooth_sigma).squeeze(1)


def image_scores(maps: torch.Tensor, topk: float) -> torch.Tensor:
    """(B, H, W) -> (B,): mean of the top ``topk`` fraction of pixels, or the max when topk is 0."""
    flat = maps.flatten(1)
    if topk <= 0:
        return flat.max(dim=1).values
    k = max(1, int(round(topk * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(dim=1)


def resize_map(anomaly_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H0, W0) -> (height, width), bilinear: a map at the input image's own resolution."""
    return F.interpolate(anomaly_map[None, None], size=(height, width), mode="bilinear",
                         align_corners=False)[0, 0]
