"""Inference time per image of HLGFA-lite and the PatchCore-style bank, measured side by side in one process.

The benchmark times each variant in its own process, so a machine whose speed drifts (a shared VM, a neighbour)
can favour one row. Here the two models are called alternately on the same image, batch 1, after warm-up, so any
drift hits both equally; the ratio is the number to read.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/inference_speed.py [--repeats 50] [--threads 2] [--image PATH]

HLGFA-lite is the bundled checkpoint (hlgfa_lite/demo/checkpoints/bottle_lite). The bank has the size the benchmark's
PatchCore built on MVTec bottle (19,251 patches of 152 values) but random contents: a nearest-neighbour search
costs the same whatever the numbers are. Both see the same 900 x 900 px input (an MVTec bottle image's size)
and make the same 512 px view from it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bank-size", type=int, default=19251)
    parser.add_argument("--image", default=None, help="an image to score (default: random 900 x 900 px)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    args = parser.parse_args(argv)

    from hlgfa_lite import load, load_image
    from hlgfa_lite.baselines import PatchCoreBaseline
    from hlgfa_lite.device import resolve_device
    from hlgfa_lite.samples import bundled_checkpoint

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    hlgfa = load(bundled_checkpoint(), device=device)
    patchcore = PatchCoreBaseline(hlgfa.cfg, backbone=hlgfa.backbone)
    patchcore.bank = torch.randn(args.bank_size, patchcore.feature_dim, device=device)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)  # GPU calls are async
    image = load_image(args.image)[None] if args.image else torch.rand(1, 3, 900, 900)
    models = {"HLGFA-lite": hlgfa.score_batch, "PatchCore-style bank": patchcore.score_batch}
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(args.repeats + 3):  # 3 warm-up rounds, not kept
        for name, score in models.items():
            started = time.perf_counter()
            score(image)
            synchronize()
            if repeat >= 3:
                times[name].append(1000 * (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.repeats} alternating calls each, batch 1, {device}, {args.threads} torch thread(s), input "
          f"{tuple(image.shape[-2:])} px, bank {args.bank_size} x {patchcore.feature_dim}\n")
    print("| model | median ms / image | p10 | p90 |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"| {name} | {medians[name]:.1f} | {deciles[0]:.1f} | {deciles[-1]:.1f} |")
    ratio = medians["PatchCore-style bank"] / medians["HLGFA-lite"]
    print(f"\nHLGFA-lite is {ratio:.2f}x {'faster' if ratio > 1 else 'slower'} than the bank per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
