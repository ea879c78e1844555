"""Pictures of anomaly maps on a fixed, calibrated colour scale (never per-image min-max).

The scale [map_vmin, map_vmax] comes from held-out good images (``scoring.calibrate``): a good image stays
dark blue, and only what never occurred on a good part turns red. The CLI, the notebooks and the demo all
draw with these functions. They accept tensors on any device (a model on a GPU returns GPU tensors): everything
is brought to the CPU here, in ``as_numpy``, before NumPy or matplotlib sees it.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # without a display, matplotlib picks its file backend (Agg) by itself
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .files import write_bytes


def as_numpy(values: torch.Tensor | np.ndarray, dtype=np.float32) -> np.ndarray:
    """A tensor on any device (or an array) -> a NumPy array on the CPU, detached from autograd."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        values = values.float() if values.dtype in (torch.float16, torch.bfloat16) else values
        values = values.numpy()
    return np.asarray(values, dtype=dtype)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def colorize(anomaly_map: torch.Tensor | np.ndarray, vmin: float, vmax: float, cmap: str = "jet") -> np.ndarray:
    """(H, W) map -> (H, W, 3) uint8 on the fixed scale [vmin, vmax]."""
    values = as_numpy(anomaly_map)
    scaled = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return (matplotlib.colormaps[cmap](scaled)[..., :3] * 255).round().astype(np.uint8)


def overlay(image: torch.Tensor, anomaly_map: torch.Tensor | np.ndarray, vmin: float, vmax: float,
            alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured map over the image; both at the image's own (H, W)."""
    base = to_uint8_image(image).astype(np.float32)
    heat = colorize(anomaly_map, vmin, vmax).astype(np.float32)
    return (base * (1 - alpha) + heat * alpha).round().astype(np.uint8)


def outline(image_rgb: np.ndarray, mask: np.ndarray | torch.Tensor,
            colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Draw the border of a boolean (H, W) mask onto an (H, W, 3) uint8 picture: the mask's pixels with a
    4-neighbour outside it. Beyond the picture's edge counts as inside (border_value=1), so a defect that runs off
    the picture is not closed by a line along the edge."""
    mask = as_numpy(mask, dtype=bool)
    inner = ndimage.binary_erosion(mask, border_value=1)
    drawn = image_rgb.copy()
    drawn[mask & ~inner] = colour
    return drawn


# zlib's quickest level: a 900 px overlay in 40 ms against 186 ms at the default 6, for 24 % more bytes; at the default
# the overlays were about half of `predict`'s time (benchmarks/probes/overlay_png.py; RESULTS.md, "Speed")
PNG_LEVEL = 1


def save_png(picture: np.ndarray, path: str | Path) -> None:
    """(H, W, 3) uint8 -> a PNG at ``path``, written whole or not at all (``files.write_bytes``)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    write_bytes(path, buffer.getvalue(), what="overlay")


def panel_figure(rows: list[dict], vmin: float, vmax: float, path: str | Path | None = None):
    """A figure with one row per image: image, overlay (with the true mask's outline if given), score.

    rows: dicts with ``image`` (3, H, W), ``map`` (H, W), ``title`` and optionally ``mask`` (H, W) bool.
    """
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3 * len(rows)), squeeze=False)
    for (ax_image, ax_map), row in zip(axes, rows):
        ax_image.imshow(to_uint8_image(row["image"]))
        ax_image.set_title(row["title"], fontsize=9)
        picture = overlay(row["image"], row["map"], vmin, vmax)
        if row.get("mask") is not None:
            picture = outline(picture, as_numpy(row["mask"], dtype=bool))
        ax_map.imshow(picture)
        ax_map.set_title("anomaly map (fixed scale)" + (", true defect outlined" if row.get("mask") is not None else ""),
                         fontsize=9)
        for ax in (ax_image, ax_map):
            ax.axis("off")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
