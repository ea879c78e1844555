"""HLGFA-lite, its ablations, the training-free score and a PatchCore-style baseline, side by side, in one run.

    HF_HUB_OFFLINE=1 python -m benchmarks.run DATA [DATA ...] [--preset lite] [--seeds 0 1 2]
                                              [--out benchmarks/results/NAME.json]

For every MVTec-layout folder DATA, every seed and every variant, one fit and one evaluation under the same
conditions (same data split, backbone, image sizes, scoring and metrics code; only the method differs):

    full           HLGFA-lite as configured by the preset
    no_structure   without the structure prior (no conditional modulation)
    no_detail      without the detail prior (the residual sees only the low-res features)
    no_gate        the residual correction added with weight 1
    no_noise_aug   without the noise-aware augmentation
    aug_low_only   the augmentation on the low-res view only, the clean high-res view as target (the other reading)
    training_free  1 - cos(F_L, avgpool(F_H)), head left at the identity, nothing learnt
    patchcore      PatchCore-style memory bank on the same frozen features (hlgfa_lite.tools.baselines)

Each variant runs in a fresh Python process (``--isolation process``), so its peak resident memory (the
process's own high-water mark, ``VmHWM``) is its own, and nothing one variant caches or allocates leaks into the
next one's time or memory.
Then, for ``--robustness-variants``, the same test set again with each nuisance applied at a fixed strength.

Writes NAME.json (every number, the command, the machine), NAME.md (the tables, see render.py) and NAME.png.
A folder that is not MVTec layout, or has no defective test images, ends in one line and exit code 2. Run it from
the repository root (``python -m``: the package ``benchmarks`` is found there).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.harness import (RESULTS, WORKER_FLAG, check_dataset, dataset_names, exit_code, machine_info,
                                one_line, peak_rss_mb, run_in_fresh_process, serve_worker)
from benchmarks.render import write_results
from hlgfa_lite import HLGFA, HLGFAError, fit, preset, save
from hlgfa_lite.augmentation import apply_nuisance
from hlgfa_lite.backbone import resize
from hlgfa_lite.tools.baselines import PatchCoreBaseline, training_free
from hlgfa_lite.tools.checkpoint import TENSORS
from hlgfa_lite.config import PRESETS
from hlgfa_lite.data import evenly_spaced, load_test_split, train_image_paths
from hlgfa_lite.device import resolve_device
from hlgfa_lite.evaluation import evaluate_samples


# kind: how the variant is fitted; overrides: HLGFAConfig fields changed from the preset
VARIANTS: dict[str, dict] = {
    "full": {"kind": "hlgfa", "overrides": {}, "label": "HLGFA-lite (full)"},
    "noise_aware_normality": {"kind": "hlgfa", "overrides": {"normality_draws": "all"},
                              "label": "normality Gaussians over the augmented draws too"},
    "paper_only": {"kind": "hlgfa", "overrides": {"normality": "none"},
                   "label": "the abstract's method alone (no normality term)"},
    "no_structure": {"kind": "hlgfa", "overrides": {"use_structure": False}, "label": "without structure prior"},
    "no_detail": {"kind": "hlgfa", "overrides": {"use_detail": False}, "label": "without detail prior"},
    "no_gate": {"kind": "hlgfa", "overrides": {"use_gate": False}, "label": "without gate"},
    "no_noise_aug": {"kind": "hlgfa", "overrides": {"noise_aug": False}, "label": "without noise augmentation"},
    "aug_low_only": {"kind": "hlgfa", "overrides": {"aug_views": "low"},
                     "label": "augmentation on the low-res view only"},
    "training_free": {"kind": "training_free", "overrides": {}, "label": "training-free 1 − cos (no head)"},
    "patchcore": {"kind": "patchcore", "overrides": {}, "label": "PatchCore-style memory bank"},
}

# (nuisance kind for hlgfa_lite.augmentation.apply_nuisance, strength, label). Applied to the whole test image
# after resizing it to hr_size (both views see it, as with a real camera); strengths are meant at 512 px. Noise and
# JPEG sit inside the training augmentation's ranges (std <= 0.04, quality 30-90), blur near its edge (<= 2 px).
NUISANCES: dict[str, tuple[str, float, str]] = {
    "noise": ("noise", 0.03, "Gaussian noise σ = 0.03"),
    "blur": ("blur", 1.5, "Gaussian blur σ = 1.5 px"),
    "brightness": ("brightness", 0.1, "brightness + 0.1"),
    "jpeg": ("jpeg", 30, "JPEG quality 30"),
}
DEFAULT_ROBUSTNESS = ("full", "no_noise_aug", "aug_low_only", "patchcore")


# --- one variant (runs in its own process) ----------------------------------------------------------------------
class NuisanceTransform:
    """Resize a (3, H, W) test image to the high-res size, then apply one nuisance at a fixed strength."""

    def __init__(self, kind: str, strength: float, size: int):
        self.kind, self.strength, self.size = kind, strength, size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return apply_nuisance(resize(image[None], self.size)[0], self.kind, self.strength)


def threshold_rates(evaluation, threshold: float) -> dict[str, float]:
    """False-positive rate on good images and detection rate on defective ones at a fixed score threshold."""
    flagged = evaluation.scores > threshold
    labels = evaluation.labels
    return {"fpr_good": float(flagged[labels == 0].mean()), "tpr_defect": float(flagged[labels == 1].mean())}


def fit_variant(spec: dict, cfg, device: str, paths: list[Path]) -> tuple[object, dict]:
    """Build and fit one variant; returns (model with score_batch/threshold, facts about the fit)."""
    kind, progress = VARIANTS[spec["variant"]]["kind"], spec["progress"]
    if kind == "patchcore":
        model = PatchCoreBaseline(cfg, coreset_fraction=spec["coreset_fraction"], coreset=spec["coreset"]).to(device)
        started = time.perf_counter()
        report = model.fit(paths, progress=progress)
        facts = {"fit_seconds": time.perf_counter() - started, "feature_seconds": report.feature_seconds,
                 "coreset_seconds": report.coreset_seconds, "n_train": report.n_train, "n_holdout": report.n_holdout,
                 "n_patches": report.n_patches, "bank_size": report.bank_size, "bank_dim": model.feature_dim,
                 "trainable_parameters": 0, "state_bytes": model.memory_bank_bytes,
                 "state_kind": "memory bank (float32)"}
        return model, facts
    if kind == "training_free":
        started = time.perf_counter()
        model = training_free(cfg, paths, device=device)
        # nothing is learnt: what must be stored besides the backbone is the per-level good-image statistics
        facts = {"fit_seconds": time.perf_counter() - started, "trainable_parameters": 0,
                 "state_bytes": model.level_mean.nbytes + model.level_scale.nbytes,
                 "state_kind": "per-level statistics"}
        return model, facts
    model = HLGFA(cfg).to(device)
    started = time.perf_counter()
    report = fit(model, paths, progress=progress)
    facts = {"fit_seconds": time.perf_counter() - started, "cache_seconds": report.cache_seconds,
             "train_seconds": report.train_seconds, "n_train": report.n_train, "n_holdout": report.n_holdout,
             "first_loss": report.losses[0] if report.losses else None,
             "last_loss": report.losses[-1] if report.losses else None,
             "trainable_parameters": model.trainable_parameters(), "state_kind": "checkpoint (head.safetensors)",
             "map_scale_auroc": report.map_scale_auroc}
    with tempfile.TemporaryDirectory() as folder:
        facts["state_bytes"] = (save(model, Path(folder) / "model") / TENSORS).stat().st_size
    if spec.get("keep_checkpoints"):  # e.g. to ship the full variant's head as the demo's model
        save(model, Path(spec["keep_checkpoints"]) / f"{spec['dataset']}_{spec['variant']}_seed{spec['seed']}",
             overwrite=True)
    return model, facts


def run_variant(spec: dict) -> dict:
    """Fit and evaluate one variant of ``spec`` (dataset, variant, seed, settings); every number as a dict."""
    variant = VARIANTS[spec["variant"]]
    torch.set_num_threads(spec["threads"])
    cfg = preset(spec["preset"], seed=spec["seed"], **spec["config_overrides"], **variant["overrides"])
    device = resolve_device(spec["device"])
    paths, samples = train_image_paths(spec["data"]), load_test_split(spec["data"])
    if spec.get("train_images"):
        paths = evenly_spaced(paths, spec["train_images"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    setup_rss = peak_rss_mb()
    model, facts = fit_variant(spec, cfg, device, paths)
    clean = evaluate_samples(model.score_batch, samples, cfg.eval_size, progress=spec["progress"])
    threshold = model.threshold()
    result = {
        "dataset": spec["dataset"], "variant": spec["variant"], "label": variant["label"], "kind": variant["kind"],
        "seed": spec["seed"], "device": device, "weights_source": model.backbone.weights_source,
        **clean.metrics, **facts, "threshold": threshold, **threshold_rates(clean, threshold),
        # the high-water mark only grows, and this process ran nothing else: the peak of this fit + evaluation
        "peak_rss_mb": peak_rss_mb() if spec["isolated"] else None,
        "setup_rss_mb": setup_rss if spec["isolated"] else None,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        # the fitted model's config: what a fit resolved (map_scale "auto" -> the scale it chose) included
        "per_type": clean.per_type, "config": getattr(model, "cfg", cfg).to_dict(), "robustness": None,
    }
    if spec["robustness"]:
        result["robustness"] = {"clean": {"image_auroc": clean.metrics["image_auroc"],
                                          "pixel_auroc": clean.metrics["pixel_auroc"],
                                          **threshold_rates(clean, threshold)}}
        for name, (kind, strength, _) in NUISANCES.items():
            noisy = evaluate_samples(model.score_batch, samples, cfg.eval_size, progress=spec["progress"],
                                     transform=NuisanceTransform(kind, strength, cfg.hr_size))
            result["robustness"][name] = {"image_auroc": noisy.metrics["image_auroc"],
                                          "pixel_auroc": noisy.metrics["pixel_auroc"],
                                          **threshold_rates(noisy, threshold)}
    return result


def measure_variant(spec: dict) -> dict:
    """The child process's work: one variant, the warnings of a long loop shown once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("once")
        return run_variant(spec)


def run_isolated(spec: dict) -> dict:
    """One variant in a fresh interpreter, whose memory high-water mark is then that variant's alone."""
    return run_in_fresh_process("benchmarks.run", spec, spec["threads"],
                                f"variant {spec['variant']} (seed {spec['seed']}, {spec['dataset']})")


def run_in_this_process(spec: dict) -> dict:
    threads = torch.get_num_threads()
    try:
        return run_variant(spec)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, as it was


# --- the whole benchmark ------------------------------------------------------------------------------------------
def run_benchmark(args, argv: list[str]) -> dict:
    out = Path(args.out)
    if out.suffix != ".json":
        raise HLGFAError(f"--out must name a .json file (the .md and .png are written beside it), got {out}.")
    if not args.seeds:
        raise HLGFAError("--seeds needs at least one seed, e.g. --seeds 0 1 2.")
    overrides = {k: v for k, v in (("steps", args.steps), ("hr_size", args.hr_size), ("lr_size", args.lr_size))
                 if v is not None}
    preset(args.preset, **overrides)  # sizes and preset checked before any work
    if not 0 < args.coreset_fraction <= 1:
        raise HLGFAError(f"--coreset-fraction must be in (0, 1], got {args.coreset_fraction}.")
    device = resolve_device(args.device)
    # by default torch's own thread count, which follows OMP_NUM_THREADS
    threads = torch.get_num_threads() if args.threads is None else args.threads
    if threads < 1:
        raise HLGFAError(f"--threads must be at least 1, got {threads}.")
    names = dataset_names(args.data)
    datasets = {name: check_dataset(folder) for name, folder in zip(names, args.data)}
    robust = [v for v in args.robustness_variants if v in args.variants]
    started = time.perf_counter()
    results = {
        "command": "python -m benchmarks.run " + shlex.join(argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "machine": machine_info(device, threads),
        "settings": {"preset": args.preset, "config_overrides": overrides, "seeds": args.seeds,
                     "train_images": args.train_images,
                     "variants": args.variants, "robustness_variants": robust, "isolation": args.isolation,
                     "coreset": args.coreset, "coreset_fraction": args.coreset_fraction,
                     "nuisances": {name: {"kind": k, "strength": s, "label": label}
                                   for name, (k, s, label) in NUISANCES.items()},
                     "variant_labels": {v: VARIANTS[v]["label"] for v in args.variants}},
        "datasets": {name: {**facts, "runs": []} for name, facts in datasets.items()},
    }
    total = len(names) * len(args.seeds) * len(args.variants)
    done = 0
    for name, folder in zip(names, args.data):
        for seed in args.seeds:
            for variant in args.variants:
                done += 1
                spec = {"data": folder, "dataset": name, "variant": variant, "seed": seed, "preset": args.preset,
                        "config_overrides": overrides, "device": args.device, "progress": not args.quiet,
                        "robustness": variant in robust, "coreset": args.coreset,
                        "coreset_fraction": args.coreset_fraction, "isolated": args.isolation == "process",
                        "threads": threads, "keep_checkpoints": args.keep_checkpoints,
                        "train_images": args.train_images}
                print(f"[{done}/{total}] {name} seed {seed} {variant} ...", flush=True)
                result = run_isolated(spec) if args.isolation == "process" else run_in_this_process(spec)
                results["datasets"][name]["runs"].append(result)
                print(f"[{done}/{total}] {name} seed {seed} {variant}: {one_line(result)}", flush=True)
                results["total_seconds"] = time.perf_counter() - started
                write_results(results, out)  # after every variant: a long run interrupted keeps what it measured
    results.update(complete=True, total_seconds=time.perf_counter() - started,
                   finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_results(results, out)
    print(f"done in {results['total_seconds'] / 60:.1f} min; {out}, {out.with_suffix('.md')}, "
          f"{out.with_suffix('.png')}")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="MVTec-layout category folder(s)")
    parser.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0], help="one full run per seed (default: 0)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    parser.add_argument("--hr-size", type=int, default=None, help="high-res view size (default: the preset's)")
    parser.add_argument("--lr-size", type=int, default=None, help="low-res view size (default: the preset's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                        help=f"subset to run, of: {' '.join(VARIANTS)}")
    parser.add_argument("--robustness-variants", nargs="*", default=list(DEFAULT_ROBUSTNESS), choices=list(VARIANTS),
                        metavar="VARIANT", help="variants also scored under each nuisance (none: give no names); "
                        f"default: {' '.join(DEFAULT_ROBUSTNESS)}")
    parser.add_argument("--coreset", default="greedy", choices=["greedy", "random"], help="PatchCore coreset")
    parser.add_argument("--coreset-fraction", type=float, default=0.1, help="PatchCore bank size / all patches")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per variant (default: torch's, which follows OMP_NUM_THREADS); on "
                        "a machine shared with other jobs, 1 thread can be several times faster than 2")
    parser.add_argument("--isolation", default="process", choices=["process", "none"],
                        help="process: each variant in a fresh interpreter (honest peak memory); none: all in "
                        "this process (faster to start, no peak memory reported)")
    parser.add_argument("--out", default=str(RESULTS / "latest.json"),
                        help="results JSON; NAME.md and NAME.png are written beside it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--train-images", type=int, default=None, metavar="N",
                        help="fit on N training images evenly spaced in sorted order (default: all)")
    parser.add_argument("--keep-checkpoints", default=None, metavar="DIR",
                        help="also save each HLGFA variant's checkpoint under DIR/<dataset>_<variant>_seed<seed>")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER_FLAG]:
        return serve_worker(argv[1:], measure_variant)
    args = build_parser().parse_args(argv)
    return exit_code(run_benchmark, args, argv)


if __name__ == "__main__":
    sys.exit(main())
