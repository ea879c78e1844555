"""The baselines: the greedy coreset, the chunked nearest-neighbour search, PatchCore on the sample, the
training-free cross-resolution score, and their errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL

from hlgfa_lite import HLGFA, HLGFAError, load_image, load_test_split, preset, train_image_paths
from hlgfa_lite.backbone import resize
from hlgfa_lite.tools.baselines import (PatchCoreBaseline, greedy_coreset, nearest_neighbours, random_coreset,
                                  random_projection, training_free)
from hlgfa_lite.evaluation import evaluate_samples
from hlgfa_lite.training import as_float, load_images, split_holdout


def naive_greedy(z: torch.Tensor, first: int, n_select: int) -> list[int]:
    """The textbook farthest-point loop: one pass over every point per pick."""
    selected, distance = [first], torch.linalg.vector_norm(z - z[first], dim=1)
    while len(selected) < n_select:
        best = int(distance.argmax())
        selected.append(best)
        distance = torch.minimum(distance, torch.linalg.vector_norm(z - z[best], dim=1))
    return selected


def test_coreset_picks_one_point_per_cluster_then_the_farthest_outlier():
    generator = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    sizes = [300, 50, 120, 10]  # unequal: a random subset would miss the small clusters
    points = torch.cat([c + 0.05 * torch.randn(n, 2, generator=generator) for c, n in zip(centres, sizes)])
    points = torch.cat([points, torch.tensor([[30.0, 30.0]])])  # one far outlier
    cluster_of = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)] + [torch.tensor([4])])
    for seed in range(5):
        chosen = greedy_coreset(points, 5, seed=seed, candidates=16)
        assert sorted(cluster_of[chosen].tolist()) == [0, 1, 2, 3, 4]  # every cluster and the outlier covered
        # the pick after the start is the point farthest from it: the outlier, unless the start is the outlier
        if cluster_of[chosen[0]] != 4:
            assert cluster_of[chosen[1]] == 4


@pytest.mark.parametrize("dim, projection_dim, candidates", [(6, 128, 32), (40, 16, 64), (40, 16, 10_000)])
def test_blocked_coreset_makes_exactly_the_naive_picks(dim, projection_dim, candidates):
    features = torch.randn(1500, dim, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.2, 3, dim)
    chosen = greedy_coreset(features, 150, projection_dim=projection_dim, seed=7, candidates=candidates)
    # the same random projection and start as greedy_coreset draws from its seeded generator
    generator = torch.Generator().manual_seed(7)
    z = random_projection(features, projection_dim, generator)
    first = int(torch.randint(len(features), (1,), generator=generator))
    assert chosen.tolist() == naive_greedy(z, first, 150)
    assert len(set(chosen.tolist())) == 150


def test_coreset_stops_when_everything_is_covered():
    points = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)  # only two distinct points
    chosen = greedy_coreset(points, 6, seed=0)
    assert len(chosen) == 2 and len({tuple(points[i].tolist()) for i in chosen}) == 2
    assert sorted(random_coreset(10, 4, seed=0).tolist()) == random_coreset(10, 4, seed=0).tolist()


def test_chunked_nearest_neighbours_equal_brute_force():
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(300, 8, generator=generator), torch.randn(123, 8, generator=generator)
    brute = torch.linalg.vector_norm(queries[:, None] - bank[None], dim=2)  # (300, 123)
    for chunk_elements in (1, 500, 10**9):  # one row at a time, a few rows, everything at once
        distance, index = nearest_neighbours(queries, bank, chunk_elements)
        torch.testing.assert_close(distance, brute.min(dim=1).values, atol=1e-4, rtol=1e-4)
        assert torch.equal(index, brute.argmin(dim=1))


@pytest.fixture(scope="module")
def patchcore(sample):
    model = PatchCoreBaseline(preset("lite", **SMALL))
    report = model.fit(train_image_paths(sample))
    return model, report


def test_patchcore_separates_defects_on_the_sample(patchcore, sample):
    model, report = patchcore
    assert report.n_train + report.n_holdout == len(train_image_paths(sample))
    assert report.n_patches == report.n_train * 16 * 16  # stride-8 grid of the 128 px low view
    assert report.bank_size == round(0.1 * report.n_patches) == model.bank.shape[0]
    assert model.bank.shape[1] == 40 + 112  # stride-8 and stride-16 levels of Lite0
    assert model.memory_bank_bytes == model.bank.numel() * 4
    samples = load_test_split(sample)
    result = evaluate_samples(model.score_batch, samples, 128, progress=False)
    assert result.maps.shape == (len(samples), 128, 128)
    assert result.metrics["image_auroc"] > 0.8 and result.metrics["pixel_auroc"] > 0.8
    assert model.threshold() == pytest.approx(model.calibration.image_threshold)
    # 2 held out of 20: the 18 training images are cross-fitted too (a bank without each fold scores it), as for HLGFA
    assert len(report.cross_fit_scores) == report.n_train
    assert model.calibration.n_images == report.n_holdout + report.n_train
    labels = np.array([s.label for s in samples])
    flagged = result.scores > model.threshold()  # the verdict a user sees: defects caught, good parts not flagged
    assert flagged[labels == 1].mean() >= 0.8 and not flagged[labels == 0].any()


def test_patchcore_gives_zero_distance_to_its_own_bank(sample):
    """With the whole bank kept, a training image's patches are all in it: the map is 0 everywhere."""
    hlgfa = HLGFA(preset("lite", **SMALL))
    model = PatchCoreBaseline(hlgfa.cfg, backbone=hlgfa.backbone, coreset_fraction=1.0)
    assert model.backbone is hlgfa.backbone  # shared, not rebuilt
    paths = train_image_paths(sample)[:4]
    model.fit(paths)
    in_bank = split_holdout(paths, model.cfg.holdout_fraction, model.cfg.seed)[0][:1]  # not the held-out one
    train_image = as_float(load_images(in_bank, model.cfg.hr_size))  # exactly as fit read it
    maps, scores = model.score_batch(train_image)
    defect = next(s for s in load_test_split(sample) if s.label == 1)
    _, defect_scores = model.score_batch(load_image(defect.path)[None])
    assert maps.shape == (1, 128, 128)
    assert scores[0] < 1e-2 * defect_scores[0]


def test_training_free_maps_are_one_minus_cosine_by_hand(sample):
    cfg = preset("lite", **SMALL)
    model = training_free(cfg, train_image_paths(sample))
    assert model.calibration and not torch.equal(model.level_mean, torch.zeros_like(model.level_mean))
    images = torch.stack([load_image(s.path) for s in load_test_split(sample)[:3]])
    out = model.inspect(images)
    high_view = resize(images, cfg.hr_size)
    high, low = model.backbone(high_view), model.backbone(resize(high_view, cfg.lr_size))
    for level, (f_high, f_low) in enumerate(zip(high, low)):
        target = F.avg_pool2d(f_high, cfg.hr_lr_ratio)
        cosine = (f_low * target).sum(1) / (f_low.norm(dim=1) * target.norm(dim=1))
        torch.testing.assert_close(out.level_maps[level], 1 - cosine, atol=1e-5, rtol=1e-4)


def test_baselines_refuse_bad_input(sample):
    cfg = preset("lite", **SMALL)
    with pytest.raises(HLGFAError, match="coreset_fraction"):
        PatchCoreBaseline(cfg, coreset_fraction=0)
    with pytest.raises(HLGFAError, match="unknown coreset"):
        PatchCoreBaseline(cfg, coreset="kmeans")
    with pytest.raises(HLGFAError, match="strides"):
        PatchCoreBaseline(cfg.replace(out_indices=(1,)))  # stride 4 only: no middle levels
    model = PatchCoreBaseline(cfg)
    with pytest.raises(HLGFAError, match="memory bank is empty"):
        model.score_batch(torch.rand(1, 3, 64, 64))
    with pytest.raises(HLGFAError, match="at least 2"):
        model.fit(train_image_paths(sample)[:1])
    with pytest.raises(HLGFAError, match="at least 2"):
        training_free(cfg, [])
