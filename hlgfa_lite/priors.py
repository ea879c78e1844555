"""Structure and detail priors: a low-pass / high-pass split of the high-resolution features.

For one level, with ``G_sigma`` a Gaussian blur over the spatial axes (per channel):

    S = G_sigma * F_H          structure prior: the smooth layout of the part
    D = F_H - S                detail prior: edges, texture, fine marks
    S + D = F_H                exactly, by construction (nothing is lost, nothing is invented)

Both priors live on the high-res grid (r times finer than the low-res one, r = hr_size / lr_size).
The head works on the low-res grid, so each is brought there without throwing detail away:

    S_low = avgpool_r(S)                 (B, C,     h, w)   smooth, so pooling loses little
    D_low = pixel_unshuffle_r(D)         (B, C r^2, h, w)   every high-res detail value kept, stacked in channels
    T     = avgpool_r(F_H)               (B, C,     h, w)   the alignment target

The head then projects each prior with a 1x1 convolution to ``prior_width`` * C channels. The default, 1, keeps
every channel; below 1 the projection is a bottleneck that limits how much of the scored image itself could be
copied through the priors (lesson 02 measures the dimensions a copy needs; lesson 03 measures leakage).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, size: int) -> torch.Tensor:
    """k(x) = exp(-x^2 / (2 sigma^2)) / Z on x = -(size // 2) .. size // 2, summing to 1."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def low_pass(features: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-channel Gaussian blur (reflect padding) of (B, C, H, W) features; kernel covers +-3 sigma.

    The 2-D Gaussian is separable, G = g g^T, so it runs as a vertical then a horizontal 1-D convolution:
    2k instead of k^2 multiply-adds per value (the same result as torchvision's ``gaussian_blur``, several
    times faster for the k = 13-25 used here)."""
    if sigma <= 0:
        return features
    size = 2 * int(round(3 * sigma)) + 1
    # a kernel wider than the map cannot be reflect-padded; clip it to the largest odd size that fits
    size = min(size, 2 * (min(features.shape[-2:]) - 1) - 1)
    channels, pad = features.shape[1], size // 2
    kernel = gaussian_kernel1d(sigma, size).to(features.device, features.dtype)
    # depthwise convolutions on channels-last tensors: measured 5x faster on a CPU than on plain NCHW ones; the
    # padding keeps the input's layout (reflecting a plain image is quicker before the layout changes than after)
    x = F.pad(features, [pad, pad, pad, pad], mode="reflect").contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)  # along H
    return F.conv2d(x, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)  # along W


def split(high: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """F_H (B, C, H, W) -> (S, D), both (B, C, H, W), with S + D = F_H."""
    structure = low_pass(high, sigma)
    return structure, high - structure


@dataclass
class Priors:
    """Everything the head needs from one level of the high-res features, on the low-res grid."""

    structure: torch.Tensor  # (B, C, h, w)
    detail: torch.Tensor  # (B, C r^2, h, w)
    target: torch.Tensor  # (B, C, h, w)

    def apply(self, fn) -> "Priors":
        """The same priors with ``fn`` applied to each tensor (index, move, cast)."""
        return Priors(fn(self.structure), fn(self.detail), fn(self.target))

    @staticmethod
    def stack(parts: list["Priors"]) -> "Priors":
        """Stack along a new axis 1: K draws of (B, ...) -> (B, K, ...)."""
        return Priors(*(torch.stack([getattr(p, name) for p in parts], dim=1)
                        for name in ("structure", "detail", "target")))


def priors_on_low_grid(high: torch.Tensor, sigma: float, ratio: int) -> Priors:
    """F_H (B, C, rh, rw) -> Priors on the (h, w) grid of the low-res features."""
    structure, detail = split(high, sigma)
    return Priors(
        structure=F.avg_pool2d(structure, ratio),
        detail=F.pixel_unshuffle(detail, ratio),
        target=F.avg_pool2d(high, ratio),
    )
