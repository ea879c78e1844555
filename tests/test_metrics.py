"""Metrics against independent references: a rank statistic for AUROC, brute force for F1, hand-made PRO cases."""

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import f1_score

from hlgfa_lite import metrics


def test_auroc_equals_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(6, 20, 20))
    masks = np.zeros_like(maps, dtype=bool)
    masks[3:, 5:12, 4:9] = True
    maps[masks] += 0.8
    u = mannwhitneyu(maps[masks], maps[~masks]).statistic
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(u / (masks.sum() * (~masks).sum()), abs=1e-9)
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8, 0.35]), np.array([0, 0, 1, 1, 1])
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8 beats both, 0.35>0.1, 0.35<0.4 -> 4 of 6
    assert metrics.image_auroc(scores, labels) == pytest.approx(4 / 6)


def test_f1_max_matches_brute_force():
    rng = np.random.default_rng(1)
    scores, labels = rng.random(40), rng.integers(0, 2, 40)
    best = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    f1, threshold = metrics.f1_max(scores, labels)
    assert f1 == pytest.approx(best)
    assert f1_score(labels, scores >= threshold) == pytest.approx(best)


def test_aupro_perfect_map_is_one():
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2:4, 2:4] = True
    masks[1, 6:9, 1:3] = True
    assert metrics.aupro(masks.astype(float), masks) == pytest.approx(1.0)


def test_aupro_one_of_two_regions_found_is_one_half():
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 1:3, 1:3] = True  # region A: found
    masks[0, 6:9, 6:9] = True  # region B: scored below every normal pixel
    maps = np.full((1, 10, 10), 0.5)
    maps[0, 1:3, 1:3] = 1.0
    maps[0, 6:9, 6:9] = 0.0
    assert metrics.aupro(maps, masks) == pytest.approx(0.5)


def test_aupro_region_found_late_counts_from_its_fpr():
    # 100 normal pixels with scores 0.01..1.00; region A (4 px) above all; region B (4 px) at 0.855,
    # so B is found once the 15 normals above 0.855 are flagged: PRO = 0.5 on [0, 0.15), 1 on [0.15, 0.3]
    normal = np.arange(1, 101) / 100
    maps = np.concatenate([normal, [2.0] * 4, [0.855] * 4]).reshape(1, 1, -1)
    masks = np.zeros_like(maps, dtype=bool)
    masks[0, 0, 100:] = True
    masks = np.concatenate([masks, np.zeros_like(masks)])  # a second, empty image of 0-score pixels...
    maps = np.concatenate([maps, np.full_like(maps, -1.0)])  # ...adds normals that are never flagged
    masks[0, 0, 103] = False  # split A and B into separate regions: A = 100..102, B = 104..107
    maps[0, 0, 103] = 0.0
    # normals: 100 + 1 (pixel 103) + 108 (second image); flagged-above-B normals: 15 of 209
    fpr_b = 15 / 209
    expected = (0.5 * fpr_b + 1.0 * (0.3 - fpr_b)) / 0.3
    assert metrics.aupro(maps, masks) == pytest.approx(expected, abs=1e-9)


def test_pro_counts_each_region_equally_whatever_its_size():
    masks = np.zeros((1, 20, 20), dtype=bool)
    masks[0, 0:10, 0:10] = True  # 100 px region, missed
    masks[0, 15, 15] = True  # 1 px region, found
    maps = np.zeros((1, 20, 20))
    maps[0, 15, 15] = 1.0
    maps[0, 0:10, 0:10] = -1.0
    fpr, pro = metrics.pro_curve(maps, masks)
    assert pro[1] == pytest.approx(0.5) and fpr[1] == 0  # the tiny region alone gives half of PRO


def test_pro_needs_a_defect():
    with pytest.raises(ValueError):
        metrics.pro_curve(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), dtype=bool))
