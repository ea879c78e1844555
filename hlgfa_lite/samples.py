"""The small real sample bundled with the package (MVTec AD bottle, downsized, CC BY-NC-SA 4.0)."""

from importlib.resources import files
from pathlib import Path


def sample_dir() -> Path:
    """Path of the bundled MVTec-layout sample folder (train/good, test/<type>, ground_truth/<type>)."""
    return Path(str(files("hlgfa_lite") / "sample" / "bottle"))
