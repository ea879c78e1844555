"""The feature phase of ``fit`` per training image, as it runs and with two ways to keep both cores busier: the next
image's nuisances drawn in a second thread while the backbone runs on this one, and each resolution's draws passed
through the backbone as one batch (the four low-res views together, the held high-res views together).

Every variant computes the same draws as ``tools.cache.drawn_features`` (the library's ``draw_views``, the priors of
every held draw, ``NoiseAugment`` seeded alike, so the nuisances come in the same order) from the first ``--images``
training images of DATA, decoded once; the variants alternate, ``--rounds`` times after a warm-up round that also
traces every input shape. Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.draw_passes ../shared/data/magnetic_tile
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from hlgfa_lite import HLGFA, preset
from hlgfa_lite.augmentation import NoiseAugment
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.tools import cache

VARIANTS = {"as fit runs it": (False, False), "nuisances drawn in a second thread": (True, False),
            "each resolution's draws as one batch": (False, True), "both": (True, True)}


@torch.no_grad()
def feature_phase(model: HLGFA, images: torch.Tensor, in_thread: bool, batched: bool) -> float:
    """Seconds to compute every draw's low-res features and held priors of ``images`` (uint8), one image at a time."""
    cfg = model.cfg
    augment = NoiseAugment(cfg)
    copies = cache.wanted_draws(cfg, len(images))
    held = cache.held_prior_draws(cfg, copies)

    def views(i: int):
        return cache.draw_views(model, cache.as_float(images[i:i + 1]), copies, augment)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(views, 0) if in_thread else None
        for i in range(len(images)):
            if in_thread:  # one worker, one image after another: the generator's draws keep their order
                high_views, low_views = upcoming.result()
                if i + 1 < len(images):
                    upcoming = pool.submit(views, i + 1)
            else:
                high_views, low_views = views(i)
            if batched:
                model.priors(model.backbone(torch.cat(high_views[:held])))
                model.backbone(torch.cat(low_views))
            else:
                for view in high_views[:held]:
                    model.priors(model.backbone(view))
                for view in low_views:
                    model.backbone(view)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.draw_passes", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="MVTec-layout category folder, or a folder of good images")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = HLGFA(preset("lite")).eval()
    images = cache.load_images(train_image_paths(args.data)[:args.images], model.cfg.hr_size)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds + 1):  # the first round traces each batch shape and is not counted
        for name, (in_thread, batched) in VARIANTS.items():
            spent = feature_phase(model, images, in_thread, batched)
            if round_:
                seconds[name].append(spent)
    print(f"{args.data}: {len(images)} images x {cache.wanted_draws(model.cfg, len(images))} draws, {args.threads} "
          f"threads, medians of {args.rounds} rounds (ms per image)")
    for name, values in seconds.items():
        per_image = [1000 * v / len(images) for v in values]
        print(f"  {name:<40s} {statistics.median(per_image):6.1f}  ({', '.join(f'{v:.0f}' for v in per_image)})")


if __name__ == "__main__":
    main()
