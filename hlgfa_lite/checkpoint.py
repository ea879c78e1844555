"""Checkpoints: the head's tensors in ``head.safetensors``, everything else in ``model.json``. No pickle.

``model.json`` holds the full config, the backbone name and image sizes, the package version, the calibration
(threshold, good-score statistics, colour scale), a fingerprint of the backbone weights the head was fit on, and
the SHA-256 of the tensor file. Loading checks every one of these: a mismatch is refused with a clear message,
except a different backbone fingerprint (weights from another source, e.g. the Hub versus the offline package),
which is a plain warning. Writes go to temporary files that are then renamed, so a crash never leaves half a
checkpoint, and an existing checkpoint is only replaced when asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .config import HLGFAConfig
from .errors import HLGFAError
from .model import HLGFA

FORMAT_VERSION = 1
TENSORS, METADATA = "head.safetensors", "model.json"
CALIBRATION_KEYS = {"image_threshold", "good_score_mean", "good_score_std", "pixel_threshold", "map_vmin", "map_vmax"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``; the temp file is removed on any failure."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; a checkpoint is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save(model: HLGFA, run_dir: str | Path, overwrite: bool = False, extra: dict | None = None) -> Path:
    """Write the checkpoint into ``run_dir``; refuses to replace one unless ``overwrite``."""
    run_dir = Path(run_dir)
    if not model.calibration:
        raise HLGFAError("the model is not calibrated; fit it (or call training.calibrate_model) before saving.")
    if (run_dir / METADATA).exists() and not overwrite:
        raise HLGFAError(f"{run_dir} already holds a checkpoint; choose another --out or pass --overwrite.")
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = model.fitted_state()
    _atomic_write(run_dir / TENSORS, lambda tmp: save_file(tensors, tmp))
    metadata = {
        "format_version": FORMAT_VERSION,
        "package": "hlgfa_lite",
        "package_version": __version__,
        "backbone": model.cfg.backbone,
        "hr_size": model.cfg.hr_size,
        "lr_size": model.cfg.lr_size,
        "backbone_fingerprint": model.backbone.fingerprint,
        "backbone_weights_source": model.backbone.weights_source,
        "trainable_parameters": model.trainable_parameters(),
        "tensors_sha256": _sha256(run_dir / TENSORS),
        "calibration": model.calibration,
        "config": model.cfg.to_dict(),
        **(extra or {}),
    }
    _atomic_write(run_dir / METADATA, lambda tmp: Path(tmp).write_text(json.dumps(metadata, indent=2)))
    return run_dir


def read_metadata(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / METADATA).is_file() or not (run_dir / TENSORS).is_file():
        raise HLGFAError(f"{run_dir} is not a checkpoint (needs {METADATA} and {TENSORS}); run `hlgfa-lite fit` first.")
    try:
        metadata = json.loads((run_dir / METADATA).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HLGFAError(f"{run_dir / METADATA} is not valid JSON ({exc}); the checkpoint is damaged.") from exc
    if metadata.get("package") != "hlgfa_lite" or metadata.get("format_version") != FORMAT_VERSION:
        raise HLGFAError(f"{run_dir} is not an hlgfa_lite checkpoint of format {FORMAT_VERSION}; "
                         "re-fit it with this version.")
    return metadata


def load(run_dir: str | Path, device: str | torch.device = "cpu", weights: str | None = None,
         pretrained: bool = True, backbone_runtime: str | None = None) -> HLGFA:
    """A ready-to-score model from ``run_dir``; every stored fact is checked against what is rebuilt.
    ``backbone_runtime`` ("torch" or "onnxruntime") overrides the stored one: it changes speed, not results."""
    run_dir = Path(run_dir)
    metadata = read_metadata(run_dir)
    cfg = HLGFAConfig.from_dict(metadata["config"])
    if backbone_runtime is not None:
        cfg = cfg.replace(backbone_runtime=backbone_runtime)
    for key in ("backbone", "hr_size", "lr_size"):
        if metadata.get(key) != getattr(cfg, key):
            raise HLGFAError(f"{run_dir / METADATA}: {key} is {metadata.get(key)!r} but the config says "
                             f"{getattr(cfg, key)!r}; the file was edited by hand, re-fit the model.")
    missing = CALIBRATION_KEYS - set(metadata.get("calibration", {}))
    if missing:
        raise HLGFAError(f"{run_dir / METADATA} lacks calibration values {sorted(missing)}; re-fit the model.")
    if _sha256(run_dir / TENSORS) != metadata.get("tensors_sha256"):
        raise HLGFAError(f"{run_dir / TENSORS} does not match the hash in {METADATA}: the checkpoint is damaged "
                         "or its files come from different runs; re-fit or restore both files together.")
    model = HLGFA(cfg, pretrained=pretrained, weights=weights)
    tensors = load_file(str(run_dir / TENSORS))
    try:
        model.load_fitted_state(tensors)
    except RuntimeError as exc:
        raise HLGFAError(f"{run_dir / TENSORS} does not fit the model its config describes; re-fit the model.") from exc
    model.calibration = dict(metadata["calibration"])
    if model.backbone.fingerprint != metadata.get("backbone_fingerprint"):
        warnings.warn(
            f"backbone weights differ from those the head was fit on ({model.backbone.weights_source} vs "
            f"{metadata.get('backbone_weights_source')}): scores may shift; re-fit for exact results.", stacklevel=2)
    return model.to(device).eval()
