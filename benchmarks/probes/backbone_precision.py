"""The frozen backbone under bfloat16: how much faster, and how far its features move from float32's.

A fit's feature phase is eight backbone passes per training image (four draws, each at 512 and 256 px), most of the
tile's fit. bfloat16 autocast made the head's steps cheaper without moving any metric; this asks whether the backbone
could be run the same way. Both runtimes are the traced, frozen network ``FrozenBackbone`` runs, timed alternately in
one process (median of ``--repeats`` calls each, batch 1), then compared on the first training image of each data set:
the relative L2 distance ||F_bf16 - F_fp32|| / ||F_fp32|| per level, at 512 px. Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.backbone_precision ../shared/data/mvtec_bottle/bottle \\
        ../shared/data/magnetic_tile ../shared/data/mvtec3d_tire/tire
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from hlgfa_lite import HLGFA, preset
from hlgfa_lite.backbone import resize
from hlgfa_lite.data import MAX_SIDE, load_image, train_image_paths


def traced(net: torch.nn.Module, example: torch.Tensor, bfloat16: bool):
    """The network traced and frozen as ``FrozenBackbone`` does, under bfloat16 autocast or not."""
    with warnings.catch_warnings(), torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        warnings.simplefilter("ignore")
        graph = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            return [f.float() for f in graph(x)]
    return run


def median_ms_alternately(runners: dict, x: torch.Tensor, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Each runner called on ``x`` in turn, ``warmup + repeats`` rounds; the median milliseconds of the counted ones."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(repeats + warmup):
        for name, run in runners.items():
            started = time.perf_counter()
            run(x)
            if repeat >= warmup:
                times[name].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(t) for name, t in times.items()}


def side_by_side(runners: dict, x: torch.Tensor, repeats: int, threads: int) -> str:
    """One line for two runners (the baseline first) called alternately on ``x``: their medians, the speed-up, and
    the largest relative L2 distance of a level between their features."""
    (base, run_base), (other, run_other) = runners.items()
    medians = median_ms_alternately(runners, x, repeats)
    distance = max(((b - a).norm() / a.norm()).item() for a, b in zip(run_base(x), run_other(x)))
    return (f"{x.shape[-1]} px, {threads} threads, median of {repeats}: {base} {medians[base]:.1f} ms, {other} "
            f"{medians[other]:.1f} ms ({medians[base] / medians[other]:.2f}x); largest relative distance of a level "
            f"{distance:.1e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.backbone_precision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="data folders; the first training image of each is compared")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = HLGFA(preset("lite")).backbone

    def normalised(images: torch.Tensor) -> torch.Tensor:
        return ((images - backbone.mean) / backbone.std).contiguous(memory_format=torch.channels_last)

    for size in (512, 256):
        x = normalised(torch.rand(1, 3, size, size))
        runners = {name: traced(backbone.net, x, name == "bfloat16") for name in ("float32", "bfloat16")}
        medians = median_ms_alternately(runners, x, args.repeats)
        print(f"{size} px, {args.threads} threads, median of {args.repeats}: float32 {medians['float32']:.1f} ms, "
              f"bfloat16 {medians['bfloat16']:.1f} ms ({medians['float32'] / medians['bfloat16']:.2f}x)", flush=True)

    x = normalised(torch.rand(1, 3, 512, 512))
    runners = {name: traced(backbone.net, x, name == "bfloat16") for name in ("float32", "bfloat16")}
    for folder in args.data:
        path = train_image_paths(folder)[0]
        image = normalised(resize(load_image(path, MAX_SIDE)[None], 512))
        exact, rounded = runners["float32"](image), runners["bfloat16"](image)
        distances = [((b - a).norm() / a.norm()).item() for a, b in zip(exact, rounded)]
        print(f"{path}: relative distance per level (strides {backbone.strides}) "
              + ", ".join(f"{d:.3f}" for d in distances), flush=True)


if __name__ == "__main__":
    main()
