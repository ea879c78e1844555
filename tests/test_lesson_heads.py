"""The heads shipped for lessons 03 and 04: loaded when current, trained live when asked or when stale."""

import json

import pytest
import torch

from hlgfa_lite.lessons import lesson_heads
from hlgfa_lite.tools.checkpoint import METADATA
from hlgfa_lite.lessons.lesson_heads import RECIPES, lesson_head, ship, why_not_shipped


def test_every_recipe_builds_a_valid_config():
    for name in RECIPES:
        cfg = lesson_heads.recipe(name)
        assert cfg.steps == lesson_heads.STEPS and cfg.batch_size == lesson_heads.BATCH_SIZE


def test_ship_then_load_round_trip_and_stale_recipe(tmp_path, monkeypatch, sample):
    """Trained live (2 steps, small views), shipped at half precision, loaded back; a changed recipe is noticed."""
    monkeypatch.setattr(lesson_heads, "RECIPES", {"tiny": dict(hr_size=256, lr_size=128, noise_aug=False)})
    monkeypatch.setattr(lesson_heads, "STEPS", 2)
    assert "no shipped head" in why_not_shipped("tiny", tmp_path)
    trained = lesson_head("tiny", folder=tmp_path)  # nothing shipped: trains live, and says so
    assert trained.source == "trained live" and len(trained.losses) == 2
    ship(trained, "tiny", tmp_path)
    assert why_not_shipped("tiny", tmp_path) is None
    loaded = lesson_head("tiny", folder=tmp_path)
    assert loaded.source == "shipped" and loaded.losses == pytest.approx(trained.losses, abs=1e-6)
    image = torch.rand(1, 3, 256, 256)
    # half-precision storage: the same scores up to fp16 rounding of the weights
    assert torch.allclose(loaded.model.score_batch(image)[1], trained.model.score_batch(image)[1], rtol=1e-2, atol=1e-2)
    live = lesson_head("tiny", live=True, folder=tmp_path)
    assert live.source == "trained live"
    monkeypatch.setattr(lesson_heads, "RECIPES", {"tiny": dict(hr_size=256, lr_size=128, noise_aug=False, prior_sigma=3.0)})
    assert "prior_sigma" in why_not_shipped("tiny", tmp_path)
    meta = json.loads((tmp_path / "tiny" / METADATA).read_text())
    assert meta["lesson_head"] == "tiny" and len(meta["losses"]) == 2
