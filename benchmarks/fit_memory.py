"""Peak host memory of ``hlgfa-lite fit``: the training set's memory bound (hlgfa_lite/tools/cache.py), measured (a memory
figure, valid on a busy machine; the seconds printed are not speed figures, and the load average before and after
says how busy the machine was).

Runs the CLI's ``fit`` in a child process, one torch thread, and reads its peak resident set size when it exits
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the kernel's VmHWM of the child). Writes one JSON file per run.

    HF_HUB_OFFLINE=1 python -m benchmarks.fit_memory ../shared/data/mvtec_bottle/bottle --preset paper \\
        --steps 2 --random-weights --limit-gib 8 --out benchmarks/results/fit_memory_paper_bottle.json
    HF_HUB_OFFLINE=1 python -m benchmarks.fit_memory ../shared/data/magnetic_tile --preset lite \\
        --limit-gib 6 --out benchmarks/results/fit_memory_lite_magnetic_tile.json
    HF_HUB_OFFLINE=1 python -m benchmarks.fit_memory ../shared/data/mvtec_bottle/bottle --plan-only
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import exit_code
from hlgfa_lite.tools.cli import positive_float, positive_int
from hlgfa_lite.tools.files import write_json


def plan_only(data: str, preset_name: str, random_weights: bool, max_cache_gib: float | None) -> None:
    """Print the cache plan fit would make, without fitting."""
    from hlgfa_lite import HLGFA, preset, train_image_paths
    from hlgfa_lite.tools.cache import DEFAULT_MAX_CACHE_GIB, plan_cache
    from hlgfa_lite.training import split_holdout

    cfg = preset(preset_name)
    paths = train_image_paths(data)
    n_train = len(split_holdout(paths, cfg.holdout_fraction, cfg.seed)[0])
    budget = DEFAULT_MAX_CACHE_GIB if max_cache_gib is None else max_cache_gib
    plan = plan_cache(HLGFA(cfg, pretrained=not random_weights), n_train, budget)
    print(plan.describe())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fit_memory", description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--preset", default="lite", choices=["lite", "paper"])
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimiser steps (peak memory does not depend on it)")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--max-cache-gib", type=positive_float, default=None, help="default: fit's own default")
    parser.add_argument("--cache-dir", default=None, help="folder for a spilled cache (default: fit's own default)")
    parser.add_argument("--limit-gib", type=float, default=None, help="the bound the run must stay under")
    parser.add_argument("--out", default=None, help="JSON file for the result")
    parser.add_argument("--plan-only", action="store_true", help="print the cache plan, do not fit")
    args = parser.parse_args(argv)
    if args.plan_only:
        return exit_code(plan_only, args.data, args.preset, args.random_weights, args.max_cache_gib)
    return measure(args)


def measure(args) -> int:
    """``hlgfa-lite fit`` in a child process, its peak RSS, and (with ``--out``) the JSON record of the run."""
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "hlgfa_lite", "fit", args.data, "--out", str(Path(work) / "run"),
                   "--preset", args.preset, "--quiet", "--device", "cpu"]
        command += ["--steps", str(args.steps)] if args.steps is not None else []
        command += ["--random-weights"] if args.random_weights else []
        command += [] if args.max_cache_gib is None else ["--max-cache-gib", str(args.max_cache_gib)]
        command += ["--cache-dir", args.cache_dir] if args.cache_dir else []
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        load_before, started = os.getloadavg(), time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds, load_after = time.perf_counter() - started, os.getloadavg()
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2 ** 30  # ru_maxrss is in KiB
    print(done.stdout)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    plan = next((line for line in done.stdout.splitlines() if line.startswith("fit holds")), "")
    result = {"data": str(Path(args.data).resolve()), "preset": args.preset, "steps": args.steps,
              "random_weights": args.random_weights, "max_cache_gib": args.max_cache_gib, "plan": plan,
              "peak_rss_gib": round(peak_gib, 3), "limit_gib": args.limit_gib,
              "within_limit": None if args.limit_gib is None else peak_gib <= args.limit_gib,
              "seconds_busy_machine": round(seconds),
              "load_average_1_5_15_before": [round(v, 2) for v in load_before],
              "load_average_1_5_15_after": [round(v, 2) for v in load_after], "cpus": os.cpu_count(),
              "command": "python -m benchmarks.fit_memory " + shlex.join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"peak RSS of fit: {peak_gib:.2f} GiB" + (f" (limit {args.limit_gib} GiB)" if args.limit_gib else ""))
    if args.out:
        write_json(args.out, result)
    return 0 if result["within_limit"] in (None, True) else 1


if __name__ == "__main__":
    sys.exit(main())
