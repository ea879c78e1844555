"""Checkpoints: the head's tensors in ``head.safetensors``, everything else in ``model.json``. No pickle.

``model.json`` holds the full config, the backbone name and image sizes, the package version, the calibration
(``calibration.Calibration``), a fingerprint of the backbone weights the head was fit on, the SHA-256 of the
tensor file, and ``checksum``: the SHA-256 of the rest of ``model.json`` (canonical JSON) together with the tensor
hash, so an edit to either file, or files from two different runs, is refused. (A checksum finds damage and
hand edits; it is not a signature against someone who recomputes it.)

Loading checks everything before a number is used: sizes of both files, JSON depth, every field's type and range
(one line naming the field), the checksum, the tensors' names, shapes and finiteness. A different backbone
fingerprint (weights from another source) is only a warning.

Saving is atomic for the checkpoint as a whole (``files.replace_folder``): the new checkpoint is written complete
and synced into a folder beside ``run_dir``, then exchanged with it, so at every moment ``run_dir`` holds either
the old or the new checkpoint; other files in an overwritten ``run_dir`` (metrics, figures) are carried over.
Where the exchange is not available, a kill between two renames leaves the old checkpoint complete in
``.NAME.old-*`` beside ``run_dir`` (``load`` says so).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._version import __version__
from ..calibration import Calibration
from ..config import BEFORE_THE_FIELD, HLGFAConfig
from ..data import as_path
from ..device import resolve_device
from ..errors import HLGFAError
from .files import real_target, replace_entries, replace_folder
from ..model import HLGFA, upgrade_tensor_names

FORMAT_VERSION = 2
TENSORS, METADATA = "head.safetensors", "model.json"
MAX_METADATA_BYTES = 1 << 20  # a real model.json is ~2 kB
MAX_TENSOR_BYTES = 1 << 30  # the lite head is ~3 MB, the paper preset's ~100 MB
MAX_JSON_DEPTH = 8


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum(metadata: dict) -> str:
    """SHA-256 of ``metadata`` without its own ``checksum`` field, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in metadata.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def metadata_of(model: HLGFA, extra: dict | None = None) -> dict:
    """Everything ``model.json`` holds except the tensor hash and the checksum."""
    if model.calibration is None:
        raise HLGFAError("the model is not calibrated; fit it (or call training.calibrate_model) before saving.")
    return {
        "format_version": FORMAT_VERSION,
        "package": "hlgfa_lite",
        "package_version": __version__,
        "backbone": model.cfg.backbone,
        "hr_size": model.cfg.hr_size,
        "lr_size": model.cfg.lr_size,
        "backbone_fingerprint": model.backbone.fingerprint,
        "backbone_weights_source": model.backbone.weights_source,
        "trainable_parameters": model.trainable_parameters(),
        "calibration": model.calibration.to_dict(),
        "config": model.cfg.to_dict(),
        **(extra or {}),
    }


def write_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Both files into an empty ``folder``; model.json last, with the tensor hash and checksum."""
    save_file(tensors, str(folder / TENSORS))
    metadata = {**metadata, "tensors_sha256": _sha256(folder / TENSORS)}
    metadata["checksum"] = checksum(metadata)
    (folder / METADATA).write_text(json.dumps(metadata, indent=2, allow_nan=False))
    for name in (TENSORS, METADATA):
        os.chmod(folder / name, 0o644)


PACKED = ".precision_upper"  # a precision matrix stored as its upper triangle (compact checkpoints)


def compact_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoints shipped inside the package: every float tensor in half precision, and each (symmetric)
    precision matrix (P, C, C) as its upper triangle (P, C(C+1)/2). The lite preset's per-position Gaussians take
    28 MB in float32 and 7 MB so; on tire its maps move by less than 1e-3 and its metrics not at all (measured
    with scripts/ship_checkpoint.py, which evaluates the compact copy it ships)."""
    compact = {}
    for name, tensor in tensors.items():
        if name.endswith(".precision") and tensor.dim() == 3:
            rows, cols = torch.triu_indices(tensor.shape[-1], tensor.shape[-1])
            name, tensor = name[:-len(".precision")] + PACKED, tensor[:, rows, cols]
        compact[name] = tensor.half().contiguous() if tensor.is_floating_point() else tensor
    return compact


def expand_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``compact_state`` for the packed matrices (loading casts half precision back to float32)."""
    expanded = {}
    for name, tensor in tensors.items():
        if name.endswith(PACKED) and tensor.dim() == 2:
            channels = int((math.isqrt(8 * tensor.shape[1] + 1) - 1) // 2)
            if channels * (channels + 1) // 2 != tensor.shape[1]:
                raise HLGFAError(f"tensor {name} is not the upper triangle of a square matrix; re-fit the model.")
            rows, cols = torch.triu_indices(channels, channels)
            full = torch.zeros(tensor.shape[0], channels, channels, dtype=torch.float32)
            full[:, rows, cols] = tensor.float()
            full[:, cols, rows] = tensor.float()
            name, tensor = name[:-len(PACKED)] + ".precision", full
        expanded[name] = tensor
    return expanded


def save(model: HLGFA, run_dir: str | Path, overwrite: bool = False, extra: dict | None = None,
         compact: bool = False) -> Path:
    """Write the checkpoint into ``run_dir``; refuses to replace one unless ``overwrite``. Atomic (files.py): a
    reader sees the old or the new checkpoint, the folder's other files are kept, and a full or read-only disk
    is one line with the previous checkpoint as it was."""
    run_dir = Path(run_dir)
    metadata = metadata_of(model, extra)
    real_target(run_dir, folder=True)  # a file or a broken link where the folder goes: one line, nothing written
    if (run_dir / METADATA).exists() and not overwrite:
        raise HLGFAError(f"{run_dir} already holds a checkpoint; choose another folder or pass overwrite=True "
                         "(--overwrite on the command line).")
    tensors = model.fitted_state()
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise HLGFAError("the head holds NaN or infinite weights (training diverged); nothing was saved.")
    if compact:
        tensors = compact_state(tensors)
        metadata["tensor_storage"] = "compact"
    def build(folder: Path) -> None:
        write_checkpoint(folder, tensors, metadata)

    if (run_dir / METADATA).exists():  # --overwrite: the old pair and the new one swap as one folder, never mixed
        return replace_folder(run_dir, build, what="checkpoint")
    # a new checkpoint, maybe into a folder of the user's (a log a `tee` still writes): only its two files are
    # written, the model.json last, and nothing else in the folder is moved or copied
    return replace_entries(run_dir, build, [TENSORS, METADATA], what="checkpoint")


# --- loading: every field checked ---------------------------------------------------------------------------
def _depth(value, limit: int = MAX_JSON_DEPTH, level: int = 0) -> int:
    if level > limit:
        return level
    if isinstance(value, dict):
        return max([_depth(v, limit, level + 1) for v in value.values()], default=level)
    if isinstance(value, list):
        return max([_depth(v, limit, level + 1) for v in value], default=level)
    return level


def _field(metadata: dict, name: str, kind: type, where: Path):
    value = metadata.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HLGFAError(f"{where}: field {name} must be {kind.__name__}, got {type(value).__name__}; "
                         "the checkpoint is damaged, re-fit the model.")
    return value


def read_metadata(run_dir: str | Path) -> dict:
    """``model.json`` parsed and checked (sizes, depth, types, format, checksum); raises HLGFAError."""
    run_dir = as_path(run_dir, "a checkpoint folder's")
    meta_path, tensor_path = run_dir / METADATA, run_dir / TENSORS
    if not run_dir.exists():
        leftovers = sorted(run_dir.parent.glob(f".{run_dir.name}.old-*")) if run_dir.parent.is_dir() else []
        hint = f"; an interrupted save left the previous checkpoint in {leftovers[0]}: rename it to {run_dir}" \
            if leftovers else ""
        raise HLGFAError(f"{run_dir} does not exist{hint or '; give the folder `hlgfa-lite fit --out` wrote'}.")
    missing = [path.name for path in (meta_path, tensor_path) if not path.is_file()]
    if len(missing) == 2:
        raise HLGFAError(f"{run_dir} is not a checkpoint (needs {METADATA} and {TENSORS}); run `hlgfa-lite fit` first.")
    if missing:
        raise HLGFAError(f"{run_dir} is not a whole checkpoint: {missing[0]} is missing; restore it, or fit again.")
    if meta_path.stat().st_size > MAX_METADATA_BYTES:
        raise HLGFAError(f"{meta_path} is {meta_path.stat().st_size} bytes, far more than a checkpoint's; "
                         "the checkpoint is damaged.")
    if tensor_path.stat().st_size > MAX_TENSOR_BYTES:
        raise HLGFAError(f"{tensor_path} is larger than {MAX_TENSOR_BYTES >> 20} MiB; not an hlgfa_lite head.")
    try:
        metadata = json.loads(meta_path.read_bytes().decode("utf-8"),
                              parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not allowed")))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise HLGFAError(f"{meta_path} is not valid JSON ({str(exc)[:80]}); the checkpoint is damaged.") from None
    if not isinstance(metadata, dict):
        raise HLGFAError(f"{meta_path} must hold a JSON object; the checkpoint is damaged.")
    if _depth(metadata) > MAX_JSON_DEPTH:
        raise HLGFAError(f"{meta_path} is nested deeper than {MAX_JSON_DEPTH} levels; the checkpoint is damaged.")
    if metadata.get("package") != "hlgfa_lite":
        raise HLGFAError(f"{run_dir} is not an hlgfa_lite checkpoint (field package).")
    found = metadata.get("format_version")
    if found != FORMAT_VERSION:
        newer = isinstance(found, int) and not isinstance(found, bool) and found > FORMAT_VERSION
        advice = ("it was written by a newer hlgfa_lite: upgrade (pip install -U hlgfa-lite)" if newer else
                  "re-save it with the repository's scripts/resave_checkpoint.py, or re-fit")
        raise HLGFAError(f"{run_dir} has checkpoint format {found!r}, this hlgfa_lite reads {FORMAT_VERSION}; "
                         f"{advice}.")
    for name, kind in (("backbone", str), ("hr_size", int), ("lr_size", int), ("backbone_fingerprint", str),
                       ("tensors_sha256", str), ("checksum", str), ("calibration", dict), ("config", dict)):
        _field(metadata, name, kind, meta_path)
    if checksum(metadata) != metadata["checksum"]:
        raise HLGFAError(f"{meta_path} does not match its checksum: it was edited or damaged; re-fit the model "
                         "or restore the file.")
    return metadata


def _check_config(values: dict, where: Path) -> HLGFAConfig:
    """Each config field must be there (but those added since this format, ``config.BEFORE_THE_FIELD``) and have its
    default's type (or be None where the field allows it); then the config's own range checks."""
    import dataclasses

    defaults = HLGFAConfig()
    fields = dataclasses.fields(HLGFAConfig)
    missing = [f.name for f in fields if f.name not in values and f.name not in BEFORE_THE_FIELD]
    if missing:  # every checkpoint of this format has it: refused, not given today's default in silence
        raise HLGFAError(f"{where}: config field {missing[0]} is missing; the checkpoint is damaged, re-fit the model.")
    for f in fields:
        if f.name in values and not HLGFAConfig.type_fits(f.name, values[f.name]):
            raise HLGFAError(f"{where}: config field {f.name} must be like {getattr(defaults, f.name)!r}, got "
                             f"{values[f.name]!r}; the checkpoint is damaged, re-fit the model.")
    try:
        return HLGFAConfig.from_dict(values)
    except HLGFAError as exc:
        raise HLGFAError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise HLGFAError(f"{where}: config is invalid ({exc}); re-fit the model.") from None


def verified_metadata(run_dir: str | Path) -> dict:
    """``read_metadata``, and the tensor file is the one it names (its SHA-256): both files whole and of one run."""
    run_dir = Path(run_dir)
    metadata = read_metadata(run_dir)
    if _sha256(run_dir / TENSORS) != metadata["tensors_sha256"]:
        raise HLGFAError(f"{run_dir / TENSORS} does not match the hash in {METADATA}: the checkpoint is damaged "
                         "or its files come from different runs; re-fit or restore both files together.")
    return metadata


def load(run_dir: str | Path, device: str | torch.device = "cpu", weights: str | None = None,
         pretrained: bool = True, backbone_runtime: str | None = None) -> HLGFA:
    """A ready-to-score model from ``run_dir``; every stored fact is checked against what is rebuilt.
    ``backbone_runtime`` ("torch" or "onnxruntime") overrides the stored one: it changes speed, not results."""
    run_dir, device = as_path(run_dir, "a checkpoint folder's"), resolve_device(str(device))  # before any work
    metadata = verified_metadata(run_dir)
    meta_path = run_dir / METADATA
    cfg = _check_config(metadata["config"], meta_path)
    if backbone_runtime is not None:
        cfg = cfg.replace(backbone_runtime=backbone_runtime)
    for key in ("backbone", "hr_size", "lr_size"):
        if metadata[key] != getattr(cfg, key):
            raise HLGFAError(f"{meta_path}: {key} is {metadata[key]!r} but the config says "
                             f"{getattr(cfg, key)!r}; the file was edited by hand, re-fit the model.")
    try:
        calibration = Calibration.from_dict(metadata["calibration"])
    except TypeError as exc:
        raise HLGFAError(f"{meta_path}: calibration is invalid ({exc}).") from None
    except HLGFAError as exc:
        raise HLGFAError(f"{meta_path}: {exc}") from None
    try:
        tensors = load_file(str(run_dir / TENSORS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise HLGFAError(f"{run_dir / TENSORS} cannot be read ({str(exc)[:80]}); the checkpoint is damaged.") from None
    try:
        model = HLGFA(cfg, pretrained=pretrained, weights=weights)
    except IndexError:  # timm's answer to a level the backbone does not have
        raise HLGFAError(f"{meta_path}: config field out_indices {list(cfg.out_indices)} names a level "
                         f"{cfg.backbone} does not have; re-fit the model.") from None
    tensors = expand_state(upgrade_tensor_names(tensors))
    shape = tuple(model.level_mean.shape)
    for name in ("level_mean", "level_scale"):
        t = tensors.get(name)
        if t is None or tuple(t.shape) != shape or not t.is_floating_point() or not torch.isfinite(t).all():
            raise HLGFAError(f"{run_dir / TENSORS}: tensor {name} must be {shape[0]} finite numbers; re-fit the model.")
    if not (tensors["level_scale"] > 0).all():
        raise HLGFAError(f"{run_dir / TENSORS}: tensor level_scale must be > 0 (a zero scale makes every score "
                         "infinite); re-fit the model.")
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise HLGFAError(f"{run_dir / TENSORS}: tensor {bad[0]} holds NaN or infinite values; re-fit the model.")
    # the inverse of a covariance plus a ridge: every variance it implies is positive, so is its diagonal
    flat = [k for k, v in tensors.items() if k.endswith(".precision") and v.dim() == 3
            and not (v.diagonal(dim1=1, dim2=2) > 0).all()]
    if flat:
        raise HLGFAError(f"{run_dir / TENSORS}: tensor {flat[0]} must have a positive diagonal (it is the inverse of "
                         "a covariance); re-fit the model.")
    try:
        model.load_fitted_state(tensors)
    except RuntimeError:
        raise HLGFAError(f"{run_dir / TENSORS} does not fit the model its config describes; re-fit the model.") \
            from None
    model.calibration = calibration
    if model.backbone.fingerprint != metadata["backbone_fingerprint"]:
        warnings.warn(
            f"backbone weights differ from those the head was fit on ({model.backbone.weights_source} vs "
            f"{metadata.get('backbone_weights_source')}): scores may shift; re-fit for exact results.", stacklevel=2)
    return model.to(device).eval()
