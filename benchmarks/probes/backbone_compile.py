"""The frozen backbone compiled by ``torch.compile`` (inductor, weights frozen into the graph): how much faster than
the traced, frozen network ``FrozenBackbone`` runs, and at what one-off cost.

A fit's feature phase is eight backbone passes per training image; a compiled network would pay its compile time
once per input shape (512 and 256 px) in every fit. Both are timed alternately in one process (median of
``--repeats`` calls each, batch 1, random images), and compared by the relative L2 distance of their features per
level. Needs a C++ compiler (inductor's CPU code). Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.backbone_compile
    HF_HUB_OFFLINE=1 python -m benchmarks.probes.backbone_compile --no-freezing
"""

from __future__ import annotations

import argparse
import time

import torch

from hlgfa_lite import HLGFA, preset

from .backbone_precision import side_by_side, traced


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.backbone_compile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-freezing", action="store_true", help="inductor without frozen weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = not args.no_freezing  # constant weights folded and pre-packed for the CPU kernels
    backbone = HLGFA(preset("lite")).backbone
    examples = {size: ((torch.rand(1, 3, size, size) - backbone.mean) / backbone.std).contiguous(
        memory_format=torch.channels_last) for size in (512, 256)}
    compiled = torch.compile(backbone.net, dynamic=False)
    started = time.perf_counter()
    with torch.no_grad():
        for x in examples.values():
            compiled(x)
    print(f"compile, both shapes: {time.perf_counter() - started:.1f} s (freezing {not args.no_freezing})", flush=True)

    def run_compiled(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [f.float() for f in compiled(x)]

    for x in examples.values():
        runners = {"traced": traced(backbone.net, x, bfloat16=False), "compiled": run_compiled}
        print(side_by_side(runners, x, args.repeats, args.threads), flush=True)


if __name__ == "__main__":
    main()
