"""map_scale="auto": synthetic defects (synthetic.py) and the choice of scale they drive (training.choose_map_scale)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hlgfa_lite import HLGFAConfig, HLGFAError, load, preset, train_image_paths
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


def level_maps(coarse_localises: bool, seed: int = 0):
    """Raw maps of 6 good and 6 defective images for a two-level model with the normality term: alignment and
    normality at a fine (16 x 16) and a coarse (4 x 4) level. Every map but the coarse normality one carries the
    defect (+3); the coarse normality map carries it too, or instead has a hot spot where no defect is (a per-position
    Gaussian fitted on too few images), on good and defective images alike."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True

    def maps(n, defect):
        fine = [torch.randn(n, 16, 16, generator=g) for _ in range(2)]
        coarse = [torch.randn(n, 4, 4, generator=g) for _ in range(2)]
        if defect:
            for m in fine:
                m[:, 4:8, 4:8] += 3
            coarse[0][:, 1, 1] += 3
        if coarse_localises and defect:
            coarse[1][:, 1, 1] += 3
        if not coarse_localises:
            coarse[1][:, 3, 3] += 6
        return [fine[0], coarse[0], fine[1], coarse[1]]  # alignment levels, then normality levels

    return maps(6, False), maps(6, True), masks


@pytest.mark.parametrize("coarse_localises, wanted", [(True, "all"), (False, "fine")])
def test_the_level_set_chosen_is_the_one_that_localises_and_fine_leaves_the_coarsest_normality_map_out(
        coarse_localises, wanted):
    from hlgfa_lite.scoring import map_weights
    from hlgfa_lite.training import fusion_candidates, pick_map_scale

    cfg = HLGFAConfig(map_scale="std", normality_levels="auto")
    candidates = fusion_candidates(cfg, with_normality=True)
    assert candidates == {"std/all": ("std", "all"), "std/fine": ("std", "fine")}
    assert fusion_candidates(cfg, with_normality=False) == {"std": ("std", "all")}

    def fuse(raw_maps, mean, scale, levels):
        return fuse_levels(raw_maps, mean, scale, 16, 0.0, map_weights(2, True, 0.75, levels))

    good, defective, masks = level_maps(coarse_localises)
    auroc = scale_auroc(good, defective, masks, fuse, candidates)
    assert candidates[pick_map_scale(auroc)][1] == wanted
    truth = np.concatenate([masks.numpy(), np.zeros((6, 16, 16), bool)]).ravel()
    mean, spread = map_statistics(good, "std")
    fine = fuse([torch.cat([d, g]) for d, g in zip(defective, good)], mean, spread, "fine")
    assert auroc["std/fine"] == pytest.approx(roc_auc_score(truth, fine.numpy().ravel()), abs=1e-9)
    without = fuse_levels([torch.cat([d, g]) for d, g in zip(defective[:3], good[:3])], mean[:3], spread[:3], 16, 0.0,
                          torch.tensor([0.125, 0.125, 0.75]))
    torch.testing.assert_close(fine, without)  # "fine" is the fusion without the coarse normality map


def test_fine_moves_the_coarsest_normality_maps_share_to_the_finer_ones():
    from hlgfa_lite.scoring import map_weights

    assert map_weights(3, True, 0.75, "fine").tolist() == pytest.approx([0.25 / 3] * 3 + [0.375, 0.375, 0.0])
    assert map_weights(3, True, 0.75, "auto").tolist() == map_weights(3, True, 0.75, "all").tolist()
    assert map_weights(1, True, 0.75, "fine").tolist() == [0.25, 0.75]  # one level: nothing to leave out
    assert map_weights(3, False, 0.75, "fine").tolist() == pytest.approx([1 / 3] * 3)
    assert HLGFAConfig.from_dict({}).normality_levels == "all"
    with pytest.raises(HLGFAError, match="normality_levels must be"):
        preset("lite", normality_levels="coarse")


def test_a_fit_choosing_its_levels_names_each_candidate_and_its_folds_keep_the_choice(fitted, sample):
    from hlgfa_lite.training import level_statistics, set_statistics

    model, _, _ = fitted
    kept, kept_statistics = model.cfg, (model.level_mean.clone(), model.level_scale.clone())
    _, held_out = split_holdout(train_image_paths(sample), kept.holdout_fraction, kept.seed)
    images = load_images(held_out, kept.hr_size)
    good = good_level_maps(model, images)
    try:
        model.cfg = kept.replace(map_scale="auto", normality_levels="auto")
        statistics = level_statistics(model, images, good)
        assert set(statistics.scale_auroc) == {"std/all", "std/fine", "max/all", "max/fine"}
        best = max(statistics.scale_auroc.values())
        assert statistics.scale_auroc[f"{statistics.map_scale}/{statistics.normality_levels}"] == best
        set_statistics(model, statistics)
        assert model.cfg.normality_levels in ("all", "fine") and model.cfg.map_scale in ("std", "max")
        fixed = level_statistics(model, images, good, "std", normality_levels="fine")  # a fold: no choice left
        assert (fixed.map_scale, fixed.normality_levels, fixed.scale_auroc) == ("std", "fine", {})
    finally:  # the fixture's model is shared: leave it as the checkpoint on disk has it
        model.cfg = kept
        model.level_mean.copy_(kept_statistics[0])
        model.level_scale.copy_(kept_statistics[1])


def test_the_maps_own_share_leaves_the_choice_and_the_image_scores_as_they_were(fitted, sample):
    from hlgfa_lite.training import level_statistics, set_calibration

    model, _, _ = fitted
    kept, kept_calibration = model.cfg, model.calibration
    kept_statistics = model.level_mean.clone(), model.level_scale.clone()
    _, held_out = split_holdout(train_image_paths(sample), kept.holdout_fraction, kept.seed)
    images = load_images(held_out, kept.hr_size)
    good = good_level_maps(model, images)
    chosen, thresholds = [], []
    try:
        for share in (None, 0.1):
            model.cfg = kept.replace(map_scale="auto", map_normality_weight=share)
            statistics = level_statistics(model, images, good)
            scores = set_calibration(model, statistics, good)
            chosen.append((statistics.map_scale, statistics.scale_auroc, scores))
            thresholds.append((model.calibration.image_threshold, model.calibration.map_vmax))
        assert chosen[0][:2] == chosen[1][:2]  # the candidates are weighed with the score's share
        torch.testing.assert_close(chosen[0][2], chosen[1][2])
        assert thresholds[0][0] == thresholds[1][0] and thresholds[0][1] != thresholds[1][1]  # only the map moved
    finally:
        model.cfg = kept
        model.level_mean.copy_(kept_statistics[0])
        model.level_scale.copy_(kept_statistics[1])
        model.calibration = kept_calibration
