"""The fusion's per-map statistics (scoring.map_statistics) against numpy, and old checkpoints' names and scale."""

import numpy as np
import pytest
import torch

from hlgfa_lite import HLGFAConfig, preset
from hlgfa_lite.model import upgrade_tensor_names
from hlgfa_lite.scoring import fuse_levels, map_statistics


def good_maps(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # three maps of different grids and spreads; the second has heavy tails (a few hot pixels per image)
    heavy = torch.rand(5, 8, 8, generator=g) * 0.1
    heavy[:, 2, 3] += torch.rand(5, generator=g) * 5
    return [torch.randn(5, 16, 16, generator=g) * 2 + 3, heavy, torch.rand(5, 4, 4, generator=g)]


def test_std_scale_is_the_pixel_std_over_all_good_pixels():
    maps = good_maps()
    mean, scale = map_statistics(maps, "std")
    for m, mu, s in zip(maps, mean, scale):
        assert mu.item() == pytest.approx(np.mean(m.numpy()), rel=1e-5)
        assert s.item() == pytest.approx(np.std(m.numpy(), ddof=1), rel=1e-5)


def test_max_scale_puts_a_typical_good_images_worst_pixel_at_one():
    maps = good_maps()
    mean, scale = map_statistics(maps, "max")
    for m, mu, s in zip(maps, mean, scale):
        z = (m.numpy() - mu.item()) / s.item()
        assert z.mean() == pytest.approx(0.0, abs=1e-5)
        assert z.reshape(len(z), -1).max(axis=1).mean() == pytest.approx(1.0, rel=1e-5)


def test_max_scale_damps_a_heavy_tailed_map_relative_to_std():
    maps = good_maps()
    _, std = map_statistics(maps, "std")
    _, tail = map_statistics(maps, "max")
    ratio = (tail / std).tolist()  # how many stds a typical good image's worst pixel reaches, per map
    assert ratio[1] > 2 * max(ratio[0], ratio[2])


def test_fusion_of_identical_maps_is_their_common_z():
    maps = good_maps()
    mean, scale = map_statistics(maps[:1], "max")
    fused_one = fuse_levels(maps[:1], mean, scale, 16, 0.0)
    fused_two = fuse_levels(maps[:1] * 2, mean.repeat(2), scale.repeat(2), 16, 0.0)
    torch.testing.assert_close(fused_one, fused_two)
    torch.testing.assert_close(fused_one, (maps[0] - mean[0]) / scale[0])


def test_a_constant_map_does_not_divide_by_zero():
    for rule in ("std", "max"):
        _, scale = map_statistics([torch.ones(3, 4, 4), torch.ones(1, 1, 1)], rule)
        assert (scale > 0).all()


def test_checkpoints_from_before_the_switch_keep_the_std_scale_and_load_their_tensors():
    assert HLGFAConfig.from_dict({}).map_scale == "std"
    assert preset("lite").map_scale == "auto"
    assert preset("lite_paper").map_scale == preset("paper").map_scale == "std"
    assert set(upgrade_tensor_names({"level_std": torch.ones(1), "head.x": torch.ones(1)})) == {"level_scale", "head.x"}


def test_unknown_map_scale_is_refused_in_one_line():
    from hlgfa_lite import HLGFAError

    with pytest.raises(HLGFAError, match="map_scale must be"):
        preset("lite", map_scale="mad")


def test_weighted_fusion_is_the_weighted_sum_of_each_normalised_map():
    from hlgfa_lite.scoring import map_weights

    torch.manual_seed(3)
    maps = [torch.rand(2, 8, 8), torch.rand(2, 4, 4), torch.rand(2, 8, 8), torch.rand(2, 4, 4)]
    mean, scale = torch.rand(4), torch.rand(4) + 0.5
    weights = map_weights(2, with_normality=True, normality_weight=0.75)
    assert weights.tolist() == [0.125, 0.125, 0.375, 0.375]
    expected = sum(w * torch.nn.functional.interpolate(((e - m) / s)[:, None], size=(16, 16), mode="bilinear",
                                                       align_corners=False)[:, 0]
                   for w, e, m, s in zip(weights, maps, mean, scale))
    torch.testing.assert_close(fuse_levels(maps, mean, scale, 16, 0.0, weights), expected)
    # a family fused alone is its own plain mean, whatever its share of the whole
    torch.testing.assert_close(fuse_levels(maps[2:], mean[2:], scale[2:], 16, 0.0, weights[2:]),
                               fuse_levels(maps[2:], mean[2:], scale[2:], 16, 0.0))


def test_unknown_train_precision_is_refused_in_one_line():
    from hlgfa_lite import HLGFAError

    with pytest.raises(HLGFAError, match="train_precision must be"):
        preset("lite", train_precision="float16")
