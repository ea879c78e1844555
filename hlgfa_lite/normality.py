"""A normality term beside the alignment map: how far each low-res feature lies from the good features' Gaussian.

**Beyond the paper** (its abstract names no such term; ``normality="none"`` is the abstract's method alone).
HLGFA's alignment map asks *do the two resolutions of this image agree here?* A defect that looks alike at both
resolutions — a smooth dark blob, a region of uneven brightness on a texture — can pass that test. This term asks the
complementary question, *does this feature look like the features of good images at all?*, with one Gaussian per level.

For one level with low-res features F_L at position u of the low grid, over all good training images:

    P(u)   = avgpool_kxk(F_L)(u)                         local aggregation (k = ``pool``, 3 by default): each
                                                         feature describes its neighbourhood, as PatchCore's patches
    mu     = E[P(u)]                                     the mean good feature
    Sigma  = Cov[P(u)] + eps I,  eps = max(shrinkage, C / n) * tr(Cov) / C
    n(u)   = sqrt( (P(u) - mu)^T Sigma^{-1} (P(u) - mu) )           Mahalanobis distance, the normality map

The ridge eps keeps Sigma invertible with few images: with n samples per Gaussian, a C x C covariance has rank < n, so
with n << C the ridge grows towards a scaled identity and n(u) tends to the distance to the mean feature, the
estimate that few images can support (for 10 training images and C = 112 the ridge is 11 mean variances; for 700,
0.16).

``mode="global"``: one (mu, Sigma) per level, pooled over every position — position-free, so it suits textures and
parts that are not aligned. ``mode="position"``: one (mu(u), Sigma(u)) per position u, as PaDiM (Defard et al., 2021)
— it suits aligned objects but needs more images (C(C+1)/2 numbers per position) and stores h*w*C^2 floats.

Fitting streams over the training features: count, sum and sum of outer products in float64, so memory does not grow
with the number of images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("none", "global", "position")

if TYPE_CHECKING:  # the type only: the config module needs nothing from here
    from .config import HLGFAConfig


class GaussianLevel(nn.Module):
    """mu and Sigma^{-1} of one level; ``positions`` = 1 (global) or h*w (per position)."""

    def __init__(self, channels: int, positions: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(positions, channels))
        self.register_buffer("precision", torch.eye(channels).repeat(positions, 1, 1))
        self._count, self._sum, self._outer = 0, None, None

    def accumulate(self, features: torch.Tensor) -> None:
        """Add good features (N, C, h, w) to the running sums."""
        positions = self.mean.shape[0]
        x = features.detach().double().flatten(2).permute(2, 0, 1)  # (h*w, N, C)
        if positions == 1:
            x = x.reshape(1, -1, x.shape[-1])  # every position is a sample: (1, N*h*w, C)
        elif x.shape[0] != positions:
            raise ValueError(f"per-position statistics need a fixed grid of {positions} positions, got {x.shape[0]}")
        if self._sum is None:
            self._sum, self._outer = x.sum(1), x.transpose(1, 2) @ x
        else:
            self._sum += x.sum(1)
            self._outer += x.transpose(1, 2) @ x
        self._count += x.shape[1]

    def finish(self, shrinkage: float) -> None:
        """mu = S_1 / n,  Cov = S_2 / n - mu mu^T,  then the ridge and the inverse."""
        mean = self._sum / self._count  # (P, C)
        cov = self._outer / self._count - mean[:, :, None] * mean[:, None, :]  # (P, C, C)
        channels = cov.shape[-1]
        strength = max(shrinkage, channels / self._count)  # _count: samples behind each Gaussian
        eye = torch.eye(channels, dtype=cov.dtype)
        ridge = strength * cov.diagonal(dim1=1, dim2=2).sum(-1) / channels + 1e-10  # (P,)
        precision = torch.linalg.inv(cov + ridge[:, None, None] * eye)
        self.mean.copy_(mean.float())
        self.precision.copy_(precision.float())
        self._count, self._sum, self._outer = 0, None, None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> Mahalanobis distance map (B, h, w)."""
        b, c, h, w = features.shape
        x = features.flatten(2).permute(2, 0, 1)  # (h*w, B, C)
        # global: broadcasts over positions; per position: one mean each. Contiguous, because the difference keeps
        # the permuted layout of x, on which the batched product runs ~10x slower (measured: 7 ms against 0.4 ms)
        z = (x - self.mean[:, None, :]).contiguous()
        squared = ((z @ self.precision) * z).sum(-1)  # (h*w, B)
        return squared.clamp_min(0).sqrt().permute(1, 0).reshape(b, h, w)


class GaussianNormality(nn.Module):
    """One Gaussian per backbone level; ``grids`` are the low-res (h, w) of each level."""

    def __init__(self, channels: list[int], grids: list[tuple[int, int]], mode: str, shrinkage: float,
                 pool: int = 3):
        super().__init__()
        if mode not in ("global", "position"):
            raise ValueError(f"normality mode must be 'global' or 'position', got {mode!r}")
        self.mode, self.shrinkage, self.pool = mode, shrinkage, pool
        self.levels = nn.ModuleList(
            GaussianLevel(c, 1 if mode == "global" else h * w) for c, (h, w) in zip(channels, grids))

    def aggregate(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> the same shape, each feature averaged with its pool x pool neighbours (edges: the mean of
        the neighbours that exist)."""
        if self.pool <= 1:
            return features
        return F.avg_pool2d(features, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)

    def accumulate(self, low: list[torch.Tensor]) -> None:
        for level, features in zip(self.levels, low):
            level.accumulate(self.aggregate(features))

    def finish(self) -> None:
        for level in self.levels:
            level.finish(self.shrinkage)

    def is_fitted(self) -> bool:
        """False until ``finish`` (or a checkpoint) has set the statistics: the means start at exactly zero."""
        return bool(self.levels[0].mean.any())

    def forward(self, low: list[torch.Tensor]) -> list[torch.Tensor]:
        """[(B, C_l, h_l, w_l)] -> [(B, h_l, w_l)]: one normality map per level; zeros while nothing is fitted (an
        untrained model, e.g. the training-free maps of lesson 01: the term then adds nothing)."""
        if not self.is_fitted():
            return [features.new_zeros(features.shape[0], *features.shape[-2:]) for features in low]
        return [level(self.aggregate(features)) for level, features in zip(self.levels, low)]


def normality_term(cfg: "HLGFAConfig", channels: list[int], strides: list[int]) -> GaussianNormality | None:
    """The normality term ``cfg`` asks for on a backbone's levels (``channels``, ``strides``), unfitted; None when
    ``cfg.normality`` is "none". The one place it is built: the model, and every cross-fit fold model."""
    if cfg.normality == "none":
        return None
    grids = [(cfg.lr_size // s, cfg.lr_size // s) for s in strides]
    return GaussianNormality(channels, grids, cfg.normality, cfg.normality_shrinkage, cfg.normality_pool)
