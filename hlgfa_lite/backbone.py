"""The frozen, shared backbone: one ImageNet network run on two resizes of the same image.

For an image ``x`` and a feature level ``l`` with stride ``s_l``:

    x_H = resize(x, hr_size),  x_L = resize(x_H, lr_size)     (the low view is made from the high one)
    F_H^l = phi_l(x_H)   shape (B, C_l, hr_size / s_l, hr_size / s_l)
    F_L^l = phi_l(x_L)   shape (B, C_l, lr_size / s_l, lr_size / s_l)

``phi`` never learns: eval mode (BatchNorm uses its ImageNet statistics), ``requires_grad=False`` and
no autograd graph is kept, so the high-res features of a training image can be computed once and cached.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .weights import create_feature_extractor, fingerprint


class FrozenBackbone(nn.Module):
    def __init__(self, name: str, out_indices: tuple[int, ...], pretrained: bool = True, weights: str | None = None,
                 compile: bool = True):
        super().__init__()
        self.compile = compile
        self._compiled: dict[tuple, torch.jit.ScriptModule] = {}
        self.name = name
        self.net, self.weights_source = create_feature_extractor(name, tuple(out_indices), pretrained, weights)
        self.net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.channels: list[int] = list(self.net.feature_info.channels())
        self.strides: list[int] = list(self.net.feature_info.reduction())
        cfg = self.net.pretrained_cfg
        # images arrive in [0, 1]; the network expects its own normalisation (Lite0: mean = std = 0.5)
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), persistent=False)
        self.fingerprint = fingerprint(self.net)

    def train(self, mode: bool = True) -> "FrozenBackbone":
        # stays in eval mode whatever the caller asks: frozen BatchNorm statistics are part of the method
        return super().train(False)

    def _runner(self, x: torch.Tensor):
        """The network, traced and frozen once per input shape and device (BatchNorm folded into the convolutions,
        about 1.7x faster on a CPU); the plain module where tracing is off or fails. The batch size is part of the
        key: a graph traced for one batch size runs several times slower on another. Weights and input are in
        channels-last layout, which oneDNN's CPU convolutions prefer."""
        if not self.compile:
            return self.net
        key = (tuple(x.shape), x.device, x.dtype)
        if key not in self._compiled:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._compiled[key] = torch.jit.freeze(torch.jit.trace(self.net, x, check_trace=False))
            except Exception:  # noqa: BLE001 - any tracing failure: stay with the eager network
                self._compiled[key] = self.net
        return self._compiled[key]

    def _apply(self, fn, recurse=True):
        self._compiled.clear()  # moved to another device or dtype: trace again
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, S, S) in [0, 1] -> one map per level, level l of shape (B, C_l, S / s_l, S / s_l)."""
        x = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        # back to the default layout: what follows (priors, head, cached features) expects plain NCHW tensors
        return [f.float().contiguous() for f in self._runner(x)(x)]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size), antialiased so that downsizing does not alias fine texture."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
