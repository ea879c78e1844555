"""What ships inside the package: two small real samples (MVTec AD bottle and MVTec 3D-AD tire, downsized,
CC BY-NC-SA 4.0) and checkpoints fitted on their full categories, so an installed wheel needs no clone for the
quickstart, the lessons or the demo."""

from importlib.resources import files
from pathlib import Path

from ..errors import HLGFAError

SAMPLES = ("bottle", "tire")  # bottle: the clear picture; tire: a category where the method errs
CHECKPOINTS = ("bottle_lite", "tire_lite")


def sample_dir(category: str = "bottle") -> Path:
    """Path of a bundled MVTec-layout sample folder (train/good, test/<type>, ground_truth/<type>)."""
    if category not in SAMPLES:
        raise HLGFAError(f"no bundled sample {category!r}; choose one of {list(SAMPLES)}.")
    return Path(str(files("hlgfa_lite") / "assets" / "samples" / category))


def bundled_checkpoint(name: str = "bottle_lite") -> Path:
    """Path of a bundled checkpoint: ``bottle_lite`` or ``tire_lite``, each the ``lite`` preset (seed 0) fitted on
    its category's full training set; its test-set metrics sit beside it in ``<name>_metrics.json``."""
    if name not in CHECKPOINTS:
        raise HLGFAError(f"no bundled checkpoint {name!r}; choose one of {list(CHECKPOINTS)}.")
    return Path(str(files("hlgfa_lite") / "assets" / "checkpoints" / name))
