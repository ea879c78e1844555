"""Everything the Gradio demo does, as plain functions that tests can call without a browser or a server.

The demo never re-implements the method: scoring is ``model.predict``, fitting is ``hlgfa_lite.fit``, checkpoints
are ``hlgfa_lite.save``/``load``, pictures use ``hlgfa_lite.visualize`` (a fixed colour scale calibrated on good
images, never per-image min-max). What lives here is what a public web page adds on top:

* reading whatever a visitor uploads (corrupt files, 16-bit, CMYK, 1x1, 10000x10000) without ever raising
  anything but one-line ``HLGFAError`` messages, and downscaling big images *while decoding* so memory stays small;
* the three-state verdict and the defect mask, both from the model's ``Calibration`` (as the CLI draws them);
* fitting a head on a visitor's images inside a temporary folder, zipped as a library checkpoint;
* the "look inside" figure: both views, the priors, the gates and the per-level misalignment.
"""

from __future__ import annotations

import filecmp
import io
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hlgfa_lite import HLGFA, HLGFAError, fit, load, preset, save
from hlgfa_lite.training import planned_steps
from hlgfa_lite.calibration import ANOMALOUS, BORDERLINE, NORMAL, Calibration
from hlgfa_lite.data import pil_to_tensor
from hlgfa_lite.samples import bundled_checkpoint, sample_dir
from hlgfa_lite.visualize import colorize, outline, overlay, to_uint8_image

BUNDLED_CHECKPOINT = bundled_checkpoint()

# --- limits: what one request may cost -------------------------------------------------------------------------
MAX_UPLOAD = "25mb"  # per file, enforced by Gradio before our code runs (launch(max_file_size=...))
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # the same bound, re-checked here for callers that bypass Gradio
MAX_SIDE = 1024  # longest side the model ever sees; bigger uploads are downscaled while decoding
MAX_PIXELS = 120_000_000  # refused before decoding (a 10000 x 10000 image = 1e8 pixels still passes)
SMALL_SIDE = 32  # below this the features have almost nothing to look at: answer, but say so
DISPLAY_MIN_SIDE = 256  # tiny images are enlarged (nearest neighbour) for display only
MIN_FIT_IMAGES = 2  # one to train on, one held out to calibrate the threshold (the library's rule)
FEW_FIT_IMAGES = 8  # below this the calibrated threshold rests on a single held-out image: warn
MAX_FIT_IMAGES = 40  # keeps a fit within the time promised on a 2-core CPU
# optimiser steps of an in-browser fit (timing: demo/README.md); HLGFA_DEMO_FIT_STEPS overrides it, e.g. on a GPU
FIT_STEPS = int(os.environ.get("HLGFA_DEMO_FIT_STEPS", "150"))
# seconds per image (features, 4 draws) and per step (head), from the measured 20-image, 150-step fit on a quiet
# 2-core CPU: 8 s + 67 s (benchmarks/DEMO_RESULTS.md); the page's time estimate is only as good as that machine
FIT_SECONDS_PER_IMAGE, FIT_SECONDS_PER_STEP = 8 / 20, 67 / 150
CUSTOM_MODELS_KEPT = 4  # fitted heads kept in memory across sessions (least recently used dropped)
SESSION_UPLOAD_BYTES = 200 * 1024 * 1024  # what one visitor's session may upload in all (fits and inspections)
OUTPUT_SECONDS = 900  # result pictures older than this are removed (the page fetched them long ago)
SESSION_SECONDS = 3600  # a session that neither closes its page nor calls for this long is over
# Everything the demo writes lives under one folder per server process: the demo's fit folders and result pictures,
# and Gradio's upload cache (GRADIO_TEMP_DIR points there while the demo serves). A session's files go when the
# session ends, the whole folder when the server stops (exit, SIGINT, SIGTERM, SIGHUP), and the folders of processes
# that were killed are removed at the next start.
DEMO_ROOT = Path(tempfile.gettempdir()) / "hlgfa_lite_demo"
# set by a stop signal: running fits end at their next step, so the process can exit without waiting for them
SERVER_STOPPING = threading.Event()


class FitCancelled(HLGFAError):
    """A visitor's fit was stopped (cancelled, the session ended, or the server stops) between two steps."""


# --- the demo's own files: one folder per server process ---------------------------------------------------------
def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), "" where the system does not say: with
    the pid it names one process for good, so a folder is never taken for a live one whose pid was reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return ""


def _folder_name(pid: int) -> str:
    start = _process_start(pid)
    return f"pid-{pid}-{start}" if start else f"pid-{pid}"


def process_dir() -> Path:
    """This server process's folder (created on first use); everything the demo writes goes below it."""
    folder = DEMO_ROOT / _folder_name(os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def serve_gradio_cache_from_process_dir() -> Path:
    """Make Gradio keep its uploads (and its copies of served files) in this process's folder, so that they go
    with it; call before any Gradio component is built. Gradio reads the variable when it builds a component and
    launches, and serves what the demo writes there in place, without copies."""
    folder = process_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner_gone(name: str) -> bool:
    """Whether the process that named a folder ``pid-PID[-START]`` has ended (a live process with the same pid but
    another start is a different one)."""
    pid_text, _, start = name.removeprefix("pid-").partition("-")
    try:
        pid = int(pid_text)
    except ValueError:
        return False  # not a folder of ours
    if pid == os.getpid() and name == _folder_name(pid):
        return False
    return not _alive(pid) or (bool(start) and start != _process_start(pid))


def remove_stale_folders(root: Path | None = None) -> list[Path]:
    """Remove the folders of demo processes that no longer run (a hard kill or a crash skipped their clean-up)."""
    root = root or DEMO_ROOT
    removed = []
    for folder in sorted(root.glob("pid-*")) if root.is_dir() else []:
        if _owner_gone(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_process_folder() -> None:
    """At server stop: every upload, fit folder and result picture of this process."""
    shutil.rmtree(DEMO_ROOT / _folder_name(os.getpid()), ignore_errors=True)


def write_picture(picture: np.ndarray, suffix: str, folder: str | Path | None = None) -> str:
    """Save a result picture in ``folder`` (a session's, see ``SessionFiles``; default: the process's outputs)
    under a unique name (never rewritten while another request downloads one), prune the ones older than
    ``OUTPUT_SECONDS`` there, and return its path for Gradio to serve."""
    folder = Path(folder) if folder is not None else process_dir() / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - OUTPUT_SECONDS
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    Image.fromarray(picture).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    return str(path)


@lru_cache(maxsize=1)
def _sample_images_by_name() -> dict[str, list[Path]]:
    by_name: dict[str, list[Path]] = {}
    for image in sorted(p for p in sample_dir().rglob("*") if p.is_file()):
        by_name.setdefault(image.name, []).append(image)
    return by_name


def is_copy_of_sample(path: str | Path) -> bool:
    """Whether a file holds one of the bundled sample images, name and bytes (Gradio's cached copy of an example
    that every page shows: not any one visitor's)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        return any(size == image.stat().st_size and filecmp.cmp(path, image, shallow=False)
                   for image in _sample_images_by_name().get(path.name, []))
    except OSError:
        return False


class SessionFiles:
    """What each visitor session has on the server's disk: the uploads it sent (in Gradio's cache, this process's
    folder) and a folder of its result pictures; ``release`` deletes both when the session ends.

    Uploads are content-addressed (ROOT/HASH/NAME), so two sessions that send the same bytes share a file: it goes
    with the last session that claimed it; copies of the bundled sample, which every page shows, are nobody's.
    Only files in that layout under ``root`` are ever claimed, never another server path a request names. A session
    idle for ``idle_seconds`` (an API caller that never closes a page) is released at the next claim."""

    def __init__(self, root: str | Path | None = None, idle_seconds: float = SESSION_SECONDS,
                 shared: Callable[[Path], bool] = is_copy_of_sample):
        self.root = Path(os.path.realpath(root or process_dir()))
        self.idle_seconds, self.shared = idle_seconds, shared
        self._uploads: dict[str | None, set[Path]] = {}
        self._folders: dict[str | None, Path] = {}
        self._last_used: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def is_upload(self, path: str | Path) -> bool:
        """Whether ``path`` is where Gradio puts an upload (ROOT/HASH/NAME), not a file of the demo or the server."""
        path = Path(os.path.realpath(path))
        return path.parent.parent == self.root and re.fullmatch(r"[0-9a-f]{16,}", path.parent.name) is not None

    def claim(self, session: str | None, paths) -> None:
        """Count the uploads in ``paths`` (file paths as handlers get them) as this session's."""
        self.release_idle()
        uploads = {Path(os.path.realpath(p)) for p in paths if p and self.is_upload(p) and not self.shared(Path(p))}
        with self._lock:
            self._last_used[session] = time.monotonic()
            self._uploads.setdefault(session, set()).update(uploads)

    def folder(self, session: str | None) -> Path:
        """This session's folder for result pictures (created on first use)."""
        self.release_idle()
        with self._lock:
            self._last_used[session] = time.monotonic()
            if session not in self._folders or not self._folders[session].is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                self._folders[session] = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
            return self._folders[session]

    def release(self, session: str | None) -> None:
        """Delete the session's pictures and every upload no other session still claims."""
        with self._lock:
            uploads = self._uploads.pop(session, set())
            folder = self._folders.pop(session, None)
            self._last_used.pop(session, None)
            uploads -= set().union(*self._uploads.values())
        for path in uploads:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # the hash folder, once empty
            except OSError:
                pass
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def release_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            idle = [session for session, used in self._last_used.items() if used < cutoff]
        for session in idle:
            self.release(session)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C; docker stop and systemd; a closed terminal


def install_stop_handlers(stop: Callable[[], None]) -> list[int]:
    """On SIGINT, SIGTERM or SIGHUP, run ``stop`` (close the server, delete every visitor file), then do what the
    signal did before: call the previous Python handler (Ctrl-C's KeyboardInterrupt, which Gradio answers by
    returning from ``launch``), or exit with status 0 where the signal would have killed the process without any
    clean-up. A signal that was ignored stays ignored, and one handled outside Python is left alone. Handlers can
    only be set from the main thread: elsewhere none is (the atexit hook still covers a normal exit). Returns the
    signals handled."""
    if threading.current_thread() is not threading.main_thread():
        return []
    handled = []
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        previous = signal.getsignal(signum) if signum is not None else None
        if previous is None or previous == signal.SIG_IGN:
            continue
        signal.signal(signum, partial(_on_stop_signal, stop=stop, previous=previous))
        handled.append(signum)
    return handled


def _on_stop_signal(signum, frame, stop: Callable[[], None], previous) -> None:
    try:
        stop()
    finally:
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: the process would have ended here, only without cleaning up
            raise SystemExit(0)


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


def check_pixels(width: int, height: int) -> None:
    """The one pixel-count rule for every way an image enters the demo (Inspect uploads, the Draw editor)."""
    if width * height > MAX_PIXELS:
        raise HLGFAError(f"The image is {width} x {height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} "
                         "million pixels. Please downscale it first.")
    if width < 1 or height < 1:
        raise HLGFAError("The image has no pixels.")


# --- reading uploads -------------------------------------------------------------------------------------------
@dataclass
class LoadedImage:
    tensor: torch.Tensor  # (3, H, W) float32 in [0, 1], longest side <= MAX_SIDE
    notes: list[str] = field(default_factory=list)  # what was done to it, for the visitor


MODE_NAMES = {"L": "grayscale", "LA": "grayscale with transparency", "1": "black-and-white", "P": "palette",
              "RGBA": "RGBA (transparency ignored)", "CMYK": "CMYK", "I;16": "16-bit grayscale",
              "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float",
              "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV", "PA": "palette with transparency"}


def _fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longest side is <= max_side, keeping the aspect ratio (and at least 1 px a side)."""
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.mode in {"1", "P", "PA"}:  # palette indices cannot be interpolated
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    return image.resize(size, Image.BILINEAR, reducing_gap=2.0)


def read_upload(path: str | Path | None, max_side: int = MAX_SIDE) -> LoadedImage:
    """An uploaded file -> (3, H, W) in [0, 1] plus notes; any problem is one ``HLGFAError`` sentence.

    The header is read first (``Image.open`` is lazy), so an image with too many pixels is refused before a byte
    of it is decoded; JPEGs are decoded at a reduced scale (``draft``) when they are much larger than needed.
    """
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
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # our own MAX_PIXELS bound replaces PIL's bomb *warning*; PIL's *error* (> 2x its limit) is caught below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            check_pixels(width, height)
            if getattr(image, "n_frames", 1) > 1:
                notes.append("only the first frame of this multi-frame file is used")
            mode = image.mode
            if image.format == "JPEG" and max(width, height) > 2 * max_side:
                image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale: far less memory
            image.load()
    except HLGFAError:
        raise
    except Image.DecompressionBombError:
        raise HLGFAError(f"The image has more pixels than this demo accepts ({MAX_PIXELS / 1e6:.0f} million); "
                         "please downscale it first.") from None
    except UnidentifiedImageError:
        raise HLGFAError("This file is not an image the demo can read (PNG, JPEG, BMP, TIFF, WebP, ...).") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise HLGFAError(f"The image file is damaged or truncated ({exc.__class__.__name__}); "
                         "choose another file.") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the visitor the image
        notes.append("its EXIF orientation could not be read and was ignored")
    if mode in MODE_NAMES:
        notes.append(f"{MODE_NAMES[mode]} image converted to RGB")
    if max(image.size) > max_side:
        resized = _fit_within(image, max_side)
        notes.append(f"downscaled from {width} x {height} to {resized.size[0]} x {resized.size[1]} px")
        image = resized
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
    if max(rgb.size) > MAX_SIDE:
        notes.append(f"downscaled from {rgb.size[0]} x {rgb.size[1]} px")
        rgb = _fit_within(rgb, MAX_SIDE)
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


# --- models ----------------------------------------------------------------------------------------------------
def _tensors_hash(run_dir: Path) -> str | None:
    """The checkpoint's recorded hash of its head tensors (None when it records none)."""
    try:
        return json.loads((Path(run_dir) / "model.json").read_text()).get("tensors_sha256")
    except (OSError, ValueError):
        return None


class ModelStore:
    """The served model, loaded once, plus the heads visitors fit, kept least-recently-used.

    Inference is read-only (eval mode, no grad), so one model object serves concurrent requests safely."""

    def __init__(self, run_dir: str | Path | None = None, device: str = "cpu"):
        self.run_dir = Path(run_dir) if run_dir else BUNDLED_CHECKPOINT
        self.device = device
        self.model = load(self.run_dir, device=device)
        # a copy of the bundled head (e.g. the one in a Space folder) is still "the bottle model"
        served = _tensors_hash(self.run_dir)
        self.is_bundled = served is not None and served == _tensors_hash(BUNDLED_CHECKPOINT)
        self._custom: OrderedDict[str, HLGFA] = OrderedDict()
        self._lock = threading.Lock()
        self.fit_slot = threading.Lock()  # one visitor fit at a time, held until the fit has really stopped

    def warm_up(self) -> None:
        """Trace the backbone for both view sizes now, not in the first visitor's request."""
        self.model.predict([torch.rand(3, 64, 64)])

    def add_custom(self, run_dir: str | Path, model: HLGFA) -> None:
        with self._lock:
            self._custom[str(run_dir)] = model.eval()
            self._custom.move_to_end(str(run_dir))
            while len(self._custom) > CUSTOM_MODELS_KEPT:
                self._custom.popitem(last=False)

    def drop_custom(self, run_dir: str | Path) -> None:
        with self._lock:
            self._custom.pop(str(run_dir), None)

    def custom(self, run_dir: str | Path) -> HLGFA:
        """A fitted head by its checkpoint folder; reloaded from disk if it was dropped from memory."""
        key = str(run_dir)
        with self._lock:
            if key in self._custom:
                self._custom.move_to_end(key)
                return self._custom[key]
        if not Path(key).is_dir():
            raise HLGFAError("Your fitted part is no longer on the server (the session expired); please fit again.")
        model = load(key, device=self.device)
        self.add_custom(key, model)
        return model


# --- scoring and pictures --------------------------------------------------------------------------------------
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


# --- fitting a visitor's part ----------------------------------------------------------------------------------
def fit_steps(length: str) -> int:
    """Optimiser steps of a training length: "normal" is ``FIT_STEPS``, "quick" a rougher head in a third of them."""
    return max(1, FIT_STEPS // 3) if length == "quick" else FIT_STEPS


def fit_lengths() -> list[tuple[str, str]]:
    """The training lengths a visitor can choose, (label, key) for a radio; labels carry a time estimate for 20
    images."""
    return [(f"{key} ({fit_steps(key)} steps, about {fit_estimate(fit_steps(key), 20)})", key)
            for key in ("quick", "normal")]


def fit_estimate(steps: int, n_images: int) -> str:
    """Time a fit of ``steps`` on ``n_images`` takes on the measured machine, in words; every optimiser step counts,
    the cross-fitted calibration heads of a small set included (``planned_steps``)."""
    n_images = min(n_images, MAX_FIT_IMAGES)
    seconds = FIT_SECONDS_PER_IMAGE * n_images + FIT_SECONDS_PER_STEP * planned_steps(preset("lite", steps=steps),
                                                                                       n_images)
    return f"{max(10, round(seconds / 10) * 10):.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@dataclass
class FittedPart:
    """What a visitor's session keeps about its own head: small and copyable (the model lives in ModelStore)."""

    workdir: str  # temporary folder owning everything below; removed when the session ends
    run_dir: str  # the library checkpoint (model.json + head.safetensors)
    zip_path: str  # the same checkpoint, zipped for download
    summary: str  # Markdown


def remove_fitted(part: FittedPart | None, store: ModelStore | None = None) -> None:
    if part is None:
        return
    if store is not None:
        store.drop_custom(part.run_dir)
    shutil.rmtree(part.workdir, ignore_errors=True)


def fit_part(paths: list[str | Path] | None, store: ModelStore, steps: int = FIT_STEPS,
             report_progress: Callable[[float, str], None] | None = None, seed: int = 0,
             cancel: threading.Event | None = None) -> FittedPart:
    """Fit a lite head on a visitor's good images; every image is checked and downscaled before any training.

    report_progress(fraction in [0, 1], description) is called while reading, caching features and training.
    One fit runs at a time per server (``store.fit_slot``). Setting ``cancel`` stops the fit between two steps
    (``FitCancelled``); the slot is released only once it has stopped, and its folder is removed."""
    def tell(fraction: float, text: str) -> None:
        if report_progress is not None:
            report_progress(min(max(fraction, 0.0), 1.0), text)

    paths = [p for p in (paths or []) if p]
    if len(paths) < MIN_FIT_IMAGES:
        raise HLGFAError(f"Fitting needs at least {MIN_FIT_IMAGES} good images (you gave {len(paths)}): one to "
                         f"learn from and one to calibrate the threshold. About 20 work well.")
    notes = []
    if len(paths) > MAX_FIT_IMAGES:
        notes.append(f"only the first {MAX_FIT_IMAGES} of your {len(paths)} images were used, to keep the fit short")
        paths = paths[:MAX_FIT_IMAGES]
    if not store.fit_slot.acquire(blocking=False):
        raise HLGFAError("Another fit is running on this server (or still stopping); please try again in a minute.")
    try:
        return _fit_part(paths, store, steps, tell, seed, notes, cancel)
    finally:
        store.fit_slot.release()  # only now: a cancelled fit holds the slot until its last step has stopped


def _fit_part(paths, store, steps, tell, seed, notes, cancel) -> FittedPart:
    workdir = Path(tempfile.mkdtemp(prefix="fit-", dir=process_dir()))
    try:
        images_dir = workdir / "images"
        images_dir.mkdir()
        kept, skipped = [], []
        for i, path in enumerate(paths):
            tell(0.1 * i / len(paths), "reading images")
            try:
                loaded = read_upload(path)
            except HLGFAError as exc:
                skipped.append(f"{Path(path).name} ({exc})")
                continue
            target = images_dir / f"{i:03d}.png"
            Image.fromarray(to_uint8_image(loaded.tensor)).save(target)
            kept.append(target)
        if skipped:
            notes.append(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped))
        if len(kept) < MIN_FIT_IMAGES:
            raise HLGFAError(f"Only {len(kept)} of your files could be read as images; fitting needs at least "
                             f"{MIN_FIT_IMAGES}. " + (notes[-1] if skipped else ""))
        if len(kept) < FEW_FIT_IMAGES:
            notes.append(f"with {len(kept)} images the threshold rests on few good scores: expect many borderline "
                         "verdicts")
        cfg = preset("lite", steps=steps, seed=seed)
        tell(0.1, "preparing the frozen backbone")
        model = HLGFA(cfg).to(store.device)
        tell(0.12, f"caching features of {len(kept)} images")
        started = time.perf_counter()
        total = planned_steps(cfg, len(kept))  # cross-fitted heads included (small sets)

        def on_step(step: int, loss: float) -> None:
            if SERVER_STOPPING.is_set() or (cancel is not None and cancel.is_set()):
                raise FitCancelled("The fit was stopped; nothing was kept.")
            what = "training the head" if step < steps else "cross-fitting the calibration"
            tell(0.15 + 0.8 * (step + 1) / total, f"{what}: step {step + 1}/{total}, loss {loss:.3f}")

        report = fit(model, kept, progress=False, on_step=on_step)
        seconds = time.perf_counter() - started
        tell(0.97, "saving the checkpoint")
        run_dir = save(model, workdir / "my_part_lite", extra={"fit": {
            "data": "images uploaded to the hlgfa_lite demo", "n_train": report.n_train,
            "n_holdout": report.n_holdout, "seconds": round(seconds, 1), "first_loss": report.losses[0],
            "last_loss": report.losses[-1]}})
        zip_path = workdir / "my_part_lite.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(run_dir.iterdir()):
                archive.write(file, f"my_part_lite/{file.name}")
        store.add_custom(run_dir, model)
        cal = model.calibration
        summary = [f"### ✔ Fitted on {report.n_train} images, calibrated on {report.n_holdout} held out"
                   + (f" and {len(report.cross_fit_scores)} cross-fitted" if report.cross_fit_scores else ""),
                   f"{steps} steps in {seconds:.0f} s (features {report.cache_seconds:.0f} s, head "
                   f"{report.train_seconds:.0f} s); loss {report.losses[0]:.3f} → {report.losses[-1]:.3f}. "
                   f"Anomalous above **{cal.image_threshold:.2f}**, borderline above "
                   f"**{cal.borderline_threshold:.2f}** (from {cal.n_images} good scores, typical "
                   f"{cal.good_score_center:.2f}, highest {cal.good_score_max:.2f}).",
                   "Choose **my part** in the *Inspect* tab to use it, or download the checkpoint below and "
                   "score a folder of images on your own machine (put them in `my_images/` next to the zip):",
                   "```\npip install hlgfa-lite\nunzip my_part_lite.zip\n"
                   "hlgfa-lite predict my_part_lite my_images --out results\n```"]
        if notes:
            summary.append("ℹ " + "; ".join(notes) + ".")
        tell(1.0, "done")
        return FittedPart(str(workdir), str(run_dir), str(zip_path), "\n\n".join(summary))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


# --- look inside -----------------------------------------------------------------------------------------------
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


# --- examples --------------------------------------------------------------------------------------------------
def example_images() -> list[tuple[str, str]]:
    """(label, path) of the bundled sample: one good test image, then the first image of each defect type."""
    test = sample_dir() / "test"
    examples = []
    for folder in sorted((p for p in test.iterdir() if p.is_dir()), key=lambda p: (p.name != "good", p.name)):
        images = sorted(folder.glob("*.png"))
        if images:
            examples.append((folder.name.replace("_", " "), str(images[0])))
    return examples


def code_url() -> str | None:
    """The repository's address, from the one place that holds it: the package's ``Repository`` project URL
    (``[project.urls]`` in pyproject.toml, set by scripts/set_repository.py). None if the install lacks it."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("hlgfa-lite").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return dict(u.split(", ", 1) for u in urls if ", " in u).get("Repository")


def bundled_test_images() -> list[tuple[str, str]]:
    """(caption, path) of every bundled test image, good ones first: "good 000", "broken large 007", ..."""
    test = sample_dir() / "test"
    folders = sorted((p for p in test.iterdir() if p.is_dir()), key=lambda p: (p.name != "good", p.name))
    return [(f"{folder.name.replace('_', ' ')} {image.stem}", str(image))
            for folder in folders for image in sorted(folder.glob("*.png"))]


def good_images() -> list[str]:
    return [str(p) for p in sorted((sample_dir() / "test" / "good").glob("*.png"))]
