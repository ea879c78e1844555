"""The calibration: the tolerance bound against tables and simulation, the three verdicts, validation."""

import math

import numpy as np
import pytest
import torch

from hlgfa_lite import HLGFAError
from hlgfa_lite.calibration import Calibration, calibrate, tolerance_factor

MAPS = torch.linspace(0, 1, 32).reshape(2, 4, 4)


def test_tolerance_factor_matches_published_tables():
    # one-sided normal tolerance factors, coverage 0.95 / confidence 0.95 (e.g. NIST e-Handbook 7.2.6.3)
    for n, k in ((5, 4.203), (10, 2.911), (20, 2.396)):
        assert tolerance_factor(n, 0.05, 0.95) == pytest.approx(k, abs=2e-3)


def test_tolerance_bound_keeps_its_promise_in_simulation():
    """Over many calibrations on n = 8 log-normal good scores, the true exceedance of the anomaly threshold is
    <= the target in at least `confidence` of them (an independent Monte-Carlo check of the derivation)."""
    rng = np.random.default_rng(0)
    mu, sigma, n, target = 0.8, 0.2, 8, 0.05
    held = []
    for _ in range(2000):
        cal = calibrate(torch.from_numpy(np.exp(rng.normal(mu, sigma, n))), MAPS, target_fpr=target, confidence=0.9)
        exceed = 0.5 * math.erfc((math.log(cal.image_threshold) - mu) / (sigma * math.sqrt(2)))
        held.append(exceed <= target)
    assert 0.88 <= np.mean(held) <= 0.93  # nominal 0.9; the spread floor only ever adds margin


def test_three_verdicts_and_the_sensitivity_rule():
    cal = calibrate(torch.tensor([1.9, 2.0, 2.1, 2.2, 2.4]), MAPS)
    assert cal.good_score_center < cal.borderline_threshold < cal.image_threshold
    assert cal.verdict(cal.good_score_center) == "normal"
    assert cal.verdict((cal.borderline_threshold + cal.image_threshold) / 2) == "borderline"
    assert cal.verdict(cal.image_threshold + 1e-6) == "anomalous" and cal.is_anomalous(cal.image_threshold + 1e-6)
    assert not cal.is_anomalous(cal.image_threshold)  # borderline is not flagged
    c, t = cal.good_score_center, cal.image_threshold
    assert cal.threshold(2.0) == pytest.approx(c + (t - c) / 2)
    assert cal.pixel(2.0) == pytest.approx(cal.map_vmin + (cal.pixel_threshold - cal.map_vmin) / 2)
    assert np.array_equal(cal.mask(np.array([cal.pixel() - 1e-3, cal.pixel() + 1e-3])), [False, True])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_broken_score_is_an_error_never_normal(bad):
    cal = calibrate(torch.tensor([2.0, 2.1]), MAPS)
    with pytest.raises(HLGFAError, match="score"):
        cal.verdict(bad)


@pytest.mark.parametrize("sensitivity", [float("nan"), 0.0, -1.0, float("inf"), "2", True, 1e-300, 1e9])
def test_bad_sensitivity_is_refused(sensitivity):
    cal = calibrate(torch.tensor([2.0, 2.1]), MAPS)
    with pytest.raises(HLGFAError, match="sensitivity"):
        cal.verdict(2.0, sensitivity)


def test_one_image_or_identical_images_still_give_a_band():
    one = calibrate(torch.tensor([2.0]), MAPS)
    same = calibrate(torch.tensor([2.0, 2.0, 2.0]), MAPS)
    for cal in (one, same):
        assert 2.0 < cal.borderline_threshold < cal.image_threshold
    assert one.image_threshold > same.image_threshold  # one image: more uncertainty, wider band


def test_few_images_widen_the_margin():
    rng = np.random.default_rng(1)
    scores = np.exp(rng.normal(0.8, 0.2, 40))
    few, many = calibrate(torch.from_numpy(scores[:4]), MAPS), calibrate(torch.from_numpy(scores), MAPS)
    assert (math.log(few.image_threshold) - math.log(few.borderline_threshold)
            > math.log(many.image_threshold) - math.log(many.borderline_threshold))


def test_round_trip_and_every_field_checked():
    cal = calibrate(torch.tensor([2.0, 2.1, 2.3]), MAPS)
    assert Calibration.from_dict(cal.to_dict()) == cal
    for field, value, words in (("image_threshold", float("nan"), "image_threshold"),
                                ("map_vmax", float("inf"), "map_vmax"),
                                ("image_threshold", 0.0, "ordered"),
                                ("pixel_threshold", "3", "pixel_threshold"),
                                ("n_images", 0, "n_images"),
                                ("target_fpr", 1.5, "target_fpr")):
        with pytest.raises(HLGFAError, match=words):
            Calibration.from_dict({**cal.to_dict(), field: value})
    with pytest.raises(HLGFAError, match="lacks"):
        Calibration.from_dict({k: v for k, v in cal.to_dict().items() if k != "map_vmin"})
    with pytest.raises(HLGFAError, match="unknown"):
        Calibration.from_dict({**cal.to_dict(), "extra": 1})
    with pytest.raises(HLGFAError, match="JSON object"):
        Calibration.from_dict([1, 2])


def test_calibration_refuses_broken_inputs():
    with pytest.raises(HLGFAError, match="NaN"):
        calibrate(torch.tensor([2.0, float("nan")]), MAPS)
    with pytest.raises(HLGFAError, match="at least one"):
        calibrate(torch.tensor([]), MAPS)


def test_fold_splits_partition_every_image_once():
    from hlgfa_lite.calibration import fold_splits
    for n, folds in [(9, 3), (2, 3), (10, 3), (4, 2)]:
        splits = fold_splits(n, folds, seed=0)
        assert len(splits) == min(n, folds)
        held = torch.cat([h for h, _ in splits])
        assert sorted(held.tolist()) == list(range(n))  # each image held out exactly once
        for h, k in splits:
            assert set(h.tolist()).isdisjoint(k.tolist()) and len(h) + len(k) == n
            assert h.tolist() == sorted(h.tolist())
    assert fold_splits(1, 3, seed=0) == []
    assert [h.tolist() for h, _ in fold_splits(9, 3, 0)] != [h.tolist() for h, _ in fold_splits(9, 3, 1)]
