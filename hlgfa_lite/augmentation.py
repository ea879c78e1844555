"""Noise-aware augmentation: the nuisances of a factory camera that are *not* defects.

During training each nuisance is applied with probability ``aug_prob`` and a random strength,

    n = jpeg o gamma o contrast o brightness o sharpen o blur o sensor_noise      (each maybe identity)

Brightness and contrast are torchvision's *factors* c, each drawn from [1 - a, 1 + a] with a = ``aug_brightness``
(brightness: x -> clip(c x); contrast: x -> clip(c x + (1 - c) mean(grey x))). A grey image is drawn on its one
channel, so it stays grey (``NoiseAugment``). Where the nuisances are applied is the switch ``aug_views``:

    "both" (default):  x' = n(x_H),  x_L' = resize(x'),  loss = 1 - cos(head(phi(x_L'), priors(phi(x'))), pool(phi(x')))
    "low":             x_L' = n(x_L),                    loss = 1 - cos(head(phi(x_L'), priors(phi(x_H))), pool(phi(x_H)))

"both" is what a camera does: the nuisance is in the image, so both views, the priors and the target carry it,
and the head learns to keep a degraded *pair* aligned. "low" teaches the head to map a degraded low view back
onto a clean target, which a real nuisance never offers (the high view is degraded too): measured on bottle, it
made noise, blur and JPEG at test time *worse* than no augmentation, while "both" kept image AUROC at or near its
clean value (benchmarks/RESULTS.md). ``apply_nuisance`` applies one nuisance at a fixed strength, for the
robustness benchmark and the lessons; its ``"brightness"`` is an additive shift x -> clip(x + s) (``brightness_shift``),
not the training's factor.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from .config import HLGFAConfig
from .errors import HLGFAError
from .priors import low_pass


def sensor_noise(image: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x -> clip(x + std * n), n ~ N(0, 1) drawn per pixel and channel (of a grey image's one channel, it is grey)."""
    noise = torch.randn(image.shape, generator=generator, device=image.device)
    return noise.mul_(std).add_(image).clamp_(0, 1)  # in place: a 512 px image's buffers are the cost here


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (3, H, W) or (B, 3, H, W): the priors' separable low-pass (torchvision's ``gaussian_blur``
    to float rounding, a few times faster on a 512 px image)."""
    batched = image if image.dim() == 4 else image[None]
    blurred = low_pass(batched, sigma).contiguous()
    return blurred if image.dim() == 4 else blurred[0]


def sharpen(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_sharpness`` (the image blended with a 3x3 smoothing of itself, factor 1 = unchanged)
    of (3, H, W) or (B, 3, H, W), run on a channels-last batch, where its depthwise convolution is quicker on a CPU
    than on a plain (3, H, W) image (``benchmarks/probes/nuisance_speed.py``); every value is the same
    (``tests/test_augmentation.py``)."""
    batched = image if image.dim() == 4 else image[None]
    sharpened = TF.adjust_sharpness(batched.contiguous(memory_format=torch.channels_last), factor).contiguous()
    return sharpened if image.dim() == 4 else sharpened[0]


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip through Pillow at ``quality`` (1-100), for (3, H, W) or (B, 3, H, W), or one grey channel
    (1, H, W) or (B, 1, H, W), saved as a greyscale JPEG."""
    if image.dim() == 4:
        return torch.stack([jpeg(one, quality) for one in image])
    # the 8-bit pixels as Pillow holds them, (H, W, C) in one block: rounded in place, transposed once
    pixels = (image * 255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    mode = "L" if image.shape[0] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(buffer, format="JPEG", quality=int(quality))
    decoded = torch.from_numpy(np.array(Image.open(buffer).convert(mode)))  # (H, W, 3) or (H, W) uint8
    return decoded.reshape(*decoded.shape[:2], -1).permute(2, 0, 1).float().div_(255).to(image.device)


def brightness_shift(image: torch.Tensor, shift: float) -> torch.Tensor:
    """x -> clip(x + shift, 0, 1): a camera's offset (the benchmark's "brightness"; training scales by a factor)."""
    return (image + shift).clamp(0, 1)


def apply_nuisance(image: torch.Tensor, kind: str, strength: float) -> torch.Tensor:
    """One nuisance at a fixed strength on (3, H, W) or (B, 3, H, W) images in [0, 1].

    kinds: ``noise`` (std), ``blur`` (sigma, px), ``sharpness`` (factor), ``brightness`` (additive shift s:
    x + s, see ``brightness_shift``; not the factor ``NoiseAugment`` draws), ``contrast`` (factor), ``gamma``
    (exponent), ``jpeg`` (quality 1-100).
    """
    if kind == "noise":
        return sensor_noise(image, strength, torch.Generator().manual_seed(0))
    if kind == "blur":
        return blur(image, strength)
    if kind == "sharpness":
        return sharpen(image, strength)
    if kind == "brightness":
        return brightness_shift(image, strength)
    if kind == "contrast":
        return TF.adjust_contrast(image, strength)
    if kind == "gamma":
        return TF.adjust_gamma(image, strength)
    if kind == "jpeg":
        return jpeg(image, int(strength))
    raise HLGFAError(f"unknown nuisance {kind!r}; choose noise, blur, sharpness, brightness, contrast, gamma or jpeg.")


def is_exactly_grey(image: torch.Tensor) -> bool:
    """(3, H, W): every pixel's three channels are equal, as a grey camera's image is once expanded to RGB."""
    return bool(torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]))


class NoiseAugment:
    """Random nuisances for one (3, H, W) image in [0, 1], reproducible from a torch.Generator.

    A grey image (``is_exactly_grey``) is drawn on its one channel and expanded back to three: a grey camera's
    noise and compression are grey, so the draws stay what the camera could see, on a third of the pixels."""

    def __init__(self, cfg: HLGFAConfig, generator: torch.Generator | None = None):
        self.cfg = cfg
        self.generator = generator or torch.Generator().manual_seed(cfg.seed)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def _maybe(self) -> bool:
        return torch.rand((), generator=self.generator).item() < self.cfg.aug_prob

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] == 3 and is_exactly_grey(image):
            return self.draw(image[:1]).expand_as(image)
        return self.draw(image)

    def draw(self, image: torch.Tensor) -> torch.Tensor:
        """The nuisances of one draw on (C, H, W), any number of channels, in the order of the module's equation."""
        cfg = self.cfg
        factor_range = (1 - cfg.aug_brightness, 1 + cfg.aug_brightness)  # for brightness and contrast alike
        if self._maybe():
            image = sensor_noise(image, self._uniform(0, cfg.aug_noise_std), self.generator)
        if self._maybe():
            image = blur(image, self._uniform(0.3, cfg.aug_blur_sigma))
        if self._maybe():  # focus and resampling filters vary: sharper as well as blurrier views
            image = sharpen(image, self._uniform(1, 1 + cfg.aug_sharpness))
        if self._maybe():
            image = TF.adjust_brightness(image, self._uniform(*factor_range))  # a factor: c x
        if self._maybe():
            image = TF.adjust_contrast(image, self._uniform(*factor_range))
        if self._maybe():
            image = TF.adjust_gamma(image, self._uniform(1 - cfg.aug_gamma, 1 + cfg.aug_gamma))
        if self._maybe():
            image = jpeg(image, round(self._uniform(*cfg.aug_jpeg_quality)))
        return image.clamp(0, 1)
