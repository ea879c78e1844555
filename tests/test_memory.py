"""The feature cache's memory bound: the estimate is the real size, the policy adapts, and fit says it first."""

import pytest
import torch

from hlgfa_lite import HLGFA, fit, preset
from hlgfa_lite.samples import sample_dir
from hlgfa_lite.training import OnTheFlyFeatures, cache_features, load_images, plan_cache

GIB = 2 ** 30


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HLGFA(preset("lite", hr_size=128, lr_size=64, steps=3, batch_size=4), pretrained=False)


@pytest.fixture(scope="module")
def images():
    return load_images(sorted((sample_dir() / "train" / "good").glob("*.png"))[:5], 128)


def cache_nbytes(cache) -> int:
    return sum(t.nbytes for t in cache.low) + sum(t.nbytes for p in cache.priors
                                                  for t in (p.structure, p.detail, p.target))


@pytest.mark.parametrize("views", ["both", "low"])
def test_the_estimate_is_the_size_of_the_cache_it_plans(model, images, views):
    model.cfg = model.cfg.replace(aug_views=views)
    plan = plan_cache(model, len(images), max_cache_gib=1.0)
    assert plan.draws == plan.draws_wanted == 4
    for draws in (4, 2):
        assert plan.cache_bytes(draws) == cache_nbytes(cache_features(model, images, progress=False, draws=draws))
    model.cfg = model.cfg.replace(aug_views="both")


def test_over_budget_fewer_draws_then_on_the_fly(model, images):
    full = plan_cache(model, len(images), 1.0)
    between = (full.cache_bytes(2) + full.cache_bytes(3)) / 2 / GIB
    reduced = plan_cache(model, len(images), between)
    assert reduced.draws == 2 and reduced.cache_bytes() <= reduced.budget_bytes < reduced.cache_bytes(3)
    assert "caching 2 draws" in reduced.describe()
    tiny = plan_cache(model, len(images), full.cache_bytes(2) / 2 / GIB)
    assert tiny.draws == 0 and "on the fly" in tiny.describe()


def test_on_the_fly_gives_the_cached_features_of_the_clean_view(model, images):
    cache = cache_features(model, images, progress=False)
    live = OnTheFlyFeatures(model, images, cache.draws, augment=None)
    rows, clean = torch.tensor([3, 0, 4]), torch.zeros(3, dtype=torch.long)
    (cached_low, cached_priors), (live_low, live_priors) = cache.batch(rows, clean, "cpu"), live.batch(rows, clean, "cpu")
    for a, b in zip(cached_low + [p.detail for p in cached_priors], live_low + [p.detail for p in live_priors]):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=2e-2, atol=2e-2)  # the cache is float16
    for a, b in zip(cache.clean_low(slice(1, 4), "cpu"), live.clean_low(slice(1, 4), "cpu")):
        assert torch.allclose(a, b, rtol=2e-2, atol=2e-2)
    assert live.subset(torch.tensor([1, 2])).n_images == 2


def test_fit_says_how_much_memory_before_it_starts_and_runs_on_the_fly(model, capsys):
    fitted = HLGFA(model.cfg, pretrained=False)
    report = fit(fitted, sorted((sample_dir() / "train" / "good").glob("*.png"))[:6], progress=False,
                 max_cache_gib=1e-6)
    said = capsys.readouterr().out
    assert said.startswith("feature cache:") and "on the fly" in said
    assert report.cache_plan.draws == 0 and len(report.losses) == 3
    assert all(torch.isfinite(torch.tensor(report.losses)))
