"""The training nuisances of one draw (``NoiseAugment``) with the library's sharpening, JPEG round trip and blur padding,
against the same three steps written as they were before (torchvision's ``adjust_sharpness`` on the plain (3, H, W)
image, the JPEG pixels rounded through a transposed view, the image made channels-last before its reflection), and
the library's own with a grey image drawn on every channel apart, as it was before grey draws stayed grey: the
milliseconds per noisy draw, and whether the steps as they were and the library's per channel give the same values.

The first ``--images`` training images of DATA are decoded once at 512 px; each variant draws ``--copies`` noisy views
of each with its own ``NoiseAugment`` seeded alike, alternately, ``--rounds`` times after a warm-up round. Run it
alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.nuisance_speed ../shared/data/magnetic_tile
"""

from __future__ import annotations

import argparse
import io
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image

from hlgfa_lite import augmentation, preset
from hlgfa_lite.augmentation import NoiseAugment
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.priors import gaussian_kernel1d
from hlgfa_lite.tools import cache

from . import print_medians


def sharpen_before(image: torch.Tensor, factor: float) -> torch.Tensor:
    return TF.adjust_sharpness(image, factor)


def jpeg_before(image: torch.Tensor, quality: int) -> torch.Tensor:
    pixels = (image.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded).permute(2, 0, 1).to(image.device)


def blur_before(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The separable low-pass as it was: the layout changed first, then the reflection."""
    features = image[None].contiguous(memory_format=torch.channels_last)
    size = min(2 * int(round(3 * sigma)) + 1, 2 * (min(features.shape[-2:]) - 1) - 1)
    channels, pad = features.shape[1], size // 2
    kernel = gaussian_kernel1d(sigma, size)
    x = F.pad(features, [pad, pad, pad, pad], mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels).contiguous()[0]


@contextmanager
def steps_before():
    kept = augmentation.sharpen, augmentation.jpeg, augmentation.blur
    augmentation.sharpen, augmentation.jpeg, augmentation.blur = sharpen_before, jpeg_before, blur_before
    try:
        with every_channel():
            yield
    finally:
        augmentation.sharpen, augmentation.jpeg, augmentation.blur = kept


@contextmanager
def every_channel():
    kept = augmentation.is_exactly_grey
    augmentation.is_exactly_grey = lambda image: False
    try:
        yield
    finally:
        augmentation.is_exactly_grey = kept


@contextmanager
def steps_now():
    yield


VARIANTS = {"before": steps_before, "the library's, every channel drawn": every_channel, "the library's": steps_now}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.nuisance_speed", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="MVTec-layout category folder")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--copies", type=int, default=3, help="noisy draws of each image (fit: 3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = preset("lite")
    clean = cache.as_float(cache.load_images(train_image_paths(args.data)[:args.images], cfg.hr_size))
    milliseconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    draws: dict[str, list[torch.Tensor]] = {}
    for round_ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name, steps in VARIANTS.items():
            augment = NoiseAugment(cfg)
            with steps():
                began = time.perf_counter()
                out = [augment(image) for image in clean for _ in range(args.copies)]
                elapsed = time.perf_counter() - began
            draws[name] = out
            if round_:
                milliseconds[name].append(elapsed * 1000 / len(out))
    same = all(torch.equal(a, b) for a, b in zip(draws["before"], draws["the library's, every channel drawn"]))
    grey = sum(augmentation.is_exactly_grey(image) for image in clean)
    print(f"{args.images} images x {args.copies} noisy draws, {args.threads} threads, medians of {args.rounds} rounds")
    print_medians(milliseconds, "ms per noisy draw", digits=2)
    print(f"every draw of the steps before and the library's per channel the same, value for value: {same}")
    print(f"grey images (drawn on one channel by the library): {grey} of {len(clean)}")


if __name__ == "__main__":
    main()
