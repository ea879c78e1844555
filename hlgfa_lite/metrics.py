"""The standard anomaly-detection metrics, image- and pixel-level.

- image AUROC, pixel AUROC: scikit-learn's ``roc_auc_score`` (scores vs labels, pixels flattened).
- image F1-max: the best F1 over all thresholds of the precision-recall curve (scikit-learn).
- pixel AUPRO (Bergmann et al., MVTec AD): each connected defect region (8-connectivity) counts equally.
  For a threshold t,

      PRO(t) = (1/R) sum_r |{u in region r : A(u) > t}| / |region r|
      FPR(t) = |{u normal : A(u) > t}| / |{u normal}|          (normal: every pixel outside all masks)

  AUPRO = (area under PRO as a function of FPR, for FPR in [0, 0.3]) / 0.3, so a perfect map scores 1.
  Computed exactly: one sort of all pixels gives the curve at every distinct threshold.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score

EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    return float(roc_auc_score(masks.ravel().astype(np.uint8), maps.ravel()))


def f1_max(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(best F1, the threshold that gives it)."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(f1[best]), float(thresholds[best]) if len(thresholds) else float("nan")


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """maps (N, H, W) float, masks (N, H, W) bool -> (fpr, pro), both increasing, starting at (0, 0)."""
    region_of = np.zeros(masks.shape, dtype=np.int64)  # 0: normal pixel, r >= 1: defect region r
    n_regions = 0
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        region_of[i] = np.where(labelled > 0, labelled + n_regions, 0)
        n_regions += count
    if n_regions == 0:
        raise ValueError("PRO needs at least one defect region in the masks.")
    region_of = region_of.ravel()
    sizes = np.bincount(region_of, minlength=n_regions + 1).astype(np.float64)
    # each pixel of region r adds 1 / (|r| R) to PRO once the threshold drops below its score
    weight = np.where(region_of > 0, 1.0 / (sizes[region_of] * n_regions), 0.0)
    normal = region_of == 0
    order = np.argsort(-maps.ravel(), kind="stable")
    sorted_scores = maps.ravel()[order]
    fpr = np.cumsum(normal[order]) / max(normal.sum(), 1)
    pro = np.cumsum(weight[order])
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    return np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    fpr, pro = pro_curve(maps, masks)
    inside = np.searchsorted(fpr, fpr_limit, side="right")
    x, y = fpr[:inside], pro[:inside]
    if inside < len(fpr) and x[-1] < fpr_limit:  # close the curve exactly at the limit
        x = np.r_[x, fpr_limit]
        y = np.r_[y, np.interp(fpr_limit, fpr[inside - 1:inside + 1], pro[inside - 1:inside + 1])]
    return float(np.trapezoid(y, x) / fpr_limit)
