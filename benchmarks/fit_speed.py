"""Wall time of ``fit`` and its phases, for one or more checkouts of hlgfa_lite, run alternately.

Each repeat fits once per checkout, each fit in a fresh interpreter with that checkout first on ``sys.path``, so
a machine whose speed drifts slows every checkout alike; read the medians side by side. The fit is the library's
own ``fit`` (what ``hlgfa-lite fit`` runs), on the training images of DATA, with the ``lite`` preset.

    HF_HUB_OFFLINE=1 python -m benchmarks.fit_speed ../shared/data/mvtec_bottle/bottle            # this checkout
    git worktree add /tmp/before HEAD~1                                                              # a change's cost
    HF_HUB_OFFLINE=1 python -m benchmarks.fit_speed ../shared/data/mvtec_bottle/bottle --steps 100 \\
        --checkouts /tmp/before . --repeats 2

Printed per fit: total seconds (images read, features held, head trained, calibrated), the feature phase, the
head's milliseconds per step and the last loss (a changed loss means the change changed the arithmetic).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ONE_FIT = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from hlgfa_lite import HLGFA, preset, train_image_paths
from hlgfa_lite.training import fit
started = time.perf_counter()
model = HLGFA(preset("lite", steps=int(sys.argv[2])))
report = fit(model, train_image_paths(sys.argv[1]), progress=False, say=None)
print(json.dumps({"total_s": time.perf_counter() - started, "features_s": report.cache_seconds,
                  "ms_per_step": 1000 * report.train_seconds / len(report.losses), "last_loss": report.losses[-1]}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fit_speed", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="MVTec-layout category folder, or a folder of good images")
    parser.add_argument("--checkouts", nargs="+", default=[str(Path(__file__).resolve().parents[1])],
                        help="repository roots to compare (default: this one)")
    parser.add_argument("--steps", type=int, default=500, help="head steps (default: the lite preset's 500)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {checkout: [] for checkout in args.checkouts}
    data = str(Path(args.data).resolve())  # each fit runs inside its checkout
    for repeat in range(args.repeats):
        for checkout in args.checkouts:
            root = Path(checkout).resolve()
            # run inside the checkout: ``python -c`` puts the working folder first on the path, before PYTHONPATH
            done = subprocess.run([sys.executable, "-c", ONE_FIT, data, str(args.steps), str(args.threads)],
                                  env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"fit failed in {checkout}:\n{done.stderr[-2000:]}")
            results[checkout].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}, {checkout}: {results[checkout][-1]}", flush=True)
    print(f"\n{args.steps} steps, {args.threads} torch threads, medians of {args.repeats} fit(s) each\n")
    print("| checkout | fit s | features s | head ms / step | last loss |")
    print("|---|---:|---:|---:|---:|")
    for checkout, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"| {checkout} | {median['total_s']:.1f} | {median['features_s']:.1f} | {median['ms_per_step']:.0f} | "
              f"{median['last_loss']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
