"""A head step under bfloat16 autocast with the structure and detail priors read as float32 (then cast by autocast) or
read as bfloat16 at once (``tools.cache.working_priors``, what ``fit`` does): the milliseconds per step, and whether
the two heads are the same.

The features of the first ``--images`` training images of DATA are held in memory once (as ``fit`` holds them); the
head is then trained ``--steps`` steps from the same start with each read, alternately, ``--rounds`` times (the
library's ``train_head``, 2 torch threads). Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.head_step ../shared/data/magnetic_tile
"""

from __future__ import annotations

import argparse
import time

import torch

from hlgfa_lite import HLGFA, preset
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.tools import cache
from hlgfa_lite.training import train_head

from . import print_medians


def held_for_steps(prog: str, description: str, argv: list[str] | None):
    """(args, model, held, start): the command line of a head-step probe, and the features of the first ``--images``
    training images held in memory as ``fit`` holds them, with the head's starting weights to train from."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("data", help="MVTec-layout category folder")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # batches of 16 whatever the number of images held (a set this small would train on 8: training.head_batch)
    model = HLGFA(preset("lite", train_precision="bfloat16", min_batch_size=0))
    images = cache.load_images(train_image_paths(args.data)[:args.images], model.cfg.hr_size)
    held = cache.cache_features(model, images, progress=False)
    return args, model, held, {k: v.clone() for k, v in model.head.state_dict().items()}


def main(argv: list[str] | None = None) -> None:
    args, model, held, start = held_for_steps("python -m benchmarks.probes.head_step", __doc__.splitlines()[0], argv)
    library_read = cache.working_priors

    def float32_read(tensors, device, conv_dtype):
        return library_read(tensors, device, torch.float32)

    reads = {"float32, cast by autocast": float32_read, "bfloat16 at once (fit)": library_read}
    milliseconds: dict[str, list[float]] = {name: [] for name in reads}
    heads = {}
    for _ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name, read in reads.items():
            cache.working_priors = read
            model.head.load_state_dict(start)
            began = time.perf_counter()
            train_head(model, held, args.steps, progress=False)
            milliseconds[name].append((time.perf_counter() - began) * 1000 / args.steps)
            heads[name] = {k: v.clone() for k, v in model.head.state_dict().items()}
    cache.working_priors = library_read
    a, b = heads.values()
    print(f"{args.data}: {args.images} images held, {args.steps} steps of {model.cfg.batch_size} per round, "
          f"{args.threads} threads, medians of {args.rounds} rounds")
    print_medians({name: values[1:] for name, values in milliseconds.items()}, "ms / step", "  priors read as ")
    print(f"  the same head bit for bit: {all(torch.equal(a[k], b[k]) for k in a)}")


if __name__ == "__main__":
    main()
