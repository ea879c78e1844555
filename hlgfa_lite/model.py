"""HLGFA-lite: the frozen backbone, the priors, the alignment head and the scoring, as one module.

``model.inspect(images)`` returns every intermediate a lesson, the demo or a benchmark wants to show
(both views, features at both resolutions, priors, gates, per-level maps, the fused map, scores), so each of
them draws from the same code path. ``model.predict(images)`` returns maps at each image's own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .alignment import AlignmentHead, LevelOutput, misalignment
from .backbone import FrozenBackbone, resize
from .calibration import Calibration
from .config import HLGFAConfig
from .errors import HLGFAError
from .normality import GaussianNormality, normality_term
from .priors import Priors, priors_on_low_grid
from .scoring import fuse_levels, image_scores, map_weights, resize_map


# tensors renamed since checkpoints were first written: old name -> current name
RENAMED_TENSORS = {"level_std": "level_scale"}


def upgrade_tensor_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {RENAMED_TENSORS.get(k, k): v for k, v in tensors.items()}


# how far outside [0, 1] an image may reach: a bicubic resize overshoots a little at hard edges; 0-255 images and
# ImageNet-normalised ones reach far beyond, and would score as anomalies everywhere
RANGE_SLACK = 0.25


def checked_images(images, shape: str = "(B, 3, H, W)", values: bool = True) -> torch.Tensor:
    """``images`` if the model can read them (a float tensor of ``shape``, 3 colour channels or 1 grey, finite,
    values in [0, 1]), else ``HLGFAError`` saying what to change. The values cost one pass (their range);
    ``values=False`` checks the layout alone, for a caller whose images ``inspect`` checks next."""
    batched = shape.startswith("(B")
    if not isinstance(images, torch.Tensor):
        a_path = isinstance(images, (str, bytes)) or hasattr(images, "__fspath__")
        hint = ("load files with hlgfa_lite.load_image(path)" if a_path
                else "for an (H, W, 3) uint8 array: torch.from_numpy(a).permute(2, 0, 1).float() / 255")
        raise HLGFAError(f"images must be a torch tensor {shape} in [0, 1], got {type(images).__name__}; {hint}.")
    size = tuple(images.shape)
    if images.dim() != len(shape.split(",")):
        hint = "; add the batch dimension: images[None]" if batched and images.dim() == 3 else ""
        raise HLGFAError(f"images must be {shape}, got shape {size}{hint}.")
    if images.shape[-3] not in (1, 3):
        move = "images.permute(0, 3, 1, 2)" if batched else "image.permute(2, 0, 1)"
        hint = (f"channels last? move them first: {move}" if images.shape[-1] in (1, 3)
                else "drop the alpha channel: images[..., :3, :, :]" if images.shape[-3] == 4
                else "give 3 colour channels or 1 grey")
        raise HLGFAError(f"images must be {shape} with 3 colour channels (or 1 grey), got shape {size}; {hint}.")
    if not images.is_floating_point():
        raise HLGFAError(f"images must be floats in [0, 1], got {images.dtype}; for 8-bit images use "
                         "images.float() / 255.")
    if 0 in images.shape:
        raise HLGFAError(f"images must have pixels, got shape {size}.")
    if not values:
        return images
    low, high = (v.item() for v in torch.aminmax(images.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise HLGFAError("images hold NaN or infinite values; check how they were loaded or computed.")
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        hint = ("divide 0-255 images by 255" if high > 2 and low >= 0 else
                "give them unnormalised: the backbone applies its own ImageNet normalisation" if low < 0 else
                "clamp them to [0, 1]")
        raise HLGFAError(f"images must be in [0, 1], got values from {low:.3g} to {high:.3g}; {hint}.")
    return images


@dataclass
class Inspection:
    """Everything computed for a batch of B images; level lists are ordered shallow (fine) to deep (coarse)."""

    hr_image: torch.Tensor  # (B, 3, hr, hr) in [0, 1]
    lr_image: torch.Tensor  # (B, 3, lr, lr)
    high: list[torch.Tensor]  # F_H per level (B, C, rh, rw)
    low: list[torch.Tensor]  # F_L per level (B, C, h, w)
    priors: list[Priors]  # structure, detail, target per level, on the low grid
    outputs: list[LevelOutput]  # refined, modulated, gate per level
    level_maps: list[torch.Tensor]  # raw misalignment 1 - cos per level (B, h, w)
    normality_maps: list[torch.Tensor]  # Mahalanobis distance of F_L per level (B, h, w); [] without the term
    anomaly_map: torch.Tensor  # (B, lr, lr), fused, normalised, smoothed
    scores: torch.Tensor  # (B,)

    @property
    def all_maps(self) -> list[torch.Tensor]:
        """Every raw map that the fusion normalises and averages: misalignment levels, then normality levels."""
        return self.level_maps + self.normality_maps


class HLGFA(nn.Module):
    def __init__(self, cfg: HLGFAConfig, pretrained: bool = True, weights: str | None = None,
                 backbone: FrozenBackbone | None = None, init_seed: int | None = None):
        """``backbone``: an existing frozen backbone to share (a cross-fit fold model beside the final one: the
        network is fixed, so it is built once); ``pretrained`` and ``weights`` then go unused. ``init_seed``
        (default ``cfg.seed``) alone sets the head's starting weights."""
        super().__init__()
        if not isinstance(cfg, HLGFAConfig):
            name = cfg if isinstance(cfg, str) else "lite"  # HLGFA("lite"): the preset meant
            raise HLGFAError(f"HLGFA takes a config, e.g. HLGFA(preset({name!r})), got {type(cfg).__name__}.")
        self.cfg = cfg.validate()
        self.backbone = backbone or FrozenBackbone(cfg.backbone, cfg.out_indices, pretrained=pretrained,
                                                   weights=weights, runtime=cfg.backbone_runtime)
        # torch seeds each process at random, so a head drawn from the global generator would start differently in
        # every run of the same command; drawn from its own seed, a fit repeats bit for bit and the caller's
        # generator is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed if init_seed is None else init_seed)
            self.head = AlignmentHead(self.backbone.channels, cfg)
        # beyond the paper: see normality.py
        self.normality: GaussianNormality | None = normality_term(cfg, self.backbone.channels, self.backbone.strides)
        n_maps = len(self.backbone.channels) * (2 if self.normality is not None else 1)
        # good-image mean and scale of each raw map (set by calibration, see scoring.py; identity until then)
        self.register_buffer("level_mean", torch.zeros(n_maps))
        self.register_buffer("level_scale", torch.ones(n_maps))
        self.calibration: Calibration | None = None  # thresholds, verdict and colour scale (set by calibration)

    @property
    def device(self) -> torch.device:
        return self.level_mean.device

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """Everything that fitting set (the frozen backbone never changes): head weights, normality statistics,
        per-map good-image statistics. What a checkpoint stores."""
        return {k: v.detach().cpu().contiguous() for k, v in self._fitted_tensors()}

    def _fitted_tensors(self):
        return ((k, v) for k, v in self.state_dict().items() if not k.startswith("backbone."))

    def features_with_gradients(self, view: torch.Tensor) -> list[torch.Tensor]:
        """The frozen backbone's features of one view (B, 3, S, S) in [0, 1], checked as ``inspect`` checks images,
        with autograd on: for gradients with respect to the input pixels (lesson 01's receptive fields, a saliency
        map). The same values as the features ``inspect`` returns, to rounding; the weights get no gradient."""
        view = checked_images(view)
        return self.backbone.features_with_gradients(view.to(self.device, self.level_mean.dtype))

    def fitted_bytes(self, prefix: str = "") -> int:
        """Bytes of the fitted state in memory (what ``save`` writes; ``save(..., compact=True)`` packs the Gaussians
        into less: the shipped tire checkpoint's 31 MiB into 8.9), or of its tensors whose names start with
        ``prefix``: ``"head."`` for the trained head, ``"normality."`` for the Gaussians."""
        if not isinstance(prefix, str):
            raise HLGFAError(f"prefix must be a string such as 'head.' or 'normality.', got {prefix!r}.")
        sizes = {k: v.numel() * v.element_size() for k, v in self._fitted_tensors()}  # where they are: no copy
        if prefix and prefix not in ("head.", "normality.") and not any(k.startswith(prefix) for k in sizes):
            raise HLGFAError(f"no fitted tensor's name starts with {prefix!r}; try 'head.' or 'normality.'.")
        return sum(size for k, size in sizes.items() if k.startswith(prefix))

    def load_fitted_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """The inverse of ``fitted_state`` (older tensor names accepted); raises ``RuntimeError`` when a tensor is
        missing, extra or misshapen."""
        result = self.load_state_dict(upgrade_tensor_names(tensors), strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("backbone.")]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing {missing}, unexpected {result.unexpected_keys}")

    # --- the two views and their features -----------------------------------------------------------------
    def views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> high view (B, 3, hr, hr), low view (B, 3, lr, lr) made from the high one."""
        high = resize(images, self.cfg.hr_size)
        return high, resize(high, self.cfg.lr_size)

    def priors(self, high: list[torch.Tensor]) -> list[Priors]:
        return [priors_on_low_grid(f, self.cfg.prior_sigma, self.cfg.hr_lr_ratio) for f in high]

    # --- scoring -----------------------------------------------------------------------------------------
    @property
    def map_share(self) -> float:
        """The normality family's share of the anomaly map (``map_normality_weight``, else the score's share)."""
        weight = self.cfg.map_normality_weight
        return self.cfg.normality_weight if weight is None else weight

    def fuse(self, raw_maps: list[torch.Tensor], first: int = 0,
             statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
             normality_levels: str | None = None, normality_weight: float | None = None) -> torch.Tensor:
        """Raw maps -> one map on the calibrated scale; ``first``: the index of ``raw_maps[0]`` among all raw maps
        (misalignment levels, then normality levels), whose good-image statistics normalise it. ``statistics``:
        (mean, scale) of every raw map to use instead of the model's own, ``normality_levels`` the level set instead
        of the config's (the calibration weighing a candidate), ``normality_weight`` the normality family's share
        instead of the map's (``score_map``)."""
        mean, scale = statistics if statistics is not None else (self.level_mean, self.level_scale)
        stats = slice(first, first + len(raw_maps))
        share = self.map_share if normality_weight is None else normality_weight
        weights = map_weights(len(self.backbone.channels), self.normality is not None, share,
                              normality_levels or self.cfg.normality_levels)[stats]
        if weights.sum() == 0:  # a map the fusion leaves out, shown alone (lessons, benchmarks/object_maps.py)
            weights = torch.ones_like(weights)
        return fuse_levels(raw_maps, mean[stats], scale[stats], self.cfg.lr_size, self.cfg.smooth_sigma, weights)

    def score_map(self, raw_maps: list[torch.Tensor], anomaly_map: torch.Tensor) -> torch.Tensor:
        """The map the image score reads: the families weighed by ``normality_weight``. It is ``anomaly_map``
        itself (fused from the same ``raw_maps``) unless ``map_normality_weight`` gives the map its own share."""
        if self.normality is None or self.map_share == self.cfg.normality_weight:
            return anomaly_map
        return self.fuse(raw_maps, normality_weight=self.cfg.normality_weight)

    def raw_map_range(self, index: int) -> tuple[float, float]:
        """Colour range for raw map ``index`` (its place in ``Inspection.all_maps``) that matches the fused map's
        calibrated colour scale: the fusion averages z = (e - mu) / s, so e = mu + s z gets the colour of z."""
        low, high = (self.calibration.map_vmin, self.calibration.map_vmax) if self.calibration else (0.0, 2.0)
        mean, scale = self.level_mean[index].item(), self.level_scale[index].item()
        return mean + scale * low, mean + scale * high

    def part_maps(self, inspection: Inspection) -> dict[str, torch.Tensor]:
        """Each family of raw maps fused alone, on its calibrated scale: ``"alignment"`` (the abstract's method) and,
        with the normality term, ``"normality"``; each (B, lr, lr). With both, the anomaly map is
        (1 - w) * alignment + w * normality (normalising, upsampling, averaging and
        smoothing are all linear), w = ``map_share``."""
        parts = {"alignment": self.fuse(inspection.level_maps)}
        if inspection.normality_maps:
            parts["normality"] = self.fuse(inspection.normality_maps, first=len(inspection.level_maps))
        return parts

    @torch.no_grad()
    def inspect(self, images: torch.Tensor, low_view: torch.Tensor | None = None) -> Inspection:
        """Run the whole method on (B, 3, H, W) images in [0, 1]; ``low_view`` overrides the low-res input
        (e.g. a nuisance applied to it only, as during training)."""
        images = checked_images(images).to(self.device, self.level_mean.dtype)
        hr_image, lr_image = self.views(images)
        if low_view is not None:  # the same checks as the images, and one low view per image
            low_view = checked_images(low_view).to(self.device, self.level_mean.dtype)
            if low_view.shape[0] != images.shape[0]:
                raise HLGFAError(f"low_view holds {low_view.shape[0]} image(s) for {images.shape[0]} image(s); give "
                                 "one low view per image.")
            lr_image = resize(low_view, self.cfg.lr_size)
        return self.inspect_features(hr_image, lr_image, self.backbone(hr_image), self.backbone(lr_image))

    @torch.no_grad()
    def inspect_features(self, hr_image: torch.Tensor, lr_image: torch.Tensor, high: list[torch.Tensor],
                         low: list[torch.Tensor]) -> Inspection:
        """``inspect`` from the frozen features of both views, already computed (they never change while heads
        are compared on the same images: the backbone is frozen)."""
        priors = self.priors(high)
        outputs, level_maps, normality_maps = self.raw_maps(low, priors)
        anomaly_map = self.fuse(level_maps + normality_maps)
        score_map = self.score_map(level_maps + normality_maps, anomaly_map)
        return Inspection(hr_image, lr_image, high, low, priors, outputs, level_maps, normality_maps, anomaly_map,
                          image_scores(score_map, self.cfg.score_topk))

    def raw_maps(self, low: list[torch.Tensor],
                 priors: list[Priors]) -> tuple[list[LevelOutput], list[torch.Tensor], list[torch.Tensor]]:
        """The head's outputs, the misalignment maps e = 1 - cos(F_hat, T) and any normality maps of F_L, per level."""
        outputs = self.head(low, priors)
        level_maps = [misalignment(o.refined, p.target) for o, p in zip(outputs, priors)]
        normality_maps = self.normality(low) if self.normality is not None else []
        return outputs, level_maps, normality_maps

    @torch.no_grad()
    def score_features(self, low: list[torch.Tensor], priors: list[Priors]) -> torch.Tensor:
        """Image scores (B,) from F_L and the priors of F_H alone, as ``inspect_features`` computes them: for
        features a fit already holds (the cross-fitted scores of ``training.cross_fit_scores``)."""
        _, level_maps, normality_maps = self.raw_maps(low, priors)
        raw = level_maps + normality_maps
        return image_scores(self.score_map(raw, self.fuse(raw)), self.cfg.score_topk)

    @torch.no_grad()
    def score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> maps (B, lr, lr) and scores (B,): the inference hot path."""
        result = self.inspect(images)
        return result.anomaly_map, result.scores

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor]) -> list[tuple[torch.Tensor, float]]:
        """Images of any sizes [(3, H_i, W_i)] -> [(map (H_i, W_i) on CPU, score)], one at a time, on the
        calibrated scale: a model that was neither fitted nor loaded raises ``HLGFAError`` (``inspect`` and
        ``score_batch`` still show an unfitted model's maps, as the lessons do)."""
        _ = self.calibrated  # the "not calibrated" error, before any work
        if isinstance(images, torch.Tensor) or not isinstance(images, (list, tuple)):
            raise HLGFAError(f"predict takes a list of (3, H, W) images, each at its own size, got "
                             f"{type(images).__name__}; for a batch (B, 3, H, W) of one size call score_batch.")
        results = []
        for image in images:
            checked_images(image, "(3, H, W)", values=False)  # its own shape's words; inspect checks the values
            anomaly_map, score = self.score_batch(image[None])
            results.append((resize_map(anomaly_map[0], *image.shape[-2:]).cpu(), score.item()))
        return results

    # --- verdicts: the model's Calibration owns every rule; these only say "not calibrated yet" clearly ------
    @property
    def calibrated(self) -> Calibration:
        if self.calibration is None:
            raise HLGFAError("the model is not calibrated; fit it (hlgfa_lite.fit), load a fitted one (hlgfa_lite.load) "
                             "or calibrate it (training.calibrate_model) first.")
        return self.calibration

    def verdict(self, score: float, sensitivity: float = 1.0) -> str:
        """'normal', 'borderline' or 'anomalous' (``Calibration.verdict``); NaN/inf scores raise HLGFAError."""
        return self.calibrated.verdict(score, sensitivity)

    def is_anomalous(self, score: float, sensitivity: float = 1.0) -> bool:
        """True for the 'anomalous' verdict only; sensitivity > 1 flags more, < 1 fewer."""
        return self.calibrated.is_anomalous(score, sensitivity)

    def threshold(self, sensitivity: float = 1.0) -> float:
        """Image score above which the verdict is 'anomalous' (``Calibration.threshold``)."""
        return self.calibrated.threshold(sensitivity)
