"""The lessons' write-this exercises and their reveals: every reference passes its check, each common wrong
answer fails it with a hint, stubs fall back, and an evidence cell prints nothing until the reader asks."""

import math

import numpy as np
import pytest
import torch.nn.functional as F
from scipy import ndimage

from hlgfa_lite import metrics
from hlgfa_lite.lessons import exercises
from hlgfa_lite.lessons.exercises import EXERCISES, check, reveal


@pytest.mark.parametrize("name", list(EXERCISES))
@pytest.mark.parametrize("seed", [0, 3])
def test_reference_passes_its_check(name, seed):
    assert check(name, EXERCISES[name].reference, seed=seed) is True


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_stub_falls_back_to_the_reference_without_an_error(name, capsys):
    def stub(*arguments):
        raise NotImplementedError

    assert check(name, stub) is False
    assert "not written yet" in capsys.readouterr().out


def _top_k_mean(anomaly_map, k):
    return anomaly_map.flatten().topk(k).values.mean().item()


def _unnormalise(normalised, mean, std):
    return normalised * std + mean


def _pro_with(maps, masks, threshold, structure=metrics.EIGHT_CONNECTED, above=np.greater):
    overlaps = []
    for anomaly_map, mask in zip(maps, masks):
        regions, count = ndimage.label(mask, structure=structure)
        overlaps += [above(anomaly_map[regions == r], threshold).mean() for r in range(1, count + 1)]
    return float(np.mean(overlaps))


def _pro_per_image(maps, masks, threshold):
    per_image = []
    for anomaly_map, mask in zip(maps, masks):
        regions, count = ndimage.label(mask, structure=metrics.EIGHT_CONNECTED)
        if count:
            per_image.append(np.mean([(anomaly_map[regions == r] > threshold).mean() for r in range(1, count + 1)]))
    return float(np.mean(per_image))


def _film_halves(level, structure):
    return level.film(level.structure_proj(structure)).chunk(2, dim=0)


# the common wrong answers to each exercise: every one must fail its check
WRONG = {
    "image_score": {
        "max instead of the top-k mean": lambda m, topk: m.max().item(),
        "mean of the whole map": lambda m, topk: m.mean().item(),
        "k without max(1, .)": lambda m, topk: _top_k_mean(m, round(topk * m.numel())),
        "k floored": lambda m, topk: _top_k_mean(m, max(1, math.floor(topk * m.numel()))),
        "k rounded up": lambda m, topk: _top_k_mean(m, max(1, math.ceil(topk * m.numel()))),
    },
    "misalignment": {
        "no pooling (every second value)":
            lambda low, high: 1 - F.cosine_similarity(low, high[:, ::2, ::2], dim=0),
        "max pooling": lambda low, high: 1 - F.cosine_similarity(low, F.max_pool2d(high[None], 2)[0], dim=0),
        "1 + cos": lambda low, high: 1 + F.cosine_similarity(low, F.avg_pool2d(high[None], 2)[0], dim=0),
        "cos without 1 -": lambda low, high: F.cosine_similarity(low, F.avg_pool2d(high[None], 2)[0], dim=0),
        "cos over a spatial dim": lambda low, high: 1 - F.cosine_similarity(low, F.avg_pool2d(high[None], 2)[0], dim=1),
    },
    "copy_the_target": {
        "the structure alone": lambda s, d, r: s,
        "forgot the structure": lambda s, d, r: d.view(s.shape[0], r * r, *s.shape[1:]).mean(1),
        "sum instead of mean": lambda s, d, r: s + d.view(s.shape[0], r * r, *s.shape[1:]).sum(1),
        "sub-positions grouped first": lambda s, d, r: s + d.view(r * r, *s.shape).mean(0),
    },
    "film": {
        "gamma without the 1 +": lambda low, s, level: (lambda g, b: g * low + b)(*_film_halves(level, s)),
        "beta multiplied": lambda low, s, level: (lambda g, b: (1 + g) * low * b)(*_film_halves(level, s)),
        "beta added before the scale": lambda low, s, level: (lambda g, b: (1 + g) * (low + b))(*_film_halves(level, s)),
        "gamma and beta swapped": lambda low, s, level: (lambda g, b: (1 + b) * low + g)(*_film_halves(level, s)),
        "the batched forward copied (chunk over dim 1)":
            lambda low, s, level: (lambda g, b: (1 + g) * low + b)(*level.film(level.structure_proj(s)).chunk(2, dim=1)),
        "no projection of the prior": lambda low, s, level: (lambda g, b: (1 + g) * low + b)(*level.film(s).chunk(2, dim=0)),
        "conditioned on F_L, not the prior": lambda low, s, level: (lambda g, b: (1 + g) * low + b)(*_film_halves(level, low)),
    },
    "brightness": {
        "factor on the normalised values": lambda x, c, mean, std: x * c,
        "no clipping": lambda x, c, mean, std: (_unnormalise(x, mean, std) * c - mean) / std,
        "additive shift": lambda x, c, mean, std: ((_unnormalise(x, mean, std) + c - 1).clamp(0, 1) - mean) / std,
        "clipped in the normalised space": lambda x, c, mean, std: ((_unnormalise(x, mean, std) * c - mean) / std).clamp(0, 1),
        "not normalised again": lambda x, c, mean, std: (_unnormalise(x, mean, std) * c).clamp(0, 1),
    },
    "pro_at": {
        "4-connectivity": lambda maps, masks, t: _pro_with(maps, masks, t, structure=None),
        ">= instead of >": lambda maps, masks, t: _pro_with(maps, masks, t, above=np.greater_equal),
        "mean over pixels, not regions": lambda maps, masks, t: float((maps[masks] > t).mean()),
        "mean over images, then over them": _pro_per_image,
    },
}
WRONG_CASES = [(name, mistake) for name, mistakes in WRONG.items() for mistake in mistakes]


def test_every_exercise_has_wrong_answers_to_catch():
    assert sorted(WRONG) == sorted(EXERCISES)


@pytest.mark.parametrize("name, mistake", WRONG_CASES, ids=[f"{n}: {m}" for n, m in WRONG_CASES])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_common_wrong_answer_fails_with_a_hint(name, mistake, seed):
    with pytest.raises(AssertionError, match=f"solution\\('{name}'\\)"):
        check(name, WRONG[name][mistake], seed=seed)


def test_an_error_in_the_readers_function_is_reported_as_a_wrong_answer():
    def crashes(anomaly_map, topk):
        raise ValueError("a typo")

    with pytest.raises(AssertionError, match="raised ValueError: a typo"):
        check("image_score", crashes)


def test_pro_at_agrees_with_an_independent_count_and_with_the_curve():
    maps = np.array([[[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 0.7]]])
    masks = np.array([[[True, False, False], [True, False, False], [False, False, True]]])
    # regions: {(0,0), (1,0)} and {(2,2)}; at t = 0.85 only (0,0) is above: PRO = (1/2 + 0/1) / 2
    assert exercises.pro_at(maps, masks, 0.85) == pytest.approx(0.25)
    assert exercises._pro_from_curve(maps, masks, 0.85) == pytest.approx(0.25)
    fpr, pro = metrics.pro_curve(maps, masks)
    assert exercises._pro_from_curve(maps, masks, -1.0) == pytest.approx(pro[-1]) == pytest.approx(1.0)


def test_pro_at_cases_hold_regions_that_touch_only_at_a_corner():
    for seed in range(5):
        mask = exercises._random_regions(np.random.default_rng(seed), 30)
        eight = ndimage.label(mask, structure=metrics.EIGHT_CONNECTED)[1]
        four = ndimage.label(mask)[1]
        assert eight == 3 and four >= 1 + 3 + 2  # 4-connected: the staircase (3-6 steps) and the pair fall apart


def test_reveal_runs_the_evidence_only_when_the_button_is_pressed(capsys):
    calls = []

    def evidence():
        calls.append(1)
        print("the answer is 42")

    box = reveal(evidence)
    button, output = box.children
    assert calls == [] and capsys.readouterr().out == ""
    assert button.description == "Show the evidence" and not output.outputs
    button.click()
    assert calls == [1] and button.disabled
    assert "the answer is 42" in capsys.readouterr().out  # no kernel here: the output box passes it through


def test_reveal_with_run_now_runs_at_once_and_lets_errors_fail_the_run():
    def evidence():
        raise RuntimeError("evidence code broke")

    with pytest.raises(RuntimeError, match="evidence code broke"):
        reveal(evidence, run_now=True)
