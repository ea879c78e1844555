"""The training set's memory bound (hlgfa_lite/tools/cache.py): the estimate is the real size, the policy follows the
budget, a cache spilled to disk trains exactly what the in-memory cache trains, and fit says its plan first."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hlgfa_lite import HLGFA, fit, preset
from hlgfa_lite.tools import cache
from hlgfa_lite.errors import HLGFAError
from hlgfa_lite.assets import sample_dir
from hlgfa_lite.training import fit_normality, train_head

GIB = 2 ** 30
TINY = dict(hr_size=128, lr_size=64, steps=3, batch_size=4)


def tiny_model(**changes) -> HLGFA:
    torch.manual_seed(0)  # backbone and head: the same random weights every time
    return HLGFA(preset("lite", **{**TINY, **changes}), pretrained=False)


def good_paths(n: int = 7) -> list[Path]:
    return sorted((sample_dir() / "train" / "good").glob("*.png"))[:n]


@pytest.fixture(scope="module")
def images():
    return cache.load_images(good_paths(5), 128)


def cache_nbytes(held: cache.FeatureCache) -> int:
    return sum(t.nbytes for t in held.low) + sum(t.nbytes for p in held.priors for t in (p.structure, p.detail, p.target))


@pytest.mark.parametrize("views, head_draws, prior_draws", [("both", 2, 2), ("both", 0, 4), ("low", 2, 1)])
def test_the_estimate_is_the_size_of_the_cache_in_memory_and_on_disk(images, views, head_draws, prior_draws, tmp_path):
    model = tiny_model(aug_views=views, head_draws=head_draws)
    plan = cache.plan_cache(model, len(images), max_cache_gib=1.0)
    assert plan.policy == "memory" and plan.draws == 4 and plan.prior_draws == prior_draws
    assert plan.cache_bytes == cache_nbytes(cache.cache_features(model, images, progress=False))
    spilled = cache.spill_features(model, images, tmp_path, progress=False)
    try:
        assert spilled.nbytes == plan.cache_bytes
        assert not list(tmp_path.iterdir()), "the spill file has no name, even while it is in use"
    finally:
        spilled.close()


def test_the_policy_follows_the_budget_and_the_free_disk(images, tmp_path, monkeypatch):
    model = tiny_model()
    plan = cache.plan_cache(model, len(images), 1.0, tmp_path)
    between = (plan.image_bytes + plan.cache_bytes / 2) / GIB  # the images fit, the cache does not
    assert cache.plan_cache(model, len(images), between, tmp_path).policy == "disk"
    assert "temporary file" in cache.plan_cache(model, len(images), between, tmp_path).describe()
    monkeypatch.setattr(cache, "DISK_MARGIN_BYTES", 2 ** 62)  # a disk without room
    fly = cache.plan_cache(model, len(images), between, tmp_path)
    assert fly.policy == "on the fly" and "on the fly" in fly.describe()
    stop = cache.plan_cache(model, len(images), plan.image_bytes / 2 / GIB, tmp_path)
    assert stop.policy == "stop" and "--max-cache-gib" in stop.describe() and "\n" not in stop.describe()
    small = cache.plan_cache(model, len(images), 0.03, tmp_path)  # a budget of 31 MiB is not called "0.0 GiB"
    assert "the 31 MiB budget" in small.describe() and cache.size_text(4 * GIB) == "4.0 GiB"


def test_a_spilled_cache_reads_back_exactly_what_the_memory_cache_holds(images, tmp_path):
    model = tiny_model()
    memory, disk = cache.cache_features(model, images, progress=False), cache.spill_features(model, images, tmp_path,
                                                                                            progress=False)
    try:
        rows, views = torch.tensor([4, 0, 4, 2]), torch.tensor([0, 3, 1, 2])
        (low_a, priors_a), (low_b, priors_b) = memory.batch(rows, views, "cpu"), disk.batch(rows, views, "cpu")
        flat = [t for p in priors_a for t in (p.structure, p.detail, p.target)]
        assert all(torch.equal(a, b) for a, b in zip(low_a + flat, low_b + [t for p in priors_b for t in
                                                                          (p.structure, p.detail, p.target)]))
        for every in (True, False):
            assert all(torch.equal(a, b) for a, b in zip(memory.low_draws(slice(1, 4), every, "cpu"),
                                                          disk.low_draws(slice(1, 4), every, "cpu")))
        picked = torch.tensor([3, 1])  # a subset (cross-fitted heads) reads the same file through its own index
        assert torch.equal(memory.subset(picked).batch(torch.tensor([1]), torch.tensor([2]), "cpu")[0][2],
                           disk.subset(picked).batch(torch.tensor([1]), torch.tensor([2]), "cpu")[0][2])
    finally:
        disk.close()


def test_fit_with_a_spilled_cache_gives_the_same_model_bit_for_bit(tmp_path, capsys):
    paths = good_paths()
    in_memory, spilled = tiny_model(), tiny_model()
    fit(in_memory, paths, progress=False, cross_fit=True, cross_fit_steps=2, max_cache_gib=1.0)
    in_memory_plan = capsys.readouterr().out
    budget = 2 ** 20 / GIB  # 1 MiB: above 6 images of 128 px (0.28 MiB), below their cache (3.4 MiB)
    report = fit(spilled, paths, progress=False, cross_fit=True, cross_fit_steps=2, max_cache_gib=budget,
                 cache_dir=tmp_path)
    plan = capsys.readouterr().out
    assert "cache in memory" in in_memory_plan and report.cache_plan.policy == "disk" and "temporary file" in plan
    a, b = in_memory.fitted_state(), spilled.fitted_state()
    assert a.keys() == b.keys() and any(k.startswith("normality.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert in_memory.calibration.image_threshold == spilled.calibration.image_threshold
    assert not list(tmp_path.iterdir()), "the spill file is deleted when fit ends"


@pytest.mark.parametrize("held", ["memory", "disk"])
def test_priors_read_as_bfloat16_train_the_head_that_autocast_trains_from_float32(images, held, tmp_path, monkeypatch):
    """Under bfloat16 autocast the structure and detail priors are read as bfloat16 (``cache.working_priors``):
    float16 -> bfloat16 rounds once, as the float32 copy and autocast's cast did, so the head is the same bit for
    bit; the target, which enters the float32 loss, stays float32."""
    model = tiny_model(train_precision="bfloat16")
    features = (cache.cache_features(model, images, progress=False) if held == "memory"
                else cache.spill_features(model, images, tmp_path, progress=False))
    try:
        _, priors = features.batch(torch.tensor([0, 3]), torch.tensor([1, 2]), "cpu", torch.bfloat16)
        assert [(p.structure.dtype, p.detail.dtype, p.target.dtype) for p in priors] == \
            [(torch.bfloat16, torch.bfloat16, torch.float32)] * len(priors)
        start = {k: v.clone() for k, v in model.head.state_dict().items()}
        train_head(model, features, steps=6, progress=False)
        as_bfloat16 = {k: v.clone() for k, v in model.head.state_dict().items()}
        model.head.load_state_dict(start)
        real = cache.working_priors
        monkeypatch.setattr(cache, "working_priors", lambda tensors, device, conv_dtype: real(tensors, device,
                                                                                               torch.float32))
        train_head(model, features, steps=6, progress=False)
        via_float32 = model.head.state_dict()
        assert all(torch.equal(as_bfloat16[k], via_float32[k]) for k in start)
        assert any(not torch.equal(start[k], via_float32[k]) for k in start), "the head trained"
    finally:
        features.close()


@pytest.mark.parametrize("batching, batch", [({}, 4), ({"batch_size": 6, "min_batch_size": 2}, 2)])
def test_priors_of_draws_no_head_reads_are_skipped_and_the_fit_is_the_same_bit_for_bit(monkeypatch, batching, batch):
    """fit computes the high-res priors only of the draws its heads will read (``training.wanted_priors``): fewer
    high-res backbone passes, and the head, the cross-fitted heads, the normality term and the calibration all the
    same bit for bit as with every draw's priors computed; also where a small set shrinks the batch
    (``training.head_batch``: 6 images, five passes need 1 per step, the least is 2)."""
    from hlgfa_lite import training

    paths = good_paths()
    model = tiny_model(steps=2, head_draws=0, **batching)  # 2 steps of a few picks among 6 images x 4 draws
    passes, holding = [], []  # the side of each backbone pass while the features are held
    real_forward, real_hold = model.backbone.forward, training.hold_features

    def forward(images):
        if holding:
            passes.append(images.shape[-1])
        return real_forward(images)

    monkeypatch.setattr(model.backbone, "forward", forward)

    def hold(*args, **kwargs):
        holding.append(True)
        try:
            return real_hold(*args, **kwargs)
        finally:
            holding.clear()

    monkeypatch.setattr(training, "hold_features", hold)
    report = fit(model, paths, progress=False, cross_fit=True, cross_fit_steps=1, say=None)
    read, drawn = report.prior_draws
    assert drawn == 6 * 4 and 0 < read < drawn and report.batch_size == batch
    every = tiny_model(steps=2, head_draws=0, **batching)
    monkeypatch.setattr(training, "wanted_priors", lambda cfg, n, draws, prior_draws, *rest: torch.ones(n, prior_draws,
                                                                                                      dtype=torch.bool))
    fit(every, paths, progress=False, cross_fit=True, cross_fit_steps=1, say=None)
    a, b = model.fitted_state(), every.fitted_state()
    assert a.keys() == b.keys() and any(k.startswith("normality.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert model.calibration.image_threshold == every.calibration.image_threshold
    # the feature phase: a 64 px pass per draw, a 128 px pass per draw read (and one for the zero priors' shapes)
    assert passes.count(64) == drawn and passes.count(128) == read + 1


def test_the_draws_wanted_are_those_every_head_reads():
    from hlgfa_lite import training

    cfg = preset("lite", **TINY)
    images, views = training.head_reads(cfg, 6, 4, 3, cfg.batch_size)
    alone = training.wanted_priors(cfg, 6, 4, 4, 3)
    assert alone.sum() == len(set(zip(images.flatten().tolist(), views.flatten().tolist())))
    assert alone[images, views].all()
    crossed = training.wanted_priors(cfg, 6, 4, 4, 3, cross_fit=True, cross_fit_steps=2)
    splits, fold_steps = training.cross_fit_plan(cfg, 6, steps=2)
    assert fold_steps == 2 and (crossed >= alone).all()
    for _, kept in splits:
        fold_images, fold_views = training.head_reads(cfg, len(kept), 4, fold_steps, cfg.batch_size)
        assert crossed[kept[fold_images], fold_views].all()
    assert crossed[:, 0].all(), "the fold models score every image's clean draw from the cache"
    assert training.wanted_priors(cfg, 6, 4, 1, 3)[:, 0].sum() == len(images.unique())  # "low": one clean draw


def test_a_head_reading_the_first_draws_of_each_image_wants_only_their_priors():
    """``head_draws`` = k: every head (the cross-fitted ones too) reads only draws 0 .. k-1 of each image, so only
    their priors are wanted; k = 0, or k at least the draws held, reads them all."""
    from hlgfa_lite import training

    cfg = preset("lite", **TINY, head_draws=2)
    images, views = training.head_reads(cfg, 6, 4, 40, cfg.batch_size)
    assert set(views.unique().tolist()) == {0, 1}
    wanted = training.wanted_priors(cfg, 6, 4, 4, 40, cross_fit=True, cross_fit_steps=20)
    assert wanted[:, :2].any(dim=0).all() and not wanted[:, 2:].any()
    for every in (0, 4, 9):
        _, views = training.head_reads(cfg.replace(head_draws=every), 6, 4, 40, cfg.batch_size)
        assert set(views.unique().tolist()) == {0, 1, 2, 3}
    with pytest.raises(HLGFAError, match="head_draws"):
        preset("lite", head_draws=-1)


@pytest.mark.parametrize("holder", ["memory", "disk"])
def test_priors_of_draws_no_head_reads_are_not_held_and_the_fit_is_the_same_bit_for_bit(monkeypatch, tmp_path, holder):
    """With ``head_draws`` = 2 the cache holds two prior draws per image, not four (``held_prior_draws``): half the
    priors' memory or disk, and the same fit bit for bit as with all four held."""
    from hlgfa_lite import training

    budget = 8.0 if holder == "memory" else 3e-4  # the images (0.3 MB) fit, the cache does not: it goes to disk
    kwargs = dict(progress=False, cross_fit=True, cross_fit_steps=2, say=None, max_cache_gib=budget,
                  cache_dir=tmp_path)
    model = tiny_model(head_draws=2)
    plans = []
    real_plan = training.plan_cache
    monkeypatch.setattr(training, "plan_cache", lambda *a, **k: plans.append(real_plan(*a, **k)) or plans[-1])
    fit(model, good_paths(), **kwargs)
    every = tiny_model(head_draws=2)
    monkeypatch.setattr(cache, "held_prior_draws", lambda cfg, draws: draws)
    fit(every, good_paths(), **kwargs)
    assert [(p.policy, p.draws, p.prior_draws) for p in plans] == [(holder, 4, 2), (holder, 4, 4)]
    assert plans[0].cache_bytes < plans[1].cache_bytes
    a, b = model.fitted_state(), every.fitted_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model.calibration.image_threshold == every.calibration.image_threshold


KILLED_FIT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from hlgfa_lite import fit
    from hlgfa_lite.tools import cache
    from test_memory import GIB, good_paths, tiny_model
    where = sys.argv[1]  # kill while the cache is written, or while the head trains on it

    real_write, real_read = cache._write, cache.SpilledCache._read

    def write(fd, record, offset):
        if where == "writing" and offset > 0:  # the second record: the file holds data by now
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(fd, record, offset)

    def read(self, *args):
        if where == "training":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_read(self, *args)

    cache._write, cache.SpilledCache._read = write, read
    fit(tiny_model(), good_paths(), progress=False, max_cache_gib=2 ** 20 / GIB, cache_dir=sys.argv[2])
    print("completed")
""")


@pytest.mark.parametrize("where", ["writing", "training"])
def test_a_fit_killed_while_its_cache_is_on_disk_leaves_no_file(tmp_path, where):
    """SIGKILL (or the out-of-memory killer) runs no cleanup code: only a file without a name is freed."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED_FIT.format(tests=str(Path(__file__).parent)))
    spill = tmp_path / "spill"
    spill.mkdir()
    done = subprocess.run([sys.executable, "-u", str(script), where, str(spill)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert "temporary file" in done.stdout  # fit planned the disk, and was killed while using it
    assert not list(spill.iterdir())


def test_head_and_normality_trained_on_the_fly_see_every_draw(images, monkeypatch):
    model = tiny_model()
    live = cache.OnTheFlyFeatures(model, images, draws=4, augment=cache.NoiseAugment(model.cfg))
    clean, every = live.low_draws(slice(0, 2), False, "cpu"), live.low_draws(slice(0, 2), True, "cpu")
    assert [t.shape[0] for t in clean] == [2] * 3 and [t.shape[0] for t in every] == [8] * 3
    memory = cache.cache_features(model, images, progress=False)
    for a, b in zip(memory.low_draws(slice(0, 2), False, "cpu"), clean):  # the clean view: as cached (float16)
        assert torch.allclose(a, b, rtol=2e-2, atol=2e-2)
    assert not torch.equal(every[0][1], every[0][0])  # draw 1 is a nuisance, not the clean image again
    fit_normality(model, live)
    assert model.normality.is_fitted()
    losses = train_head(model, live, 2, progress=False)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_fit_says_its_plan_in_one_line_or_stops_with_one(capsys, tmp_path, monkeypatch):
    paths = good_paths(6)
    with pytest.raises(HLGFAError) as stopped:
        fit(tiny_model(), paths, progress=False, max_cache_gib=1e-6)
    assert "cannot start" in str(stopped.value) and "\n" not in str(stopped.value)
    assert capsys.readouterr().out == ""  # nothing said, nothing done
    monkeypatch.setattr(cache, "DISK_MARGIN_BYTES", 2 ** 62)
    report = fit(tiny_model(), paths, progress=False, max_cache_gib=2 ** 20 / GIB, cache_dir=tmp_path)
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and said[0].startswith("fit holds") and "on the fly" in said[0]
    assert report.cache_plan.policy == "on the fly" and all(torch.isfinite(torch.tensor(report.losses)))
    for mistyped in (tmp_path / "no-such-folder", paths[0]):  # a --cache-dir that is not a folder, even unneeded
        with pytest.raises(HLGFAError, match="is not an existing folder; create it or give another"):
            fit(tiny_model(), paths, progress=False, cache_dir=mistyped)
    assert capsys.readouterr().out == "" and not (tmp_path / "no-such-folder").exists()


def test_cross_fitted_scores_are_scaled_like_a_whole_fit_not_by_the_final_head(images):
    """Each fold model takes its per-map statistics from the held-out images, as ``fit`` does for the final model,
    so its scores do not depend on how well the *final* head aligns: a final head ten times tighter on good images
    (its per-map scale / 10) leaves every cross-fitted score as it was. Scaled by the final model instead, a fold
    head trained for a third of the steps reads as many spreads above normal and the threshold lands above the
    defects (lesson 04's shipped heads: 52 against good test scores near 2.5). The fold models are new models:
    the final one is not changed."""
    from hlgfa_lite.training import calibrate_model, cross_fit_scores

    model = tiny_model()
    held = cache.cache_features(model, images[:4], progress=False)
    fit_normality(model, held)
    train_head(model, held, 3, progress=False)
    holdout = images[4:]
    calibrate_model(model, holdout)
    first = cross_fit_scores(model, held, holdout, model.cfg.map_scale, folds=2, steps=2)
    model.level_scale.div_(10)  # as if the final head were far better than the fold heads
    final_mean, final_scale = model.level_mean.clone(), model.level_scale.clone()
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    second = cross_fit_scores(model, held, holdout, model.cfg.map_scale, folds=2, steps=2)
    assert len(first) == 4 and second == pytest.approx(first, rel=1e-5)
    assert torch.equal(model.level_mean, final_mean) and torch.equal(model.level_scale, final_scale)
    assert all(torch.equal(v, head[k]) for k, v in model.head.state_dict().items())


def test_cross_fitted_scores_read_the_held_features_and_match_a_fresh_inspection(images, monkeypatch):
    """A fold model scores its images from the clean draws the cache already holds (``training.held_scores``): the
    scores of a fresh ``inspect`` to float16 rounding, and a fit's cross-fit costs no backbone pass: after the
    feature phase, a fit with three fold models runs exactly the passes of a fit without them (the held-out images
    and the map scale's synthetic defects)."""
    from hlgfa_lite import training
    from hlgfa_lite.training import calibrate_model, held_scores

    model = tiny_model()
    held = cache.cache_features(model, images[:4], progress=False)
    fit_normality(model, held)
    train_head(model, held, 3, progress=False)
    calibrate_model(model, images[4:])
    fresh = [model.inspect(cache.as_float(images[i:i + 1])).scores.item() for i in range(4)]
    assert held_scores(model, held, torch.tensor([2, 0, 3, 1]), chunk=3) == pytest.approx(
        [fresh[i] for i in (2, 0, 3, 1)], abs=2e-3)  # scores count good-image spreads: 0.002 of one

    def passes_after_the_features(cross_fit: bool) -> int:
        fitted, passes, held_now = tiny_model(steps=2), [], []
        real_forward, real_hold = fitted.backbone.forward, training.hold_features

        def forward(batch):
            passes.append(not held_now)
            return real_forward(batch)

        def hold(*args, **kwargs):
            try:
                return real_hold(*args, **kwargs)
            finally:
                held_now.append(True)

        monkeypatch.setattr(fitted.backbone, "forward", forward)
        monkeypatch.setattr(training, "hold_features", hold)
        report = fit(fitted, good_paths(), progress=False, cross_fit=cross_fit, cross_fit_steps=1, say=None)
        assert len(report.cross_fit_scores) == (report.n_train if cross_fit else 0)
        return passes.count(False)

    assert passes_after_the_features(True) == passes_after_the_features(False) > 0


@pytest.mark.parametrize("n_images, copies, budget, draws", [
    (63, 3, 256, 4),  # 189 augmented draws: within the budget, every copy kept
    (85, 3, 256, 4),  # 255
    (86, 3, 256, 3),  # 258 would pass it: two copies each
    (188, 3, 256, 2),  # one copy each
    (685, 3, 256, 2),  # still one: every image keeps a nuisance draw
    (685, 3, 0, 4),  # no budget: aug_copies whatever the set
    (10, 1, 256, 2),  # never more than aug_copies
])
def test_a_large_set_caches_fewer_augmented_copies_per_image(n_images, copies, budget, draws):
    cfg = preset("lite", aug_copies=copies, aug_budget=budget)
    assert cache.wanted_draws(cfg, n_images) == draws
    assert cache.wanted_draws(cfg.replace(noise_aug=False), n_images) == 1


def test_the_cache_and_its_plan_hold_the_budgeted_draws(images):
    model = HLGFA(preset("lite", hr_size=128, lr_size=64, aug_budget=4), pretrained=False)  # 4 images: 1 copy each
    held = cache.cache_features(model, images[:4], progress=False)
    assert held.draws == cache.plan_cache(model, 4).draws == 2
    assert held.low[0].shape[1] == 2


def test_checkpoints_from_before_the_budget_and_the_lite_preset_keep_every_copy():
    from hlgfa_lite import HLGFAConfig

    assert HLGFAConfig.from_dict({}).aug_budget == 0 == preset("lite").aug_budget  # lite keeps every copy


def test_images_load_in_threads_with_the_values_of_one_after_another(tmp_path):
    from hlgfa_lite.backbone import resize
    from hlgfa_lite.data import load_image

    paths = sorted((sample_dir() / "train" / "good").glob("*.png"))[:5]
    loaded = cache.load_images(paths, 96)
    for path, held in zip(paths, loaded):
        assert torch.equal(held, (resize(load_image(path)[None], 96)[0] * 255).round().to(torch.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(HLGFAError, match="cannot read image .*broken.png"):
        cache.load_images([paths[0], tmp_path / "broken.png", paths[1]], 96)


def test_a_few_images_of_another_shape_are_named_in_one_warning(tmp_path):
    """Every image is stretched to a square; a few of another aspect ratio among many of one (a crop among whole
    parts) are named, as they lift the threshold; a set whose shapes vary throughout (the magnetic tile) is not."""
    from PIL import Image
    import warnings

    square = [tmp_path / f"{i}.png" for i in range(5)]
    for i, path in enumerate(square):  # each its own grey: copies would get a warning of their own
        Image.new("RGB", (64, 64), (100 + i,) * 3).save(path)
    Image.new("RGB", (64, 40), (90,) * 3).save(tmp_path / "crop.png")
    with pytest.warns(UserWarning, match=r"1 of 6 good images have another aspect ratio than most \(crop.png\)"):
        cache.load_images([*square, tmp_path / "crop.png"], 32)
    for i, width in enumerate((40, 50, 64, 80, 100)):
        Image.new("RGB", (width, 64), (50 + i,) * 3).save(tmp_path / f"varied{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.load_images([*square], 32)
        cache.load_images(sorted(tmp_path.glob("varied*.png")), 32)


def test_a_fit_on_few_good_images_says_how_far_up_anomalous_starts():
    """Two images: one trained on, one held out; a threshold from one good score (a prior spread, the margin of two
    scores: 37 spreads) is thousands of times the typical good score and nothing reads anomalous. fit says so."""
    import warnings

    from hlgfa_lite.calibration import FEW_GOOD_SCORES

    with pytest.warns(UserWarning, match=r"rests on the scores of 1 good image \(fewer than 8\): anomalous starts at "
                                         r"[0-9.e+]+x the typical good score, so expect many borderline verdicts"):
        report = fit(tiny_model(), good_paths(2), progress=False, say=None)
    assert report.calibration.n_images == 1 < FEW_GOOD_SCORES  # the held-out image (one left to train: no folds)
    ratio = report.calibration.image_threshold / report.calibration.good_score_center
    assert ratio > 10  # what the warning is for: "anomalous" out of any defect's reach
    model = tiny_model()  # (its random backbone warns on its own)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eight good scores: no warning
        assert fit(model, good_paths(8), progress=False, say=None).calibration.n_images == 8
