"""Why an object's maps are blurrier than a memory bank's: every level of each part, scored and looked at.

A `lite` checkpoint (alignment and normality parts) is run on a test set; each of its raw maps is fused *alone*
(``model.fuse`` with one map: normalised by its good-image statistics, brought to the low-res grid, smoothed as the
full map is), so a level's map is what it adds to the full one. Beside them: each part, the full map and, when
``benchmarks/anomalib_peers.py --save-maps`` wrote them, a peer's maps of the same images. For every map, over the
whole test set (maps and masks at ``eval_size``, as ``evaluate_samples`` scores them; AUROC by scikit-learn):

    pixel AUROC      every defect pixel against every normal pixel (the usual figure)
    against good     defect pixels against the pixels of the *good* test images only: hot spots on good parts
    within defects   defect pixels against the normal pixels of the *defective* images only: spill around a defect
                     (a blurry map loses here, a map with false hot spots on good parts loses against good)
    AUPRO            region overlap up to a 30 % false-positive rate

Then the figure: per defect type, the defective image whose full map localises worst (lowest AUROC of its own
pixels against its own mask), one row each: the image with the defect outlined, the alignment part's levels, the
normality part's levels, the full map, the peer's map. Every map is coloured on its own good-image scale: 0 at the
median pixel of the good test images, 1 at their 99.9th percentile (so "red" means "hotter than almost any pixel of
a good part", whatever the map's units)::

    HF_HUB_OFFLINE=1 /work/venv-anomalib/bin/python -m benchmarks.anomalib_peers ../shared/data/mvtec3d_tire/tire \
        --models anomalib_patchcore --patchcore-images 0 --save-maps /tmp/peer_maps --out /tmp/peers.json
    HF_HUB_OFFLINE=1 python -m benchmarks.object_maps ../shared/data/mvtec3d_tire/tire \
        --checkpoint hlgfa_lite/assets/checkpoints/tire_lite \
        --peer-maps /tmp/peer_maps/tire_anomalib_patchcore.npz --out benchmarks/results/tire_maps.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmarks.harness import exit_code, save_figure
from hlgfa_lite import load, load_image, load_test_split, metrics
from hlgfa_lite.data import load_mask
from hlgfa_lite.errors import HLGFAError
from hlgfa_lite.scoring import resize_map
from hlgfa_lite.tools.files import write_json
from hlgfa_lite.backbone import resize
from hlgfa_lite.tools.visualize import colorize, to_uint8_image


def map_names(model) -> list[str]:
    """Names of the raw maps in ``Inspection.all_maps`` order: alignment levels, then normality levels."""
    strides = model.backbone.strides
    names = [f"alignment, stride {s}" for s in strides]
    if model.normality is not None:
        names += [f"normality, stride {s}" for s in strides]
    return names


def model_maps(model, samples) -> dict[str, np.ndarray]:
    """Every map of every test image at eval size: each raw map fused alone, each part, the full map."""
    names, size = map_names(model), model.cfg.eval_size
    maps: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        out = model.inspect(load_image(sample.path)[None])
        raw = out.all_maps
        views = {name: model.fuse([raw[i]], first=i) for i, name in enumerate(names)}
        views.update({f"{part} part": values for part, values in model.part_maps(out).items()})
        views["full map"] = out.anomaly_map
        for name, values in views.items():
            maps.setdefault(name, []).append(resize_map(values[0], size, size).numpy())
    return {name: np.stack(values) for name, values in maps.items()}


def peer_maps(path: Path, samples) -> np.ndarray:
    """A peer's saved maps (``anomalib_peers --save-maps``), in the order of ``samples``."""
    saved = np.load(path)
    index = {name: i for i, name in enumerate(saved["names"].tolist())}
    try:
        return np.stack([saved["maps"][index[f"{s.defect_type}/{s.path.stem}"]] for s in samples]).astype(np.float32)
    except KeyError as exc:
        raise HLGFAError(f"{path} has no map of test image {exc.args[0]}: save the peer's maps of this data set.") from None


def masks_at(samples, size: int) -> np.ndarray:
    """(N, size, size) bool, resized as evaluate_samples resizes them (nearest)."""
    out = np.zeros((len(samples), size, size), dtype=bool)
    for i, sample in enumerate(samples):
        if sample.mask_path is not None:
            mask = load_mask(sample.mask_path, tuple(load_image(sample.path).shape[-2:])).float()
            out[i] = torch.nn.functional.interpolate(mask[None, None], size=(size, size), mode="nearest")[0, 0] > 0
    return out


def where_it_fails(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The four numbers of the module docstring for one map family (N, S, S)."""
    defect = maps[masks]
    good_parts = maps[labels == 0].ravel()
    around = maps[labels == 1][~masks[labels == 1]]

    def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
        y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
        return float(roc_auc_score(y, np.r_[positive, negative]))

    return {"pixel_auroc": metrics.pixel_auroc(maps, masks), "against_good": auroc(defect, good_parts),
            "within_defects": auroc(defect, around), "aupro": metrics.aupro(maps, masks)}


def own_localisation(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the AUROC of its own pixels against its own mask (NaN where the mask is empty or full)."""
    out = np.full(len(maps), np.nan)
    for i, (values, mask) in enumerate(zip(maps, masks)):
        if 0 < mask.sum() < mask.size:
            out[i] = roc_auc_score(mask.ravel(), values.ravel())
    return out


def good_scale(maps: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(median, 99.9th percentile) of the good test images' pixels: the colour range 0..1 of the figure."""
    good = maps[labels == 0]
    return float(np.median(good)), float(np.percentile(good, 99.9))


def draw(samples, rows: list[int], maps: dict[str, np.ndarray], masks: np.ndarray, labels: np.ndarray,
         path: str) -> None:
    """One row per chosen image: the image, then every map with the true defect's outline in white."""
    columns = [name for name in maps if name not in ("alignment part", "normality part")]
    scales = {name: good_scale(values, labels) for name, values in maps.items()}
    fig, axes = plt.subplots(len(rows), len(columns) + 1, figsize=(2.0 * (len(columns) + 1), 2.2 * len(rows)),
                             squeeze=False)
    for row, index in zip(axes, rows):
        sample = samples[index]
        size = masks.shape[-1]
        row[0].imshow(to_uint8_image(resize(load_image(sample.path)[None], size)[0]))
        row[0].set_title(f"{sample.defect_type} {sample.path.stem}", fontsize=8)
        for ax, name in zip(row[1:], columns):
            low, high = scales[name]
            ax.imshow(colorize(maps[name][index], low, high))
            ax.set_title(name.replace(", ", "\n"), fontsize=8)
        for ax in row:
            ax.contour(masks[index], levels=[0.5], colors="white", linewidths=0.7)
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def study(args) -> int:
    torch.set_num_threads(args.threads)
    samples = load_test_split(args.data)
    model = load(args.checkpoint)
    if model.normality is None:
        raise HLGFAError(f"{args.checkpoint} has no normality term; give a checkpoint fitted with the lite preset.")
    labels = np.array([s.label for s in samples])
    masks = masks_at(samples, model.cfg.eval_size)
    maps = model_maps(model, samples)
    if args.peer_maps:
        maps[args.peer_name] = peer_maps(Path(args.peer_maps), samples)
    table = {name: where_it_fails(values, masks, labels) for name, values in maps.items()}
    print(f"{'map':26s} {'pixel AUROC':>11s} {'vs good':>8s} {'within':>8s} {'AUPRO':>7s}")
    for name, row in table.items():
        print(f"{name:26s} {row['pixel_auroc']:11.3f} {row['against_good']:8.3f} {row['within_defects']:8.3f} "
              f"{row['aupro']:7.3f}")
    own = own_localisation(maps["full map"], masks)
    rows = []
    for defect in sorted({s.defect_type for s in samples} - {"good"}):
        members = [i for i, s in enumerate(samples) if s.defect_type == defect and not np.isnan(own[i])]
        if members:
            rows.append(min(members, key=lambda i: own[i]))
    per_image = {name: own_localisation(values[rows], masks[rows]).round(3).tolist() for name, values in maps.items()}
    write_json(Path(args.out).with_suffix(".json"), {
        "command": "python -m benchmarks.object_maps " + " ".join(sys.argv[1:]), "checkpoint": str(args.checkpoint),
        "maps": table, "rows": [f"{samples[i].defect_type}/{samples[i].path.stem}" for i in rows],
        "rows_own_localisation": per_image})
    draw(samples, rows, maps, masks, labels, args.out)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}: rows "
          f"{[samples[i].defect_type + '/' + samples[i].path.stem for i in rows]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.object_maps", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="MVTec-layout category folder")
    parser.add_argument("--checkpoint", required=True, help="a lite checkpoint (normality term on)")
    parser.add_argument("--peer-maps", default=None, help="a peer's maps from anomalib_peers --save-maps (.npz)")
    parser.add_argument("--peer-name", default="PatchCore (anomalib)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="figure (.png); the numbers go to the .json beside it")
    return exit_code(study, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
