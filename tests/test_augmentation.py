"""Noise-aware augmentation: reproducible, in range, and each nuisance really changes the image."""

import pytest
import torch

from hlgfa_lite import HLGFAError, preset
from hlgfa_lite.augmentation import NoiseAugment, apply_nuisance, brightness_shift, is_exactly_grey, sharpen


def test_augmentation_is_reproducible_and_stays_in_range():
    image = torch.rand(3, 48, 48)
    first = NoiseAugment(preset("lite", seed=3))(image)
    again = NoiseAugment(preset("lite", seed=3))(image)
    torch.testing.assert_close(first, again)
    augment = NoiseAugment(preset("lite", aug_prob=1.0))
    for _ in range(5):
        out = augment(image)
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        assert (out - image).abs().mean() > 0.01  # with probability 1 every nuisance is applied
    never = NoiseAugment(preset("lite", aug_prob=0.0))
    torch.testing.assert_close(never(image), image)


@pytest.mark.parametrize("kind, strength", [("noise", 0.05), ("blur", 1.5), ("sharpness", 2.0),
                                            ("brightness", 0.2), ("contrast", 0.6), ("gamma", 1.5), ("jpeg", 30)])
def test_each_nuisance_changes_the_image_but_not_its_shape(kind, strength):
    image = torch.rand(2, 3, 32, 32)
    out = apply_nuisance(image, kind, strength)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert (out - image).abs().mean() > 0.005


@pytest.mark.parametrize("shape", [(3, 64, 48), (2, 3, 33, 40)])
@pytest.mark.parametrize("factor", [0.0, 1.0, 1.37, 2.0])
def test_sharpen_is_torchvisions_adjust_sharpness_value_for_value(shape, factor):
    """The fast layout changes where the values lie in memory, not one of them: the fit's draws stay bit for bit."""
    import torchvision.transforms.v2.functional as TF

    image = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    out = sharpen(image, factor)
    assert out.shape == image.shape and out.is_contiguous()
    assert torch.equal(out, TF.adjust_sharpness(image, factor))


def test_blur_removes_high_frequencies_and_brightness_shifts_the_mean():
    image = torch.rand(3, 32, 32) * 0.5 + 0.25
    assert apply_nuisance(image, "blur", 2.0).std() < 0.5 * image.std()
    assert apply_nuisance(image, "brightness", 0.1).mean().item() == pytest.approx(image.mean().item() + 0.1, abs=1e-4)


def test_the_benchmarks_brightness_is_a_clipped_shift_not_a_factor():
    image = torch.tensor([0.0, 0.5, 0.95]).view(3, 1, 1)
    torch.testing.assert_close(brightness_shift(image, 0.1), torch.tensor([0.1, 0.6, 1.0]).view(3, 1, 1))
    torch.testing.assert_close(apply_nuisance(image, "brightness", 0.1), brightness_shift(image, 0.1))


def test_unknown_nuisance_says_which_exist():
    with pytest.raises(HLGFAError, match="choose noise"):
        apply_nuisance(torch.rand(3, 8, 8), "fog", 1.0)


@pytest.mark.parametrize("views, head_draws, prior_draws", [("both", 0, 3), ("both", 2, 2), ("low", 0, 1)])
def test_cached_draws_follow_where_the_nuisance_is_applied(views, head_draws, prior_draws):
    """"both": each draw a head reads has its own high-res priors (the nuisance reached the high view); "low": one
    clean draw. Draw 0 is always the clean image, whatever the mode."""
    from hlgfa_lite import HLGFA
    from hlgfa_lite.training import cache_features

    cfg = preset("lite", hr_size=128, lr_size=64, aug_views=views, aug_copies=2, aug_prob=1.0, head_draws=head_draws)
    model = HLGFA(cfg).eval()
    images = (torch.rand(2, 3, 128, 128) * 255).to(torch.uint8)
    cache = cache_features(model, images, progress=False)
    assert [level.shape[1] for level in cache.low] == [3, 3, 3]
    assert [p.target.shape[1] for p in cache.priors] == [prior_draws] * 3
    clean = model.inspect(images.float() / 255)
    for level, priors in enumerate(cache.priors):
        torch.testing.assert_close(priors.target[:, 0].float(), clean.priors[level].target, atol=2e-2, rtol=1e-2)
        torch.testing.assert_close(cache.low[level][:, 0].float(), clean.low[level], atol=2e-2, rtol=1e-2)
        assert not torch.allclose(cache.low[level][:, 1], cache.low[level][:, 0])  # augmented draws differ
    if views == "both":
        assert not torch.allclose(cache.priors[0].target[:, 1], cache.priors[0].target[:, 0])
    low, priors = cache.batch(torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1]), "cpu")
    assert low[0].shape[0] == priors[0].detail.shape[0] == 3


def test_aug_views_is_checked():
    with pytest.raises(HLGFAError, match="aug_views"):
        preset("lite", aug_views="high")


@pytest.mark.parametrize("quality", [30, 90])
def test_jpeg_is_a_pillow_round_trip_value_for_value(quality):
    """Against the plain round trip (float -> 8 bits -> JPEG -> float), written out independently here."""
    import io

    import numpy as np
    from PIL import Image

    from hlgfa_lite.augmentation import jpeg

    image = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(1))
    pixels = np.rint(image.permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    expected = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    assert torch.equal(jpeg(image, quality), torch.from_numpy(expected).permute(2, 0, 1))
    assert torch.equal(jpeg(image[None], quality)[0], jpeg(image, quality))


def test_a_grey_image_is_drawn_on_its_one_channel_and_stays_grey():
    """A grey camera's noise and compression are grey: the draw of a grey image is the same generator's draw of its
    one channel, expanded to three; a colour image is drawn on all three."""
    grey = torch.rand(1, 40, 56, generator=torch.Generator().manual_seed(0)).expand(3, -1, -1).contiguous()
    cfg = preset("lite", aug_prob=1.0)
    out = NoiseAugment(cfg)(grey)
    assert out.shape == grey.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert torch.equal(out, NoiseAugment(cfg).draw(grey[:1]).expand(3, -1, -1))
    assert (out - grey).abs().mean() > 0.01
    colour = grey.clone()
    colour[1, 0, 0] = 1 - colour[1, 0, 0]  # one pixel off grey: the image is colour, all three channels drawn
    assert not is_exactly_grey(colour)
    drawn = NoiseAugment(cfg)(colour)
    # Not "drawn[0] != drawn[2]": JPEG's chroma quantisation can turn a nearly grey draw exactly grey again.
    assert torch.equal(drawn, NoiseAugment(cfg).draw(colour))
    assert not torch.equal(drawn, NoiseAugment(cfg).draw(colour[:1]).expand(3, -1, -1))


def test_sensor_noise_leaves_its_input_alone():
    from hlgfa_lite.augmentation import sensor_noise

    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    kept = image.clone()
    noisy = sensor_noise(image, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(image, kept)
    expected = (image + torch.randn(image.shape, generator=torch.Generator().manual_seed(0)) * 0.3).clamp(0, 1)
    assert torch.equal(noisy, expected)  # clip(x + std n), value for value
    assert noisy.min() == 0 and noisy.max() == 1  # strong enough to be clipped at both ends


def test_a_grey_jpeg_round_trip_is_the_colour_one_of_a_grey_image():
    """Saved as a greyscale JPEG, one channel carries what the luma channel of the same grey image in colour does
    (its chroma is flat): the values agree within rounding of the colour conversion."""
    from hlgfa_lite.augmentation import jpeg

    grey = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1))
    one, three = jpeg(grey, 40), jpeg(grey.expand(3, -1, -1), 40)
    assert one.shape == (1, 64, 64) and three.shape == (3, 64, 64)
    assert (one - grey).abs().mean() > 0.01  # the round trip really compressed
    assert (one[0] - three[0]).abs().max() <= 2 / 255
