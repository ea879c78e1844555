"""How many steps a fit takes: the head's rule (passes within [MIN_STEPS, steps]) and the cross-fitted heads' share,
by hand-counted cases, and the count ``planned_steps`` promises against the steps a fit reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlgfa_lite import HLGFA, fit, preset
from hlgfa_lite.assets import sample_dir
from hlgfa_lite.training import CROSS_FIT_SHARE, MIN_STEPS, fold_head_steps, head_steps, planned_steps


@pytest.mark.parametrize("n_train, steps", [
    (9, MIN_STEPS),  # 5 passes = 3 steps: the floor
    (188, MIN_STEPS),  # bottle: 59 steps, floored
    (685, 215),  # magnetic tile: ceil(5 * 685 / 16)
    (1600, 500),  # the preset's most
    (5000, 500),
])
def test_the_head_trains_five_passes_within_the_floor_and_the_most(n_train, steps):
    assert head_steps(preset("lite"), n_train) == steps


def test_without_passes_the_steps_are_exact():
    assert head_steps(preset("lite", passes=0.0, steps=37), 10_000) == 37
    assert head_steps(preset("paper"), 10) == 2000


def test_cross_fitted_heads_share_half_the_head_steps():
    assert CROSS_FIT_SHARE == 0.5
    assert fold_head_steps(preset("lite"), 9, 3) == 20  # int(62.5) // 3
    assert fold_head_steps(preset("lite", passes=0.0, steps=150), 18, 3) == 25  # the demo's normal length
    assert fold_head_steps(preset("lite", passes=0.0, steps=2), 3, 3) == 1  # never none


def test_planned_steps_count_the_cross_fitted_heads_only_on_small_sets():
    assert planned_steps(preset("lite"), 10) == 125 + 3 * 20  # 1 held out: cross-fitted
    assert planned_steps(preset("lite"), 209) == 125  # 21 held out: no cross-fit


def test_a_fit_takes_the_steps_it_planned(tmp_path):
    paths: list[Path] = sorted((sample_dir() / "train" / "good").glob("*.png"))[:4]
    cfg = preset("lite", hr_size=128, lr_size=64, steps=6, batch_size=2, aug_copies=1)
    counted = []
    report = fit(HLGFA(cfg, pretrained=False), paths, progress=False, say=None,
                 on_step=lambda step, loss: counted.append(step))
    assert report.steps == head_steps(cfg, 3) == 6  # 3 training images, the floor capped by steps
    assert len(counted) == planned_steps(cfg, 4) == 6 + 3 * fold_head_steps(cfg, 3, 3)
