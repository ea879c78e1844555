"""Which device runs the model: one rule for the CLI, the notebooks, the demo and the benchmarks.

``auto`` picks CUDA, then Apple MPS, then the CPU; naming a device that is not there is one clear error. Every
entry point takes the device from one argument (``--device`` / ``DEVICE``) and hands it to ``model.to(device)``;
``fit``, ``evaluate`` and ``predict`` then work on ``model.device`` and return CPU tensors/arrays for plotting.
"""

from __future__ import annotations

from .errors import HLGFAError

DEVICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str = "auto") -> str:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> a device string torch accepts, or ``HLGFAError``."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise HLGFAError(f"device {name} was asked for but no CUDA GPU is visible; use cpu or auto.")
    if kind == "mps" and not mps_available():
        raise HLGFAError(f"device {name} was asked for but Apple MPS is not available; use cpu or auto.")
    if kind not in DEVICES:
        raise HLGFAError(f"unknown device {name!r}; use one of {', '.join(DEVICES)} (or cuda:N).")
    return name
