"""The normality term against independent references: sklearn's Mahalanobis distance, PaDiM's per-position form."""

import numpy as np
import pytest
import torch
from sklearn.covariance import EmpiricalCovariance

from hlgfa_lite.normality import GaussianLevel, GaussianNormality


def _reference_precision(samples: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    cov = EmpiricalCovariance(assume_centered=False).fit(samples)
    strength = max(shrinkage, samples.shape[1] / samples.shape[0])  # the ridge grows when samples are few
    ridge = strength * np.trace(cov.covariance_) / samples.shape[1] + 1e-10
    return cov.location_, np.linalg.inv(cov.covariance_ + ridge * np.eye(samples.shape[1]))


def test_global_gaussian_matches_sklearn_mahalanobis():
    torch.manual_seed(0)
    mix = torch.randn(6, 6)
    train = (torch.randn(40, 6, 5, 7).permute(0, 2, 3, 1) @ mix).permute(0, 3, 1, 2) + 3  # correlated channels
    level = GaussianLevel(channels=6, positions=1)
    for chunk in train.split(7):  # streamed in uneven chunks: the sums must not depend on the split
        level.accumulate(chunk)
    level.finish(shrinkage=0.05)
    samples = train.permute(0, 2, 3, 1).reshape(-1, 6).double().numpy()
    location, precision = _reference_precision(samples, 0.05)
    test = torch.randn(3, 6, 5, 7) * 2 + 3
    z = test.permute(0, 2, 3, 1).reshape(-1, 6).double().numpy() - location
    expected = np.sqrt(np.einsum("nc,cd,nd->n", z, precision, z)).reshape(3, 5, 7)
    np.testing.assert_allclose(level(test).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_per_position_gaussian_matches_one_fit_per_position():
    torch.manual_seed(1)
    train = torch.randn(30, 4, 3, 3) * torch.arange(1, 10).view(1, 1, 3, 3)  # each position its own spread
    level = GaussianLevel(channels=4, positions=9)
    level.accumulate(train)
    level.finish(shrinkage=0.01)
    test = torch.randn(2, 4, 3, 3)
    got = level(test)
    for row in range(3):
        for col in range(3):
            location, precision = _reference_precision(train[:, :, row, col].double().numpy(), 0.01)
            z = test[:, :, row, col].double().numpy() - location
            expected = np.sqrt(np.einsum("nc,cd,nd->n", z, precision, z))
            np.testing.assert_allclose(got[:, row, col].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_a_feature_far_from_the_good_ones_scores_higher():
    torch.manual_seed(2)
    normality = GaussianNormality([3, 5], [(4, 4), (2, 2)], mode="global", shrinkage=0.01, pool=1)
    normality.accumulate([torch.randn(20, 3, 4, 4), torch.randn(20, 5, 2, 2)])
    normality.finish()
    test = [torch.randn(1, 3, 4, 4), torch.randn(1, 5, 2, 2)]
    test[0][0, :, 1, 2] += 10  # one defective position on level 0
    maps = normality(test)
    assert [m.shape for m in maps] == [(1, 4, 4), (1, 2, 2)]
    assert maps[0][0].flatten().argmax().item() == 1 * 4 + 2
    assert maps[0][0, 1, 2] > 3 * maps[0][0].median()


def test_pooling_averages_each_feature_with_its_existing_neighbours():
    normality = GaussianNormality([1], [(3, 3)], mode="global", shrinkage=0.01, pool=3)
    grid = torch.arange(9.0).view(1, 1, 3, 3)
    pooled = normality.aggregate(grid)[0, 0]
    assert pooled[1, 1] == grid.mean()  # the centre sees all nine
    assert pooled[0, 0] == torch.tensor([0.0, 1, 3, 4]).mean()  # a corner sees the four that exist


def test_few_samples_shrink_towards_the_distance_to_the_mean():
    torch.manual_seed(3)
    level = GaussianLevel(channels=50, positions=1)
    level.accumulate(torch.randn(5, 50, 1, 1))  # 5 samples for 50 channels: the covariance has rank 4
    level.finish(shrinkage=0.01)
    test = torch.randn(200, 50, 1, 1)
    distance = level(test).flatten()
    euclidean = (test.flatten(1) - level.mean).norm(dim=1)
    assert torch.corrcoef(torch.stack([distance, euclidean]))[0, 1] > 0.95


def test_an_unfitted_term_adds_nothing():
    normality = GaussianNormality([3], [(4, 4)], mode="position", shrinkage=0.01)
    assert not normality.is_fitted()
    assert normality([torch.randn(2, 3, 4, 4)])[0].abs().sum() == 0
    normality.accumulate([torch.randn(6, 3, 4, 4)])
    normality.finish()
    assert normality.is_fitted() and normality([torch.randn(2, 3, 4, 4)])[0].abs().sum() > 0


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="normality mode"):
        GaussianNormality([3], [(2, 2)], mode="nearest", shrinkage=0.01)


@pytest.mark.parametrize("mode", ["global", "position"])
def test_normality_is_fitted_saved_and_loaded_with_the_model(mode, sample, tmp_path):
    from hlgfa_lite import HLGFA, fit, load, load_image, preset, save, train_image_paths

    model = HLGFA(preset("lite", steps=3, normality=mode, hr_size=256, lr_size=128, aug_copies=1))
    fit(model, train_image_paths(sample)[:6], progress=False)
    levels = model.normality.levels
    assert [level.mean.shape[0] for level in levels] == ([1, 1, 1] if mode == "global" else [32 * 32, 16 * 16, 8 * 8])
    assert all(not torch.equal(level.precision[0], torch.eye(level.precision.shape[-1])) for level in levels)
    image = load_image(next((sample / "test" / "broken_large").iterdir()))[None]
    before = model.inspect(image)
    assert len(before.normality_maps) == 3 and len(model.level_mean) == 6
    again = load(save(model, tmp_path / "run")).inspect(image)
    torch.testing.assert_close(again.anomaly_map, before.anomaly_map)
    # each fusion is a weighted mean of the two parts (every step of it is linear): the map with the map's share,
    # the map the image score reads with the score's
    from hlgfa_lite.scoring import image_scores

    parts = model.part_maps(before)
    assert (model.map_share, model.cfg.normality_weight) == (0.35, 0.6)
    torch.testing.assert_close(0.65 * parts["alignment"] + 0.35 * parts["normality"], before.anomaly_map,
                               rtol=1e-4, atol=1e-4)
    w = model.cfg.normality_weight
    score_map = (1 - w) * parts["alignment"] + w * parts["normality"]
    torch.testing.assert_close(before.scores, image_scores(score_map, model.cfg.score_topk), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(before.scores, image_scores(before.anomaly_map, model.cfg.score_topk), rtol=1e-3)
    # one map for both (checkpoints before the map had a share of its own): the score reads the map itself
    model.cfg = model.cfg.replace(map_normality_weight=None)
    one = model.inspect(image)
    torch.testing.assert_close(one.anomaly_map, score_map, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(one.scores, before.scores)


def test_checkpoints_written_before_the_part_weight_keep_the_plain_mean():
    from hlgfa_lite import HLGFAConfig

    assert HLGFAConfig.from_dict({"normality": "position"}).normality_weight == 0.5
    assert HLGFAConfig().normality_weight == 0.6
    assert HLGFAConfig.from_dict({"normality": "position"}).map_normality_weight is None  # one map for both


@pytest.mark.parametrize("weight", [-0.1, 1.0, float("nan"), "0.25", True])
def test_a_map_share_outside_zero_to_one_is_refused(weight):
    from hlgfa_lite import HLGFAConfig
    from hlgfa_lite.errors import HLGFAError

    with pytest.raises(HLGFAError, match="map_normality_weight must be in"):
        HLGFAConfig(map_normality_weight=weight).validate()
