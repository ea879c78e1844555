"""Fitting the alignment head on good images, then calibrating on held-out good images.

1. Split the good images: ``holdout_fraction`` of them (at least one) are kept aside for calibration.
2. Cache features once. The backbone is frozen, so the features of a fixed input never change: each training
   image is pre-drawn ``1 + aug_copies`` times (clean + noise-augmented) and the features of every draw cached.
   With ``aug_views="both"`` a draw changes the image before both views are made (priors and target follow the
   nuisance); with ``"low"`` only the low-res view changes and the clean high-res priors are cached once.
   The cache is bounded by ``max_cache_gib`` (``plan_cache``, announced before any work): over it, fewer
   augmented draws are cached (down to one per image); if even that does not fit, the features of each batch are
   computed when it is drawn (``OnTheFlyFeatures``: a fresh nuisance per view, nothing cached; right for a GPU).
3. Train for a fixed number of steps (not epochs: a 20-image set needs as many updates as a 200-image one):
   AdamW, cosine learning-rate decay, loss = sum over levels of mean(1 - cos(F_hat, T)).
4. Calibrate: per-level mean/std of the misalignment on held-out images, then their fused maps and scores
   give the image threshold and the colour scale (``calibration.calibrate``). With fewer than
   ``CROSS_FIT_BELOW`` held-out images, k-fold heads trained on the cached features of the other training images
   score each fold too (``cross_fit_scores``), so the threshold rests on every image, not on one or two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .alignment import AlignmentHead, alignment_loss
from .augmentation import NoiseAugment
from .backbone import resize
from .calibration import CROSS_FIT_BELOW, DEFAULT_CONFIDENCE, DEFAULT_TARGET_FPR, Calibration, calibrate
from .data import load_image
from .model import HLGFA
from .normality import GaussianNormality
from .priors import Priors
from .scoring import image_scores

CROSS_FIT_FOLDS = 3  # heads trained for the cross-fitted calibration scores (each without a third of the images)


DEFAULT_MAX_CACHE_GIB = 4.0  # host memory the feature cache may take by default (a Colab runtime has ~12 GiB)


@dataclass
class FitReport:
    losses: list[float] = field(default_factory=list)  # one per step
    n_train: int = 0
    n_holdout: int = 0
    cache_seconds: float = 0.0  # feature extraction
    train_seconds: float = 0.0  # head optimisation
    cross_fit_seconds: float = 0.0  # k-fold heads for the calibration (small sets only)
    calibration: Calibration | None = None
    holdout_scores: list[float] = field(default_factory=list)  # good scores of the held-out images
    cross_fit_scores: list[float] = field(default_factory=list)  # out-of-fold good scores of the training images
    cache_plan: "CachePlan | None" = None  # how the features were held (cached draws, or on the fly)


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """Images resized to (size, size), stored as uint8 (N, 3, size, size) to keep memory small."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        out[i] = (resize(load_image(path)[None], size)[0] * 255).round().to(torch.uint8)
    return out


def as_float(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float() / 255


@dataclass
class FeatureCache:
    """Frozen features of the training images, float16 on the CPU: computed once, read every step.

    K draws per image (clean + augmented); the priors have K draws too when the nuisance reached both views,
    else one (clean) draw shared by all K low-res draws."""

    priors: list[Priors]  # per level; structure (N, Kp, C, h, w), detail (N, Kp, C r^2, h, w), target (N, Kp, C, h, w)
    low: list[torch.Tensor]  # per level (N, K, C, h, w): K low-res draws

    @property
    def n_images(self) -> int:
        return self.low[0].shape[0]

    @property
    def draws(self) -> int:
        return self.low[0].shape[1]

    def clean_low(self, rows: slice, device) -> list[torch.Tensor]:
        """The clean draw's low-res features of images ``rows``, float32 per level (b, C, h, w) on ``device``."""
        return [level[rows, 0].to(device).float() for level in self.low]

    def batch(self, images: torch.Tensor, views: torch.Tensor, device) -> tuple[list[torch.Tensor], list[Priors]]:
        """Draw ``views[i]`` of image ``images[i]``, as float32 (B, C, h, w) tensors on ``device``."""

        def read(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return t[images, index].to(device).float()

        prior_views = views % self.priors[0].target.shape[1]  # Kp = 1: always the clean draw
        return [read(cache, views) for cache in self.low], [p.apply(lambda t: read(t, prior_views)) for p in self.priors]

    def subset(self, rows: torch.Tensor) -> "FeatureCache":
        """The cache of the images ``rows`` only (a copy)."""
        return FeatureCache([p.apply(lambda t: t[rows]) for p in self.priors], [t[rows] for t in self.low])


@dataclass
class OnTheFlyFeatures:
    """What the cache would hold, computed for each batch when it is drawn (the cache would not fit in memory).

    View 0 is the clean image; any other view is a fresh nuisance draw, so K = ``draws`` keeps the cache's mix of
    clean and augmented views. Holds only the uint8 images: memory does not grow with the backbone's width."""

    model: HLGFA
    hr_images: torch.Tensor  # uint8 (N, 3, hr, hr)
    draws: int  # K: views are sampled from 0..K-1 as from a cache of K draws
    augment: NoiseAugment | None

    @property
    def n_images(self) -> int:
        return len(self.hr_images)

    @torch.no_grad()
    def batch(self, images: torch.Tensor, views: torch.Tensor, device) -> tuple[list[torch.Tensor], list[Priors]]:
        cfg, model = self.model.cfg, self.model
        high = as_float(self.hr_images[images]).to(model.device)  # (B, 3, hr, hr)
        low = resize(high, cfg.lr_size)  # (B, 3, lr, lr)
        noisy = (views > 0).tolist()
        if self.augment is not None and any(noisy):
            both = cfg.aug_views == "both"
            for i in [i for i, flag in enumerate(noisy) if flag]:
                if both:  # the nuisance first, then both views from the changed image
                    high[i] = self.augment(high[i].cpu()).to(model.device)
                    low[i] = resize(high[i:i + 1], cfg.lr_size)[0]
                else:
                    low[i] = self.augment(low[i].cpu()).to(model.device)
        priors = model.priors(model.backbone(high))
        return [f.to(device).float() for f in model.backbone(low)], [p.apply(lambda t: t.to(device).float())
                                                                        for p in priors]

    @torch.no_grad()
    def clean_low(self, rows: slice, device) -> list[torch.Tensor]:
        clean = as_float(self.hr_images[rows]).to(self.model.device)
        return [f.to(device).float() for f in self.model.backbone(resize(clean, self.model.cfg.lr_size))]

    def subset(self, rows: torch.Tensor) -> "OnTheFlyFeatures":
        return OnTheFlyFeatures(self.model, self.hr_images[rows], self.draws, self.augment)


@dataclass
class CachePlan:
    """How ``fit`` holds the frozen features, decided before any work from the sizes of one draw."""

    n_images: int
    draws_wanted: int  # 1 + aug_copies (1 without augmentation)
    draws: int  # draws cached per image; 0 = computed on the fly
    bytes_per_image: dict[int, int]  # K -> bytes of K cached draws of one image
    budget_bytes: int
    image_bytes: int  # the uint8 training images, held during caching (and training, on the fly)

    def cache_bytes(self, draws: int | None = None) -> int:
        draws = self.draws if draws is None else draws
        return self.n_images * self.bytes_per_image[draws] if draws else 0

    def describe(self) -> str:
        gib = 2 ** 30
        wanted = self.cache_bytes(self.draws_wanted) / gib
        budget = f"the {self.budget_bytes / gib:.1f} GiB budget (--max-cache-gib)"
        images = f"plus {self.image_bytes / gib:.2f} GiB of images"
        if self.draws == self.draws_wanted:
            return (f"feature cache: {self.n_images} images x {self.draws} draws = {wanted:.2f} GiB in memory "
                    f"(within {budget}), {images}")
        if self.draws:
            return (f"feature cache: {self.draws_wanted} draws per image would take {wanted:.2f} GiB, over {budget}: "
                    f"caching {self.draws} draws per image ({self.cache_bytes() / gib:.2f} GiB) instead, {images}")
        return (f"feature cache: {self.draws_wanted} draws per image would take {wanted:.2f} GiB, over {budget} "
                f"even with fewer draws: features are computed on the fly at each step instead (nothing cached; "
                f"slow on a CPU, fine on a GPU), {images}")


@torch.no_grad()
def draw_bytes(model: HLGFA) -> tuple[int, int]:
    """Bytes of one cached draw of one image, in float16: (low-res features, high-res priors), from the shapes a
    blank image produces."""
    cfg = model.cfg
    blank = torch.zeros(1, 3, cfg.hr_size, cfg.hr_size, device=model.device)
    priors = model.priors(model.backbone(blank))
    low = model.backbone(resize(blank, cfg.lr_size))
    prior_values = sum(t.numel() for p in priors for t in (p.structure, p.detail, p.target))
    return 2 * sum(f.numel() for f in low), 2 * prior_values


def plan_cache(model: HLGFA, n_images: int, max_cache_gib: float = DEFAULT_MAX_CACHE_GIB) -> CachePlan:
    """The most draws per image (1 + aug_copies, then fewer, down to one augmented draw) whose cache fits within
    ``max_cache_gib``; 0 (on the fly) when none does."""
    cfg = model.cfg
    wanted = 1 + (cfg.aug_copies if cfg.noise_aug else 0)
    both = cfg.noise_aug and cfg.aug_views == "both"
    low, prior = draw_bytes(model)
    per_image = {k: k * low + (k if both else 1) * prior for k in range(1, wanted + 1)}
    budget = int(max_cache_gib * 2 ** 30)
    fitting = [k for k in range(wanted, min(wanted, 2) - 1, -1) if n_images * per_image[k] <= budget]
    return CachePlan(n_images, wanted, fitting[0] if fitting else 0, per_image, budget,
                     n_images * 3 * cfg.hr_size ** 2)


@torch.no_grad()
def cache_features(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1, progress: bool = True,
                   draws: int | None = None) -> FeatureCache:
    """hr_images uint8 (N, 3, hr, hr) -> the priors of F_H and the features F_L of ``draws`` draws per image
    (default 1 + aug_copies: the clean image and its augmented copies).

    One image at a time by default: on a CPU, 512 px batches of 8 measured slower per image than single images."""
    cfg = model.cfg
    augment = NoiseAugment(cfg) if cfg.noise_aug else None
    copies = draws or 1 + (cfg.aug_copies if augment else 0)
    both = augment is not None and cfg.aug_views == "both"

    cache: FeatureCache | None = None
    for start in tqdm(range(0, len(hr_images), batch_size), desc="caching features", disable=not progress,
                      leave=False):
        clean = as_float(hr_images[start:start + batch_size]).to(model.device)  # (b, 3, hr, hr)
        high_views, low_views = [clean], [resize(clean, cfg.lr_size)]
        for _ in range(copies - 1):
            if both:  # the nuisance first, then both views from the changed image
                noisy = torch.stack([augment(img) for img in clean.cpu()]).to(model.device)
                high_views.append(noisy)
                low_views.append(resize(noisy, cfg.lr_size))
            else:  # the low view only; the clean high view is shared
                low_views.append(torch.stack([augment(img) for img in low_views[0].cpu()]).to(model.device))
        high_priors = [model.priors(model.backbone(view)) for view in high_views]  # [draw][level]
        priors = [Priors.stack(list(level)) for level in zip(*high_priors)]  # [level] (b, Kp, ...)
        lows = [torch.stack(level, dim=1) for level in zip(*(model.backbone(v) for v in low_views))]  # (b, K, ...)
        if cache is None:  # the first chunk tells every shape: allocate the whole cache once, then fill it in place
            # (collecting chunks and concatenating them would hold the cache twice at the end)

            def allocate(t: torch.Tensor) -> torch.Tensor:
                return torch.empty((len(hr_images), *t.shape[1:]), dtype=torch.float16)

            cache = FeatureCache(priors=[p.apply(allocate) for p in priors], low=[allocate(t) for t in lows])
        rows = slice(start, start + len(clean))
        for stored, new in zip(cache.priors, priors):
            stored.structure[rows], stored.detail[rows], stored.target[rows] = new.structure, new.detail, new.target
        for stored, new in zip(cache.low, lows):
            stored[rows] = new
    return cache


def train_head(model: HLGFA, cache: FeatureCache, steps: int, progress: bool = True,
               on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Optimise the head on cached features for a fixed number of steps; returns the loss of each step."""
    cfg = model.cfg
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_images, copies = cache.n_images, cache.draws
    optimiser = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    model.head.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="training head", disable=not progress)
    started = time.perf_counter()
    for step in bar:
        images = torch.randint(n_images, (cfg.batch_size,), generator=generator)
        views = torch.randint(copies, (cfg.batch_size,), generator=generator)
        low, priors = cache.batch(images, views, model.device)
        loss = alignment_loss(model.head(low, priors), priors)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
        if step % 10 == 0 or step == steps - 1:
            rate = (step + 1) * cfg.batch_size / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", img_per_s=f"{rate:.0f}")
    model.head.eval()
    return losses


@torch.no_grad()
def fit_normality(model: HLGFA, cache: FeatureCache | OnTheFlyFeatures, chunk: int = 32) -> None:
    """The normality term's Gaussians from the training features: the clean draw (index 0) of every image, or
    with ``normality_draws="all"`` every cached draw (clean and augmented; features on the fly give the clean one)."""
    if model.normality is None:
        return
    every = model.cfg.normality_draws == "all" and isinstance(cache, FeatureCache)
    for start in range(0, cache.n_images, chunk):
        rows = slice(start, start + chunk)
        if every:  # (chunk * draws, C, h, w) per level
            model.normality.accumulate([level[rows].flatten(0, 1).to(model.device).float() for level in cache.low])
        else:
            model.normality.accumulate(cache.clean_low(rows, model.device))
    model.normality.finish()


@torch.no_grad()
def good_level_maps(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1) -> list[torch.Tensor]:
    """Raw maps [(N, h, w)] of uint8 images (misalignment per level, then any normality maps), through the
    model's own ``inspect``; their fusion there used the old statistics and is recomputed by the caller."""
    maps = [model.inspect(as_float(hr_images[i:i + batch_size])).all_maps
            for i in range(0, len(hr_images), batch_size)]
    return [torch.cat(level) for level in zip(*maps)]


@torch.no_grad()
def set_level_statistics(model: HLGFA, hr_images: torch.Tensor,
                         batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map mean/std of the raw maps on held-out good images (uint8, N >= 1), set on the model;
    returns their scores (N,) and fused maps (N, lr, lr) under those statistics."""
    per_level = good_level_maps(model, hr_images, batch_size)  # [(N, h, w)]
    model.level_mean.copy_(torch.stack([m.mean() for m in per_level]))
    model.level_std.copy_(torch.stack([m.std().clamp_min(1e-6) for m in per_level]))
    fused = model.fuse(per_level)  # (N, lr, lr)
    return image_scores(fused, model.cfg.score_topk).cpu(), fused.cpu()


def calibrate_model(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1, extra_scores=(),
                    target_fpr: float = DEFAULT_TARGET_FPR, confidence: float = DEFAULT_CONFIDENCE) -> Calibration:
    """Set the per-level statistics and the calibration from held-out good images (uint8, N >= 1);
    ``extra_scores``: more good scores on the same scale (cross-fitted), pooled for the image threshold."""
    scores, fused = set_level_statistics(model, hr_images, batch_size)
    pooled = torch.cat([scores, torch.as_tensor(list(extra_scores), dtype=scores.dtype)])
    model.calibration = calibrate(pooled, fused, target_fpr=target_fpr, confidence=confidence)
    return model.calibration


@torch.no_grad()
def _scores_of(model: HLGFA, hr_images: torch.Tensor) -> list[float]:
    return [model.inspect(as_float(hr_images[i:i + 1])).scores.item() for i in range(len(hr_images))]


def cross_fit_scores(model: HLGFA, cache: FeatureCache, hr_images: torch.Tensor, folds: int = CROSS_FIT_FOLDS,
                     steps: int | None = None, on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Out-of-fold good scores of the training images (uint8 (N, 3, hr, hr), their features in ``cache``).

    The images are split into ``folds`` groups; for each, a fresh head is trained for ``steps`` (default: the
    config's divided by ``folds``, so all folds together cost one more training) on the cached features of the
    others, then scores that group with the *final* model's per-level statistics, so every score is on the final
    model's scale from a head that never saw the image. The model's own head is put back afterwards.
    ``on_step(i, loss)`` counts the steps of all folds (0, 1, ...)."""
    n = len(hr_images)
    folds = min(folds, n)
    if folds < 2:
        return []
    final_head, final_normality = model.head, model.normality
    order = torch.randperm(n, generator=torch.Generator().manual_seed(model.cfg.seed + 1))
    scores: list[float] = []
    try:
        for fold in range(folds):
            held = order[fold::folds].sort().values
            kept = torch.tensor([i for i in range(n) if i not in set(held.tolist())])
            torch.manual_seed(model.cfg.seed + 100 + fold)
            model.head = AlignmentHead(model.backbone.channels, model.cfg).to(model.device)
            if final_normality is not None:  # the normality term must not have seen the fold either
                cfg = model.cfg
                grids = [(cfg.lr_size // s, cfg.lr_size // s) for s in model.backbone.strides]
                model.normality = GaussianNormality(model.backbone.channels, grids, cfg.normality,
                                                    cfg.normality_shrinkage, cfg.normality_pool).to(model.device)
                fit_normality(model, cache.subset(kept))
            fold_steps = steps if steps is not None else max(1, model.cfg.steps // folds)
            offset = fold * fold_steps
            train_head(model, cache.subset(kept), fold_steps, progress=False,
                       on_step=(lambda i, loss, o=offset: on_step(o + i, loss)) if on_step else None)
            scores += _scores_of(model, hr_images[held])
    finally:
        model.head, model.normality = final_head, final_normality
    return scores


def split_holdout(paths: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(train, holdout), a seeded shuffle; at least one image on each side."""
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    n_holdout = min(len(paths) - 1, max(1, round(fraction * len(paths))))
    return [paths[i] for i in sorted(order[n_holdout:])], [paths[i] for i in sorted(order[:n_holdout])]


def planned_steps(cfg, n_images: int, cross_fit: bool | None = None, cross_fit_steps: int | None = None) -> int:
    """Optimiser steps ``fit`` will take on ``n_images`` good images, the cross-fitted heads included: ``fit``'s
    ``on_step`` counts up to this (for progress bars)."""
    n_holdout = min(n_images - 1, max(1, round(cfg.holdout_fraction * n_images)))
    folds = min(CROSS_FIT_FOLDS, n_images - n_holdout)
    crossing = cross_fit if cross_fit is not None else n_holdout < CROSS_FIT_BELOW
    if not crossing or folds < 2:
        return cfg.steps
    return cfg.steps + folds * (cross_fit_steps or max(1, cfg.steps // folds))


def fit(model: HLGFA, paths: list[Path], progress: bool = True,
        on_step: Callable[[int, float], None] | None = None, target_fpr: float = DEFAULT_TARGET_FPR,
        confidence: float = DEFAULT_CONFIDENCE, cross_fit: bool | None = None,
        cross_fit_steps: int | None = None, max_cache_gib: float = DEFAULT_MAX_CACHE_GIB,
        say: Callable[[str], None] | None = print) -> FitReport:
    """Fit ``model``'s head on good images at ``paths`` and calibrate it; returns what happened.

    ``cross_fit`` (default: when fewer than ``CROSS_FIT_BELOW`` images are held out) adds out-of-fold scores of
    the training images to the calibration: ``CROSS_FIT_FOLDS`` more heads trained on the cached features for
    ``cross_fit_steps`` each (default: a third of the config's steps). ``on_step`` counts every step
    (``planned_steps`` in all); an exception raised by it (e.g. a cancelled demo fit) stops the fit between steps.
    ``say`` (None: silent) hears, before any work, how the features will be held within ``max_cache_gib``."""
    cfg = model.cfg
    train_paths, holdout_paths = split_holdout(list(paths), cfg.holdout_fraction, cfg.seed)
    report = FitReport(n_train=len(train_paths), n_holdout=len(holdout_paths))
    report.cache_plan = plan = plan_cache(model, len(train_paths), max_cache_gib)
    if say:
        say(plan.describe())
    started = time.perf_counter()
    train_images = load_images(train_paths, cfg.hr_size)
    if plan.draws:
        cache = cache_features(model, train_images, progress=progress, draws=plan.draws)
    else:
        cache = OnTheFlyFeatures(model, train_images, plan.draws_wanted, NoiseAugment(cfg) if cfg.noise_aug else None)
    fit_normality(model, cache)
    report.cache_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report.losses = train_head(model, cache, cfg.steps, progress=progress, on_step=on_step)
    report.train_seconds = time.perf_counter() - started
    scores, fused = set_level_statistics(model, load_images(holdout_paths, cfg.hr_size))
    report.holdout_scores = scores.tolist()
    if cross_fit if cross_fit is not None else len(holdout_paths) < CROSS_FIT_BELOW:
        started = time.perf_counter()  # after the statistics: cross-fitted scores are on the final scale
        report.cross_fit_scores = cross_fit_scores(
            model, cache, train_images, steps=cross_fit_steps,
            on_step=(lambda i, loss: on_step(cfg.steps + i, loss)) if on_step else None)
        report.cross_fit_seconds = time.perf_counter() - started
    model.calibration = calibrate(report.holdout_scores + report.cross_fit_scores, fused, target_fpr=target_fpr,
                                  confidence=confidence)
    report.calibration = model.calibration
    return report
