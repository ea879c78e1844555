"""The calibration: what a score means. One typed object owns every threshold, the sensitivity rule, the colour
scale and the three-state verdict, so the model, the memory-bank baseline, the CLI, the demo and the figures all
draw the same masks and give the same verdicts.

**Where the good scores come from.** Scores s_1..s_n of good images the head was *not* trained on: the held-out
images, plus, when fewer than ``CROSS_FIT_BELOW`` are held out, out-of-fold scores of the training images
(``training.cross_fit_scores``: k fold models, each a whole fit without one fold, head and normality statistics
from the other training images and per-map statistics from the held-out images, score that fold). With 8 images a
single held-out score is all there is otherwise.

**Image threshold for a target false-alarm rate a.** Good scores are right-skewed and positive, so we model
x = log s as Gaussian N(m, sd^2) (raw s when a score is <= 0). From x_1..x_n: mean x_bar, sample std s_x.

* point estimate of the good-part (1 - a) quantile:       q     = x_bar + z_{1-a} s_x
* one-sided (a, g) tolerance bound (Owen 1963):           u     = x_bar + k s_x,
  k = t'_{g}(n - 1, z_{1-a} sqrt(n)) / sqrt(n), t' the non-central t quantile: with probability g over the n
  calibration images, at most a of good parts score above u. k grows as n shrinks (n = 21, a = g = 0.05/0.95:
  k = 2.56; n = 5: 4.2), which is the margin few images need.
* conformal guard: u is raised to the ceil((n + 1)(1 - a))-th smallest good score when n is large enough for it
  to exist, so a heavier tail than the log-normal one is still covered.

Scores in (exp q, exp u] are **borderline**: within the calibration's own uncertainty; above exp u **anomalous**.
With n = 1 there is no spread to estimate: s_x is the prior ``PRIOR_LOG_SD`` and k that of n = 2; a spread
below ``MIN_LOG_SD`` (identical images) is raised to it.

**Sensitivity** s moves every threshold t towards the typical good score c = exp(x_bar): t(s) = c + (t - c) / s
(s > 1 flags more, s < 1 fewer); the pixel threshold moves the same way around the median good pixel.

**Pixels and colours.** pixel threshold = the brightest pixel on any calibration map; colour scale from the
median good pixel (vmin) to vmin + 2 (pixel threshold - vmin), so the threshold sits mid-scale.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

# the false-alarm target, the confidence and the sensitivity's range are set on the command line: they live with
# the other knobs in config.py, where `hlgfa-lite --help` reads them without loading torch (the reasons are there)
from .config import DEFAULT_CONFIDENCE, DEFAULT_TARGET_FPR, MAX_SENSITIVITY, MIN_SENSITIVITY  # noqa: F401
from .errors import HLGFAError

NORMAL, BORDERLINE, ANOMALOUS = "normal", "borderline", "anomalous"
VERDICTS = (NORMAL, BORDERLINE, ANOMALOUS)
CROSS_FIT_BELOW = 8  # fewer held-out images than this: add cross-fitted scores of the training images
FEW_GOOD_SCORES = 8  # below this the tolerance bound's margin is wide (n = 5: 5.7 log-sds; n = 2: 37): fit warns
CROSS_FIT_FOLDS = 3  # fold models behind the out-of-fold scores (each fitted without a third of the images)


def fold_splits(n: int, folds: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(held, kept) image indices of each cross-fit fold, both sorted: a seeded shuffle of range(n) dealt into
    ``min(folds, n)`` groups; every fold model (HLGFA's and the memory bank's) is fitted on ``kept`` and scores
    ``held``. No folds below two groups."""
    folds = min(folds, n)
    if folds < 2:
        return []
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    splits = []
    for fold in range(folds):
        held = order[fold::folds].sort().values
        taken = set(held.tolist())
        splits.append((held, torch.tensor([i for i in range(n) if i not in taken])))
    return splits
PRIOR_LOG_SD = 0.25  # log-score spread assumed from one image (bottle, 21 held-out: 0.17; see benchmarks)
MIN_LOG_SD = 0.05  # floor on the spread: two identical images do not make a zero-width band
METHODS = ("lognormal-tolerance", "normal-tolerance")
# Largest score or map value a fit can calibrate on. Maps are in units of a good image's own spread (scoring.py):
# good images score about 1 to 10, a strong defect a few hundred. The widest band a fit draws is one held-out image's:
# the prior spread 0.25 times the two-image tolerance factor 37 (log units), exp(9.3) ~ 1e4 above the typical good
# score. 1e6 leaves a factor of 100 above that; a threshold beyond it (1e300) would call every image normal, and
# only an edit of the checkpoint can make one.
MAX_SCORE = 1e6
SCORE_FIELDS = ("image_threshold", "borderline_threshold", "good_score_center", "good_score_max")


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HLGFAError(f"calibration field {name} must be a number, got {type(value).__name__}.")
    if not math.isfinite(value):
        raise HLGFAError(f"calibration field {name} is {value}; it must be finite (re-fit the model).")
    return float(value)


@dataclass(frozen=True)
class Calibration:
    """Thresholds, sensitivity rule and colour scale of one fitted model; immutable and validated on creation."""

    image_threshold: float  # above: anomalous (the tolerance bound u)
    borderline_threshold: float  # above (and <= image_threshold): borderline (the quantile estimate q)
    good_score_center: float  # typical good score c: the fixed point of the sensitivity rule
    good_score_max: float  # highest calibration score (for reports)
    pixel_threshold: float  # pixels above it form the defect mask
    map_vmin: float  # colour scale: bottom (median good pixel)
    map_vmax: float  # colour scale: top
    target_fpr: float = DEFAULT_TARGET_FPR
    confidence: float = DEFAULT_CONFIDENCE
    n_images: int = 1  # good scores the thresholds rest on
    method: str = "lognormal-tolerance"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.type == "float":
                _finite(f.name, getattr(self, f.name))
        if not isinstance(self.n_images, int) or isinstance(self.n_images, bool) or self.n_images < 1:
            raise HLGFAError(f"calibration field n_images must be an integer >= 1, got {self.n_images!r}.")
        if self.method not in METHODS:
            raise HLGFAError(f"calibration field method must be one of {list(METHODS)}, got {self.method!r}.")
        if not 0 < self.target_fpr < 0.5:  # as calibrate() and the CLI accept it
            raise HLGFAError(f"calibration field target_fpr must be in (0, 0.5), got {self.target_fpr}.")
        if not 0.5 <= self.confidence < 1:
            raise HLGFAError(f"calibration field confidence must be in [0.5, 1), got {self.confidence}.")
        if not self.good_score_center <= self.borderline_threshold <= self.image_threshold:
            raise HLGFAError("calibration fields must be ordered good_score_center <= borderline_threshold <= "
                             f"image_threshold, got {self.good_score_center}, {self.borderline_threshold}, "
                             f"{self.image_threshold}; re-fit the model.")
        if not self.map_vmin < self.map_vmax:
            raise HLGFAError(f"calibration fields map_vmin ({self.map_vmin}) must be below map_vmax "
                             f"({self.map_vmax}); re-fit the model.")
        if not self.map_vmin <= self.pixel_threshold:
            raise HLGFAError(f"calibration field pixel_threshold ({self.pixel_threshold}) is below map_vmin "
                             f"({self.map_vmin}); re-fit the model.")
        self._check_physical()

    def _check_physical(self) -> None:
        """Values a fit can produce: every score and map value within +-MAX_SCORE; on the log-normal model (every good
        score was > 0) the score fields positive, and the typical good score no higher than the highest."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and f.name not in ("target_fpr", "confidence") and not abs(value) <= MAX_SCORE:
                raise HLGFAError(f"calibration field {f.name} is {value:g}, beyond the {MAX_SCORE:g} no fit can "
                                 "reach (scores are in units of a good image's spread); re-fit the model.")
        if self.method == "lognormal-tolerance":
            for name in SCORE_FIELDS:
                if not getattr(self, name) > 0:
                    raise HLGFAError(f"calibration field {name} is {getattr(self, name):g}, but a log-normal bound "
                                     "is positive (every good score was > 0); re-fit the model.")
        if not self.good_score_center <= self.good_score_max + 1e-9 * abs(self.good_score_max):  # exp(log s): 1 ulp
            raise HLGFAError(f"calibration field good_score_center ({self.good_score_center:g}) is above "
                             f"good_score_max ({self.good_score_max:g}); re-fit the model.")

    # --- the rules everyone uses ------------------------------------------------------------------------------
    @staticmethod
    def check_sensitivity(sensitivity: float) -> float:
        if isinstance(sensitivity, bool) or not isinstance(sensitivity, (int, float)) \
                or not MIN_SENSITIVITY <= sensitivity <= MAX_SENSITIVITY:  # NaN fails this too
            raise HLGFAError(f"sensitivity must be a number in [{MIN_SENSITIVITY}, {MAX_SENSITIVITY}] (1 = as "
                             f"calibrated), got {sensitivity}.")
        return float(sensitivity)

    def _moved(self, threshold: float, base: float, sensitivity: float) -> float:
        return base + (threshold - base) / self.check_sensitivity(sensitivity)

    def threshold(self, sensitivity: float = 1.0) -> float:
        """Image score above which an image is anomalous: c + (u - c) / s."""
        return self._moved(self.image_threshold, self.good_score_center, sensitivity)

    def borderline(self, sensitivity: float = 1.0) -> float:
        """Image score above which an image is at least borderline: c + (q - c) / s."""
        return self._moved(self.borderline_threshold, self.good_score_center, sensitivity)

    def pixel(self, sensitivity: float = 1.0) -> float:
        """Map value above which a pixel is in the defect mask: vmin + (t_pix - vmin) / s."""
        return self._moved(self.pixel_threshold, self.map_vmin, sensitivity)

    def verdict(self, score: float, sensitivity: float = 1.0) -> str:
        """'normal', 'borderline' or 'anomalous'; a NaN or infinite score is an error, never 'normal'."""
        if isinstance(score, (torch.Tensor, np.ndarray)) and math.prod(score.shape) == 1:
            score = score.item()
        if isinstance(score, (str, bytes, bool)) or not isinstance(score, numbers.Real):
            raise HLGFAError(f"verdict takes one image's score (a number), got {type(score).__name__}; for many "
                             "scores call it once per score.")
        score = float(score)
        if not math.isfinite(score):
            raise HLGFAError(f"the image score is {score}: the model or the image is broken; nothing was judged.")
        if score > self.threshold(sensitivity):
            return ANOMALOUS
        return BORDERLINE if score > self.borderline(sensitivity) else NORMAL

    def is_anomalous(self, score: float, sensitivity: float = 1.0) -> bool:
        """True only for 'anomalous' (a borderline image is not flagged)."""
        return self.verdict(score, sensitivity) == ANOMALOUS

    def mask(self, anomaly_map, sensitivity: float = 1.0):
        """Boolean defect mask of a map (numpy array or tensor): pixels above ``pixel(sensitivity)``."""
        return anomaly_map > self.pixel(sensitivity)

    # --- serialisation ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values) -> "Calibration":
        """From ``model.json``'s calibration: every field present, of the right type, finite and ordered."""
        if not isinstance(values, dict):
            raise HLGFAError("calibration must be a JSON object; the checkpoint is damaged, re-fit the model.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(values) - names), sorted(names - set(values))
        if unknown:
            raise HLGFAError(f"unknown calibration fields {unknown}: this checkpoint needs another hlgfa_lite.")
        if missing:
            raise HLGFAError(f"calibration lacks fields {missing}; re-fit the model (or re-save it with "
                             "scripts/resave_checkpoint.py).")
        return cls(**values)


# --- fitting a calibration ------------------------------------------------------------------------------------
def tolerance_factor(n: int, target_fpr: float, confidence: float) -> float:
    """k of the one-sided normal tolerance bound x_bar + k s: covers 1 - target_fpr with probability confidence."""
    n = max(n, 2)
    z = stats.norm.ppf(1 - target_fpr)
    return float(stats.nct.ppf(confidence, df=n - 1, nc=z * math.sqrt(n)) / math.sqrt(n))


def calibrate(good_scores, good_maps, target_fpr: float = DEFAULT_TARGET_FPR,
              confidence: float = DEFAULT_CONFIDENCE) -> Calibration:
    """A Calibration from good scores (n,) and the maps (N, H, W) of the held-out good images (see module doc)."""
    scores = np.asarray(torch.as_tensor(good_scores, dtype=torch.float64).flatten().numpy())
    maps = torch.as_tensor(good_maps).float()
    if scores.size == 0 or maps.numel() == 0:
        raise HLGFAError("calibration needs at least one good image; keep one aside (holdout_fraction).")
    if not np.isfinite(scores).all() or not torch.isfinite(maps).all():
        raise HLGFAError("a calibration image gave a NaN or infinite score; check the images and the weights.")
    if not 0 < target_fpr < 0.5:
        raise HLGFAError(f"target false-alarm rate must be in (0, 0.5), got {target_fpr}.")
    if not 0.5 <= confidence < 1:
        raise HLGFAError(f"calibration confidence must be in [0.5, 1), got {confidence}.")
    log_scale = bool((scores > 0).all())
    x = np.log(scores) if log_scale else scores
    n, centre = len(x), float(x.mean())
    floor = MIN_LOG_SD * (1.0 if log_scale else max(abs(centre), 1.0))
    spread = float(x.std(ddof=1)) if n >= 2 else PRIOR_LOG_SD * (1.0 if log_scale else max(abs(centre), 1.0))
    spread = max(spread, floor)
    quantile = centre + stats.norm.ppf(1 - target_fpr) * spread
    upper = centre + tolerance_factor(n, target_fpr, confidence) * spread
    rank = math.ceil((n + 1) * (1 - target_fpr))  # conformal: the rank-th smallest of n exchangeable scores
    if rank <= n:
        upper = max(upper, float(np.sort(x)[rank - 1]))
    back = np.exp if log_scale else (lambda v: v)
    pixel_threshold = maps.max().item()
    vmin = maps.median().item()
    vmax = vmin + 2 * (pixel_threshold - vmin)
    if vmax <= vmin:  # a constant map (random or degenerate weights): any non-empty scale will do
        vmax = vmin + 1.0
    return Calibration(image_threshold=float(back(upper)), borderline_threshold=float(back(quantile)),
                       good_score_center=float(back(centre)), good_score_max=float(scores.max()),
                       pixel_threshold=pixel_threshold, map_vmin=vmin, map_vmax=vmax, target_fpr=target_fpr,
                       confidence=confidence, n_images=int(n),
                       method="lognormal-tolerance" if log_scale else "normal-tolerance")
