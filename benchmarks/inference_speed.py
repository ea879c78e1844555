"""Inference time per image of HLGFA-lite (both backbone runtimes) and memory banks, measured side by side in one process.

The benchmark times each variant in its own process, so a machine whose speed drifts (a shared VM, a neighbour)
can favour one row. Here the models are called alternately on the same image, batch 1, after warm-up, so any
drift hits all of them equally; the ratios are the numbers to read.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.inference_speed [--repeats 50] [--threads 2] [--image PATH]
    # with anomalib's PatchCore too (run from the anomalib environment of benchmarks/anomalib_peers.py):
    HF_HUB_OFFLINE=1 /work/venv-anomalib/bin/python -m benchmarks.inference_speed --anomalib

Rows:
- HLGFA-lite, torch backbone: a model of the ``lite`` preset as ``fit`` makes it (alignment head and the per-position
  normality Gaussians), with the bundled checkpoint's head and Gaussians of random contents (a Mahalanobis distance
  costs the same whatever the numbers are);
- HLGFA-lite, onnxruntime backbone: the same model with ``backbone_runtime="onnxruntime"`` (when onnxruntime
  is installed: ``pip install 'hlgfa-lite[fast]'``); the largest difference between the two rows' maps is printed;
- HLGFA-lite, demo checkpoint: the bundled checkpoint (hlgfa_lite/assets/checkpoints/bottle_lite) as it ships, the
  abstract's method alone (no normality term), torch backbone;
- PatchCore-style bank (hlgfa_lite.tools.baselines) of the size the benchmark's PatchCore built on MVTec bottle (19,251
  patches of 152 values), on the torch backbone;
- anomalib 2.7 PatchCore (``--anomalib``): anomalib's own module with the Lite0 backbone (levels 2-3), its
  pre-processing (resize to 256 px, normalisation), nearest-neighbour search and re-weighted score, with a bank of
  ``--anomalib-bank`` rows (default 5,120: the 10 % coreset of 50 bottle training images at 256 px).
Banks have random contents: a nearest-neighbour search costs the same whatever the numbers are. All rows see the
same decoded image (default: random 900 x 900 px, an MVTec bottle image's size).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import statistics
import sys
import time
from pathlib import Path

import torch


def anomalib_patchcore(bank_rows: int, device: str):
    """anomalib's PatchCore with the offline Lite0 weights and a random bank: (1, 3, H, W) -> (map, score)."""
    from benchmarks.anomalib_peers import AnomalibScorer, build_model, install_offline_weights

    install_offline_weights(Path(os.environ["HF_HOME"]))
    module = build_model("anomalib_patchcore", padim_features=0)
    width = sum(module.model.feature_extractor.out_dims)
    module.model.memory_bank = torch.randn(bank_rows, width)
    return AnomalibScorer(module.to(device))


def lite_model(runtime: str, demo, device: str):
    """The ``lite`` preset's model (alignment + per-position normality) on ``runtime``: the demo checkpoint's head
    and calibration, random Gaussians (their shape, not their numbers, sets the cost)."""
    from hlgfa_lite import HLGFA, preset

    model = HLGFA(preset("lite", backbone_runtime=runtime)).eval()
    model.head.load_state_dict(demo.head.state_dict())
    generator = torch.Generator().manual_seed(0)
    for level in model.normality.levels:
        channels = level.mean.shape[1]
        level.mean.copy_(torch.randn(level.mean.shape, generator=generator))
        noise = torch.randn(level.precision.shape, generator=generator) / channels ** 0.5
        level.precision.copy_(noise @ noise.transpose(1, 2) + torch.eye(channels))
    return model.to(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bank-size", type=int, default=19251)
    parser.add_argument("--image", default=None, help="an image to score (default: random 900 x 900 px)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument("--anomalib", action="store_true", help="also time anomalib's PatchCore (needs anomalib)")
    parser.add_argument("--anomalib-bank", type=int, default=5120, help="rows of anomalib PatchCore's bank")
    args = parser.parse_args(argv)
    if args.anomalib:  # huggingface_hub reads HF_HOME once, at import: set it before anything imports it
        os.environ["HF_HOME"] = str(Path(tempfile.gettempdir()) / "hlgfa-anomalib-hf")

    from hlgfa_lite import load, load_image
    from hlgfa_lite.tools.baselines import PatchCoreBaseline
    from hlgfa_lite.device import resolve_device
    from hlgfa_lite.assets import bundled_checkpoint

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    demo = load(bundled_checkpoint(), device=device)
    hlgfa = lite_model("torch", demo, device)
    patchcore = PatchCoreBaseline(hlgfa.cfg, backbone=hlgfa.backbone)
    patchcore.bank = torch.randn(args.bank_size, patchcore.feature_dim, device=device)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)  # GPU calls are async
    image = load_image(args.image)[None] if args.image else torch.rand(1, 3, 900, 900)
    models = {"HLGFA-lite, torch backbone": hlgfa.score_batch}
    notes = []
    if device != "cpu":
        notes.append("the onnxruntime backbone runs on the CPU only: no onnxruntime row on " + device)
    elif importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        fast = lite_model("onnxruntime", demo, device)
        models["HLGFA-lite, onnxruntime backbone"] = fast.score_batch
        difference = (fast.score_batch(image)[0] - hlgfa.score_batch(image)[0]).abs().max().item()
        notes.append(f"largest |map difference| between the two HLGFA-lite runtimes: {difference:.2e} "
                     "(map units: good-image standard deviations)")
    else:
        notes.append("onnxruntime not installed: no onnxruntime row (pip install 'hlgfa-lite[fast]')")
    models["HLGFA-lite, demo checkpoint"] = demo.score_batch
    models["PatchCore-style bank"] = patchcore.score_batch
    if args.anomalib:
        models["anomalib 2.7 PatchCore"] = anomalib_patchcore(args.anomalib_bank, device)
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
          f"{tuple(image.shape[-2:])} px, bank {args.bank_size} x {patchcore.feature_dim}"
          + (f", anomalib bank {args.anomalib_bank} rows" if args.anomalib else "") + "\n")
    reference = "HLGFA-lite, torch backbone"
    print(f"| model | median ms / image | p10 | p90 | time relative to {reference} |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"| {name} | {medians[name]:.1f} | {deciles[0]:.1f} | {deciles[-1]:.1f} | "
              f"{medians[name] / medians[reference]:.2f} |")
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
