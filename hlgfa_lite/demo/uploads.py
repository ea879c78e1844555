"""What a visitor may upload, and how it becomes a tensor: the byte limits (per file, per session) and the
library's decoder (``hlgfa_lite.data.decode``, with its one pixel limit) in words for a visitor, so a corrupt file,
16-bit, CMYK, 1x1 or 10000x10000 image is a result or one ``HLGFAError`` sentence, never a traceback."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import data
from ..data import pil_to_tensor
from ..errors import HLGFAError

MAX_UPLOAD = "25mb"  # per file, enforced by Gradio before our code runs (launch(max_file_size=...))
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # the same bound, re-checked here for callers that bypass Gradio
SESSION_UPLOAD_BYTES = 200 * 1024 * 1024  # what one visitor's session may upload in all (fits and inspections)
# longest side the model sees in the demo (the library's own is data.MAX_SIDE): enough for its 512 px view, and
# what keeps a request's memory and time small on a 2-core CPU; bigger uploads are downscaled while decoding
DEMO_MAX_SIDE = 1024
SMALL_SIDE = 32  # below this the features have almost nothing to look at: answer, but say so

MODE_NAMES = {"L": "grayscale", "LA": "grayscale with transparency", "1": "black-and-white", "P": "palette",
              "RGBA": "RGBA (transparency ignored)", "CMYK": "CMYK", "I;16": "16-bit grayscale",
              "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float",
              "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV", "PA": "palette with transparency"}


class UploadQuota:
    """Bytes uploaded per visitor session; a session over ``limit`` is refused until it ends."""

    def __init__(self, limit: int = SESSION_UPLOAD_BYTES):
        self.limit, self._used, self._lock = limit, {}, threading.Lock()

    def charge(self, session: str | None, paths) -> None:
        size = sum(Path(p).stat().st_size for p in paths if p and Path(p).is_file())
        with self._lock:
            used = self._used.get(session, 0) + size
            if used > self.limit:
                raise HLGFAError(f"This session has uploaded {used / 2**20:.0f} MB, over its {self.limit // 2**20} MB "
                                 "allowance; reload the page to start a new session.")
            self._used[session] = used

    def forget(self, session: str | None) -> None:
        with self._lock:
            self._used.pop(session, None)


@dataclass
class LoadedImage:
    tensor: torch.Tensor  # (3, H, W) float32 in [0, 1], longest side <= DEMO_MAX_SIDE
    notes: list[str] = field(default_factory=list)  # what was done to it, for the visitor


def _too_many_pixels(exc: data.TooManyPixels) -> HLGFAError:
    limit = f"{data.MAX_PIXELS / 1e6:.0f} million"
    if exc.width is None:  # PIL's own bomb limit refused it while reading the header
        return HLGFAError(f"The image has more pixels than this demo accepts ({limit}); please downscale it first.")
    return HLGFAError(f"The image is {exc.width} x {exc.height} pixels; the limit is {limit} pixels. "
                      "Please downscale it first.")


def check_pixels(width: int, height: int) -> None:
    """The library's pixel rule in the demo's words, for every way an image enters (Inspect uploads, the editor)."""
    try:
        data.check_pixels(width, height)
    except data.TooManyPixels as exc:
        raise _too_many_pixels(exc) from None
    if width < 1 or height < 1:
        raise HLGFAError("The image has no pixels.")


def read_upload(path: str | Path | None, max_side: int = DEMO_MAX_SIDE) -> LoadedImage:
    """An uploaded file -> (3, H, W) in [0, 1] plus notes; any problem is one ``HLGFAError`` sentence."""
    if path is None or str(path) == "":
        raise HLGFAError("No image yet: upload one or click an example.")
    path = Path(path)
    if not path.is_file():
        raise HLGFAError("The upload did not arrive; please try again.")
    size = path.stat().st_size
    if size == 0:
        raise HLGFAError("The file is empty (0 bytes); choose another image.")
    if size > MAX_UPLOAD_BYTES:
        raise HLGFAError(f"The file is {size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        decoded = data.decode(path, max_side)
    except data.TooManyPixels as exc:
        raise _too_many_pixels(exc) from None
    except data.UnreadableImage as exc:
        if exc.unidentified:
            raise HLGFAError("This file is not an image the demo can read (PNG, JPEG, BMP, TIFF, WebP, ...).") from None
        raise HLGFAError(f"The image file is damaged or truncated ({exc.cause}); choose another file.") from None
    (width, height), image = decoded.size, decoded.image
    notes = []
    if decoded.multi_frame:
        notes.append("only the first frame of this multi-frame file is used")
    if decoded.exif_ignored:
        notes.append("its EXIF orientation could not be read and was ignored")
    if decoded.mode in MODE_NAMES:
        notes.append(f"{MODE_NAMES[decoded.mode]} image converted to RGB")
    if max(width, height) > max_side:
        notes.append(f"downscaled from {width} x {height} to {image.size[0]} x {image.size[1]} px")
    if min(width, height) < SMALL_SIDE:
        notes.append(f"very small image ({width} x {height} px): it is enlarged to the model's 512 px view, "
                     "so the result says little")
    return LoadedImage(pil_to_tensor(image), notes)


def read_editor_value(value: dict | np.ndarray | None) -> tuple[LoadedImage, np.ndarray | None]:
    """A ``gr.ImageEditor`` value (numpy layers) -> the composite image and the painted region (H, W) bool."""
    if value is None:
        raise HLGFAError("No image in the editor: pick a good image to paint on.")
    composite = value.get("composite") if isinstance(value, dict) else value
    if composite is None or np.asarray(composite).size == 0:
        raise HLGFAError("No image in the editor: pick a good image to paint on.")
    pixels = np.asarray(composite)
    if pixels.ndim not in (2, 3):
        raise HLGFAError("The editor sent something that is not an image; pick a good image to paint on.")
    check_pixels(pixels.shape[1], pixels.shape[0])  # the same rule as an Inspect upload
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    rgb = Image.fromarray(pixels[..., :3].astype(np.uint8))
    notes = []
    if max(rgb.size) > DEMO_MAX_SIDE:
        notes.append(f"downscaled from {rgb.size[0]} x {rgb.size[1]} px")
        rgb = data.fit_within(rgb, DEMO_MAX_SIDE)
    painted = None
    layers = [np.asarray(layer) for layer in (value.get("layers") or [])] if isinstance(value, dict) else []
    for layer in layers:
        if layer.ndim == 3 and layer.shape[2] == 4:
            strokes = layer[..., 3] > 0
            if strokes.any():
                painted = strokes if painted is None else painted | strokes
    if painted is not None and painted.shape != (rgb.size[1], rgb.size[0]):
        painted = np.asarray(Image.fromarray(painted.astype(np.uint8) * 255).resize(rgb.size, Image.NEAREST)) > 0
    return LoadedImage(pil_to_tensor(rgb), notes), painted
