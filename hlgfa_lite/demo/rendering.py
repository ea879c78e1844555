"""What a visitor sees of a scored image: the overlay on the model's fixed colour scale, the defect mask and the
three-state verdict (all from the model's ``Calibration``, as the CLI draws them), the colour-scale legend, and the
"look inside" figures of every intermediate."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..calibration import ANOMALOUS, BORDERLINE, NORMAL, Calibration
from ..model import HLGFA
from ..tools.visualize import colorize, outline, overlay, to_uint8_image
from .uploads import LoadedImage

DISPLAY_MIN_SIDE = 256  # tiny images are enlarged (nearest neighbour) for display only


@dataclass
class Inspected:
    """One scored image, kept in the visitor's session so the sensitivity slider redraws without re-scoring."""

    image: np.ndarray  # (H, W, 3) uint8, as the model saw it (after any downscaling)
    anomaly_map: np.ndarray  # (H, W) float32 on the model's calibrated scale
    score: float
    notes: list[str] = field(default_factory=list)
    painted: np.ndarray | None = None  # (H, W) bool: strokes drawn in the "draw a defect" tab


def inspect_image(model: HLGFA, loaded: LoadedImage, painted: np.ndarray | None = None) -> Inspected:
    [(anomaly_map, score)] = model.predict([loaded.tensor])
    return Inspected(to_uint8_image(loaded.tensor), anomaly_map.numpy().astype(np.float32), score, list(loaded.notes),
                     painted)


def pixel_threshold(calibration: Calibration, sensitivity: float = 1.0) -> float:
    """The per-pixel defect threshold at a sensitivity: ``Calibration.pixel`` (the library's one rule, so the CLI
    and the demo draw the same masks)."""
    return calibration.pixel(sensitivity)


def _enlarge_for_display(picture: np.ndarray) -> np.ndarray:
    height, width = picture.shape[:2]
    if max(height, width) >= DISPLAY_MIN_SIDE:
        return picture
    factor = int(np.ceil(DISPLAY_MIN_SIDE / max(height, width)))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


@dataclass
class Rendered:
    overlay: np.ndarray  # (H, W, 3) uint8: the image with the coloured map and the mask's outline
    mask: np.ndarray  # (H, W) uint8: white (255) where the map exceeds the pixel threshold; one channel, a 3x smaller PNG
    score: float
    state: str  # the verdict: "normal", "borderline" or "anomalous" (``Calibration.verdict``)
    defect_fraction: float  # share of the image's pixels in the mask
    verdict: str  # Markdown for the visitor

    @property
    def anomalous(self) -> bool:
        return self.state == ANOMALOUS


VERDICT_HEADINGS = {NORMAL: "### ✔ Normal", BORDERLINE: "### ◐ Borderline: check this part by eye",
                    ANOMALOUS: "### ⚠ Anomalous"}


def render(model: HLGFA, result: Inspected, sensitivity: float = 1.0, model_name: str = "") -> Rendered:
    """Pictures and verdict of one scored image at a sensitivity; cheap, so the slider can call it freely.

    The verdict has three states (``Calibration.verdict``): normal up to the borderline threshold, borderline up
    to the image threshold (within the calibration's uncertainty), anomalous above it."""
    cal = model.calibrated
    image = torch.from_numpy(result.image).permute(2, 0, 1).float() / 255  # (3, H, W)
    mask = cal.mask(result.anomaly_map, sensitivity)  # (H, W) bool
    picture = outline(overlay(image, result.anomaly_map, cal.map_vmin, cal.map_vmax), mask)
    if result.painted is not None:
        picture = outline(picture, result.painted, colour=(0, 255, 0))
    state = cal.verdict(result.score, sensitivity)
    threshold, borderline = cal.threshold(sensitivity), cal.borderline(sensitivity)
    fraction = float(mask.mean())
    where = {NORMAL: f"≤ borderline threshold **{borderline:.2f}**",
             BORDERLINE: f"between the borderline threshold **{borderline:.2f}** and the anomaly threshold "
                         f"**{threshold:.2f}**",
             ANOMALOUS: f"> anomaly threshold **{threshold:.2f}**"}[state]
    lines = [VERDICT_HEADINGS[state],
             f"Image score **{result.score:.2f}** {where} (sensitivity {sensitivity:g}). Good "
             f"{model_name or 'parts'} scored {cal.good_score_center:.2f} typically when the model was calibrated.",
             f"Pixels above the defect threshold: **{100 * fraction:.1f} %** of the image."]
    if result.notes:
        lines.append("ℹ " + "; ".join(result.notes) + ".")
    mask_picture = mask.astype(np.uint8) * 255
    return Rendered(_enlarge_for_display(picture), _enlarge_for_display(mask_picture), result.score, state,
                    fraction, "\n\n".join(lines))


def colour_scale_legend(calibration: Calibration, stops: int = 11) -> str:
    """HTML of the fixed colour scale: a gradient bar from map_vmin (left) to map_vmax (right), with the pixel
    threshold (the brightest good pixel) in the middle. Three short labels, so they stay on one line on a phone."""
    ramp = np.linspace(calibration.map_vmin, calibration.map_vmax, stops, dtype=np.float32)
    colours = colorize(ramp[None, :], calibration.map_vmin, calibration.map_vmax)[0]  # (stops, 3)
    gradient = ", ".join(f"rgb({r},{g},{b})" for r, g, b in colours)
    return (f'<div class="legend"><div class="legend-bar" style="background: linear-gradient(to right, {gradient});">'
            '</div><div class="legend-labels"><span>typical good</span>'
            '<span>defect threshold</span><span>2× as far</span></div></div>')


def _channel_energy(features: torch.Tensor) -> np.ndarray:
    """(C, h, w) -> (h, w): the L2 norm over channels, how much a feature map "says" at each place."""
    return features.float().norm(dim=0).cpu().numpy()


def _figure_to_array(fig) -> np.ndarray:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def look_inside(model: HLGFA, loaded: LoadedImage) -> list[tuple[np.ndarray, str]]:
    """Every intermediate of one image as a gallery of (picture (H, W, 3) uint8, caption): first the two views and
    the fused map, then one 2 x 2 panel per feature level: the structure and detail priors (channel energy), the
    gate and the misalignment 1 - cos. Each panel is square with large type, so it stays readable on a phone.

    Prior and gate panels use their own colour range (they are not anomaly scores); the misalignment panels use
    a fixed range per level from good-image statistics, so a good image looks calm there too."""
    from matplotlib.figure import Figure  # the OO API, no pyplot: safe in a threaded server

    out = model.inspect(loaded.tensor[None])
    cal = model.calibration
    strides = model.backbone.strides
    size, font = (6.4, 6.4), 12

    fig = Figure(figsize=size, dpi=80)
    axes = fig.subplots(2, 2).flat
    fused = out.anomaly_map[0].cpu().numpy()
    panels = [(to_uint8_image(out.hr_image[0]), f"high-res view {model.cfg.hr_size} px"),
              (to_uint8_image(out.lr_image[0]), f"low-res view {model.cfg.lr_size} px"),
              (colorize(fused, cal.map_vmin, cal.map_vmax), f"fused map, score {out.scores[0].item():.2f}"),
              (overlay(out.lr_image[0].cpu(), fused, cal.map_vmin, cal.map_vmax), "overlay (fixed scale)")]
    for ax, (picture, title) in zip(axes, panels):
        ax.imshow(picture)
        ax.set_title(title, fontsize=font)
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    gallery = [(_figure_to_array(fig), "The two views the frozen backbone sees, and the fused anomaly map")]

    for level in range(len(out.level_maps)):
        priors, output = out.priors[level], out.outputs[level]
        channels, grid_h, grid_w = priors.target.shape[1:]
        vmin, vmax = model.raw_map_range(level)
        panels = [
            (_channel_energy(priors.structure[0]), "viridis", None, None, "structure prior S"),
            (_channel_energy(priors.detail[0]), "magma", None, None, "detail prior D = F_H - S"),
            (output.gate[0].mean(0).cpu().numpy() if output.gate is not None else np.zeros((grid_h, grid_w)),
             "cividis", 0.0, 1.0, "gate g (0 closed, 1 open)"),
            (out.level_maps[level][0].cpu().numpy(), "jet", max(vmin, 0.0), vmax,
             "misalignment 1 - cos"),
        ]
        fig = Figure(figsize=size, dpi=80)
        for ax, (values, cmap, vmin, vmax, title) in zip(fig.subplots(2, 2).flat, panels):
            shown = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            ax.set_title(title, fontsize=font)
            ax.set_xticks([])
            ax.set_yticks([])
        gallery.append((_figure_to_array(fig), f"Level {level + 1} (stride {strides[level]}, {channels} channels, "
                                                f"{grid_h}×{grid_w} cells): priors (own range), gate, misalignment "
                                                "(fixed range: good mean −1σ … +6σ)"))
    return gallery
