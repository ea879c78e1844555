"""A normality term beside the alignment map: how far each low-res feature lies from the good features' Gaussian.

**Beyond the paper** (its abstract names no such term; ``normality="none"`` is the abstract's method alone).
HLGFA's alignment map asks *do the two resolutions of this image agree here?* A defect that looks alike at both
resolutions — a smooth dark blob, a region of uneven brightness on a texture — can pass that test. This term asks the
complementary question, *does this feature look like the features of good images at all?*, with one Gaussian per level.

For one level with low-res features F_L(u) in R^C at position u of the low grid, over all good training images:

    mu     = E[F_L(u)]                                   the mean good feature
    Sigma  = Cov[F_L(u)] + eps I,  eps = shrinkage * tr(Cov) / C     (ridge: invertible with few images)
    n(u)   = sqrt( (F_L(u) - mu)^T Sigma^{-1} (F_L(u) - mu) )       Mahalanobis distance, the normality map

``mode="global"``: one (mu, Sigma) per level, pooled over every position — position-free, so it suits textures and
parts that are not aligned. ``mode="position"``: one (mu(u), Sigma(u)) per position u, as PaDiM (Defard et al., 2021)
— it suits aligned objects but needs more images (C(C+1)/2 numbers per position) and stores h*w*C^2 floats.

Fitting streams over the training features: count, sum and sum of outer products in float64, so memory does not grow
with the number of images.
"""

from __future__ import annotations

import torch
from torch import nn

MODES = ("none", "global", "position")


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
        eye = torch.eye(channels, dtype=cov.dtype)
        ridge = shrinkage * cov.diagonal(dim1=1, dim2=2).sum(-1) / channels + 1e-10  # (P,)
        precision = torch.linalg.inv(cov + ridge[:, None, None] * eye)
        self.mean.copy_(mean.float())
        self.precision.copy_(precision.float())
        self._count, self._sum, self._outer = 0, None, None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> Mahalanobis distance map (B, h, w)."""
        b, c, h, w = features.shape
        x = features.flatten(2).permute(2, 0, 1)  # (h*w, B, C)
        z = x - self.mean[:, None, :]  # global: broadcasts over positions; per position: one mean each
        squared = ((z @ self.precision) * z).sum(-1)  # (h*w, B)
        return squared.clamp_min(0).sqrt().permute(1, 0).reshape(b, h, w)


class GaussianNormality(nn.Module):
    """One Gaussian per backbone level; ``grids`` are the low-res (h, w) of each level."""

    def __init__(self, channels: list[int], grids: list[tuple[int, int]], mode: str, shrinkage: float):
        super().__init__()
        if mode not in ("global", "position"):
            raise ValueError(f"normality mode must be 'global' or 'position', got {mode!r}")
        self.mode, self.shrinkage = mode, shrinkage
        self.levels = nn.ModuleList(
            GaussianLevel(c, 1 if mode == "global" else h * w) for c, (h, w) in zip(channels, grids))

    def accumulate(self, low: list[torch.Tensor]) -> None:
        for level, features in zip(self.levels, low):
            level.accumulate(features)

    def finish(self) -> None:
        for level in self.levels:
            level.finish(self.shrinkage)

    def forward(self, low: list[torch.Tensor]) -> list[torch.Tensor]:
        """[(B, C_l, h_l, w_l)] -> [(B, h_l, w_l)]: one normality map per level."""
        return [level(features) for level, features in zip(self.levels, low)]
