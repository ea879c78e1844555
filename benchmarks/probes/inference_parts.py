"""Where one image's inference time goes: each step of ``HLGFA.inspect`` timed alone, batch 1, median of 30.

A model of the ``lite`` preset (alignment head + per-position normality; random Gaussians cost what fitted ones do)
scores a random 900 x 900 px image, as in ``benchmarks/inference_speed.py``. Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.inference_parts [torch|onnxruntime] [--threads 2]

It imports nothing from ``benchmarks``, so it also runs as a file against another checkout's library (``python -m``
would put this checkout first on the path): ``PYTHONPATH=CHECKOUT python benchmarks/probes/inference_parts.py torch``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hlgfa_lite import HLGFA, preset
from hlgfa_lite.alignment import misalignment


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.inference_parts",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runtime", nargs="?", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = HLGFA(preset("lite", backbone_runtime=args.runtime)).eval()
    for level in model.normality.levels:
        level.mean.normal_()  # "fitted": the normality maps are computed, not skipped
    image = torch.rand(1, 3, 900, 900)

    def steps() -> dict[str, float]:
        seconds, clock = {}, time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[name], clock = now - clock, now

        high_view, low_view = model.views(image); lap("views (resize to 512 and 256 px)")
        high = model.backbone(high_view); lap("backbone, 512 px")
        low = model.backbone(low_view); lap("backbone, 256 px")
        priors = model.priors(high); lap("priors")
        outputs = model.head(low, priors); lap("head")
        level_maps = [misalignment(o.refined, p.target) for o, p in zip(outputs, priors)]; lap("misalignment maps")
        normality_maps = model.normality(low); lap("normality maps")
        anomaly_map = model.fuse(level_maps + normality_maps); lap("fusion and smoothing")
        model.score_map(level_maps + normality_maps, anomaly_map); lap("the score's own fusion")
        return seconds

    with torch.no_grad():
        for _ in range(3):
            steps()
        runs = [steps() for _ in range(30)]
    print(f"| step ({args.runtime} backbone, {args.threads} threads) | median ms |\n|---|---:|")
    for name in runs[0]:
        print(f"| {name} | {1000 * statistics.median(run[name] for run in runs):.1f} |")
    print(f"| **all** | **{1000 * statistics.median(sum(run.values()) for run in runs):.1f}** |")


if __name__ == "__main__":
    main()
