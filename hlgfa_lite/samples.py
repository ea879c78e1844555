"""What ships inside the package: a small real sample (MVTec AD bottle, downsized, CC BY-NC-SA 4.0) and the demo's
checkpoint, so an installed wheel needs no clone for the quickstart, the lessons or the demo."""

from importlib.resources import files
from pathlib import Path


def sample_dir() -> Path:
    """Path of the bundled MVTec-layout sample folder (train/good, test/<type>, ground_truth/<type>)."""
    return Path(str(files("hlgfa_lite") / "sample" / "bottle"))


def bundled_checkpoint() -> Path:
    """Path of the bundled ``bottle_lite`` checkpoint (the benchmark's full lite head on MVTec AD bottle; its
    test-set metrics sit beside it in ``bottle_lite_metrics.json``)."""
    return Path(str(files("hlgfa_lite") / "demo" / "checkpoints" / "bottle_lite"))
