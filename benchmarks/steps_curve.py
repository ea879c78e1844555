"""Quality against the number of training steps (and the training precision), one data set, heads on shared features.

The training images' features are held once (as ``fit`` holds them) and the test images' features computed once;
then, for each seed, precision and step count, a new model on the same frozen backbone is fitted as ``fit`` fits
one (normality statistics, head, map-scale choice and per-map statistics on the held-out images; no cross-fitted
heads: they move the threshold, not these metrics) and scored on the whole test set with the library's
``evaluate_samples``. What the curve answers: after how many passes over the training set quality stops improving.

    HF_HUB_OFFLINE=1 python -m benchmarks.steps_curve ../shared/data/mvtec3d_tire/tire --steps 60 125 250 500 \\
        --precisions float32 bfloat16 --out benchmarks/results/steps_tire.json

A pass is one look at every held training view: steps x batch / (training images x draws per image). ``--copies``
fixes the augmented copies per image (no budget), to ask how many draws a large set needs.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time

import torch

from hlgfa_lite import HLGFA, preset
from hlgfa_lite.data import load_test_split, train_image_paths
from hlgfa_lite.evaluation import evaluate_samples
from hlgfa_lite.tools.cache import hold_features, load_images, plan_cache
from hlgfa_lite.tools.files import write_json
from hlgfa_lite.training import (choose_map_scale, fit_normality, good_level_maps, head_batch, level_statistics,
                                 set_calibration, split_holdout, train_head)

from .harness import check_dataset, exit_code, machine_info
from .run import NUISANCES, NuisanceTransform


class FeatureMemo:
    """A score function for ``evaluate_samples`` that computes each test image's frozen features once and then
    runs only the head, the normality term and the fusion of whichever model is current."""

    def __init__(self, backbone_model: HLGFA):
        self.reader, self.memo, self.model = backbone_model, {}, backbone_model

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = hashlib.sha1(image.numpy().tobytes()).hexdigest()
        if key not in self.memo:
            with torch.no_grad():
                hr, lr = self.reader.views(image.to(self.reader.device))
                self.memo[key] = (hr, lr, self.reader.backbone(hr), self.reader.backbone(lr))
        result = self.model.inspect_features(*self.memo[key])
        return result.anomaly_map, result.scores


def weight_table(model: HLGFA, holdout: torch.Tensor, memo: FeatureMemo, samples, weights: list[float]) -> list[dict]:
    """The same fitted model with the normality maps' share of the fused map set to each of ``weights``: the test
    metrics, and the pixel AUROC on synthetic defects of the held-out images (what a fit could choose the share
    from, as it chooses the map scale; statistics kept, the better scale's AUROC reported)."""
    rows, kept = [], model.cfg
    good_maps = good_level_maps(model, holdout)
    try:
        for weight in weights:
            model.cfg = kept.replace(normality_weight=weight)
            synthetic = choose_map_scale(model, holdout, good_maps)
            memo.model = model
            result = evaluate_samples(memo, samples, kept.eval_size, warmup=0, progress=False)
            rows.append({"normality_weight": weight, "synthetic_auroc": synthetic,
                         **{k: result.metrics[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro")}})
            print(f"    weight {weight}: image {rows[-1]['image_auroc']:.3f}, pixel {rows[-1]['pixel_auroc']:.3f}, "
                  f"AUPRO {rows[-1]['pixel_aupro']:.3f}; synthetic {synthetic}", flush=True)
    finally:
        model.cfg = kept
    return rows


def variant_table(model: HLGFA, holdout: torch.Tensor, memo: FeatureMemo, samples, variants: list[dict]) -> list[dict]:
    """The same fitted head and normality term with scoring fields changed after the fit (``--after``): each
    variant's statistics are chosen again on the held-out images (an "auto" rule chooses here, as ``fit`` does),
    then the whole test set is scored. Paired by construction: only the fusion differs."""
    rows, kept = [], model.cfg
    good_maps = good_level_maps(model, holdout)
    try:
        for variant in variants:
            model.cfg = kept.replace(**variant)
            statistics = level_statistics(model, holdout, good_maps)
            set_calibration(model, statistics, good_maps)
            memo.model = model
            result = evaluate_samples(memo, samples, kept.eval_size, warmup=0, progress=False)
            rows.append({"after": variant, "map_scale": statistics.map_scale,
                         "normality_levels": statistics.normality_levels, "synthetic_auroc": statistics.scale_auroc,
                         **{k: result.metrics[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro")}})
            print(f"    {variant}: image {rows[-1]['image_auroc']:.3f}, pixel {rows[-1]['pixel_auroc']:.3f}, "
                  f"AUPRO {rows[-1]['pixel_aupro']:.3f}; chose {statistics.map_scale}/{statistics.normality_levels} "
                  f"{statistics.scale_auroc}", flush=True)
    finally:
        model.cfg = kept
    return rows


def curve(data: str, steps: list[int], precisions: list[str], seeds: list[int], n_images: int | None,
          weights: list[float] = (), copies: list[int | None] = (None,), preset_name: str = "lite",
          overrides: dict | None = None, after: list[dict] = (), head_draws: list[int | None] = (None,),
          nuisances: list[str] = ()) -> dict:
    base = preset(preset_name, **(overrides or {}))
    paths = train_image_paths(data)
    if n_images:
        paths = [paths[round(i * (len(paths) - 1) / max(n_images - 1, 1))] for i in range(n_images)]
    samples = load_test_split(data)
    shared = HLGFA(base).eval()
    memo = FeatureMemo(shared)
    rows = []
    for seed, aug_copies in itertools.product(seeds, copies):
        train_paths, holdout_paths = split_holdout(paths, base.holdout_fraction, seed)
        cfg = base.replace(seed=seed) if aug_copies is None else base.replace(seed=seed, aug_copies=aug_copies,
                                                                               aug_budget=0)
        holder = HLGFA(cfg.replace(head_draws=0), backbone=shared.backbone).eval()  # every draw's priors: any head
        started = time.perf_counter()
        cache = hold_features(holder, load_images(train_paths, cfg.hr_size), plan_cache(holder, len(train_paths), 8.0,
                                                                                         None), progress=False)
        features_s = time.perf_counter() - started
        holdout = load_images(holdout_paths, cfg.hr_size)
        try:
            for precision, n_steps, reads in itertools.product(precisions, steps, head_draws):
                torch.manual_seed(seed)
                fields = {} if reads is None else {"head_draws": reads}
                model = HLGFA(cfg.replace(steps=n_steps, train_precision=precision, **fields),
                              backbone=shared.backbone).eval()
                started = time.perf_counter()
                fit_normality(model, cache)
                losses = train_head(model, cache, n_steps, progress=False)
                train_s = time.perf_counter() - started
                good_maps = good_level_maps(model, holdout)
                set_calibration(model, level_statistics(model, holdout, good_maps), good_maps)
                memo.model = model
                result = evaluate_samples(memo, samples, cfg.eval_size, warmup=0, progress=False)
                row = {"seed": seed, "precision": precision, "steps": n_steps, "n_train": len(train_paths),
                       "head_draws": model.cfg.head_draws,
                       "batch_size": (batch := head_batch(model.cfg, cache.n_images)), "draws": cache.draws,
                       "passes": n_steps * batch / (cache.n_images * cache.draws),
                       "map_scale": model.cfg.map_scale, "last_loss": losses[-1], "train_s": train_s,
                       "features_s": features_s,
                       **{k: result.metrics[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro")}}
                if weights and n_steps == max(steps) and model.normality is not None:
                    row["weights"] = weight_table(model, holdout, memo, samples, weights)
                if after:
                    row["after"] = variant_table(model, holdout, memo, samples, list(after))
                rows.append(row)
                print(f"seed {seed}, {cache.draws} draws (a head reads {model.cfg.head_draws or 'all'}), {precision} "
                      f"{n_steps} steps ({row['passes']:.1f} passes): image "
                      f"{row['image_auroc']:.3f}, pixel {row['pixel_auroc']:.3f}, AUPRO {row['pixel_aupro']:.3f}, "
                      f"scale {row['map_scale']}, head {train_s:.0f} s", flush=True)
                for name in nuisances:  # the same test set with one nuisance (run.py's robustness strengths)
                    kind, strength, _ = NUISANCES[name]
                    hit = evaluate_samples(memo, samples, cfg.eval_size, warmup=0, progress=False,
                                           transform=NuisanceTransform(kind, strength, cfg.hr_size))
                    row.setdefault("nuisances", {})[name] = {k: hit.metrics[k] for k in ("image_auroc", "pixel_auroc")}
                    print(f"    under {name}: image {hit.metrics['image_auroc']:.3f}, "
                          f"pixel {hit.metrics['pixel_auroc']:.3f}", flush=True)
        finally:
            cache.close()
    return {"data": check_dataset(data), "preset": preset_name, "overrides": overrides or {}, "n_images": n_images,
            "rows": rows, "machine": machine_info("cpu", torch.get_num_threads())}


def parse_overrides(pairs: list[str]) -> dict:
    """["normality_pool=1", "map_scale=std"] -> {"normality_pool": 1, "map_scale": "std"}."""
    overrides = {}
    for pair in pairs:
        field, _, value = pair.partition("=")
        try:
            overrides[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.steps_curve", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="an MVTec-layout category folder")
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 125, 250, 500])
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--images", type=int, default=None, help="fit on this many evenly spaced training images")
    parser.add_argument("--weights", type=float, nargs="*", default=[],
                        help="at the most steps, also score these normality-map shares (normality_weight)")
    parser.add_argument("--copies", type=int, nargs="+", default=[None],
                        help="augmented copies per training image, each held apart (default: the preset's rule)")
    parser.add_argument("--head-draws", type=int, nargs="+", default=[None],
                        help="draws of each image a head reads (head_draws; 0: all), each a head on the same features")
    parser.add_argument("--nuisances", nargs="*", default=[], choices=sorted(NUISANCES),
                        help="also score the test set under each nuisance (run.py's strengths)")
    parser.add_argument("--preset", default="lite", choices=["lite", "lite_paper"])
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="config fields to change, e.g. normality_pool=1 smooth_sigma=2 (numbers as JSON)")
    parser.add_argument("--after", nargs="+", default=[], metavar="FIELDS",
                        help="score each fitted head again with scoring fields changed, one variant per argument: "
                             "normality_levels=all normality_levels=auto (several fields: a,b joined by commas)")
    parser.add_argument("--out", required=True, help="results JSON")
    args = parser.parse_args(argv)
    after = [parse_overrides(variant.split(",")) for variant in args.after]
    return exit_code(lambda: write_json(args.out, curve(args.data, args.steps, args.precisions, args.seeds,
                                                        args.images, args.weights, args.copies,
                                                        args.preset, parse_overrides(args.set), after,
                                                        args.head_draws, args.nuisances)))


if __name__ == "__main__":
    raise SystemExit(main())
