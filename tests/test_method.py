"""The method's building blocks: shapes, the frozen backbone, the priors' identities, the head at init, the gate."""

import pytest
import torch
import torch.nn.functional as F

from hlgfa_lite import HLGFA, HLGFAError, preset
from hlgfa_lite.alignment import AlignmentHead, alignment_loss, misalignment
from torchvision.transforms.functional import gaussian_blur

from hlgfa_lite.priors import low_pass, priors_on_low_grid, split


def test_inspect_shapes_and_dtypes(lite_model):
    images = torch.rand(2, 3, 300, 420)  # any size, any aspect ratio
    out = lite_model.inspect(images)
    assert out.hr_image.shape == (2, 3, 512, 512) and out.lr_image.shape == (2, 3, 256, 256)
    assert lite_model.backbone.channels == [24, 40, 112] and lite_model.backbone.strides == [4, 8, 16]
    for level, (c, s) in enumerate(zip([24, 40, 112], [4, 8, 16])):
        assert out.high[level].shape == (2, c, 512 // s, 512 // s)
        assert out.low[level].shape == (2, c, 256 // s, 256 // s)
        assert out.priors[level].structure.shape == (2, c, 256 // s, 256 // s)
        assert out.priors[level].detail.shape == (2, 4 * c, 256 // s, 256 // s)
        assert out.outputs[level].gate.shape == (2, c, 256 // s, 256 // s)
        assert out.level_maps[level].shape == (2, 256 // s, 256 // s)
    assert out.anomaly_map.shape == (2, 256, 256) and out.scores.shape == (2,)
    assert all(t.dtype == torch.float32 for t in [out.anomaly_map, out.scores, *out.high, *out.low])
    from hlgfa_lite.calibration import calibrate

    lite_model.calibration = calibrate(torch.tensor([1.0, 1.1, 1.2]), torch.rand(1, 4, 4))  # predict wants one
    try:
        [(full_map, score)] = lite_model.predict([torch.rand(3, 301, 199)])
    finally:
        lite_model.calibration = None
    assert full_map.shape == (301, 199) and isinstance(score, float)


def test_backbone_is_frozen_and_gets_no_gradient(lite_model):
    backbone = lite_model.backbone
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()  # asking for train mode must not unfreeze BatchNorm statistics
    assert not backbone.net.training
    images = torch.rand(1, 3, 512, 512)
    high, low = backbone(images), backbone(F.interpolate(images, size=256))
    assert not any(f.requires_grad for f in high + low)
    priors = lite_model.priors(high)
    head = AlignmentHead(backbone.channels, lite_model.cfg)
    alignment_loss(head(low, priors), priors).backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_structure_plus_detail_recovers_the_input():
    features = torch.randn(2, 5, 32, 32)
    structure, detail = split(features, sigma=2.0)
    torch.testing.assert_close(structure + detail, features, rtol=0, atol=1e-5)
    # a low-pass keeps a constant field and gives it no detail
    constant = torch.full((1, 3, 16, 16), 0.7)
    structure, detail = split(constant, sigma=2.0)
    torch.testing.assert_close(structure, constant)
    assert detail.abs().max() < 1e-6
    # the split really separates frequencies: a checkerboard is almost all detail
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(1, 1, 32, 32)
    structure, detail = split(checker - 0.5, sigma=2.0)
    assert structure.abs().max() < 0.05 and detail.abs().mean() > 0.45


def test_separable_low_pass_matches_torchvision_gaussian_blur():
    # the reference is torchvision's 2-D kernel; ours runs it as two 1-D passes, clipped on tiny maps the same way
    for shape, sigma, kernel in [((2, 6, 40, 33), 2.0, 13), ((1, 1, 64, 64), 4.0, 25), ((1, 3, 7, 9), 2.0, 11)]:
        features = torch.randn(shape)
        expected = gaussian_blur(features, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
        torch.testing.assert_close(low_pass(features, sigma), expected, rtol=0, atol=1e-5)
    features = torch.randn(1, 2, 8, 8)
    assert low_pass(features, 0) is features


def test_priors_on_the_low_grid_lose_nothing():
    high = torch.randn(1, 4, 16, 16)
    priors = priors_on_low_grid(high, sigma=1.5, ratio=2)
    structure, detail = split(high, 1.5)
    torch.testing.assert_close(F.pixel_shuffle(priors.detail, 2), detail)  # every detail value kept
    torch.testing.assert_close(priors.target, F.avg_pool2d(high, 2))
    torch.testing.assert_close(priors.structure, F.avg_pool2d(structure, 2))


def test_head_is_identity_at_init_for_every_ablation():
    for switches in [{}, {"use_structure": False}, {"use_detail": False}, {"use_gate": False}]:
        cfg = preset("lite", **switches)
        head = AlignmentHead([8, 16], cfg)
        low = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)]
        priors = [priors_on_low_grid(torch.randn(2, c, 2 * h, 2 * h), 2.0, 2) for c, h in [(8, 16), (16, 8)]]
        for out, f in zip(head(low, priors), low):
            torch.testing.assert_close(out.refined, f)


def test_gate_stays_in_open_unit_interval_and_starts_mostly_closed():
    cfg = preset("lite")
    head = AlignmentHead([8], cfg)
    low = [torch.randn(2, 8, 16, 16)]
    priors = [priors_on_low_grid(torch.randn(2, 8, 32, 32), 2.0, 2)]
    gate = head(low, priors)[0].gate
    torch.testing.assert_close(gate, torch.full_like(gate, torch.sigmoid(torch.tensor(cfg.gate_bias_init)).item()))
    head.double()  # float64, so that rounding cannot turn sigmoid(x) into exactly 0 or 1
    with torch.no_grad():  # trained-like weights: the gate opens in places, yet never reaches 0 or 1
        for p in head.parameters():
            p.normal_(0, 0.1)
    priors = [priors_on_low_grid(torch.randn(2, 8, 32, 32, dtype=torch.float64), 2.0, 2)]
    gate = head([low[0].double()], priors)[0].gate
    assert gate.min() > 0 and gate.max() < 1 and gate.std() > 0.05


def test_misalignment_is_one_minus_cosine():
    a, b = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    expected = 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    torch.testing.assert_close(misalignment(a, b), expected, rtol=1e-5, atol=1e-5)
    assert misalignment(a, a).abs().max() < 1e-5 and (misalignment(a, -a) - 2).abs().max() < 1e-5


def test_fit_lowers_the_loss_and_calibrates(fitted):
    model, report, _ = fitted
    first, last = sum(report.losses[:5]) / 5, sum(report.losses[-5:]) / 5
    assert last < 0.8 * first
    cal = model.calibration
    assert cal.map_vmin < cal.pixel_threshold < cal.map_vmax
    assert cal.good_score_center < cal.borderline_threshold < cal.image_threshold
    # 2 held out of 20: the 18 training images were cross-fitted too, so 20 good scores carry the threshold
    assert cal.n_images == 20 and len(report.cross_fit_scores) == 18
    assert report.n_holdout >= 1 and report.n_train + report.n_holdout == 20


def test_trained_model_separates_sample_defects(fitted, sample):
    from hlgfa_lite.evaluation import evaluate

    result = evaluate(fitted[0], sample, progress=False)
    # 40 steps at 256/128 px is far from converged, but defects must already stand out
    assert result.metrics["image_auroc"] > 0.8 and result.metrics["pixel_auroc"] > 0.85
    assert 0 < result.metrics["ms_per_image"] and result.metrics["n_test_images"] == 14


def test_random_weights_only_when_asked(recwarn):
    model = HLGFA(preset("lite", **{"hr_size": 128, "lr_size": 64}), pretrained=False)
    assert "random" in model.backbone.weights_source
    assert any("RANDOM" in str(w.message) for w in recwarn)


def test_paper_preset_builds_wide_resnet_levels():
    # no ImageNet WRN-50 weights exist offline; the architecture and its wiring must still be right
    model = HLGFA(preset("paper", hr_size=128, lr_size=64), pretrained=False)
    assert model.backbone.channels == [256, 512, 1024] and model.backbone.strides == [4, 8, 16]
    out = model.inspect(torch.rand(1, 3, 100, 100))
    assert [m.shape for m in out.level_maps] == [(1, 16, 16), (1, 8, 8), (1, 4, 4)]
    assert out.anomaly_map.shape == (1, 64, 64)


def test_inspect_from_held_features_is_inspect(lite_model):
    """``inspect_features`` on features computed once gives exactly ``inspect``'s maps and scores."""
    images = torch.rand(2, 3, 300, 260)
    whole = lite_model.inspect(images)
    again = lite_model.inspect_features(whole.hr_image, whole.lr_image, whole.high, whole.low)
    assert torch.equal(whole.anomaly_map, again.anomaly_map) and torch.equal(whole.scores, again.scores)


def test_a_fold_model_shares_the_frozen_backbone_and_nothing_else(lite_model):
    fold = HLGFA(lite_model.cfg, backbone=lite_model.backbone)
    assert fold.backbone is lite_model.backbone and fold.head is not lite_model.head
    assert (fold.normality is None) == (lite_model.normality is None)
    assert fold.normality is None or fold.normality is not lite_model.normality


def test_bfloat16_training_keeps_float32_weights_and_lowers_the_loss(sample):
    """The head trained under bfloat16 autocast: its weights and every map stay float32; the loss falls."""
    from hlgfa_lite import fit
    from hlgfa_lite.data import train_image_paths
    model = HLGFA(preset("lite", steps=12, aug_copies=1, batch_size=4, train_precision="bfloat16"))
    report = fit(model, train_image_paths(sample)[:6], progress=False, say=None)
    assert all(p.dtype == torch.float32 for p in model.head.parameters())
    assert model.inspect(torch.rand(1, 3, 64, 64)).anomaly_map.dtype == torch.float32
    assert sum(report.losses[-3:]) < sum(report.losses[:3])


def test_the_head_starts_from_its_seed_alone(lite_model):
    """torch seeds every process at random: a head drawn from the global generator made ``fit --seed 0`` give a new
    checkpoint in each run. The start now follows the config's seed (or ``init_seed``), whatever the global
    generator holds, and leaves that generator as it was."""

    def start(global_seed: int, **kwargs) -> list[torch.Tensor]:
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        model = HLGFA(lite_model.cfg.replace(**kwargs), backbone=lite_model.backbone)
        assert torch.equal(torch.get_rng_state(), before)  # the caller's generator is untouched
        return [p.detach().clone() for p in model.head.parameters()]

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b))

    assert same(start(1, seed=3), start(2, seed=3))
    assert not same(start(1, seed=3), start(1, seed=4))
    torch.manual_seed(5)
    fold = HLGFA(lite_model.cfg.replace(seed=3), backbone=lite_model.backbone, init_seed=103)
    assert not same(start(5, seed=3), [p.detach() for p in fold.head.parameters()])


def test_fitted_bytes_are_what_the_checkpoint_file_holds_less_its_header(fitted):
    """safetensors: an 8-byte header length, the JSON header, then the tensors' bytes back to back."""
    import struct

    from hlgfa_lite.tools.checkpoint import TENSORS

    model, _, run_dir = fitted
    file = (run_dir / TENSORS).read_bytes()
    (header_length,) = struct.unpack("<Q", file[:8])
    assert model.fitted_bytes() == len(file) - 8 - header_length
    assert model.fitted_bytes("head.") == 4 * model.trainable_parameters()  # float32 weights
    assert model.fitted_bytes("normality.") > 0  # the Gaussians: the rest is the per-map good-image statistics
    assert model.fitted_bytes("head.") + model.fitted_bytes("normality.") < model.fitted_bytes()


def test_features_with_gradients_check_their_view_and_keep_a_graph_inside_no_grad(lite_model):
    view = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    with torch.no_grad():  # a lesson cell under no_grad still gets its graph
        features = lite_model.features_with_gradients(view)
    (pixels,) = torch.autograd.grad(features[0].sum(), view)
    assert pixels.abs().sum() > 0
    with pytest.raises(HLGFAError, match="floats in \\[0, 1\\]"):
        lite_model.features_with_gradients((view.detach() * 255).to(torch.uint8))
    with pytest.raises(HLGFAError, match="channels last"):
        lite_model.features_with_gradients(view.detach().permute(0, 2, 3, 1))


def test_fitted_bytes_refuses_a_prefix_no_tensor_has(lite_model):
    with pytest.raises(HLGFAError, match="try 'head.' or 'normality.'"):
        lite_model.fitted_bytes("heads.")
    with pytest.raises(HLGFAError, match="must be a string"):
        lite_model.fitted_bytes(None)
