"""Two baselines on the same frozen features, data, scoring and metrics as HLGFA-lite, so only the method differs.

**PatchCore-style memory bank** (Roth et al., CVPR 2022), on the low-res view only (the grid HLGFA's maps use).
For the levels l of stride 8 and 16 (the "middle levels") of the frozen backbone phi:

    P_l    = avgpool_3x3(phi_l(x_L))                     local aggregation: each patch sees its 3x3 neighbours
    P      = [P_8 ; up(P_16)]                           stride-16 level upsampled to the stride-8 grid, (D, h, w)
    bank   = coreset({P(u) : u in all positions of all training images}),  a fraction of all patches
    a(u)   = min_{m in bank} || P(u) - m ||_2            distance to the nearest normal patch
    A      = G_s * up(a)                                 upsampled to lr_size, Gaussian-smoothed as HLGFA's map
    score  = max_u A(u)

The coreset is the greedy k-center selection ("farthest point first") of PatchCore, computed on a random
Gaussian projection z = P R, R in R^{D x k}, R_ij ~ N(0, 1/k) (k ~ 128; Johnson-Lindenstrauss: distances are
roughly kept):

    c_1 random;   c_{t+1} = argmax_i min_{s <= t} || z_i - z_{c_s} ||

Exactly that selection, computed fast (``greedy_coreset``): the naive loop reads all N projected patches once
per pick (N x m matrix-vector products; for the full bottle set N ~ 190 k, m ~ 19 k). Here the picks are made
in blocks among the M points currently farthest from the bank, while the best of them is farther than every
point outside the block (whose distances can only shrink); then all points are brought up to date against the
whole block at once with chunked ``torch.cdist`` (matrix-matrix products, many times faster on a CPU).

**Training-free cross-resolution score**: an HLGFA whose head stays at its identity initialisation, so per level
e_l = 1 - cos(F_L, avgpool_r(F_H)), normalised with held-out good images and fused exactly as HLGFA's maps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..backbone import FrozenBackbone, resize
from ..config import HLGFAConfig
from ..errors import HLGFAError
from ..model import HLGFA
from ..priors import low_pass
from ..calibration import CROSS_FIT_BELOW, CROSS_FIT_FOLDS, Calibration, calibrate, fold_splits
from ..scoring import image_scores
from ..training import as_float, calibrate_model, load_images, split_holdout

# a chunk of a distance matrix holds at most this many floats (16 MiB): memory stays flat whatever the bank size.
# Measured on a 2-core CPU: 2^22 is fastest for scoring (1 k queries x 19 k bank); for the coreset's update
# (190 k points x a few hundred new centres) chunks that fit in the L2 cache, 2^20, are fastest.
DISTANCE_CHUNK_ELEMENTS = 2**22
CORESET_CHUNK_ELEMENTS = 2**20


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor,
                       chunk_elements: int = DISTANCE_CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """queries (Q, D), bank (M, D) -> (distance (Q,), index (Q,)) of each query's nearest bank entry.

    ``torch.cdist`` on chunks of queries, so the (chunk, M) distance matrix never exceeds ``chunk_elements``."""
    if bank.shape[0] == 0:
        raise HLGFAError("the memory bank is empty; fit the baseline first.")
    rows = max(1, chunk_elements // bank.shape[0])
    distances, indices = [], []
    for start in range(0, queries.shape[0], rows):
        nearest = torch.cdist(queries[start:start + rows], bank).min(dim=1)
        distances.append(nearest.values)
        indices.append(nearest.indices)
    return torch.cat(distances), torch.cat(indices)


def random_projection(features: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(N, D) -> (N, dim) by a Gaussian matrix with entries N(0, 1/dim); unchanged when D <= dim."""
    if features.shape[1] <= dim:
        return features
    matrix = torch.randn(features.shape[1], dim, generator=generator) / math.sqrt(dim)
    return features @ matrix.to(features.device, features.dtype)


class _SingleThread:
    """The inner loop of the coreset runs thousands of tiny operations; on a CPU, one thread avoids the
    synchronisation cost that dominates them (the large matrix products outside keep every thread)."""

    def __init__(self, device: torch.device):
        self.active = device.type == "cpu"

    def __enter__(self):
        if self.active:
            self.threads = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.active:
            torch.set_num_threads(self.threads)


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, n_select: int, projection_dim: int = 128, seed: int = 0,
                   candidates: int = 1024) -> torch.Tensor:
    """Indices (m,) of a greedy k-center coreset of ``features`` (N, D), chosen on a random projection.

    Same picks as the naive loop ``c_{t+1} = argmax_i min_s ||z_i - z_{c_s}||`` (up to floating-point ties), but
    fast: picks are made inside a block of the ``candidates`` farthest points, whose distances are kept exact,
    as long as the best of them is farther than ``tau``, the largest distance outside the block (distances only
    shrink, so no outsider can have overtaken it). Then everyone's distance is updated against the whole block
    with one chunked ``cdist``. Stops early if every point already coincides with a bank entry.
    """
    n = features.shape[0]
    n_select = max(1, min(int(n_select), n))
    generator = torch.Generator().manual_seed(seed)
    z = random_projection(features.float(), projection_dim, generator)  # (N, k)
    squared = (z * z).sum(dim=1)  # (N,)
    selected = [int(torch.randint(n, (1,), generator=generator))]
    # (N,) distance of every point to its nearest selected point
    min_distance = nearest_neighbours(z, z[selected], CORESET_CHUNK_ELEMENTS)[0]
    while len(selected) < n_select:
        m = min(candidates, n)
        if m < n:
            top_values, top_index = min_distance.topk(m + 1)
            tau = top_values[m].item()  # every point outside the block is at most this far from the bank
            block, block_distance = top_index[:m], top_values[:m].clone()
        else:
            block, block_distance, tau = torch.arange(n, device=z.device), min_distance.clone(), -math.inf
        block_z, block_squared = z[block], squared[block]
        picks: list[int] = []
        with _SingleThread(z.device):
            while len(selected) + len(picks) < n_select:
                best = int(block_distance.argmax())
                farthest = block_distance[best].item()
                if farthest <= 0 or (picks and farthest <= tau):
                    break  # all covered, or an outsider may now be the farthest: refresh everyone
                picks.append(best)
                # ||a - b||^2 = |a|^2 - 2 a.b + |b|^2, as one matrix-vector product over the block
                to_pick = torch.addmv(block_squared, block_z, block_z[best], alpha=-2).add_(block_squared[best])
                block_distance = torch.minimum(block_distance, to_pick.clamp_(min=0).sqrt_())
        if not picks:
            break  # every point coincides with a bank entry: a larger coreset would only repeat points
        new = block[torch.tensor(picks, device=z.device)]
        selected.extend(new.tolist())
        min_distance = torch.minimum(min_distance, nearest_neighbours(z, z[new], CORESET_CHUNK_ELEMENTS)[0])
    return torch.tensor(selected, dtype=torch.long)


def _check_paths(paths) -> list[Path]:
    paths = list(paths)
    if len(paths) < 2:
        raise HLGFAError(f"got {len(paths)} good image(s); a baseline needs at least 2 (one is held out to calibrate).")
    return paths


def random_coreset(n: int, n_select: int, seed: int = 0) -> torch.Tensor:
    """Indices (m,) of a uniformly random subset, the cheap alternative (``coreset="random"``)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:max(1, min(int(n_select), n))].sort().values


@dataclass
class PatchCoreReport:
    n_train: int = 0
    n_holdout: int = 0
    n_patches: int = 0  # all training patches before the coreset
    bank_size: int = 0
    feature_seconds: float = 0.0
    coreset_seconds: float = 0.0
    cross_fit_scores: list[float] = field(default_factory=list)  # out-of-fold good scores (small sets only)
    calibration: Calibration | None = None


class PatchCoreBaseline(nn.Module):
    """A PatchCore-style memory bank on HLGFA's frozen backbone and low-res view; same calibration and API
    as HLGFA for scoring (``score_batch``, ``calibration``, ``threshold``, ``is_anomalous``)."""

    def __init__(self, cfg: HLGFAConfig, backbone: FrozenBackbone | None = None, coreset_fraction: float = 0.1,
                 coreset: str = "greedy", projection_dim: int = 128, patch_strides: tuple[int, ...] = (8, 16)):
        super().__init__()
        self.cfg = cfg.validate()
        if not 0 < coreset_fraction <= 1:
            raise HLGFAError(f"coreset_fraction must be in (0, 1], got {coreset_fraction}.")
        if coreset not in ("greedy", "random"):
            raise HLGFAError(f"unknown coreset {coreset!r}; choose 'greedy' or 'random'.")
        self.backbone = backbone if backbone is not None else FrozenBackbone(cfg.backbone, cfg.out_indices,
                                                                                   runtime=cfg.backbone_runtime)
        missing = sorted(set(patch_strides) - set(self.backbone.strides))
        if missing:
            raise HLGFAError(f"the backbone levels have strides {self.backbone.strides}, not {missing}; "
                             f"choose out_indices that include strides {list(patch_strides)}.")
        self.levels = [self.backbone.strides.index(s) for s in sorted(patch_strides)]  # finest first
        self.coreset_fraction, self.coreset, self.projection_dim = coreset_fraction, coreset, projection_dim
        self.feature_dim = sum(self.backbone.channels[i] for i in self.levels)
        self.register_buffer("bank", torch.empty(0, self.feature_dim))  # (M, D)
        self.calibration: Calibration | None = None

    @property
    def device(self) -> torch.device:
        return self.bank.device

    @property
    def memory_bank_bytes(self) -> int:
        return self.bank.numel() * self.bank.element_size()

    def trainable_parameters(self) -> int:
        return 0

    # HLGFA's verdicts only read ``self.calibration``: the same code, so the same rule
    calibrated = HLGFA.calibrated
    verdict = HLGFA.verdict
    threshold = HLGFA.threshold
    is_anomalous = HLGFA.is_anomalous

    def low_view(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, lr, lr), made from the high-res view exactly as HLGFA makes its low view."""
        return resize(resize(images, self.cfg.hr_size), self.cfg.lr_size)

    @torch.no_grad()
    def patch_features(self, low_images: torch.Tensor) -> torch.Tensor:
        """(B, 3, lr, lr) -> P (B, D, h, w) on the grid of the finest chosen level (stride 8: lr / 8)."""
        features = self.backbone(low_images)
        aggregated = [F.avg_pool2d(features[i], 3, stride=1, padding=1, count_include_pad=False)
                      for i in self.levels]
        grid = aggregated[0].shape[-2:]
        return torch.cat([F.interpolate(p, size=grid, mode="bilinear", align_corners=False) if p.shape[-2:] != grid
                          else p for p in aggregated], dim=1)

    @torch.no_grad()
    def score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> maps (B, lr, lr) and scores (B,) = max of each map."""
        patches = self.patch_features(self.low_view(images.to(self.device)))  # (B, D, h, w)
        b, d, h, w = patches.shape
        distance = nearest_neighbours(patches.permute(0, 2, 3, 1).reshape(-1, d), self.bank)[0]  # (B h w,)
        size = self.cfg.lr_size
        maps = F.interpolate(distance.view(b, 1, h, w), size=(size, size), mode="bilinear", align_corners=False)
        maps = low_pass(maps, self.cfg.smooth_sigma).squeeze(1)  # (B, lr, lr)
        return maps, image_scores(maps, 0)

    @torch.no_grad()
    def fit(self, paths: list[Path], progress: bool = False, batch_size: int = 1) -> PatchCoreReport:
        """Memory bank from the good images at ``paths`` (minus HLGFA's held-out split), then calibration on the
        held-out images with HLGFA's rule (``calibration.calibrate``), plus, when fewer than ``CROSS_FIT_BELOW``
        are held out, out-of-fold scores of the training images (as HLGFA's ``fit``)."""
        cfg = self.cfg
        train_paths, holdout_paths = split_holdout(_check_paths(paths), cfg.holdout_fraction, cfg.seed)
        report = PatchCoreReport(n_train=len(train_paths), n_holdout=len(holdout_paths))
        started = time.perf_counter()
        chunks = []
        for start in tqdm(range(0, len(train_paths), batch_size), desc="memory bank", disable=not progress,
                          leave=False):
            # uint8 high-res images as HLGFA's training reads them, then the same low view
            high = as_float(load_images(train_paths[start:start + batch_size], cfg.hr_size)).to(self.device)
            patches = self.patch_features(resize(high, cfg.lr_size))  # (b, D, h, w)
            chunks.append(patches.permute(0, 2, 3, 1).reshape(-1, self.feature_dim))
        all_patches = torch.cat(chunks)  # (N h w, D)
        report.n_patches = all_patches.shape[0]
        report.feature_seconds = time.perf_counter() - started
        started = time.perf_counter()
        self.bank = self._bank_of(all_patches)
        report.bank_size = self.bank.shape[0]
        report.coreset_seconds = time.perf_counter() - started
        holdout = load_images(holdout_paths, cfg.hr_size)
        maps, scores = self._score_all(holdout, batch_size)
        if len(holdout_paths) < CROSS_FIT_BELOW:  # as HLGFA's fit: one or two held-out scores make no threshold
            report.cross_fit_scores = self._cross_fit_scores(all_patches, train_paths, batch_size)
        self.calibration = calibrate(torch.cat([scores, torch.tensor(report.cross_fit_scores)]), maps)
        report.calibration = self.calibration
        return report

    def _bank_of(self, patches: torch.Tensor) -> torch.Tensor:
        n_select = max(1, round(self.coreset_fraction * len(patches)))
        if self.coreset == "greedy":
            chosen = greedy_coreset(patches, n_select, self.projection_dim, seed=self.cfg.seed)
        else:
            chosen = random_coreset(len(patches), n_select, seed=self.cfg.seed)
        return patches[chosen.to(patches.device)].contiguous()

    def _score_all(self, hr_images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        maps, scores = zip(*(self.score_batch(as_float(hr_images[i:i + batch_size]))
                             for i in range(0, len(hr_images), batch_size)))
        return torch.cat(maps).cpu(), torch.cat(scores).cpu()

    def _cross_fit_scores(self, all_patches: torch.Tensor, train_paths: list[Path], batch_size: int) -> list[float]:
        """Out-of-fold scores of the training images: for each of ``CROSS_FIT_FOLDS`` folds, a bank from the other
        images' patches (the same coreset rule) scores the fold's images, which it never saw."""
        n = len(train_paths)
        per_image = all_patches.view(n, -1, all_patches.shape[1])  # (n, h w, D): patches in image order
        final_bank, scores = self.bank, []
        try:
            for held, kept in fold_splits(n, CROSS_FIT_FOLDS, self.cfg.seed):
                self.bank = self._bank_of(per_image[kept.to(per_image.device)].reshape(-1, per_image.shape[2]))
                images = load_images([train_paths[i] for i in held.tolist()], self.cfg.hr_size)
                scores += self._score_all(images, batch_size)[1].tolist()
        finally:
            self.bank = final_bank
        return scores


def training_free(cfg: HLGFAConfig, paths: list[Path], pretrained: bool = True, weights: str | None = None,
                  device: str | torch.device = "cpu") -> HLGFA:
    """An HLGFA with its head left at the identity initialisation, calibrated on held-out good images.

    Its ``inspect(...).level_maps`` are exactly e_l = 1 - cos(F_L, avgpool_r(F_H)) and its maps are normalised
    and fused with the same per-level statistics rule as a trained HLGFA; nothing is learnt (so no normality term
    either: its Gaussians would have to be fitted)."""
    cfg = cfg.replace(normality="none")
    _, holdout_paths = split_holdout(_check_paths(paths), cfg.holdout_fraction, cfg.seed)
    model = HLGFA(cfg, pretrained=pretrained, weights=weights).to(device).eval()
    calibrate_model(model, load_images(holdout_paths, cfg.hr_size))
    return model
