"""Could a fit choose its fusion rule without labelled defects? Synthetic defects on held-out good images. A probe.

The map scale that localises a bottle best ("std") ranks textures worse, and the one the textures need ("max") costs
bottle's pixel AUROC (RESULTS.md, "Fusion levers"). A user fitting good images has no labelled defects to choose with,
but the held-out good images can carry *synthetic* ones. Each held-out image gets three: a patch of another held-out
image pasted elsewhere (CutPaste, Li et al. 2021), a soft elliptical blob of brighter or darker intensity, and a thin
rotated scar of one random colour. The probe scores every fusion rule on (clean held-out, synthetic) exactly as on the
real test set, and prints both rankings: if the synthetic ranking matched the real one on both data sets, the choice
could be made per fit (it now is: ``map_scale="auto"``, whose defects these are, ``hlgfa_lite/synthetic.py``).
The statistics come from the same clean held-out images that serve as negatives (the same bias
for every rule)::

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.synthetic_choice CHECKPOINT DATA --maps MAPS.pt --out FILE
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.probes.map_cache import evaluate, fuse, load_maps
from hlgfa_lite import load, load_image
from hlgfa_lite.backbone import resize
from hlgfa_lite.data import train_image_paths
from hlgfa_lite.tools.files import write_text
from hlgfa_lite.synthetic import synthetic_defects
from hlgfa_lite.training import split_holdout

RULES = (("std", 0.75), ("max", 0.75), ("score", 0.75), ("std", 0.5), ("max", 0.5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.synthetic_choice",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--maps", required=True, help="map_scale.py's raw-maps cache (real test set, held-out images)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load(args.checkpoint)
    cfg = model.cfg
    real = load_maps(args.maps, first=6)  # the checkpoint's own maps (high_res_normality.py may have added more)
    _, held_out = split_holdout(train_image_paths(args.data), cfg.holdout_fraction, cfg.seed)
    images = torch.cat([resize(load_image(p)[None], cfg.hr_size) for p in held_out])
    defective, masks = synthetic_defects(images, torch.Generator().manual_seed(0))
    with torch.no_grad():
        per_batch = [model.inspect(defective[i:i + 8]).all_maps for i in range(0, len(defective), 8)]
    test = [torch.cat([torch.cat(level), hold]) for level, hold in zip(zip(*per_batch), real["hold"])]
    masks = torch.nn.functional.interpolate(masks[:, None].float(), size=(cfg.eval_size,) * 2, mode="nearest")[:, 0] > 0.5
    made = dict(real, test=test, labels=torch.cat([torch.ones(len(defective)), torch.zeros(len(held_out))]).long(),
                masks=torch.cat([masks, torch.zeros(len(held_out), *masks.shape[1:], dtype=torch.bool)]))
    lines = [f"{args.checkpoint} on {args.data}: {len(held_out)} held-out good images, {len(defective)} synthetic",
             "", "| scale | w | synthetic image / pixel AUROC | real test image / pixel AUROC |", "|---|---|---|---|"]
    for rule, weight in RULES:
        synthetic_result = evaluate(made, fuse(made, rule, False, weight, cfg.smooth_sigma), 128)
        real_result = evaluate(real, fuse(real, rule, False, weight, cfg.smooth_sigma), 128)
        lines.append(f"| {rule} | {weight} | {synthetic_result[0]:.3f} / {synthetic_result[1]:.4f} | "
                     f"{real_result[0]:.3f} / {real_result[1]:.4f} |")
        print(lines[-1], flush=True)
    if args.out:
        write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
