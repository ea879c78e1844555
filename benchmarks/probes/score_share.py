"""The image score's share of the normality part (``normality_weight``), on checkpoints the whole ``fit`` command made.

``benchmarks.steps_curve --after`` scores heads fitted on features held once per seed; a user runs ``hlgfa-lite fit``.
Both start the head from the same seed and agree to float rounding. This probe scores each checkpoint on the whole
test set (``evaluate_samples``, as ``hlgfa-lite evaluate`` does) once per share, everything else as saved: the maps,
the map scale and the statistics the fit chose are the same under every share. Shares chosen here are chosen on test
data.

    for s in 0 1 2; do hlgfa-lite fit ../shared/data/mvtec3d_tire/tire --preset lite --seed $s --out runs/tire_s$s --quiet; done
    HF_HUB_OFFLINE=1 python -m benchmarks.probes.score_share runs/tire_s0 runs/tire_s1 runs/tire_s2 \\
        --data ../shared/data/mvtec3d_tire/tire --shares 0.6 0.75 --out benchmarks/results/probes/score_share_tire.json

``--field map_normality_weight`` moves the map's share instead: it changes no image score and nothing the fit chose
(the map scale is chosen on the score's fusion), so each row scores what a fit with that share would score; only the
map's colour range and pixel threshold, which no metric reads, would differ.
"""

from __future__ import annotations

import argparse

import numpy as np

from hlgfa_lite import load, load_test_split
from hlgfa_lite.evaluation import evaluate_samples
from hlgfa_lite.tools.files import write_json

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def score_shares(checkpoints: list[str], data: str, shares: list[float], field: str = "normality_weight") -> dict:
    samples = load_test_split(data)
    rows = []
    for path in checkpoints:
        model = load(path)
        for share in shares:
            model.cfg = model.cfg.replace(**{field: share})
            metrics = evaluate_samples(model.score_batch, samples, model.cfg.eval_size, warmup=0, progress=False).metrics
            rows.append({"checkpoint": path, "seed": model.cfg.seed, field: share,
                         "map_scale": model.cfg.map_scale, **{k: metrics[k] for k in METRICS}})
            print(f"{path} (seed {model.cfg.seed}, scale {model.cfg.map_scale}) {field} {share:g}: "
                  + ", ".join(f"{k} {metrics[k]:.4f}" for k in METRICS), flush=True)
    for share in shares:
        picked = [r for r in rows if r[field] == share]
        print(f"{field} {share:g}, mean of {len(picked)}: "
              + ", ".join(f"{k} {np.mean([r[k] for r in picked]):.4f}" for k in METRICS))
    return {"data": data, "field": field, "shares": shares, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.score_share", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--shares", nargs="+", type=float, default=[0.6, 0.75])
    parser.add_argument("--field", choices=["normality_weight", "map_normality_weight"], default="normality_weight",
                        help="the score's share (default) or the map's; the map's moves no image score")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = score_shares(args.checkpoints, args.data, args.shares, args.field)
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
