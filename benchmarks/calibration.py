"""Does the calibrated verdict hold on unseen parts? False-alarm and detection rates at the calibrated threshold,
for fits on the whole training set and on small evenly spaced subsets, over seeds.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m benchmarks.calibration DATA --sizes all 20 10 --seeds 0 1 2 \
        [--steps 500] [--reuse-full CHECKPOINT] --out benchmarks/results/calibration_bottle.json

For each training-set size and seed: the library's ``fit`` (held-out split, cross-fitted scores when few images
are held out), then every test image scored once. Recorded per run: the good scores the calibration rests on
(held-out and cross-fitted), every test score with its label, and the resulting rates. Because the raw scores
are kept, ``--recalibrate RESULTS.json`` re-applies the *current* calibration rule (and ``--target-fpr``,
``--confidence``) to stored runs without fitting again; the tables in CALIBRATION.md come from that.

``--reuse-full CHECKPOINT`` takes the seed-0 full-set run from an existing checkpoint of the same fit (the
bundled one is the seed-0 ``full`` head of benchmarks/run.py) instead of fitting it again: only its held-out
images are scored.

Sizes: ``all`` or a number n; a subset of n images is evenly spaced in sorted (natural) order:
indices round(i (N - 1) / (n - 1)), i = 0..n-1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import exit_code
from hlgfa_lite import HLGFA, HLGFAError, fit, load, preset
from hlgfa_lite.calibration import CROSS_FIT_FOLDS, DEFAULT_CONFIDENCE, DEFAULT_TARGET_FPR, calibrate
from hlgfa_lite.tools.cli import positive_int
from hlgfa_lite.data import evenly_spaced, load_image, load_test_split, train_image_paths
from hlgfa_lite.evaluation import verdict_rates
from hlgfa_lite.tools.files import write_text
from hlgfa_lite.training import (fold_head_steps, good_level_maps, level_statistics, load_images, set_calibration,
                                 split_holdout)


def rates(cal, labels: np.ndarray, scores: np.ndarray) -> dict:
    """Verdict shares of the test images at the calibration (borderline is not flagged) and its thresholds."""
    return {**verdict_rates(scores, labels, cal), "threshold": cal.image_threshold,
            "borderline_threshold": cal.borderline_threshold, "n_calibration_scores": cal.n_images}


def one_run(data: str, size: str, seed: int, steps: int | None, reuse_full: str | None,
            cross_fit_steps: int | None = None) -> dict:
    paths = train_image_paths(data)
    chosen = paths if size == "all" else evenly_spaced(paths, int(size))
    samples = load_test_split(data)
    started = time.perf_counter()
    if reuse_full and size == "all" and seed == 0:
        model = load(reuse_full)
        _, holdout = split_holdout(chosen, model.cfg.holdout_fraction, model.cfg.seed)
        images = load_images(holdout, model.cfg.hr_size)
        good_maps = good_level_maps(model, images)
        holdout_scores = set_calibration(model, level_statistics(model, images, good_maps), good_maps).tolist()
        cross_scores, source = [], f"checkpoint {reuse_full}"
    else:
        overrides = {"seed": seed} | ({} if steps is None else {"steps": steps})
        model = HLGFA(preset("lite", **overrides))
        report = fit(model, chosen, progress=False, cross_fit_steps=cross_fit_steps, say=None)
        holdout_scores, cross_scores, source = report.holdout_scores, report.cross_fit_scores, "fit"
    fit_seconds = time.perf_counter() - started
    test = [(s.label, model.predict([load_image(s.path)])[0][1]) for s in samples]
    steps_taken = report.steps if source == "fit" else model.cfg.steps
    folds = (len(cross_scores) > 0) * CROSS_FIT_FOLDS
    return {"size": size, "n_images": len(chosen), "seed": seed, "steps": steps_taken, "source": source,
            "cross_fit_steps": (cross_fit_steps or fold_head_steps(model.cfg, report.n_train, folds)) if folds else 0,
            "holdout_scores": holdout_scores, "cross_fit_scores": cross_scores,
            "test_labels": [label for label, _ in test], "test_scores": [score for _, score in test],
            "fit_seconds_shared_machine": round(fit_seconds, 1)}


def recalibrate(run: dict, target_fpr: float, confidence: float) -> dict:
    good = run["holdout_scores"] + run["cross_fit_scores"]
    cal = calibrate(torch.tensor(good), torch.zeros(1, 2, 2) + torch.tensor([[0.0, 1.0], [0.0, 1.0]]),
                    target_fpr=target_fpr, confidence=confidence)  # maps do not enter the image rates
    return rates(cal, np.array(run["test_labels"]), np.array(run["test_scores"]))


def table(runs: list[dict], target_fpr: float, confidence: float) -> str:
    lines = [f"target false-alarm rate {target_fpr}, confidence {confidence}", "",
             "| images | seed | steps (each cross-fitted head) | calibration scores | threshold | good flagged | good borderline "
             "| defects flagged | defects borderline |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        r = recalibrate(run, target_fpr, confidence)
        lines.append(f"| {run['n_images']} | {run['seed']} | {run['steps']} ({run.get('cross_fit_steps', '?')}) "
                     f"| {r['n_calibration_scores']} "
                     f"| {r['threshold']:.2f} | {100 * r['image_fpr']:.0f} % | {100 * r['good_borderline']:.0f} % "
                     f"| {100 * r['image_tpr']:.1f} % | {100 * r['defect_borderline']:.1f} % |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="MVTec-layout category folder")
    parser.add_argument("--sizes", nargs="+", default=["all", "20", "10"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=positive_int, default=None, help="optimiser steps (default: the preset's)")
    parser.add_argument("--cross-fit-steps", type=positive_int, default=None,
                        help="steps of each cross-fitted head (default: fit's, training.fold_head_steps)")
    parser.add_argument("--reuse-full", default=None, metavar="CHECKPOINT")
    parser.add_argument("--out", default="benchmarks/results/calibration.json")
    parser.add_argument("--recalibrate", nargs="+", default=None, metavar="RESULTS.json",
                        help="tables from stored runs")
    parser.add_argument("--target-fpr", type=float, default=DEFAULT_TARGET_FPR)
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    return parser


def measure(args) -> None:
    """Every (size, seed) not in ``--out`` yet, the file rewritten after each (a stopped run keeps what it
    measured); then the table of all of them."""
    if not args.data:
        raise HLGFAError("give DATA (an MVTec-layout folder) or --recalibrate RESULTS.json.")
    out = Path(args.out)
    done = json.loads(out.read_text())["runs"] if out.exists() else []
    for size in args.sizes:
        for seed in args.seeds:
            if any(r["size"] == size and r["seed"] == seed for r in done):
                continue
            run = one_run(args.data, size, seed, args.steps, args.reuse_full, args.cross_fit_steps)
            done.append(run)
            record = {"command": "python -m benchmarks.calibration " + shlex.join(sys.argv[1:]), "runs": done}
            write_text(out, json.dumps(record, indent=1) + "\n")
            r = recalibrate(run, args.target_fpr, args.confidence)
            print(f"size {size} seed {seed}: fpr {r['image_fpr']:.3f} tpr {r['image_tpr']:.3f} "
                  f"threshold {r['threshold']:.2f} ({r['n_calibration_scores']} scores)", flush=True)
    print(table(done, args.target_fpr, args.confidence))


def tables_from_stored_runs(args) -> None:
    runs = [run for name in args.recalibrate for run in json.loads(Path(name).read_text())["runs"]]
    print(table(runs, args.target_fpr, args.confidence))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    return exit_code(tables_from_stored_runs if args.recalibrate else measure, args)


if __name__ == "__main__":
    sys.exit(main())
