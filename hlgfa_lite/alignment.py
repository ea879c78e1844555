"""The trainable part: per level, refine the low-res features under guidance of the high-res priors.

For one level, with F_L the low-res features, s and d the projected structure and detail priors:

    s = P_S(S_low),  d = P_D(D_low)                           1x1 convolutions to prior_width * C channels
    gamma, beta = W_2 relu(W_1 s)                              W_2 zero-initialised
    M     = (1 + gamma) * F_L + beta                           conditional modulation (FiLM / SFT)
    g     = sigmoid(W_g [M; d])                                gate in (0, 1), bias -2: mostly closed
    F_hat = M + g * R([M; d]),   R = V_2 relu(V_1 [M; d])      gated residual correction, V_2 zero-initialised

W_1, V_1 and W_g are 3x3 convolutions (each position reads its neighbourhood), W_2 and V_2 1x1; [M; d] stacks M and
d along the channels.

Zero-initialised last layers make the head exactly the identity at the start (F_hat = F_L), so training starts
from the training-free cross-resolution score and only learns what normal images need.

Training aligns F_hat with the target T (high-res features pooled to the low grid), per location:

    e(u) = 1 - cos(F_hat(u), T(u))         the misalignment map; loss = mean_u e(u), summed over levels

``prior_width`` is 1 by default: the projections keep every channel and narrow nothing (below 1 they would be a
bottleneck on what the priors can carry; lesson 02 asks whether that is needed).

V_1 and W_g read the same input [M; d], so they run as one convolution with their weights stacked
(``both_convolutions``): one pass over the input forward and backward instead of two, the same values to rounding.

Switches: ``use_structure=False`` gives M = F_L; ``use_detail=False`` drops d from the residual's input, so the
correction sees only M (with both off, the head is a gated refiner of F_L alone that never sees the high-res view);
``use_gate=False`` gives F_hat = M + R.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import HLGFAConfig
from .priors import Priors


def conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


def zero_init(layer: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


@dataclass
class LevelOutput:
    refined: torch.Tensor  # F_hat (B, C, h, w)
    modulated: torch.Tensor  # M     (B, C, h, w)
    gate: torch.Tensor | None  # g (B, C, h, w) in (0, 1); None without gate


class AlignmentLevel(nn.Module):
    def __init__(self, channels: int, ratio: int, cfg: HLGFAConfig):
        super().__init__()
        self.cfg = cfg
        prior_ch = max(1, round(cfg.prior_width * channels))
        hidden = max(8, round(cfg.hidden_width * channels))
        if cfg.use_structure:
            self.structure_proj = nn.Conv2d(channels, prior_ch, 1)
            self.film = nn.Sequential(conv(prior_ch, hidden, 3), nn.ReLU(), zero_init(conv(hidden, 2 * channels, 1)))
        residual_in = channels
        if cfg.use_detail:
            self.detail_proj = nn.Conv2d(channels * ratio**2, prior_ch, 1)
            residual_in += prior_ch
        self.residual = nn.Sequential(conv(residual_in, hidden, 3), nn.ReLU(), zero_init(conv(hidden, channels, 1)))
        if cfg.use_gate:
            self.gate = conv(residual_in, channels, 3)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, cfg.gate_bias_init)

    def forward(self, low: torch.Tensor, priors: Priors) -> LevelOutput:
        modulated = low
        if self.cfg.use_structure:
            gamma, beta = self.film(self.structure_proj(priors.structure)).chunk(2, dim=1)
            modulated = (1 + gamma) * low + beta
        residual_input = modulated
        if self.cfg.use_detail:
            residual_input = torch.cat([modulated, self.detail_proj(priors.detail)], dim=1)
        if self.cfg.use_gate:
            hidden, gate_logits = both_convolutions(residual_input, self.residual[0], self.gate)
            correction = self.residual[2](self.residual[1](hidden))  # V_2 relu(V_1 [M; d])
            gate = torch.sigmoid(gate_logits)
            refined = modulated + gate * correction
        else:
            gate, refined = None, modulated + self.residual(residual_input)
        return LevelOutput(refined=refined, modulated=modulated, gate=gate)


def both_convolutions(x: torch.Tensor, first: nn.Conv2d, second: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(first(x), second(x)) as one convolution of x by both kernels stacked: two layers of the same shape and
    input read it once, forward and backward (benchmarks/probes/head_step_layout.py; RESULTS.md, "Fit"). Their
    weights stay two layers, as checkpoints store them."""
    both = F.conv2d(x, torch.cat([first.weight, second.weight]), torch.cat([first.bias, second.bias]),
                    padding=first.padding)
    return both.split([first.out_channels, second.out_channels], dim=1)


class AlignmentHead(nn.Module):
    """One AlignmentLevel per backbone level; the only module with trainable weights."""

    def __init__(self, channels: list[int], cfg: HLGFAConfig):
        super().__init__()
        self.levels = nn.ModuleList(AlignmentLevel(c, cfg.hr_lr_ratio, cfg) for c in channels)
        # oneDNN's CPU convolutions prefer channels-last weights and inputs (benchmarks/RESULTS.md, "Inference: where
        # one image's time goes"); the layout changes strides, not values
        self.to(memory_format=torch.channels_last)

    def forward(self, low: list[torch.Tensor], priors: list[Priors]) -> list[LevelOutput]:
        low = [channels_last(f) for f in low]
        priors = [p.apply(channels_last) for p in priors]
        return [level(f, p) for level, f, p in zip(self.levels, low, priors)]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def misalignment(refined: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """e = 1 - cos(F_hat, T) over channels: (B, C, h, w) x2 -> (B, h, w), in [0, 2]."""
    return 1 - F.cosine_similarity(refined, target, dim=1, eps=1e-6)


def alignment_loss(outputs: list[LevelOutput], priors: list[Priors]) -> torch.Tensor:
    """Mean misalignment over batch and space, summed over levels."""
    return sum(misalignment(o.refined, p.target).mean() for o, p in zip(outputs, priors))
