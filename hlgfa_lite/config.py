"""Every knob of HLGFA-lite in one dataclass, with the two presets.

The paper (arXiv 2602.09524) publishes only its abstract, so most values below are *our* choices.
Each one is a field, so the notebooks and the benchmark can switch it off and measure what it buys. A field
comment's "(RESULTS.md, <section>)" names the section of benchmarks/RESULTS.md that holds its measurements.

    lite  = tf_efficientnet_lite0, 512 px / 256 px, levels 1-3 (strides 4/8/16): the CPU default
    paper = wide_resnet50_2,       512 px / 256 px, layers 1-3 (strides 4/8/16): for a GPU
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass

from .errors import HLGFAError


MAX_STEPS = 1_000_000  # far beyond any fit (lite stops at 500); the plan of a head's reads is held in memory
MAX_BATCH_SIZE = 256  # images per head step: a step's features and activations must fit in memory

# --- defaults the command line shows: here, in a module that loads no torch, so `hlgfa-lite --help` is instant --
# share of good parts allowed above the image threshold (calibration.py). 1 %, not 5 %: the calibration images come
# from the training capture and score lower than new good parts (bottle: held-out median 2.14, unseen good test
# median 2.40), and 1 % is what keeps unseen bottles under 5 % (benchmarks/CALIBRATION.md)
DEFAULT_TARGET_FPR = 0.01
DEFAULT_CONFIDENCE = 0.95  # probability over the calibration draw that the target holds
# a sensitivity s moves a threshold t to c + (t - c) / s around the typical good score c: beyond 100x either way the
# threshold sits on c or out of any score's reach, and s = 1e-300 would overflow
MIN_SENSITIVITY, MAX_SENSITIVITY = 0.01, 100.0
DEFAULT_MAX_CACHE_GIB = 4.0  # host memory for the training set by default (a Colab runtime has ~12 GiB; tools/cache.py)


@dataclass
class HLGFAConfig:
    # --- backbone: one frozen timm network, run twice --------------------------------------------------
    backbone: str = "tf_efficientnet_lite0"
    out_indices: tuple[int, ...] = (1, 2, 3)  # feature levels; for Lite0 strides 4/8/16, 24/40/112 channels
    hr_size: int = 512  # high-resolution view: guides and supervises
    lr_size: int = 256  # low-resolution view: refined by the head; maps live on its grid
    backbone_runtime: str = "torch"  # or "onnxruntime" ([fast] extra): how phi runs, not what it computes
    # --- priors: split of the high-res features ---------------------------------------------------------
    use_structure: bool = True  # conditional modulation by the structure (low-pass) prior
    use_detail: bool = True  # the detail (high-pass) prior as an input of the gated residual correction
    use_gate: bool = True  # False: the residual is added with a fixed weight of 1
    prior_sigma: float = 2.0  # std (in high-res feature cells) of the Gaussian low-pass
    prior_width: float = 1.0  # 1x1 projection of each prior to prior_width * C channels; 1 = full width (lesson 02)
    hidden_width: float = 1.0  # width of the head's hidden layers, relative to C
    gate_bias_init: float = -2.0  # sigmoid(-2) = 0.12: the gate starts mostly closed
    # --- noise-aware augmentation ---------------------------------------------------------------------------
    noise_aug: bool = True
    aug_views: str = "both"  # nuisances on "both" views or the "low" one only (RESULTS.md, "Robustness")
    aug_copies: int = 3  # augmented views pre-drawn per training image (features cached once)
    aug_budget: int = 0  # most augmented draws in all, >= 1 copy each; 0: none (RESULTS.md, "Augmented draws")
    head_draws: int = 2  # draws of each image a head reads, clean first; 0: all (RESULTS.md, "Draws a head reads")
    aug_prob: float = 0.5  # probability of each nuisance
    aug_noise_std: float = 0.04  # max std of additive Gaussian sensor noise, images in [0, 1]
    aug_blur_sigma: float = 2.0  # max std (px of the augmented image) of Gaussian blur
    aug_sharpness: float = 1.0  # sharpness factor in [1, 1 + this] (torchvision adjust_sharpness)
    aug_brightness: float = 0.25  # brightness factor and contrast factor, each drawn from [1 - this, 1 + this]
    aug_gamma: float = 0.25  # gamma in [1 - this, 1 + this]
    aug_jpeg_quality: tuple[int, int] = (30, 90)
    # --- training -----------------------------------------------------------------------------------------
    steps: int = 500  # optimiser steps: exactly these when passes is 0, else the most a fit takes
    passes: float = 5.0  # steps = passes over the training images / batch, within [MIN_STEPS, steps]; 0: steps
    batch_size: int = 16  # images per head step; fewer on a small set (min_batch_size)
    min_batch_size: int = 8  # fewest per step on small sets (head_batch; RESULTS.md, "Steps that follow the data")
    lr: float = 1e-3
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.1  # good images kept aside to calibrate normalisation and threshold
    seed: int = 0
    train_precision: str = "auto"  # head steps under bfloat16 autocast: "bfloat16", "float32", "auto" (where native)
    # --- normality term (beyond the paper; see normality.py) -------------------------------------------------
    normality: str = "position"  # "position", "global" or "none" (RESULTS.md, "The normality term")
    normality_shrinkage: float = 0.01  # least ridge added to each covariance, relative to its mean variance
    normality_draws: str = "all"  # Gaussians fitted on "all" cached draws or "clean" ones (RESULTS.md, "Robustness")
    normality_pool: int = 3  # features averaged over k x k neighbours first (RESULTS.md, "The normality term")
    # --- scoring ---------------------------------------------------------------------------------------
    map_scale: str = "auto"  # "std", "max", or "auto": chosen per fit (scoring.py; RESULTS.md, "The map scale")
    normality_weight: float = 0.6  # the normality maps' share of the fusion the image score reads ("The score's share")
    map_normality_weight: float | None = 0.35  # their share of the map; None: the score's share ("The map's share")
    normality_levels: str = "all"  # normality maps fused: "all", "fine" (not the coarsest), "auto": chosen per fit
    smooth_sigma: float = 4.0  # Gaussian smoothing of the fused map, in low-res pixels
    score_topk: float = 0.01  # image score = mean of the top 1 % map pixels; 0 means the max
    eval_size: int = 256  # pixel metrics are computed on maps and masks resized to this square

    @property
    def hr_lr_ratio(self) -> int:
        return self.hr_size // self.lr_size

    def validate(self) -> "HLGFAConfig":
        ranged = {name for name, _, _ in self._RANGES}
        names = [f.name for f in dataclasses.fields(self)]
        self._check_types([name for name in names if name not in ranged])
        self._check_ranges()  # a number field's range first: "must be in [0, 1)" says more than its type
        self._check_types([name for name in names if name in ranged])  # then whole numbers: steps=5.5
        if self.hr_size % self.lr_size or self.hr_size <= self.lr_size:
            raise HLGFAError(
                f"hr_size ({self.hr_size}) must be an integer multiple (>1) of lr_size ({self.lr_size}); "
                "use e.g. 512 and 256."
            )
        if self.lr_size % 32:
            raise HLGFAError(f"lr_size ({self.lr_size}) must be a multiple of 32 so every level's grid is whole.")
        if self.aug_views not in ("both", "low"):
            raise HLGFAError(f"aug_views must be 'both' or 'low', got {self.aug_views!r}.")
        if self.normality not in ("none", "global", "position"):
            raise HLGFAError(f"normality must be 'none', 'global' or 'position', got {self.normality!r}.")
        from .backbone import RUNTIMES  # the backbone owns the list; whether one is installed is checked there

        if self.backbone_runtime not in RUNTIMES:
            raise HLGFAError(f"backbone_runtime must be one of {list(RUNTIMES)}, got {self.backbone_runtime!r}.")
        if self.map_scale not in ("std", "max", "auto"):
            raise HLGFAError(f"map_scale must be 'std', 'max' or 'auto', got {self.map_scale!r}.")
        if self.normality_levels not in ("all", "fine", "auto"):
            raise HLGFAError(f"normality_levels must be 'all', 'fine' or 'auto', got {self.normality_levels!r}.")
        if self.train_precision not in ("auto", "float32", "bfloat16"):
            raise HLGFAError(f"train_precision must be 'auto', 'float32' or 'bfloat16', got {self.train_precision!r}.")
        if self.normality_draws not in ("clean", "all"):
            raise HLGFAError(f"normality_draws must be 'clean' or 'all', got {self.normality_draws!r}.")
        if not self.out_indices:
            raise HLGFAError("out_indices is empty: name at least one backbone level, e.g. (1, 2, 3).")
        return self

    # (field, test, what it must be): written "not (x > 0)" style so NaN fails every test
    _RANGES = (
        # 32 px is one stride-32 cell; beyond 4096 px (load_image's downscale) the features alone need gigabytes
        ("hr_size", lambda v: 32 <= v <= 4096, "in [32, 4096]"),
        ("lr_size", lambda v: 32 <= v <= 4096, "in [32, 4096]"),
        ("steps", lambda v: 1 <= v <= MAX_STEPS, f"in [1, {MAX_STEPS}]"),
        ("batch_size", lambda v: 1 <= v <= MAX_BATCH_SIZE, f"in [1, {MAX_BATCH_SIZE}]"),
        ("min_batch_size", lambda v: 0 <= v <= MAX_BATCH_SIZE, f"in [0, {MAX_BATCH_SIZE}]"),
        ("passes", lambda v: 0 <= v <= 1e6, "in [0, 1e6]"),
        ("aug_copies", lambda v: v >= 0, ">= 0"), ("aug_budget", lambda v: v >= 0, ">= 0"),
        ("head_draws", lambda v: v >= 0, ">= 0"),
        ("seed", lambda v: 0 <= v < 2 ** 63, "in [0, 2**63)"),  # the command line's range; torch takes no more
        ("lr", lambda v: 0 < v < 10, "in (0, 10)"),
        ("weight_decay", lambda v: 0 <= v < 10, "in [0, 10)"),
        ("holdout_fraction", lambda v: 0 < v < 1, "in (0, 1)"), ("prior_sigma", lambda v: 0 < v <= 64, "in (0, 64]"),
        ("prior_width", lambda v: 0 < v <= 8, "in (0, 8]"), ("hidden_width", lambda v: 0 < v <= 8, "in (0, 8]"),
        ("gate_bias_init", lambda v: -50 < v < 50, "in (-50, 50)"), ("aug_prob", lambda v: 0 <= v <= 1, "in [0, 1]"),
        ("aug_noise_std", lambda v: 0 <= v <= 1, "in [0, 1]"), ("aug_blur_sigma", lambda v: 0 <= v <= 32, "in [0, 32]"),
        ("aug_sharpness", lambda v: 0 <= v <= 16, "in [0, 16]"), ("aug_brightness", lambda v: 0 <= v < 1, "in [0, 1)"),
        ("aug_gamma", lambda v: 0 <= v < 1, "in [0, 1)"), ("normality_weight", lambda v: 0 < v < 1, "in (0, 1)"),
        ("map_normality_weight", lambda v: 0 <= v < 1, "in [0, 1) or None"),
        ("smooth_sigma", lambda v: 0 <= v <= 64, "in [0, 64]"),
        ("score_topk", lambda v: 0 <= v < 1, "in [0, 1)"), ("eval_size", lambda v: 8 <= v <= 4096, "in [8, 4096]"),
    )

    @classmethod
    def type_fits(cls, name: str, value) -> bool:
        """Whether ``value`` has field ``name``'s type: its default's (an int is a float too, a bool is no number;
        a list of ints, as JSON holds it, is a tuple), or None where the field allows it."""
        default = cls.__dataclass_fields__[name].default
        if value is None:
            return cls.allows_none(name)
        if isinstance(default, bool):
            return isinstance(value, bool)
        if isinstance(default, int):
            return isinstance(value, int) and not isinstance(value, bool)
        if isinstance(default, float):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if isinstance(default, tuple):
            return isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value)
        return isinstance(value, type(default))

    @classmethod
    def allows_none(cls, name: str) -> bool:
        """Whether field ``name`` may be None (typed ``X | None``): None then means "as another field says"."""
        return "None" in str(cls.__dataclass_fields__[name].type)

    def _check_types(self, names: list[str]) -> None:
        for name in names:
            if not self.type_fits(name, getattr(self, name)):
                default = self.__dataclass_fields__[name].default
                raise HLGFAError(f"config field {name} must be like {default!r}, got {getattr(self, name)!r}.")

    def _check_ranges(self) -> None:
        for name, test, wanted in self._RANGES:
            value = getattr(self, name)
            if value is None and self.allows_none(name):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not test(value):
                raise HLGFAError(f"config field {name} must be {wanted}, got {value!r}.")
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.out_indices):
            raise HLGFAError(f"config field out_indices must be backbone level numbers >= 0, got {self.out_indices!r}.")
        quality = self.aug_jpeg_quality
        if len(quality) != 2 or not all(isinstance(q, int) for q in quality) or not 1 <= quality[0] <= quality[1] <= 100:
            raise HLGFAError(f"config field aug_jpeg_quality must be (low, high) with 1 <= low <= high <= 100, "
                             f"got {self.aug_jpeg_quality!r}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "HLGFAConfig":
        values = {**BEFORE_THE_FIELD, **values}
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise HLGFAError(f"unknown config keys {unknown}: this checkpoint needs a newer hlgfa_lite.")
        cleaned = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**cleaned).validate()

    def replace(self, **changes) -> "HLGFAConfig":
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.__dataclass_fields__, n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise HLGFAError(f"unknown config field {unknown[0]!r}{hint}; every field is listed in "
                             "hlgfa_lite/config.py (HLGFAConfig).")
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}  # out_indices=[1, 2]
        return dataclasses.replace(self, **changes).validate()


# The fields added since checkpoints took their format (``tools.checkpoint.FORMAT_VERSION``), each with the value
# that reproduces what a model did before the field existed: an older checkpoint lacks them and behaves as it did
# then. Any other field missing from a checkpoint's config means the file was damaged or edited.
BEFORE_THE_FIELD = {"normality": "none", "map_scale": "std", "normality_weight": 0.5, "passes": 0.0,
                    "train_precision": "float32", "aug_budget": 0, "normality_levels": "all",
                    "map_normality_weight": None, "head_draws": 0, "min_batch_size": 0,
                    "normality_draws": "clean"}

PRESETS: dict[str, HLGFAConfig] = {
    "lite": HLGFAConfig(),
    # the abstract's method alone, on the CPU backbone: what the paper's components do without our additions
    # (normality_weight 0.5: no normality maps to weigh, and the value every checkpoint before the field had)
    # (its head is the whole score, and the lessons' heads are fitted with it: it reads every draw)
    "lite_paper": HLGFAConfig(normality="none", map_scale="std", normality_weight=0.5, map_normality_weight=None,
                              head_draws=0, min_batch_size=0),
    "paper": HLGFAConfig(backbone="wide_resnet50_2", out_indices=(1, 2, 3), batch_size=16, steps=2000, passes=0.0,
                         normality="none", map_scale="std", normality_weight=0.5, map_normality_weight=None,
                         head_draws=0, min_batch_size=0),
}


def preset(name: str, **overrides) -> HLGFAConfig:
    """A copy of a named preset, with any field overridden: ``preset("lite", steps=200)``."""
    if name not in PRESETS:
        raise HLGFAError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    return PRESETS[name].replace(**overrides)

