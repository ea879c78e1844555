"""Scoring an MVTec-layout test set and computing its metrics, for the CLI, the benchmark and the lessons.

Each image is scored alone (batch 1), as a line inspection camera would; the time of the model call
(both resolutions, the head and the fusion; not file reading) is recorded after a warm-up, and the median
reported. Pixel metrics are computed on maps and masks brought to ``eval_size`` squared (masks: nearest).
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .metrics import aupro, f1_max, image_auroc, pixel_auroc
from .data import LabelledImage, load_image, load_test_split, marks_over_half, mask_warnings, read_mask
from .errors import HLGFAError

METRIC_KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "ms_per_image", "n_test_images")

# Anything that maps one (1, 3, H, W) image to (map (1, S, S), score (1,)): HLGFA or a baseline.
ScoreFunction = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    samples: list[LabelledImage]
    scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, eval_size, eval_size) float32
    masks: np.ndarray  # (N, eval_size, eval_size) bool
    per_type: dict[str, float] = field(default_factory=dict)  # image AUROC of each defect type vs good

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])


def _to_eval_size(anomaly_map: torch.Tensor, size: int) -> np.ndarray:
    return F.interpolate(anomaly_map[None, None].float(), size=(size, size), mode="bilinear",
                         align_corners=False)[0, 0].cpu().numpy()


def evaluate_samples(score: ScoreFunction, samples: list[LabelledImage], eval_size: int = 256, warmup: int = 2,
                     progress: bool = True, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Evaluation:
    """Score every sample with ``score`` and compute all metrics; ``transform`` alters each image first
    (a nuisance, for the robustness benchmark)."""
    maps, masks, scores, times, offsets, large = [], [], [], [], [], []
    for index, sample in enumerate(tqdm(samples, desc="scoring", disable=not progress, leave=False)):
        image = load_image(sample.path)
        shape = tuple(image.shape[-2:])  # the mask belongs to the image as stored, whatever ``transform`` does
        if transform is not None:
            image = transform(image)
        for _ in range(warmup if index == 0 else 0):
            score(image[None])
        started = time.perf_counter()
        anomaly_map, image_score = score(image[None])
        times.append((time.perf_counter() - started) * 1000)
        maps.append(_to_eval_size(anomaly_map[0], eval_size))
        scores.append(float(image_score[0]))
        if not np.isfinite(scores[-1]) or not torch.isfinite(anomaly_map).all():
            raise HLGFAError(f"{sample.path} scored {scores[-1]} (NaN or infinite map): the model or the image is "
                             "broken; no metrics were computed.")
        if sample.mask_path is None:
            masks.append(np.zeros((eval_size, eval_size), dtype=bool))
        else:
            mask, background = read_mask(sample.mask_path, shape)
            if background != 0:
                offsets.append((background, sample.mask_path))
            if marks_over_half(mask):
                large.append(sample.mask_path)
            mask = mask.float()
            masks.append(F.interpolate(mask[None, None], size=(eval_size, eval_size), mode="nearest")[0, 0].numpy() > 0)
    mask_paths = [s.mask_path for s in samples if s.mask_path is not None]
    for line in mask_warnings(offsets, large, len(mask_paths), mask_paths):
        warnings.warn(line, stacklevel=2)  # one line for the whole set, not one per mask
    result = Evaluation({}, samples, np.array(scores), np.stack(maps), np.stack(masks))
    labels = result.labels
    # a defect image with an empty mask still counts for the image metrics (real sets have a few: magnetic tile has
    # four); only when no mask marks a single pixel are the pixel metrics undefined
    if labels.any() and not result.masks[labels == 1].any():
        raise HLGFAError("every defect mask is empty (all black), so pixel metrics are undefined; mark the defects "
                         "in ground_truth/<defect type>/<name>_mask.png.")
    f1, _ = f1_max(result.scores, labels)
    result.metrics = {
        "image_auroc": image_auroc(result.scores, labels),
        "pixel_auroc": pixel_auroc(result.maps, result.masks),
        "pixel_aupro": aupro(result.maps, result.masks, fpr_limit=0.3),
        "image_f1_max": f1,
        "ms_per_image": statistics.median(times),
        "n_test_images": len(samples),
    }
    good = labels == 0
    for defect in sorted({s.defect_type for s in samples} - {"good"}):
        chosen = good | np.array([s.defect_type == defect for s in samples])
        result.per_type[defect] = image_auroc(result.scores[chosen], labels[chosen])
    return result


def verdict_rates(scores: np.ndarray, labels: np.ndarray, calibration, sensitivity: float = 1.0) -> dict[str, float]:
    """Shares of good (label 0) and defective (label 1) images per verdict at a calibration; borderline is not
    flagged: image_fpr = good judged anomalous, image_tpr = defective judged anomalous."""
    verdicts = np.array([calibration.verdict(s, sensitivity) for s in scores])
    good, bad = labels == 0, labels == 1

    def share(mask, verdict):
        return float((verdicts[mask] == verdict).mean()) if mask.any() else float("nan")

    return {"image_fpr": share(good, "anomalous"), "image_tpr": share(bad, "anomalous"),
            "good_borderline": share(good, "borderline"), "defect_borderline": share(bad, "borderline")}


def evaluate(model, root: str | Path, progress: bool = True) -> Evaluation:
    """All metrics of a fitted HLGFA model on the test split of an MVTec-layout folder."""
    return evaluate_samples(model.score_batch, load_test_split(root), model.cfg.eval_size, progress=progress)
