"""The traced backbone with and without oneDNN Graph fusion (``backbone.fused_on_cpu``): how much faster the fused
plan runs, and how far its features are from the plain graph's.

Both graphs are traced and frozen from the same network; the library's backbone (fused on a CPU) and the plain
graph are called alternately in one process (median of ``--repeats`` calls each, batch 1, random images), and
compared by the relative L2 distance of their features per level. Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.backbone_fusion
"""

from __future__ import annotations

import argparse

import torch

from hlgfa_lite import HLGFA, preset

from .backbone_precision import side_by_side, traced


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.backbone_fusion",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = HLGFA(preset("lite")).backbone
    for size in (512, 256):
        x = ((torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)) - backbone.mean)
             / backbone.std).contiguous(memory_format=torch.channels_last)
        fused = backbone._runner(x)  # the library's graph for this shape: traced, frozen, fused

        def run_fused(images: torch.Tensor) -> list[torch.Tensor]:
            with torch.no_grad():
                return [f.float() for f in fused(images)]

        runners = {"plain": traced(backbone.net, x, bfloat16=False), "fused": run_fused}
        print(side_by_side(runners, x, args.repeats, args.threads), flush=True)


if __name__ == "__main__":
    main()
