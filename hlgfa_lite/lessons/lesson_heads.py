"""Trained heads shipped with the package for lessons 03 and 04, so any lesson runs in minutes on a CPU.

Lesson 03 shows the full head on bottle and compares five heads on tire (the full head and four ablations);
lesson 04 compares three (augmentation settings).
Training them live takes 15-20 minutes on a CPU runtime, so each is trained once, with the recipe below, by
``scripts/train_lesson_heads.py`` and stored as an ordinary checkpoint (``head.safetensors`` + ``model.json``, see
``checkpoint.py``) under ``hlgfa_lite/assets/lesson_heads/<name>/``, with its training-loss curve in ``model.json``.
A lesson calls ``lesson_head(name)``: it loads the shipped head when it is there *and* was made with today's
recipe, and trains it live only when asked (``live=True``) or when no usable head is shipped (it says why).

Recipe (one place, used for both the shipped and the live heads): the ``lite_paper`` preset (the CPU backbone with
the abstract's method alone: no normality term, maps scaled by their spread; the lessons teach that method) with the
lesson's switches,
``fit`` on a bundled sample's good training images (bottle's 20, or tire's 10 for the ``03_tire_*`` heads; a seeded
part held out for calibration), batch 8.
The head's tensors are stored in half precision (a quarter of a float32 head is not needed to teach; it halves the
package); loading casts them back to float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..tools.checkpoint import load, read_metadata, save
from ..config import HLGFAConfig, preset
from ..data import train_image_paths
from ..errors import HLGFAError
from ..model import HLGFA
from ..assets import sample_dir
from ..training import fit

HEADS_DIR = Path(__file__).resolve().parent.parent / "assets" / "lesson_heads"
STEPS = 300  # what the lessons always trained in full mode
BATCH_SIZE = 8
# name -> config switches on top of the lite_paper preset (lesson 04 holds out a quarter of the 20 images: 5, not 2)
RECIPES: dict[str, dict] = {
    "03_full_head": {},
    "04_no_augmentation": dict(noise_aug=False, holdout_fraction=0.25),
    "04_low_view_only": dict(aug_views="low", holdout_fraction=0.25),
    "04_both_views": dict(aug_views="both", holdout_fraction=0.25),
    # lesson 03's ablation, on the tire sample: on bottle's every variant finds every defect and none can be ranked
    "03_tire_full_head": {},
    "03_tire_no_structure": dict(use_structure=False),
    "03_tire_no_detail": dict(use_detail=False),
    "03_tire_no_gate": dict(use_gate=False),
    "03_tire_no_priors": dict(use_structure=False, use_detail=False),
}


def training_sample(name: str) -> str:
    """The bundled sample a head is fitted on: its name says when it is not bottle's."""
    return "tire" if "_tire_" in name else "bottle"


@dataclass
class LessonHead:
    model: HLGFA
    losses: list[float] = field(default_factory=list)  # training loss of each step
    source: str = "shipped"  # "shipped" or "trained live"


def recipe(name: str, steps: int | None = None) -> HLGFAConfig:
    """The config of head ``name``; ``steps`` defaults to the shipped heads' ``STEPS``."""
    if name not in RECIPES:
        raise HLGFAError(f"no lesson head called {name!r}; choose one of {sorted(RECIPES)}.")
    # the lessons teach the abstract's method and its parts: what lies beyond the paper (the normality term, the
    # max map scale) stays off in their heads, whatever the lite preset's defaults become
    # and they train a fixed number of steps in float32, as they always did, whatever the machine
    return preset("lite_paper", steps=STEPS if steps is None else steps, passes=0.0, train_precision="float32",
                  batch_size=BATCH_SIZE, **RECIPES[name])


def why_not_shipped(name: str, folder: Path = HEADS_DIR) -> str | None:
    """None when a shipped head for ``name`` can be loaded and matches today's recipe, else the reason in words."""
    run_dir = Path(folder) / name
    try:
        metadata = read_metadata(run_dir)
    except HLGFAError:
        return f"no shipped head in {run_dir}"
    wanted = recipe(name).to_dict()
    try:  # read as load() reads it: a key the stored config lacks takes today's default
        stored = HLGFAConfig.from_dict(metadata.get("config", {})).to_dict()
    except (HLGFAError, TypeError) as exc:
        return f"the shipped head's config cannot be read ({exc})"
    changed = sorted(k for k in wanted if wanted[k] != stored[k])
    if changed:
        return f"the shipped head was trained with another recipe (differs in {', '.join(changed)})"
    if not isinstance(metadata.get("losses"), list):
        return "the shipped head has no loss curve"
    return None


def lesson_head(name: str, live: bool = False, steps: int | None = None, folder: Path = HEADS_DIR,
                on_step: Callable[[int, float], None] | None = None, progress: bool = False,
                device: str | torch.device = "cpu") -> LessonHead:
    """The head ``name`` of ``RECIPES`` on ``device``: loaded from ``folder`` unless ``live`` (or none usable is
    there), else fitted there now for ``steps`` steps (default ``STEPS``; ``on_step(step, loss)`` is called after
    each, e.g. to draw the curve): a lesson's GPU trains its live heads too."""
    steps = STEPS if steps is None else steps  # 0 is refused by the config, not read as "the default"
    if not live:
        reason = why_not_shipped(name, folder)
        if reason is None:
            run_dir = Path(folder) / name
            try:
                with warnings.catch_warnings():  # Hub and offline-package weights differ by a fingerprint only
                    warnings.simplefilter("ignore")
                    model = load(run_dir, device=device)
                return LessonHead(model, list(read_metadata(run_dir)["losses"]), "shipped")
            except HLGFAError as exc:
                reason = f"the shipped head does not load ({exc})"
        print(f"{name}: {reason}; training it live ({steps} steps, minutes on a CPU)")
    model = HLGFA(recipe(name, steps)).to(device)
    report = fit(model, train_image_paths(sample_dir(training_sample(name))), progress=progress, on_step=on_step)
    return LessonHead(model, report.losses, "trained live")


def ship(head: LessonHead, name: str, folder: Path = HEADS_DIR) -> Path:
    """Store a head trained with the full recipe as ``folder/name`` (half-precision tensors, losses in the JSON)."""
    if head.model.cfg != recipe(name):
        raise HLGFAError(f"{name}: only a head trained with the full recipe ({STEPS} steps) can be shipped.")
    head.model.head.half()
    try:
        return save(head.model, Path(folder) / name, overwrite=True,
                    extra={"losses": [round(x, 6) for x in head.losses], "lesson_head": name})
    finally:
        head.model.head.float()
