"""Which device runs the model: one rule for the CLI, the notebooks, the demo and the benchmarks.

``auto`` picks CUDA, then Apple MPS, then the CPU; naming a device that is not there is one clear error. Every
entry point takes the device from one argument (``--device`` / ``DEVICE``) and hands it to ``model.to(device)``;
``fit``, ``evaluate`` and ``predict`` then work on ``model.device`` and return CPU tensors/arrays for plotting.
``usable_cpus`` says how many CPU cores that device may really use (the demo sizes its queue with it).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPU cores this process may really use: the container's CPU quota where one is set (a Hugging Face Space
    or a Docker container can see 16+ host cores but run on 2), else the cores it is allowed to run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # cgroup v2: "max 100000" (no quota) or "200000 100000" (2 cores)
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def has_fast_bfloat16(device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that says so (Ampere and later; not a T4), or a CPU
    with AVX512-BF16 or AMX that oneDNN uses. Elsewhere bfloat16 is emulated, slower than float32."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            return False
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.4 has no emulation to exclude
            return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        try:  # oneDNN's own test of the instruction set (the CPU flags avx512_bf16 / amx_bf16)
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False
