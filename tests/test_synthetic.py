"""map_scale="auto": synthetic defects (synthetic.py) and the choice of scale they drive (training.choose_map_scale)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hlgfa_lite import HLGFAConfig, load, preset, train_image_paths
from hlgfa_lite.scoring import fuse_levels, map_statistics
from hlgfa_lite.synthetic import synthetic_defects
from hlgfa_lite.training import good_level_maps, load_images, scale_auroc, split_holdout


def test_each_synthetic_defect_changes_its_image_where_its_mask_says():
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    defective, masks = synthetic_defects(images, torch.Generator().manual_seed(1))
    assert defective.shape == (9, 3, 64, 64) and masks.shape == (9, 64, 64) and masks.dtype == torch.bool
    assert defective.min() >= 0 and defective.max() <= 1
    for i in range(9):
        clean = images[i // 3]
        changed = (defective[i] - clean).abs().amax(0)
        assert masks[i].any(), f"defect {i} has an empty mask"
        if i % 3 == 1:  # the blob fades out: what lies outside its mask changed by less than its 0.2 edge allows
            assert changed[~masks[i]].max() <= 0.35 * 0.2 + 1e-6
            assert changed[masks[i]].mean() > 2 * changed[~masks[i]].mean()
        else:  # cut-paste and scar: nothing changes outside the mask
            assert changed[~masks[i]].max() == 0


def test_synthetic_defects_are_reproducible_from_the_seed():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = synthetic_defects(images, torch.Generator().manual_seed(5))
    again = synthetic_defects(images, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first[0], again[0])
    assert torch.equal(first[1], again[1])


def two_maps(sharp_localises: bool, seed: int = 0):
    """Raw maps of 6 good and 6 defective images, two maps each on a 16 x 16 grid, and the defect masks.

    The "sharp" map has one very hot pixel on every image, good or not (a texture's fine misalignment map);
    the "smooth" map has no tail. The map that localises carries the defect (+4), the other one only noise."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[:, 5:9, 5:9] = True

    def maps(n, defect):
        sharp, smooth = torch.randn(n, 16, 16, generator=g), torch.randn(n, 16, 16, generator=g)
        sharp[torch.arange(n), torch.randint(16, (n,), generator=g), torch.randint(16, (n,), generator=g)] += 40
        if defect:
            (sharp if sharp_localises else smooth)[:, 5:9, 5:9] += 4
        return [sharp, smooth]

    return maps(6, False), maps(6, True), masks


def plain_fusion(raw_maps, mean, scale):
    return fuse_levels(raw_maps, mean, scale, 16, 0.0)


@pytest.mark.parametrize("sharp_localises, wanted", [(True, "std"), (False, "max")])
def test_the_scale_chosen_is_the_one_that_localises_the_defects_and_its_auroc_is_sklearns(sharp_localises, wanted):
    good, defective, masks = two_maps(sharp_localises)
    auroc = scale_auroc(good, defective, masks, plain_fusion)
    assert max(auroc, key=auroc.get) == wanted
    truth = np.concatenate([masks.numpy(), np.zeros((6, 16, 16), bool)]).ravel()
    for scale, value in auroc.items():
        mean, spread = map_statistics(good, scale)
        fused = plain_fusion([torch.cat([d, g]) for d, g in zip(defective, good)], mean, spread)
        assert value == pytest.approx(roc_auc_score(truth, fused.numpy().ravel()), abs=1e-9)


def test_a_fit_with_auto_saves_the_scale_it_chose_and_calibrates_under_it(fitted, sample):
    model, report, run_dir = fitted
    assert preset("lite").map_scale == "auto"
    assert set(report.map_scale_auroc) == {"std", "max"}
    chosen = max(report.map_scale_auroc, key=lambda s: (report.map_scale_auroc[s], s == "max"))
    assert model.cfg.map_scale == chosen
    assert load(run_dir).cfg.map_scale == chosen
    _, held_out = split_holdout(train_image_paths(sample), model.cfg.holdout_fraction, model.cfg.seed)
    good = good_level_maps(model, load_images(held_out, model.cfg.hr_size))
    mean, scale = map_statistics(good, chosen)
    torch.testing.assert_close(model.level_mean, mean)
    torch.testing.assert_close(model.level_scale, scale)


def test_auto_is_a_known_scale_and_old_checkpoints_keep_std():
    assert HLGFAConfig(map_scale="auto").validate().map_scale == "auto"
    assert HLGFAConfig.from_dict({}).map_scale == "std"


def test_eight_bit_defects_are_the_float_ones_rounded():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    as_float, masks = synthetic_defects(images, torch.Generator().manual_seed(2))
    as_bytes, same_masks = synthetic_defects(images, torch.Generator().manual_seed(2), as_uint8=True)
    assert as_bytes.dtype == torch.uint8 and torch.equal(masks, same_masks)
    assert torch.equal(as_bytes, (as_float * 255).round().to(torch.uint8))
