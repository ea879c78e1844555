"""Synthetic defects on held-out good images: how a fit chooses its fusion rule without a single labelled defect.

**Beyond the paper.** Which map scale fuses best depends on the data (``scoring.py``): "std" localises an aligned
object's defects best (bottle), "max" keeps a texture's heavy-tailed fine maps from raising false alarms (magnetic
tile). A user fitting good images has no defects to decide with, so ``map_scale="auto"`` makes some: each held-out
good image x gets three, each with its mask M,

    cut-paste  x' = x outside R, another held-out image's pixels inside a random rectangle R   (Li et al., 2021)
    blob       x' = clamp(x + s * b, 0, 1)     b: a soft random ellipse in [0, 1], s = +-(0.15 .. 0.35); M = b > 0.2
    scar       x' = x * (1 - e) + c * e        e: a thin random ellipse in {0, 1}, c: one random colour;  M = e

and the fit keeps the rule whose fused maps give the higher pixel AUROC on them (the clean held-out images' pixels
count as normal too). Measured on real defects it picks as they would: "std" for each of three bottle checkpoints,
"max" for magnetic tile (``benchmarks/probes/synthetic_choice.py``, RESULTS.md). The defects are crude on purpose: the
choice only needs them to rank the rules, not to look real.
"""

from __future__ import annotations

import math

import torch


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def ellipse(size: int, generator: torch.Generator, soft: bool) -> torch.Tensor:
    """(size, size): a random rotated ellipse, 1 - (its normalised radius) inside when ``soft``, else 1 inside."""
    cy, cx = _uniform(generator, 0.2, 0.8) * size, _uniform(generator, 0.2, 0.8) * size
    a, b = _uniform(generator, 0.03, 0.12) * size, _uniform(generator, 0.01, 0.08) * size
    angle = _uniform(generator, 0.0, math.pi)
    y, x = torch.meshgrid(torch.arange(size) - cy, torch.arange(size) - cx, indexing="ij")
    u, v = x * math.cos(angle) + y * math.sin(angle), -x * math.sin(angle) + y * math.cos(angle)
    radius = torch.sqrt((u / a) ** 2 + (v / b) ** 2)  # 1 on the edge
    return (1 - radius).clamp_min(0) if soft else (radius <= 1).float()


def synthetic_defects(images: torch.Tensor, generator: torch.Generator,
                      as_uint8: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, S, S) good images in [0, 1] -> (3N, 3, S, S) defective images, (3N, S, S) bool masks: for each image
    a cut-paste, a blob and a scar, in that order. ``as_uint8``: each defective image stored in 8 bits as soon as it is
    made (round(255 x)), a quarter of the memory of float."""
    n, _, size, _ = images.shape
    defective, masks = [], []

    def keep(x: torch.Tensor) -> torch.Tensor:
        return (x * 255).round().to(torch.uint8) if as_uint8 else x

    for i, image in enumerate(images):
        # a rectangle of another held-out image (the mirrored image itself when it is the only one)
        donor = images[(i + 1 + torch.randint(n - 1, (), generator=generator).item()) % n] if n > 1 else image.flip(-1)
        h, w = (int(size * _uniform(generator, 0.1, 0.3)) for _ in range(2))
        sy, sx, ty, tx = (torch.randint(size - side, (), generator=generator).item() for side in (h, w, h, w))
        pasted = image.clone()
        pasted[:, ty:ty + h, tx:tx + w] = donor[:, sy:sy + h, sx:sx + w]
        defective.append(keep(pasted))
        masks.append((pasted != image).any(0))  # where the paste changed something
        blob = ellipse(size, generator, soft=True)
        shift = _uniform(generator, 0.15, 0.35) * (1 if torch.rand((), generator=generator) < 0.5 else -1)
        defective.append(keep((image + shift * blob).clamp(0, 1)))
        masks.append(blob > 0.2)
        scar = ellipse(size, generator, soft=False)
        colour = torch.rand(3, 1, 1, generator=generator)
        defective.append(keep(image * (1 - scar) + colour * scar))
        masks.append(scar > 0.5)
    return torch.stack(defective), torch.stack(masks)

