"""Fitting the alignment head on good images, then calibrating on held-out good images.

1. Split the good images: ``holdout_fraction`` of them (at least one) are kept aside for calibration.
2. Hold the frozen features of K draws per training image (clean + augmented: ``cache.wanted_draws``), computed
   once (``cache``; the high-res priors only of the draws a head will read, ``wanted_priors``): in memory when they
   fit within ``max_cache_gib``, else in a file on disk read back batch by batch (the same values, so the same
   head), else computed on the fly; ``fit`` says which, and how much memory, before any work. The normality term's
   Gaussians are fitted over them too (``fit_normality``).
3. Train the head for ``head_steps`` steps of ``head_batch`` images: a number of passes over the training images
   (``passes``) within [``MIN_STEPS``, ``steps``], or exactly ``steps`` when ``passes`` is 0 (a small set takes
   smaller batches, down to ``min_batch_size``, rather than more passes); AdamW, cosine learning-rate decay,
   loss = sum over levels of mean(1 - cos(F_hat, T)), optionally under bfloat16 autocast (``train_precision``).
4. Calibrate, by values: the raw maps of the held-out images are computed once; from them come the map scale
   (with ``map_scale="auto"``, the one that best localises synthetic defects made on those images,
   ``choose_map_scale``, ``synthetic.py``) and each map's mean and scale (``level_statistics``); with fewer than
   ``CROSS_FIT_BELOW`` held-out images, k fold models (new models on the same frozen backbone, each fitted on the
   cached features of the other training images) score each fold too, from the features the cache holds
   (``cross_fit_scores``), so the threshold rests on every image, not on one or two. ``set_calibration`` then sets the rule, the statistics and the
   ``Calibration`` on the model, once.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .alignment import alignment_loss
from .tools.cache import (DEFAULT_MAX_CACHE_GIB, CachePlan, FeatureCache, OnTheFlyFeatures, SpilledCache, as_float,
                    cache_features, hold_features, load_images, plan_cache)
from .calibration import (CROSS_FIT_BELOW, CROSS_FIT_FOLDS, DEFAULT_CONFIDENCE, DEFAULT_TARGET_FPR, FEW_GOOD_SCORES,
                          Calibration, calibrate, fold_splits)
from .data import good_image_paths, is_grayscale
from .device import has_fast_bfloat16
from .errors import HLGFAError
from .metrics import pixel_auroc
from .model import HLGFA
from .scoring import LEVEL_SETS, SCALES, image_scores, map_statistics
from .synthetic import synthetic_defects

Features = FeatureCache | SpilledCache | OnTheFlyFeatures  # how fit holds the training features (see cache.py)
# (high view, low view, F_H per level, F_L per level): what ``HLGFA.inspect_features`` reads
FrozenFeatures = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]
__all__ = ["CROSS_FIT_FOLDS", "DEFAULT_MAX_CACHE_GIB", "FitReport", "as_float", "cache_features", "calibrate_model",
           "choose_map_scale", "cross_fit_plan", "cross_fit_scores", "fit", "fit_normality", "fold_head_steps",
           "frozen_features", "FrozenFeatures", "good_image_paths", "good_level_maps", "head_batch", "head_reads",
           "head_steps", "held_scores", "level_statistics", "load_images", "LevelStatistics", "pick_map_scale",
           "plan_cache", "planned_steps", "scale_auroc", "set_calibration", "set_statistics", "split_holdout",
           "train_head", "wanted_priors"]


@dataclass
class FitReport:
    losses: list[float] = field(default_factory=list)  # one per step
    n_train: int = 0
    steps: int = 0  # optimiser steps of the head (``head_steps``)
    batch_size: int = 0  # images per step (``head_batch``)
    precision: str = "float32"  # of those steps (``training_precision``)
    n_holdout: int = 0
    cache_seconds: float = 0.0  # feature extraction
    train_seconds: float = 0.0  # head optimisation
    cross_fit_seconds: float = 0.0  # k-fold heads for the calibration (small sets only)
    calibration: Calibration | None = None
    holdout_scores: list[float] = field(default_factory=list)  # good scores of the held-out images
    cross_fit_scores: list[float] = field(default_factory=list)  # out-of-fold good scores of the training images
    cache_plan: CachePlan | None = None  # where the features were held (memory, disk, on the fly)
    prior_draws: tuple[int, int] = (0, 0)  # draws whose high-res priors were computed (the heads read them), of all
    map_scale_auroc: dict[str, float] = field(default_factory=dict)  # "auto": synthetic pixel AUROC of each scale
    grayscale: bool = False  # every good image was gray (``data.is_grayscale``): predict notes colour images then


def head_reads(cfg, n_images: int, draws: int, steps: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, views), each (steps, batch): the draw ``views[s, i]`` of image ``images[s, i]`` that step ``s``
    of a head reads, uniform and seeded by ``cfg.seed``. It never depends on the features, so ``fit`` knows before
    computing any which draws a head will read (``wanted_priors``). With ``cfg.head_draws`` = k > 0 a head reads only
    the first k draws of each image (the clean one first): only their priors need a high-res pass."""
    readable = min(draws, cfg.head_draws) if cfg.head_draws else draws
    generator = torch.Generator().manual_seed(cfg.seed)
    images, views = torch.empty(steps, batch, dtype=torch.long), torch.empty(steps, batch, dtype=torch.long)
    for step in range(steps):  # interleaved, one step at a time, as the sampler has always drawn them
        images[step] = torch.randint(n_images, (batch,), generator=generator)
        views[step] = torch.randint(readable, (batch,), generator=generator)
    return images, views


def train_head(model: HLGFA, cache: Features, steps: int, progress: bool = True,
               on_step: Callable[[int, float], None] | None = None, desc: str = "training head") -> list[float]:
    """Optimise the head on the held features for a fixed number of steps of ``head_batch`` images each; returns the
    loss of each step."""
    cfg = model.cfg
    torch.manual_seed(cfg.seed)
    batch = head_batch(cfg, cache.n_images)
    images_read, views_read = head_reads(cfg, cache.n_images, cache.draws, steps, batch)  # (steps, B) each
    optimiser = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    bfloat16 = training_precision(cfg, model.device) == "bfloat16"
    model.head.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    started = time.perf_counter()
    for step in bar:
        low, priors = cache.batch(images_read[step], views_read[step], model.device,
                                  torch.bfloat16 if bfloat16 else torch.float32)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bfloat16):
            loss = alignment_loss(model.head(low, priors), priors)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
        if step % 10 == 0 or step == steps - 1:
            rate = (step + 1) * batch / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", img_per_s=f"{rate:.0f}")
    model.head.eval()
    return losses


@torch.no_grad()
def fit_normality(model: HLGFA, cache: Features, chunk: int = 32, progress: bool = False) -> None:
    """The normality term's Gaussians from the training features: the clean draw (index 0) of every image, or
    with ``normality_draws="all"`` every draw (clean and augmented), wherever ``cache`` holds them."""
    if model.normality is None:
        return
    every = model.cfg.normality_draws == "all"
    for start in tqdm(range(0, cache.n_images, chunk), desc="normality statistics", disable=not progress, leave=False):
        # (chunk * draws, C, h, w) or (chunk, C, h, w) per level
        model.normality.accumulate(cache.low_draws(slice(start, start + chunk), every, model.device))
    model.normality.finish()


@torch.no_grad()
def good_level_maps(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1, desc: str | None = None,
                    features: list[FrozenFeatures] | None = None) -> list[torch.Tensor]:
    """Raw maps [(N, h, w)] of uint8 images (misalignment per level, then any normality maps), through the
    model's own ``inspect``; their fusion there used the old statistics and is recomputed by the caller.
    ``desc``: a progress bar with that name. ``features``: the images' ``frozen_features`` (batches of
    ``batch_size``), when several models score the same images: the backbone then runs no pass here."""
    def inspected(n: int, start: int):
        return model.inspect_features(*features[n]) if features else model.inspect(
            as_float(hr_images[start:start + batch_size]))

    starts = tqdm(range(0, len(hr_images), batch_size), desc=desc, disable=desc is None, leave=False)
    maps = [inspected(n, start).all_maps for n, start in enumerate(starts)]
    return [torch.cat(level) for level in zip(*maps)]


@torch.no_grad()
def frozen_features(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1) -> list[FrozenFeatures]:
    """(high view, low view, F_H, F_L) of uint8 images, ``batch_size`` at a time: what ``inspect`` computes before
    the head, and the same for every model on this frozen backbone (the final model and the fold models of a
    cross-fit score the same held-out images)."""
    features = []
    for start in range(0, len(hr_images), batch_size):
        high, low = model.views(as_float(hr_images[start:start + batch_size]).to(model.device))
        features.append((high, low, model.backbone(high), model.backbone(low)))
    return features


def fusion_candidates(cfg, with_normality: bool) -> dict[str, tuple[str, str]]:
    """The fusions an "auto" fit weighs, by name: each map scale of ``scoring.SCALES`` (``map_scale="auto"``)
    and, with ``normality_levels="auto"``, each level set of ``scoring.LEVEL_SETS`` ("std/fine": scale "std", the
    coarsest normality map left out). A rule that is fixed is the only candidate for its part."""
    scales = SCALES if cfg.map_scale == "auto" else (cfg.map_scale,)
    choose_levels = cfg.normality_levels == "auto" and with_normality
    levels = LEVEL_SETS if choose_levels else ("all" if cfg.normality_levels == "auto" else cfg.normality_levels,)
    return {(f"{scale}/{level}" if choose_levels else scale): (scale, level) for scale in scales for level in levels}


def scale_auroc(good_maps: list[torch.Tensor], defect_maps: list[torch.Tensor], masks: torch.Tensor,
                fuse: Callable[..., torch.Tensor],
                candidates: dict[str, tuple[str, str]] | None = None) -> dict[str, float]:
    """Pixel AUROC of the fused maps under each candidate (``fusion_candidates``; default: each scale of
    ``scoring.SCALES``): raw maps [(N, h, w)] of good and [(M, h, w)] of defective images, masks (M, H, W) of the
    defects; ``fuse(raw_maps, mean, scale)`` -> (N + M, H, W), or ``fuse(raw_maps, mean, scale, levels)`` when a
    candidate names a level set. The statistics come from the good maps, whose pixels then count as normal beside
    the defects' surroundings."""
    candidates = candidates or {scale: (scale, None) for scale in SCALES}
    truth = torch.cat([masks, torch.zeros(len(good_maps[0]), *masks.shape[1:], dtype=torch.bool)])
    if not truth.any():
        return {name: 0.5 for name in candidates}
    auroc = {}
    for name, (scale, levels) in candidates.items():
        mean, spread = map_statistics(good_maps, scale)
        raw = [torch.cat([d, g]) for d, g in zip(defect_maps, good_maps)]
        fused = fuse(raw, mean, spread) if levels is None else fuse(raw, mean, spread, levels)
        auroc[name] = pixel_auroc(fused.cpu().numpy(), truth.cpu().numpy())
    return auroc


@torch.no_grad()
def choose_map_scale(model: HLGFA, hr_images: torch.Tensor, good_maps: list[torch.Tensor], batch_size: int = 1,
                     size: int = 128, limit: int = 32, progress: bool = False) -> dict[str, float]:
    """``map_scale="auto"`` (and ``normality_levels="auto"``): how well each candidate fusion
    (``fusion_candidates``) localises synthetic defects made on held-out good images (uint8, N >= 1, the first
    ``limit`` of them, which bounds the memory; ``synthetic.py``), by pixel AUROC at ``size`` px (``scale_auroc``).
    ``good_maps``: those images' raw maps [(N, h, w)], computed once by the caller. The candidates are fused as the
    image score fuses them (``normality_weight``), so a map with a share of its own (``map_normality_weight``)
    changes the map and nothing else. Changes nothing in ``model``; ``pick_map_scale`` reads the answer."""
    hr_images, good_maps = hr_images[:limit], [m[:limit] for m in good_maps]
    defective, masks = synthetic_defects(as_float(hr_images), torch.Generator().manual_seed(model.cfg.seed),
                                         as_uint8=True)  # 8-bit like every held image: a quarter of the memory
    defect_maps = good_level_maps(model, defective, batch_size,  # [(3N, h, w)]
                                  desc="map scale: synthetic defects" if progress else None)
    masks = F.interpolate(masks[:, None].float(), size=(size, size), mode="area")[:, 0] > 0.5

    def fuse(raw_maps, mean, spread, levels=None):  # a few images at a time: ~0.5 GB at full size at once
        return torch.cat([F.interpolate(model.fuse([m[i:i + 8] for m in raw_maps], statistics=(mean, spread),
                                                   normality_levels=levels,
                                                   normality_weight=model.cfg.normality_weight)[:, None],
                                        size=(size, size), mode="bilinear", align_corners=False)[:, 0]
                          for i in range(0, len(raw_maps[0]), 8)])

    return scale_auroc(good_maps, defect_maps, masks, fuse,
                       fusion_candidates(model.cfg, model.normality is not None))


def pick_map_scale(auroc: dict[str, float]) -> str:
    """The candidate with the best synthetic-defect AUROC; a tie keeps "max", then every level."""
    return max(auroc, key=lambda name: (auroc[name], name.startswith("max"), not name.endswith("/fine")))


@dataclass
class LevelStatistics:
    """What calibration sets on a model besides its ``Calibration``: the map-scale rule and each raw map's
    good-image mean and scale (``scoring.map_statistics``)."""

    map_scale: str  # "std" or "max" (never "auto": chosen by then)
    mean: torch.Tensor  # (maps,)
    scale: torch.Tensor  # (maps,)
    scale_auroc: dict[str, float] = field(default_factory=dict)  # "auto" only: synthetic AUROC of each candidate
    normality_levels: str = "all"  # "all" or "fine" (never "auto")


def level_statistics(model: HLGFA, hr_images: torch.Tensor, good_maps: list[torch.Tensor],
                     map_scale: str | None = None, progress: bool = False,
                     normality_levels: str | None = None) -> LevelStatistics:
    """The statistics of held-out good images (uint8, N >= 1) whose raw maps are ``good_maps`` [(N, h, w)], under
    ``map_scale`` and ``normality_levels`` (default: the config's; "auto" is chosen here, ``choose_map_scale``).
    Changes nothing in ``model``."""
    cfg = model.cfg.replace(map_scale=map_scale or model.cfg.map_scale,
                            normality_levels=normality_levels or model.cfg.normality_levels)
    candidates = fusion_candidates(cfg, model.normality is not None)
    auroc = {}
    if len(candidates) > 1:
        kept, model.cfg = model.cfg, cfg
        try:
            auroc = choose_map_scale(model, hr_images, good_maps, progress=progress)
        finally:
            model.cfg = kept
    rule, levels = candidates[pick_map_scale(auroc) if auroc else next(iter(candidates))]
    mean, scale = map_statistics(good_maps, rule)
    return LevelStatistics(rule, mean, scale, auroc, levels)


@torch.no_grad()
def set_statistics(model: HLGFA, statistics: LevelStatistics) -> None:
    """The one place a model's map-scale rule and per-map statistics are set."""
    model.cfg = model.cfg.replace(map_scale=statistics.map_scale, normality_levels=statistics.normality_levels)
    model.level_mean.copy_(statistics.mean)
    model.level_scale.copy_(statistics.scale)


@torch.no_grad()
def set_calibration(model: HLGFA, statistics: LevelStatistics, good_maps: list[torch.Tensor], extra_scores=(),
                    target_fpr: float = DEFAULT_TARGET_FPR, confidence: float = DEFAULT_CONFIDENCE) -> torch.Tensor:
    """The statistics (``set_statistics``), then the ``Calibration`` from the held-out good images' fused maps and
    scores, pooled with ``extra_scores`` (more good scores on the same scale: cross-fitted ones). Returns the
    held-out images' scores (N,)."""
    set_statistics(model, statistics)
    fused = model.fuse(good_maps)  # (N, lr, lr)
    scores = image_scores(model.score_map(good_maps, fused), model.cfg.score_topk).cpu()
    model.calibration = calibrate(scores.tolist() + list(extra_scores), fused.cpu(), target_fpr=target_fpr,
                                  confidence=confidence)
    return scores


def calibrate_model(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1, extra_scores=(),
                    target_fpr: float = DEFAULT_TARGET_FPR, confidence: float = DEFAULT_CONFIDENCE) -> Calibration:
    """Calibrate ``model`` on held-out good images (uint8, N >= 1): their raw maps, the statistics, the
    calibration (``level_statistics``, then ``set_calibration``)."""
    good_maps = good_level_maps(model, hr_images, batch_size)  # [(N, h, w)]
    set_calibration(model, level_statistics(model, hr_images, good_maps), good_maps, extra_scores, target_fpr,
                    confidence)
    return model.calibration


@torch.no_grad()
def held_scores(model: HLGFA, cache: Features, rows: torch.Tensor, chunk: int = 8) -> list[float]:
    """Scores of the clean draws of the cached images ``rows``, read from ``cache`` (``HLGFA.score_features``): the
    fit computed their features once already, so scoring them costs no backbone pass. The cache holds them in
    float16, as every head step reads them; a score moves by that rounding only (RESULTS.md, "Fit")."""
    scores: list[float] = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        low, priors = cache.batch(part, torch.zeros_like(part), model.device)
        scores += model.score_features(low, priors).tolist()
    return scores


def cross_fit_scores(model: HLGFA, cache: Features, holdout_images: torch.Tensor, map_scale: str,
                     folds: int = CROSS_FIT_FOLDS, steps: int | None = None, normality_levels: str = "all",
                     on_step: Callable[[int, float], None] | None = None, progress: bool = False,
                     holdout_features: list[FrozenFeatures] | None = None) -> list[float]:
    """Out-of-fold good scores of the training images whose features ``cache`` holds, in fold order.

    The images are split into ``folds`` groups (``calibration.fold_splits``); for each, a fold model (a new
    ``HLGFA`` on ``model``'s frozen backbone) repeats the whole fit without that group: a fresh head trained for
    ``steps`` (default ``fold_head_steps``: all folds together cost half a training more) on the
    cached features of the others, normality statistics from those others, and per-map statistics under
    ``map_scale`` and ``normality_levels`` (the final model's rules) from the held-out images (``holdout_images``,
    uint8; ``holdout_features``: their ``frozen_features``, computed once for every model). The fold model then
    scores its group from the cache (``held_scores``): a good image it never saw, on a scale set by good images it
    never saw, as the final model scores a new part. (Scoring with the *final* model's statistics instead puts a head
    trained for a fraction of the steps on a scale made for a better one: its misalignment, a little higher
    everywhere, reads as many spreads above normal, and the threshold lands above the defects.) ``model`` is not
    changed. ``on_step(i, loss)`` counts the steps of all folds."""
    splits, fold_steps = cross_fit_plan(model.cfg, cache.n_images, folds, steps)
    holdout_features = holdout_features or frozen_features(model, holdout_images)
    scores: list[float] = []
    for fold, (held, kept) in enumerate(splits):
        fold_model = HLGFA(model.cfg, backbone=model.backbone, init_seed=model.cfg.seed + 100 + fold)
        fold_model = fold_model.to(model.device).eval()
        others = cache.subset(kept)
        fit_normality(fold_model, others)  # the normality term must not have seen the fold either
        train_head(fold_model, others, fold_steps, progress=progress,
                   on_step=(lambda i, loss, o=fold * fold_steps: on_step(o + i, loss)) if on_step else None,
                   desc=f"cross-fitted head {fold + 1}/{len(splits)}")
        # its own scale; no threshold of its own is needed
        good_maps = good_level_maps(fold_model, holdout_images, features=holdout_features)
        set_statistics(fold_model, level_statistics(fold_model, holdout_images, good_maps, map_scale,
                                                    normality_levels=normality_levels))
        scores += held_scores(fold_model, cache, held)
    return scores


def split_holdout(paths: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, holdout), a seeded shuffle; at least one image on each side."""
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    n_holdout = min(len(paths) - 1, max(1, round(fraction * len(paths))))
    return [paths[i] for i in sorted(order[n_holdout:])], [paths[i] for i in sorted(order[:n_holdout])]


MIN_STEPS = 125  # the fewest steps ``passes`` gives: tire, 63 images, needs them (RESULTS.md, "Steps that follow the data")
# the fold heads of a cross-fit train this share of the head's steps in all: half gave the thresholds and verdicts of
# a whole share (benchmarks/CALIBRATION.md, "Cheaper cross-fitted heads")
CROSS_FIT_SHARE = 0.5


def training_precision(cfg, device) -> str:
    """"bfloat16" or "float32": the head's steps under bfloat16 autocast (the convolutions with 8-bit mantissas; the
    weights, the optimiser and every map stay float32) when asked, or with "auto" where the device computes
    bfloat16 natively (``device.has_fast_bfloat16``; elsewhere it is emulated and slower)."""
    if cfg.train_precision == "auto":
        return "bfloat16" if has_fast_bfloat16(device) else "float32"
    return cfg.train_precision


def head_batch(cfg, n_train: int) -> int:
    """Images per step of a head on ``n_train`` training images: ``cfg.batch_size``, or, where ``passes`` passes
    take fewer than MIN_STEPS steps of it, the batch that takes them in MIN_STEPS steps, ceil(passes * n_train /
    MIN_STEPS), but at least ``cfg.min_batch_size`` (0: always ``batch_size``). The step floor is there for the
    optimiser, not for more passes: on tire (63 images) 125 steps of 8 images score as 125 of 16 did, at about half
    the time (RESULTS.md, "Steps that follow the data")."""
    if not cfg.passes or not cfg.min_batch_size:
        return cfg.batch_size
    needed = math.ceil(cfg.passes * n_train / MIN_STEPS)
    return max(min(cfg.min_batch_size, cfg.batch_size), min(cfg.batch_size, needed))


def head_steps(cfg, n_train: int) -> int:
    """Optimiser steps of the head on ``n_train`` training images: ``cfg.steps`` when ``cfg.passes`` is 0, else
    ceil(passes * n_train / head_batch) kept within [MIN_STEPS, cfg.steps], so the work follows the data."""
    if not cfg.passes:
        return cfg.steps
    return min(cfg.steps, max(MIN_STEPS, math.ceil(cfg.passes * n_train / head_batch(cfg, n_train))))


def fold_head_steps(cfg, n_train: int, folds: int) -> int:
    """Steps of each of ``folds`` cross-fitted heads: CROSS_FIT_SHARE of ``head_steps``, split evenly (at least 1)."""
    return max(1, int(CROSS_FIT_SHARE * head_steps(cfg, n_train)) // max(folds, 1))


def cross_fit_plan(cfg, n_train: int, folds: int = CROSS_FIT_FOLDS,
                   steps: int | None = None) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """The cross-fit's folds ((held, kept) of ``calibration.fold_splits``) and each fold head's steps (``steps``,
    default ``fold_head_steps``): what ``cross_fit_scores`` trains, known before any feature is computed."""
    splits = fold_splits(n_train, folds, cfg.seed)
    return splits, steps if steps is not None else fold_head_steps(cfg, n_train, len(splits))


def wanted_priors(cfg, n_train: int, draws: int, prior_draws: int, steps: int, cross_fit: bool = False,
                  cross_fit_steps: int | None = None) -> torch.Tensor:
    """(n_train, prior_draws) bool: the draws whose priors a head of ``fit`` reads: the head's ``steps`` and, with
    ``cross_fit``, every fold head's (``cross_fit_plan``), each as ``head_reads`` draws them.

    A draw's priors cost a backbone pass at ``hr_size``, four times the pixels of the pass at ``lr_size``, and only a
    head reads them (the normality term reads every low-res draw). A head reads s * B uniform picks among the N * Kp
    draws it may read (``head_draws`` of each image); the share it never picks is about exp(-s B / (N Kp)): with
    five passes over Kp = 2 draws, exp(-5/2) = 8 % of them on a set of 400 to 1,600 training images (more above,
    where the step cap cuts the passes). Their priors are left zero and never computed; every draw that is read
    holds the same values as it would with every prior computed, so the fit is the same bit for bit."""
    wanted = torch.zeros(n_train, prior_draws, dtype=torch.bool)
    images, views = head_reads(cfg, n_train, draws, steps, head_batch(cfg, n_train))
    wanted[images, views % prior_draws] = True
    if cross_fit:
        wanted[:, 0] = True  # the fold models score each image's clean draw from the cache (``held_scores``)
        splits, fold_steps = cross_fit_plan(cfg, n_train, steps=cross_fit_steps)
        for _, kept in splits:
            images, views = head_reads(cfg, len(kept), draws, fold_steps, head_batch(cfg, len(kept)))
            wanted[kept[images], views % prior_draws] = True
    return wanted


def planned_steps(cfg, n_images: int, cross_fit: bool | None = None, cross_fit_steps: int | None = None) -> int:
    """Optimiser steps ``fit`` will take on ``n_images`` good images, the cross-fitted heads included: ``fit``'s
    ``on_step`` counts up to this (for progress bars)."""
    n_holdout = min(n_images - 1, max(1, round(cfg.holdout_fraction * n_images)))
    steps = head_steps(cfg, n_images - n_holdout)
    folds = min(CROSS_FIT_FOLDS, n_images - n_holdout)
    crossing = cross_fit if cross_fit is not None else n_holdout < CROSS_FIT_BELOW
    if not crossing or folds < 2:
        return steps
    n_train = n_images - n_holdout
    return steps + folds * (fold_head_steps(cfg, n_train, folds) if cross_fit_steps is None else cross_fit_steps)


def _which_priors(prior_draws: int, draws: int) -> str:
    """For fit's plan line: which of each image's cached draws get high-res priors of their own."""
    if prior_draws == draws:
        return ""
    if prior_draws == 1:
        return " (each image's clean priors serve all its draws)"
    return f" (a head reads at most {prior_draws} of each image's {draws})"


def fit(model: HLGFA, paths: list[Path] | str | Path, progress: bool = True,
        on_step: Callable[[int, float], None] | None = None, target_fpr: float = DEFAULT_TARGET_FPR,
        confidence: float = DEFAULT_CONFIDENCE, cross_fit: bool | None = None,
        cross_fit_steps: int | None = None, max_cache_gib: float = DEFAULT_MAX_CACHE_GIB,
        cache_dir: str | Path | None = None, say: Callable[[str], None] | None = print) -> FitReport:
    """Fit ``model``'s head on good images at ``paths`` (image files, or a folder: ``good_image_paths``) and calibrate
    it; returns what happened.

    ``cross_fit`` (default: when fewer than ``CROSS_FIT_BELOW`` images are held out) adds out-of-fold scores of
    the training images to the calibration: ``CROSS_FIT_FOLDS`` more heads trained on the held features for
    ``cross_fit_steps`` each (default ``fold_head_steps``: a sixth of the head's steps). ``on_step`` counts every step
    (``planned_steps`` in all); an exception raised by it (e.g. a cancelled demo fit) stops the fit between steps.
    ``say`` (None: silent) hears, before any work, one line: how much memory the training set will take and where
    the features go within ``max_cache_gib`` (a spill file goes in ``cache_dir``, default the temporary folder);
    when not even the images fit, ``HLGFAError`` says so instead."""
    cfg = model.cfg
    train_paths, holdout_paths = split_holdout(good_image_paths(paths), cfg.holdout_fraction, cfg.seed)
    report = FitReport(n_train=len(train_paths), n_holdout=len(holdout_paths),
                       steps=head_steps(cfg, len(train_paths)), batch_size=head_batch(cfg, len(train_paths)),
                       precision=training_precision(cfg, model.device))
    report.cache_plan = plan = plan_cache(model, len(train_paths), max_cache_gib, cache_dir)
    if plan.policy == "stop":
        raise HLGFAError(plan.describe())
    crossing = cross_fit if cross_fit is not None else len(holdout_paths) < CROSS_FIT_BELOW
    wanted = wanted_priors(cfg, report.n_train, plan.draws, plan.prior_draws, report.steps, crossing, cross_fit_steps)
    report.prior_draws = (int(wanted.sum()), wanted.numel())
    if say:
        passes = report.steps * report.batch_size / report.n_train
        floor = min(MIN_STEPS, cfg.steps)
        rule = (f"{cfg.passes:g} passes asked, within {floor}-{cfg.steps} steps" if cfg.passes and floor < cfg.steps
                else "a fixed count")
        say(f"{plan.describe()}; the head trains {report.steps} steps of {report.batch_size} images "
            f"({passes:.1f} passes over the {report.n_train} training images; {rule}), in {report.precision}; "
            f"high-res priors of {report.prior_draws[0]} draws{_which_priors(plan.prior_draws, plan.draws)}")
    started = time.perf_counter()
    # all at once, before any work: an unreadable image stops the fit, and shapes are compared across the whole set
    images = load_images(train_paths + holdout_paths, cfg.hr_size)
    train_images, holdout_images = images[:len(train_paths)], images[len(train_paths):]
    report.grayscale = all(is_grayscale(image) for image in images)
    cache = hold_features(model, train_images, plan, progress=progress, wanted=wanted)
    try:
        fit_normality(model, cache, progress=progress)
        report.cache_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report.losses = train_head(model, cache, report.steps, progress=progress, on_step=on_step)
        report.train_seconds = time.perf_counter() - started
        # a cross-fit's fold models score the held-out images too: their frozen features are computed once
        holdout_features = frozen_features(model, holdout_images) if crossing else None
        good_maps = good_level_maps(model, holdout_images,  # [(N, h, w)]: computed once, used by every step below
                                    desc="held-out images" if progress else None, features=holdout_features)
        statistics = level_statistics(model, holdout_images, good_maps, progress=progress)
        report.map_scale_auroc = statistics.scale_auroc
        if crossing:
            started = time.perf_counter()
            report.cross_fit_scores = cross_fit_scores(
                model, cache, holdout_images, statistics.map_scale, steps=cross_fit_steps,
                normality_levels=statistics.normality_levels, holdout_features=holdout_features,
                progress=progress, on_step=(lambda i, loss: on_step(report.steps + i, loss)) if on_step else None)
            report.cross_fit_seconds = time.perf_counter() - started
    finally:
        cache.close()  # a spill file is deleted here, whatever happened
    report.holdout_scores = set_calibration(model, statistics, good_maps, report.cross_fit_scores,
                                            target_fpr=target_fpr, confidence=confidence).tolist()
    report.calibration = model.calibration
    warn_of_few_good_scores(model.calibration)
    return report


def warn_of_few_good_scores(cal: Calibration) -> None:
    """A threshold from fewer than FEW_GOOD_SCORES good scores carries a wide margin for its own uncertainty (two
    images: 37 spreads above their mean), so a defect often lands between the thresholds: say how far up
    "anomalous" starts, while the fit can still be given more images."""
    if cal.n_images < FEW_GOOD_SCORES:
        start = (f"{cal.image_threshold / cal.good_score_center:.3g}x the typical good score"
                 if cal.good_score_center > 0 else f"{cal.image_threshold:.3g} (typical good score "
                 f"{cal.good_score_center:.3g})")
        images = "1 good image" if cal.n_images == 1 else f"{cal.n_images} good images"
        warnings.warn(f"the threshold rests on the scores of {images} (fewer than "
                      f"{FEW_GOOD_SCORES}): anomalous starts at {start}, so expect many borderline verdicts; fit on "
                      "more good images", stacklevel=3)
