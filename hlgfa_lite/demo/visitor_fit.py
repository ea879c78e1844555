"""Fitting a head on a visitor's own good images: one fit per server at a time, stoppable between two steps,
inside a temporary folder that becomes a library checkpoint (and its zip) or goes away."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from ..calibration import FEW_GOOD_SCORES
from ..config import preset
from ..data import MIN_TRAINING_SIDE
from ..errors import HLGFAError
from ..model import HLGFA
from ..tools.checkpoint import save
from ..tools.visualize import to_uint8_image
from ..training import fit, planned_steps, training_precision
from .models import ModelStore
from .uploads import read_upload
from .visitor_files import process_dir

MIN_FIT_IMAGES = 2  # one to train on, one held out to calibrate the threshold (the library's rule)
FEW_FIT_IMAGES = FEW_GOOD_SCORES  # below this the threshold's margin is wide (the library's rule): warn
MAX_FIT_IMAGES = 40  # keeps a fit within the time promised on a 2-core CPU
# optimiser steps of an in-browser fit (timing: demo/README.md); HLGFA_DEMO_FIT_STEPS overrides it, e.g. on a GPU
FIT_STEPS = int(os.environ.get("HLGFA_DEMO_FIT_STEPS", "150"))
# a fit's seconds on a quiet 2-core CPU = fixed + per image + per step, from the quick (8 images) and normal (20) fits
# of benchmarks.demo_latency --fit (benchmarks/DEMO_RESULTS.md); a step is one of 8 images, from the normal fit on a
# CPU with bfloat16 and on one without it. The page's time estimate is only as good as those machines
FIT_SECONDS_FIXED, FIT_SECONDS_PER_IMAGE = 6.3, 0.11
FIT_SECONDS_PER_STEP = {"bfloat16": 0.087, "float32": 0.22}
# set by a stop signal: running fits end at their next step, so the process can exit without waiting for them
SERVER_STOPPING = threading.Event()


class FitCancelled(HLGFAError):
    """A visitor's fit was stopped (cancelled, the session ended, or the server stops) between two steps."""


def fit_steps(length: str) -> int:
    """Optimiser steps of a training length: "normal" is ``FIT_STEPS``, "quick" a rougher head in a third of them."""
    return max(1, FIT_STEPS // 3) if length == "quick" else FIT_STEPS


def fit_config(steps: int, seed: int = 0):
    """The ``lite`` config of an in-browser fit: the length the visitor chose (``steps``), not the data's, on
    batches of ``min_batch_size`` images, the batch the library's rule gives every set of up to 200 training images
    (``training.head_batch``; a visitor brings at most MAX_FIT_IMAGES). Against batches of 16 they scored the same
    on the demo's lengths, in about half the time (benchmarks/DEMO_RESULTS.md)."""
    cfg = preset("lite", steps=steps, passes=0.0, seed=seed)
    return cfg.replace(batch_size=cfg.min_batch_size or cfg.batch_size)


def fit_lengths() -> list[tuple[str, str]]:
    """The training lengths a visitor can choose, (label, key) for a radio; labels carry a time estimate for 20
    images."""
    return [(f"{key} ({fit_steps(key)} steps, about {fit_estimate(fit_steps(key), 20)})", key)
            for key in ("quick", "normal")]


def fit_estimate(steps: int, n_images: int) -> str:
    """Time a fit of ``steps`` on ``n_images`` takes on the measured machine, in words; every optimiser step counts,
    the cross-fitted calibration heads of a small set included (``planned_steps``)."""
    n_images = min(n_images, MAX_FIT_IMAGES)
    cfg = fit_config(steps)
    per_step = FIT_SECONDS_PER_STEP[training_precision(cfg, torch.device("cpu"))]
    seconds = FIT_SECONDS_FIXED + FIT_SECONDS_PER_IMAGE * n_images + per_step * planned_steps(cfg, n_images)
    return f"{max(5, round(seconds / 5) * 5):.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


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
            height, width = loaded.tensor.shape[-2:]
            if min(height, width) < MIN_TRAINING_SIDE:  # the library refuses it: say so here, without a server path
                skipped.append(f"{Path(path).name} ({width}x{height} px, too small to learn from)")
                continue
            target = images_dir / f"{i:03d}.png"
            Image.fromarray(to_uint8_image(loaded.tensor)).save(target)
            kept.append(target)
        if skipped:
            notes.append(f"skipped {len(skipped)} file(s) the head cannot learn from: " + "; ".join(skipped))
        if len(kept) < MIN_FIT_IMAGES:
            raise HLGFAError(f"Only {len(kept)} of your files could be read as images; fitting needs at least "
                             f"{MIN_FIT_IMAGES}. " + (notes[-1] if skipped else ""))
        if len(kept) < FEW_FIT_IMAGES:
            notes.append(f"with {len(kept)} images the threshold rests on few good scores: expect many borderline "
                         "verdicts")
        cfg = fit_config(steps, seed)
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
