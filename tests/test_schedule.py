"""How many steps a fit takes: the head's rule (passes within [MIN_STEPS, steps]) and the cross-fitted heads' share,
by hand-counted cases, and the count ``planned_steps`` promises against the steps a fit reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlgfa_lite import HLGFA, fit, preset
from hlgfa_lite.assets import sample_dir
from hlgfa_lite.training import CROSS_FIT_SHARE, MIN_STEPS, fold_head_steps, head_batch, head_steps, planned_steps


@pytest.mark.parametrize("n_train, steps", [
    (9, MIN_STEPS),  # 5 passes = 3 steps: the floor
    (188, MIN_STEPS),  # bottle: 59 steps, floored
    (685, 215),  # magnetic tile: ceil(5 * 685 / 16)
    (1600, 500),  # the preset's most
    (5000, 500),
])
def test_the_head_trains_five_passes_within_the_floor_and_the_most(n_train, steps):
    assert head_steps(preset("lite"), n_train) == steps


@pytest.mark.parametrize("n_train, batch", [
    (9, 8),  # ten images: the fewest the rule allows
    (63, 8),  # tire: 5 passes would take 20 steps of 16; 125 of 8 are 16 passes
    (200, 8),  # 125 steps of 8 are exactly 5 passes
    (201, 9),  # ceil(5 * 201 / 125): 125 steps of 9 are five passes
    (300, 12),
    (400, 16),  # from here 5 passes take 125 steps of 16 or more
    (685, 16),
])
def test_a_small_set_trains_on_smaller_batches_down_to_the_least(n_train, batch):
    cfg = preset("lite")
    assert head_batch(cfg, n_train) == batch
    steps = head_steps(cfg, n_train)
    assert steps == max(MIN_STEPS, -(-5 * n_train // batch))  # ceil: five passes, or the floor
    assert steps * batch >= 5 * n_train  # never fewer than five passes


def test_the_batch_stays_where_it_is_asked_to():
    assert head_batch(preset("lite", min_batch_size=0), 9) == 16  # the switch off: as before it existed
    assert head_batch(preset("lite_paper"), 9) == 16 and head_batch(preset("paper"), 9) == 16
    assert head_batch(preset("lite", passes=0.0), 9) == 16  # a fixed schedule keeps its batch
    assert head_batch(preset("lite", batch_size=4), 9) == 4  # a batch below the least is kept
    from hlgfa_lite import HLGFAConfig
    assert HLGFAConfig.from_dict({}).min_batch_size == 0  # a checkpoint from before the field refits as it did


@pytest.mark.parametrize("asked", [4, 16, 32])
def test_a_batch_asked_on_the_command_line_is_the_batch_every_step_takes(asked):
    from hlgfa_lite.tools.cli import exact_batch

    cfg = preset("lite", **exact_batch(asked))
    assert [head_batch(cfg, n) for n in (9, 188, 685)] == [asked] * 3  # no smaller batch on a small set
    assert exact_batch(None) == {}


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
