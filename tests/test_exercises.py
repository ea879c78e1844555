"""The lessons' write-this exercises: every reference passes its check, wrong answers fail it, stubs fall back."""

import numpy as np
import pytest
import torch

from hlgfa_lite import exercises, metrics
from hlgfa_lite.exercises import EXERCISES, check


@pytest.mark.parametrize("name", list(EXERCISES))
def test_reference_passes_its_check(name):
    assert check(name, EXERCISES[name].reference, seed=3) is True


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_stub_falls_back_to_the_reference_without_an_error(name, capsys):
    def stub(*arguments):
        raise NotImplementedError

    assert check(name, stub) is False
    assert "not written yet" in capsys.readouterr().out


WRONG = {  # plausible mistakes a reader makes
    "image_score": lambda anomaly_map, topk: anomaly_map.max().item(),
    "misalignment": lambda low, high: 1 - torch.nn.functional.cosine_similarity(low, high[:, ::2, ::2], dim=0),
    "copy_the_target": lambda structure, detail, ratio: structure,
    "film": lambda low, gamma, beta: gamma * low + beta,
    "brightness": lambda image, factor: image + (factor - 1),
    "pro_at": lambda maps, masks, threshold: float((maps[masks] > threshold).mean()),  # pixels pooled, not regions
}


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_wrong_answer_fails_with_a_hint(name):
    with pytest.raises(AssertionError, match=f"solution\\('{name}'\\)"):
        check(name, WRONG[name])


def test_pro_at_agrees_with_an_independent_count_and_with_the_curve():
    maps = np.array([[[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 0.7]]])
    masks = np.array([[[True, False, False], [True, False, False], [False, False, True]]])
    # regions: {(0,0), (1,0)} and {(2,2)}; at t = 0.85 only (0,0) is above: PRO = (1/2 + 0/1) / 2
    assert exercises.pro_at(maps, masks, 0.85) == pytest.approx(0.25)
    assert exercises._pro_from_curve(maps, masks, 0.85) == pytest.approx(0.25)
    fpr, pro = metrics.pro_curve(maps, masks)
    assert exercises._pro_from_curve(maps, masks, -1.0) == pytest.approx(pro[-1]) == pytest.approx(1.0)
