"""Re-save a checkpoint of an older format in the current one, without retraining.

    HF_HUB_OFFLINE=1 python scripts/resave_checkpoint.py OLD_RUN_DIR DATA [--out NEW_RUN_DIR]

The head's tensors and the per-level statistics are kept bit for bit (the old tensor hash is checked first), unless
``--map-scale`` switches the fusion's per-map scale: then the per-map statistics are recomputed from the held-out
images, as a fit with that scale sets them (training does not depend on the scale, so the result is the checkpoint
that fit would have written). The
calibration is recomputed with the current rule (``hlgfa_lite.calibration``) from the checkpoint's own held-out
images: the split ``training.split_holdout`` makes of DATA's good training images with the checkpoint's
``holdout_fraction`` and ``seed``, exactly the images the fit held out. (With fewer than ``CROSS_FIT_BELOW``
held-out images a fit would also cross-fit; that needs training, so this script refuses such checkpoints.)
Without ``--out`` the checkpoint is replaced in place, atomically.

The bundled model (the seed-0 ``full`` head of benchmarks/run.py on MVTec AD bottle) was converted with
    HF_HUB_OFFLINE=1 python scripts/resave_checkpoint.py hlgfa_lite/assets/checkpoints/bottle_lite ../shared/data/mvtec_bottle/bottle
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

from hlgfa_lite import HLGFA, HLGFAError, save
from hlgfa_lite.calibration import CROSS_FIT_BELOW
from hlgfa_lite.tools.checkpoint import METADATA, TENSORS, _check_config
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.training import calibrate_model, load_images, split_holdout

KEPT = ("fit",)  # facts of the original fit carried over


def resave(old: Path, data: Path, out: Path, map_scale: str | None = None) -> dict:
    meta = json.loads((old / METADATA).read_text())
    if hashlib.sha256((old / TENSORS).read_bytes()).hexdigest() != meta.get("tensors_sha256"):
        raise HLGFAError(f"{old / TENSORS} does not match its recorded hash; refusing to convert it.")
    cfg = _check_config(meta["config"], old / METADATA)
    if map_scale is not None:
        cfg = cfg.replace(map_scale=map_scale)
    model = HLGFA(cfg).eval()
    tensors = load_file(str(old / TENSORS))
    model.load_fitted_state(tensors)  # head, normality statistics, per-map statistics: all that fitting set
    _, holdout = split_holdout(train_image_paths(data), cfg.holdout_fraction, cfg.seed)
    if len(holdout) < CROSS_FIT_BELOW:
        raise HLGFAError(f"only {len(holdout)} held-out images: the current rule would cross-fit; re-fit instead.")
    # the fit set the per-map statistics from these same images: recomputing them changes nothing but the scale rule
    calibrate_model(model, load_images(holdout, cfg.hr_size))
    save(model, out, overwrite=True, extra={k: meta[k] for k in KEPT if k in meta})
    return model.calibration.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("data", type=Path, help="the MVTec-layout folder the checkpoint was fitted on")
    parser.add_argument("--out", type=Path, default=None, help="default: replace OLD in place")
    parser.add_argument("--map-scale", choices=("std", "max", "auto"), default=None,
                        help="switch the fusion's per-map scale (scoring.py) and recompute the per-map statistics "
                             "from the same held-out images (the head and normality statistics stay bit for bit)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(resave(args.old, args.data, args.out or args.old, args.map_scale), indent=2))
    except HLGFAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
