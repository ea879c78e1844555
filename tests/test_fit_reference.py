"""The fit computes what it computed before its calibration was rewritten by values (held-out maps once, fold models
built fresh on the shared backbone): the same head, normality statistics, per-map statistics, map-scale choice,
cross-fitted scores and calibration as the swap-in-place code of commit 22ee6f9, on a short fit of the bundled bottle
sample. ``tests/data/fit_reference.json`` was written by that commit's code (``python tests/test_fit_reference.py
OUT.json`` run against it). On this project's machines the values matched bit for bit until the augmentation's blur
became the priors' separable low-pass (the same Gaussian, rounded otherwise); the tolerance below absorbs that and
another CPU's rounding, and a change of logic moves them by far more."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).parent / "data" / "fit_reference.json"
# the default and the abstract's method alone (no normality, scale "std"); the default's score weighed the normality
# part 0.75 when the reference was written (0.6 since: RESULTS.md, "The score's share")
CONFIGS = {"lite": {"normality_weight": 0.75}, "lite_paper": {}}


def reference_fit() -> dict:
    """Two short fits on 10 bottle images (one held out, so three fold models cross-fit), after a warm-up fit: the
    first backward pass of a process may pick other CPU kernels, whose rounding would show in the losses."""
    from hlgfa_lite import HLGFA, HLGFAConfig, fit, preset
    from hlgfa_lite.data import train_image_paths
    try:
        from hlgfa_lite.assets import sample_dir
    except ImportError:  # the layout of the reference commit
        from hlgfa_lite.samples import sample_dir
    paths = train_image_paths(sample_dir("bottle"))[:10]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from hlgfa_lite import backbone
    fused_on_cpu = getattr(backbone, "fused_on_cpu", None)
    if fused_on_cpu:  # the reference's plain traced graph: this compares the fit's logic; the fused kernels agree
        backbone.fused_on_cpu = lambda traced, example: traced  # with it to rounding (test_backbone_runtime.py)
    try:
        # the arithmetic of the reference: float32 steps (bfloat16 autocast, a later switch, rounds otherwise)
        fixed = {"train_precision": "float32"} if "train_precision" in HLGFAConfig.__dataclass_fields__ else {}
        if "map_normality_weight" in HLGFAConfig.__dataclass_fields__:  # the reference's one map for map and score
            fixed["map_normality_weight"] = None
        fit(HLGFA(preset("lite", steps=2, aug_copies=1, batch_size=4, **fixed)), paths[:4], progress=False, say=None)
        values = {}
        for name, overrides in CONFIGS.items():
            model = HLGFA(preset(name, steps=6, aug_copies=1, batch_size=4, **fixed, **overrides))
            reference_start(model)
            # the reference's fold heads: a third of the 6 steps each (the default share became half of that)
            report = fit(model, paths, progress=False, say=None, cross_fit_steps=2)
            values[name] = {
                "losses": report.losses, "holdout_scores": report.holdout_scores,
                "cross_fit_scores": report.cross_fit_scores, "map_scale": model.cfg.map_scale,
                "map_scale_auroc": report.map_scale_auroc,
                "calibration": {k: v for k, v in vars(model.calibration).items() if isinstance(v, (int, float))},
                "tensor_sums": {k: float(v.double().sum()) for k, v in sorted(model.fitted_state().items())},
            }
        return values
    finally:
        torch.set_num_threads(threads)
        if fused_on_cpu:
            backbone.fused_on_cpu = fused_on_cpu


def reference_start(model) -> None:
    """Give ``model`` the head the reference started from. Its code drew each head from torch's global generator,
    which the fit before had left seeded with 0 (the last thing that fit's head steps did), then drew from to build
    the next model's backbone. Heads now come from a seed of their own (``HLGFA(init_seed=...)``), so that a fit
    repeats in a new process."""
    from hlgfa_lite.alignment import AlignmentHead
    from hlgfa_lite.backbone import FrozenBackbone

    cfg = model.cfg
    torch.manual_seed(0)
    FrozenBackbone(cfg.backbone, cfg.out_indices)  # the draws of the model's backbone, before its head
    model.head.load_state_dict(AlignmentHead(model.backbone.channels, cfg).state_dict())


def close(a, b, rel: float = 1e-4) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, str):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


@pytest.mark.skipif(not REFERENCE.exists(), reason="no reference values")
def test_fit_matches_the_reference_values():
    expected = json.loads(REFERENCE.read_text())
    got = reference_fit()
    for name in CONFIGS:
        for field, value in expected[name].items():
            assert close(value, got[name][field]), f"{name}: {field} changed: {value} -> {got[name][field]}"
    assert len(got["lite"]["cross_fit_scores"]) == 9  # the cross-fit ran: every training image scored once


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(reference_fit(), indent=1))
